"""The document model every human-readable format renders: a title and a list of blocks.

Text is a tuple of plain strings and :class:`~convgrad.report.mathtext.Math` (inline formulas);
blocks are headings, paragraphs, display formulas, aligned equations (each a left side and a list
of terms that a renderer may break over lines), tables of plain text and figures (PNG bytes).

>>> from convgrad.report.mathtext import ident
>>> doc = Document("T", [Paragraph(("the loss ", ident("L"), "."))])
>>> doc.blocks[0].parts[1].latex
'L'
"""

import dataclasses
from typing import Any

from convgrad.report.mathtext import Math

Inline = str | Math


@dataclasses.dataclass(frozen=True)
class Heading:
    """A section heading (``level`` 2 or 3; the document title is level 1)."""

    level: int
    text: str


@dataclasses.dataclass(frozen=True)
class Paragraph:
    """Running text with inline formulas."""

    parts: tuple[Inline, ...]


@dataclasses.dataclass(frozen=True)
class DisplayMath:
    """One formula on its own line (e.g. a matrix written out)."""

    math: Math


@dataclasses.dataclass(frozen=True)
class Equation:
    """``lhs = t_1 + t_2 + ...``; ``signs`` are +1/-1 per term; ``lhs`` None continues a row."""

    lhs: Math | None
    terms: tuple[Math, ...]
    signs: tuple[int, ...]
    note: str = ""


@dataclasses.dataclass(frozen=True)
class Equations:
    """Aligned equations, one per row."""

    rows: tuple[Equation, ...]


@dataclasses.dataclass(frozen=True)
class Table:
    """A table of plain text (numbers already formatted)."""

    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclasses.dataclass(frozen=True)
class Figure:
    """A PNG picture with a caption (``alt`` describes it for screen readers).

    ``panels`` are the grids it draws (rows of ``convgrad.report.figures.Panel`` or None), for
    formats that draw them natively instead (LaTeX).
    """

    png: bytes
    caption: str
    alt: str
    panels: tuple[tuple[Any, ...], ...] = ()


Block = Heading | Paragraph | DisplayMath | Equations | Table | Figure


@dataclasses.dataclass(frozen=True)
class Document:
    """A report: its title and blocks, in reading order."""

    title: str
    blocks: list[Block]
