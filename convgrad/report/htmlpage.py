"""A self-contained HTML page: math as MathML Core, figures as data URIs, no script, no network.

The page's Content-Security-Policy forbids every fetch but inline styles and ``data:`` images.
Aligned equations are a CSS grid (left side, ``=``, right side); the right side is one inline
``<math>`` per term, so a long sum wraps between terms like text.

>>> from convgrad.report.model import Document, Paragraph
>>> from convgrad.report.mathtext import ident
>>> page = render(Document("T", [Paragraph(("loss ", ident("L")))]))
>>> "<p>loss <math><mi>L</mi></math></p>" in page, "<script" in page
(True, False)
"""

import base64
import html

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

STYLE = """
body { font-family: "DejaVu Serif", Georgia, serif; line-height: 1.5; color: #111; margin: 0; }
main { max-width: 60rem; margin: 0 auto; padding: 1rem 1.5rem 3rem; }
h1 { font-size: 1.5rem; line-height: 1.3; }
h2 { font-size: 1.25rem; margin-top: 2rem; border-bottom: 1px solid #ccc; }
math { font-family: "Latin Modern Math", "STIX Two Math", "Cambria Math", math; font-size: 1.1em; }
math[display="block"] { margin: 0.8rem 0; overflow-x: auto; }
.equations { display: grid; grid-template-columns: max-content max-content 1fr;
             column-gap: 0.4rem; row-gap: 0.6rem; align-items: baseline; margin: 0.8rem 0; }
.equations math { math-style: normal; }
.equations .lhs { text-align: right; }
.equations .note { color: #555; font-size: 0.9em; }
table { border-collapse: collapse; margin: 0.8rem 0; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
figure { margin: 1.2rem 0; }
figure img { max-width: 100%; height: auto; }
figcaption { font-size: 0.92em; color: #333; }
"""

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def render(document: Document) -> str:
    """The whole document as one HTML page."""
    body = "\n".join(_block(block) for block in document.blocks)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{html.escape(document.title)}</title>\n<style>{STYLE}</style>\n</head>\n"
        f"<body>\n<main>\n<h1>{html.escape(document.title)}</h1>\n{body}\n</main>\n</body>\n</html>\n"
    )


def math(formula: Math, display: bool = False) -> str:
    """A ``<math>`` element (``display="block"`` for a formula on its own line)."""
    attribute = ' display="block"' if display else ""
    return f"<math{attribute}>{formula.mathml}</math>"


def _inline(parts: tuple[Inline, ...]) -> str:
    return "".join(math(part) if isinstance(part, Math) else html.escape(part) for part in parts)


def _equation(row: Equation) -> str:
    lhs = math(row.lhs) if row.lhs is not None else ""
    terms = []
    for position, (term, sign) in enumerate(zip(row.terms, row.signs, strict=True)):
        operator = ("<mo>-</mo>" if sign < 0 else "") if position == 0 else (
            f'<mo form="infix">{"-" if sign < 0 else "+"}</mo>')
        terms.append(f"<math>{operator}{term.mathml}</math>")
    note = f' <span class="note">({html.escape(row.note)})</span>' if row.note else ""
    return (f'<div class="lhs">{lhs}</div><div class="rel"><math><mo>=</mo></math></div>'
            f'<div class="rhs">{" ".join(terms)}{note}</div>')


def _block(block: Block) -> str:
    if isinstance(block, Heading):
        return f"<h{block.level}>{html.escape(block.text)}</h{block.level}>"
    if isinstance(block, Paragraph):
        return f"<p>{_inline(block.parts)}</p>"
    if isinstance(block, DisplayMath):
        return math(block.math, display=True)
    if isinstance(block, Equations):
        return '<div class="equations">\n' + "\n".join(_equation(r) for r in block.rows) + "\n</div>"
    if isinstance(block, Table):
        head = "".join(f"<th>{html.escape(h)}</th>" for h in block.header)
        rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                       for row in block.rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
    if isinstance(block, Figure):
        data = base64.b64encode(block.png).decode()
        return (f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(block.alt)}">'
                f"<figcaption>{html.escape(block.caption)}</figcaption></figure>")
    raise TypeError(f"block (={type(block).__name__}) is not a known block type")
