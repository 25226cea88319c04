r"""Markdown with LaTeX math: ``$...$`` inline and ``$$...$$`` display blocks, as GitHub renders.

Aligned equations are ``aligned`` environments, long sums broken every few terms; figures are
PNG data URIs (``![alt](data:image/png;base64,...)``) so that one file holds the whole report.

>>> from convgrad.report.model import Document, Paragraph
>>> from convgrad.report.mathtext import ident
>>> print(render(Document("T", [Paragraph(("loss ", ident("L")))])))
# T
<BLANKLINE>
loss $L$
<BLANKLINE>
"""

import base64

from convgrad.report.mathtext import Math
from convgrad.report.model import (
    Block,
    DisplayMath,
    Document,
    Equation,
    Equations,
    Figure,
    Heading,
    Inline,
    Paragraph,
    Table,
)

TERMS_PER_LINE = 6


def render(document: Document) -> str:
    """The whole document as Markdown text."""
    parts = [f"# {document.title}"] + [_block(block) for block in document.blocks]
    return "\n\n".join(parts) + "\n"


def _inline(parts: tuple[Inline, ...]) -> str:
    return "".join(f"${part.latex}$" if isinstance(part, Math) else _escape(part) for part in parts)


def _escape(words: str) -> str:
    return words.replace("*", r"\*").replace("_", r"\_").replace("$", r"\$")


def aligned_rows(rows: tuple[Equation, ...], terms_per_line: int = TERMS_PER_LINE) -> list[str]:
    r"""LaTeX rows ``lhs &= t_1 + ...`` for an ``aligned``/``align*`` environment.

    >>> from convgrad.report.mathtext import ident
    >>> aligned_rows((Equation(ident("y"), (ident("a"), ident("b")), (1, -1)),))
    ['y &= a - b']
    """
    lines = []
    for row in rows:
        chunks = [row.terms[i:i + terms_per_line] for i in range(0, len(row.terms), terms_per_line)]
        signs = [row.signs[i:i + terms_per_line] for i in range(0, len(row.signs), terms_per_line)]
        for position, (chunk, chunk_signs) in enumerate(zip(chunks, signs, strict=True)):
            body = _signed(chunk, chunk_signs, leading=position > 0)
            if position == 0:
                lhs = row.lhs.latex if row.lhs is not None else ""
                lines.append(f"{lhs} &= {body}")
            else:
                lines.append(rf"&\quad {body}")
        if row.note:
            lines[-1] += rf" \quad \text{{({row.note})}}"
    return lines


def _signed(terms: tuple[Math, ...], signs: tuple[int, ...], leading: bool) -> str:
    text = ""
    for position, (term, sign) in enumerate(zip(terms, signs, strict=True)):
        if position == 0 and not leading:
            text += ("-" if sign < 0 else "") + term.latex
        else:
            text += (" - " if sign < 0 else " + ") + term.latex
    return text.strip()


def _block(block: Block) -> str:
    if isinstance(block, Heading):
        return f"{'#' * block.level} {block.text}"
    if isinstance(block, Paragraph):
        return _inline(block.parts)
    if isinstance(block, DisplayMath):
        return f"$$\n{block.math.latex}\n$$"
    if isinstance(block, Equations):
        body = " \\\\\n".join(aligned_rows(block.rows))
        return f"$$\n\\begin{{aligned}}\n{body}\n\\end{{aligned}}\n$$"
    if isinstance(block, Table):
        lines = ["| " + " | ".join(block.header) + " |", "|" + " --- |" * len(block.header)]
        lines += ["| " + " | ".join(row) + " |" for row in block.rows]
        return "\n".join(lines)
    if isinstance(block, Figure):
        data = base64.b64encode(block.png).decode()
        return f"![{block.alt}](data:image/png;base64,{data})\n\n*{_escape(block.caption)}*"
    raise TypeError(f"block (={type(block).__name__}) is not a known block type")
