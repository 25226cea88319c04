r"""A standalone LaTeX document (``article``, ``amsmath``) that compiles with pdflatex.

Equations are ``align*`` environments that may break across pages, and a single displayed
equation wider than the page is scaled down to its width (``\fitmath``); the Unicode the text uses
(∂, ×, Σ, …) is declared in the preamble. Figures are bitmaps that a single ``.tex`` file cannot
hold: the LaTeX report draws their grids natively, as tables of coloured cells (``colortbl``).

>>> from convgrad.report.model import Document, Heading
>>> tex = render(Document("T", [Heading(2, "100% exact_")]))
>>> r"\section*{100\% exact\_}" in tex, tex.rstrip().endswith(r"\end{document}")
(True, True)
"""

import re
from typing import Any

from convgrad.report.markdown import aligned_rows
from convgrad.report.mathtext import Math, entry_parts
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

UNICODE = {
    "2202": r"\partial", "00D7": r"\times", "03A3": r"\Sigma", "00B7": r"\cdot",
    "22EF": r"\cdots", "2026": r"\ldots", "00B0": r"^\circ", "2265": r"\geq", "2264": r"\leq",
    "2192": r"\to", "2208": r"\in", "03B4": r"\delta", "22C6": r"\star", "2217": r"\ast",
    "230A": r"\lfloor", "230B": r"\rfloor",
}

PREAMBLE = r"""\documentclass[11pt]{article}
\usepackage[a4paper,margin=2cm]{geometry}
\usepackage{amsmath,amssymb}
\usepackage[table]{xcolor}
\usepackage{booktabs}
\usepackage{graphicx}
\allowdisplaybreaks
\setcounter{MaxMatrixCols}{40}
\newsavebox{\fitbox}
\newcommand{\fitmath}[1]{\sbox{\fitbox}{$\displaystyle #1$}%%
  \ifdim\wd\fitbox>\linewidth\resizebox{\linewidth}{!}{\usebox{\fitbox}}\else\usebox{\fitbox}\fi}
%s
\title{%s}
\date{}
\begin{document}
\maketitle
"""

TERMS_PER_LINE = 6
WIDE_TERMS_PER_LINE = 4
WIDE_INDEX = re.compile(r"_\{\d+,\d+,\d+")  # an entry with batch and channel indices


def escape(words: str) -> str:
    r"""Text made safe for LaTeX (special characters escaped).

    >>> print(escape("a_b & 50% {x} ~ ^ \\"))
    a\_b \& 50\% \{x\} \textasciitilde{} \textasciicircum{} \textbackslash{}
    """
    specials = {"\\": r"\textbackslash{}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
    return "".join("\\" + char if char in "&%$#_{}" else specials.get(char, char) for char in words)


def render(document: Document) -> str:
    """The whole document as LaTeX source."""
    declarations = "\n".join(rf"\DeclareUnicodeCharacter{{{code}}}{{\ensuremath{{{command}}}}}"
                             for code, command in UNICODE.items())
    body = "\n\n".join(_block(block) for block in document.blocks)
    return PREAMBLE % (declarations, escape(document.title)) + body + "\n\n\\end{document}\n"


def _inline(parts: tuple[Inline, ...]) -> str:
    return "".join(f"${part.latex}$" if isinstance(part, Math) else escape(part) for part in parts)


def _block(block: Block) -> str:
    if isinstance(block, Heading):
        return f"\\{'sub' * (block.level - 2)}section*{{{escape(block.text)}}}"
    if isinstance(block, Paragraph):
        return _inline(block.parts)
    if isinstance(block, DisplayMath):  # one line, shrunk to the page's width if wider
        return f"\\[\n\\fitmath{{{block.math.latex}}}\n\\]"
    if isinstance(block, Equations):
        body = " \\\\\n".join(aligned_rows(block.rows, _terms_per_line(block.rows)))
        return f"\\begin{{align*}}\n{body}\n\\end{{align*}}"
    if isinstance(block, Table):
        spec = "l" + "r" * (len(block.header) - 1)
        lines = [f"\\begin{{tabular}}{{{spec}}}", r"\toprule",
                 " & ".join(escape(h) for h in block.header) + r" \\", r"\midrule"]
        lines += [" & ".join(escape(cell) for cell in row) + r" \\" for row in block.rows]
        lines += [r"\bottomrule", r"\end{tabular}"]
        return "\\begin{center}\n" + "\n".join(lines) + "\n\\end{center}"
    if isinstance(block, Figure):
        return _figure(block)
    raise TypeError(f"block (={type(block).__name__}) is not a known block type")


def _terms_per_line(rows: tuple[Equation, ...]) -> int:
    """Six terms per line; four when some term is wide (entries with batch and channel indices),
    so that lines fit the page."""
    wide = any(WIDE_INDEX.search(term.latex) for row in rows for term in row.terms)
    return WIDE_TERMS_PER_LINE if wide else TERMS_PER_LINE


def _panel(panel: Any) -> str:
    """A grid as a tabular of coloured cells under its title (the title is mathtext = LaTeX)."""
    rows, cols = panel.view
    lines = []
    for r, fills in zip(rows, panel.fills, strict=True):
        cells = [rf"\cellcolor[HTML]{{{fill.lstrip('#').upper()}}}{_grid_label(panel.cells[r, c])}"
                 for c, fill in zip(cols, fills, strict=True)]
        lines.append(" & ".join(cells) + r" \\ \hline")
    title = r" \\ ".join(_title_line(line) for line in panel.heading.split("\n"))
    spec = "|" + "c|" * len(cols)
    return (rf"\begin{{tabular}}[t]{{c}}{title} \\[2pt]\setlength{{\tabcolsep}}{{2pt}}"
            rf"\begin{{tabular}}{{{spec}}}\hline " + " ".join(lines) + r"\end{tabular}\end{tabular}")


def _title_line(line: str) -> str:
    """A panel title: text escaped, ``$...$`` kept as math."""
    parts = line.split("$")
    return r"\scriptsize " + "".join(
        f"${part}$" if position % 2 else escape(part) for position, part in enumerate(parts))


def _grid_label(value: object) -> str:
    parts = entry_parts(str(value))
    if parts is None:
        return r"\tiny\color{gray}" + escape(str(value))
    return rf"\tiny${parts[0]}_{{{','.join(map(str, parts[1]))}}}$"


def _figure(block: Figure) -> str:
    """The figure's grids drawn natively; the caption below."""
    if not block.panels:
        return rf"\begin{{quote}}\emph{{{escape(block.caption)}}}\end{{quote}}"
    rows = [r"\quad ".join(_panel(panel) for panel in row if panel is not None)
            for row in block.panels]
    return ("\\begin{center}\n" + "\n\n\\medskip\n".join(rows) + "\n\n\\medskip\n"
            + rf"\parbox{{0.9\linewidth}}{{\small\emph{{{escape(block.caption)}}}}}" + "\n\\end{center}")
