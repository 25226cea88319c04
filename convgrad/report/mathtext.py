r"""Math written twice, as LaTeX (Markdown, LaTeX reports) and as MathML (HTML reports).

A :class:`Math` holds both spellings of one formula. The builders here write the report's own
structures (indexed symbols ``X_{i,j}``, partial derivatives, matrices, sums of products) by hand
in both languages, and :func:`expression` prints any other SymPy expression with SymPy's LaTeX
printer and a presentation-MathML printer completed for what the general proofs use
(``Piecewise``, ``KroneckerDelta``, ``Mod``, ``floor``, relations, indexed symbols).

>>> x01 = entry("X", 0, 1)
>>> x01.latex, x01.mathml
('X_{0,1}', '<msub><mi>X</mi><mrow><mn>0</mn><mo>,</mo><mn>1</mn></mrow></msub>')
"""

import dataclasses
import functools
import html
import itertools
import re
from collections.abc import Iterable, Sequence
from xml.dom.minidom import Element, parseString

import sympy as sp
from sympy.printing.latex import LatexPrinter as SympyLatexPrinter
from sympy.printing.mathml import MathMLPresentationPrinter

ENTRY_NAME = re.compile(r"^([A-Za-z]+)((?:_\d+){2,})$")


def entry_parts(name: str) -> tuple[str, tuple[int, ...]] | None:
    """The letter and indices of an entry symbol's name (``X_0_1``, ``X_0_1_2_3``), else None.

    >>> entry_parts("X_0_1"), entry_parts("G_1_0_2_3"), entry_parts("n")
    (('X', (0, 1)), ('G', (1, 0, 2, 3)), None)
    """
    match = ENTRY_NAME.match(name)
    if match is None:
        return None
    return match.group(1), tuple(int(i) for i in match.group(2)[1:].split("_"))


@dataclasses.dataclass(frozen=True)
class Math:
    """One formula: ``latex`` (no surrounding ``$``) and ``mathml`` (children of ``<math>``)."""

    latex: str
    mathml: str


def join(parts: Iterable[Math], latex_sep: str = " ", mathml_sep: str = "") -> Math:
    r"""The formulas side by side (an ``mrow`` in MathML).

    >>> join([ident("a"), op("+"), ident("b")]).latex
    'a + b'
    """
    items = list(parts)
    return Math(latex_sep.join(m.latex for m in items),
                "<mrow>" + mathml_sep.join(m.mathml for m in items) + "</mrow>")


def ident(name: str, latex: str | None = None) -> Math:
    """An identifier such as ``L`` (``latex`` overrides its LaTeX spelling)."""
    return Math(latex or name, f"<mi>{html.escape(name)}</mi>")


def number(value: int | str) -> Math:
    """A number."""
    return Math(str(value), f"<mn>{value}</mn>")


def op(symbol: str, latex: str | None = None) -> Math:
    r"""An operator such as ``=``, ``+`` or ``\cdot`` (MathML gets ``symbol``)."""
    return Math(latex or symbol, f"<mo>{html.escape(symbol)}</mo>")


def text(words: str) -> Math:
    """Words inside a formula."""
    return Math(rf"\text{{{_latex_text(words)}}}", f"<mtext>{html.escape(words)}</mtext>")


def _latex_text(words: str) -> str:
    return re.sub(r"([#$%&_{}])", r"\\\1", words)


def subscript(base: Math, sub: Math) -> Math:
    """``base`` with a subscript."""
    return Math(f"{{{base.latex}}}_{{{sub.latex}}}", f"<msub>{base.mathml}{sub.mathml}</msub>")


def entry(letter: str, *indices: int) -> Math:
    """The indexed symbol ``letter_{i,j}`` (0-based indices, as derive names them ``X_i_j``)."""
    sub_latex = ",".join(str(i) for i in indices)
    sub_mathml = "<mo>,</mo>".join(f"<mn>{i}</mn>" for i in indices)
    if len(indices) > 1:
        sub_mathml = f"<mrow>{sub_mathml}</mrow>"
    return Math(f"{letter}_{{{sub_latex}}}", f"<msub><mi>{letter}</mi>{sub_mathml}</msub>")


def fraction(numerator: Math, denominator: Math) -> Math:
    """A stacked fraction."""
    return Math(rf"\frac{{{numerator.latex}}}{{{denominator.latex}}}",
                f"<mfrac>{numerator.mathml}{denominator.mathml}</mfrac>")


def partial(of: Math, by: Math) -> Math:
    r"""The partial derivative :math:`\partial\,\mathrm{of} / \partial\,\mathrm{by}`.

    >>> partial(ident("L"), entry("X", 0, 0)).latex
    '\\frac{\\partial L}{\\partial X_{0,0}}'
    """
    return fraction(join([op("∂", r"\partial"), of], mathml_sep=""),
                    join([op("∂", r"\partial"), by], mathml_sep=""))


def function(name: str, argument: Math) -> Math:
    r"""``name(argument)`` with an upright name, e.g. ``rot180(F)``."""
    return Math(rf"\operatorname{{{name}}}({argument.latex})",
                f"<mrow><mi mathvariant=\"normal\">{name}</mi><mo stretchy=\"false\">(</mo>"
                f"{argument.mathml}<mo stretchy=\"false\">)</mo></mrow>")


def accent(base: Math, mark: str, latex_command: str) -> Math:
    r"""``base`` with an accent such as a tilde (``\tilde``)."""
    return Math(rf"\{latex_command}{{{base.latex}}}",
                f"<mover accent=\"true\">{base.mathml}<mo>{mark}</mo></mover>")


def tuple_math(values: Sequence[object]) -> Math:
    """A parenthesised tuple such as ``(1, 2)``."""
    inner = ", ".join(str(v) for v in values)
    return Math(f"({inner})", f"<mrow><mo>(</mo><mn>{html.escape(inner)}</mn><mo>)</mo></mrow>")


def matrix(rows: Sequence[Sequence[Math]]) -> Math:
    """A bracketed matrix of formulas (``bmatrix``; ``mtable`` between stretchy brackets).

    In MathML every cell gets the same height and depth (``mpadded``), so that rows with
    subscripts and rows of zeros are evenly spaced, as LaTeX's struts make them.
    """
    latex_rows = r" \\ ".join(" & ".join(cell.latex for cell in row) for row in rows)
    mathml_rows = "".join(
        "<mtr>" + "".join(f'<mtd><mpadded height="0.8em" depth="0.3em">{cell.mathml}</mpadded></mtd>'
                          for cell in row) + "</mtr>" for row in rows
    )
    return Math(rf"\begin{{bmatrix}} {latex_rows} \end{{bmatrix}}",
                f"<mrow><mo>[</mo><mtable>{mathml_rows}</mtable><mo>]</mo></mrow>")


DOTS_ROW = Math(r"\cdots", "<mo>⋯</mo>")
DOTS_COLUMN = Math(r"\vdots", "<mo>⋮</mo>")
DOTS_DIAGONAL = Math(r"\ddots", "<mo>⋱</mo>")
ZERO = number(0)


def symbol(sym: sp.Basic) -> Math:
    """An entry symbol ``X_i_j`` as ``X_{i,j}`` (``X_b_c_i_j`` as ``X_{b,c,i,j}``); any other SymPy
    object through :func:`expression`."""
    if sym == 0:
        return ZERO
    parts = entry_parts(sym.name) if isinstance(sym, sp.Symbol) else None
    if parts is None:
        return expression(sym)
    return entry(parts[0], *parts[1])


def product(factors: Sequence[Math], coefficient: int = 1) -> Math:
    r"""A product: thin space and invisible times, but a visible dot after a 0 factor.

    >>> product([number(0), entry("F", 1, 1)]).latex, product([ident("a"), ident("b")], 2).latex
    ('0 \\cdot F_{1,1}', '2\\,a\\,b')
    """
    parts = ([number(coefficient)] if coefficient != 1 else []) + list(factors)
    latex, mathml = parts[0].latex, parts[0].mathml
    for previous, part in itertools.pairwise(parts):
        zero = previous == ZERO
        latex += (r" \cdot " if zero else r"\,") + part.latex
        mathml += ("<mo>·</mo>" if zero else "<mo>&#x2062;</mo>") + part.mathml
    return Math(latex, f"<mrow>{mathml}</mrow>")


def entry_sort_key(sym: sp.Symbol, letter_order: str) -> tuple[int, ...]:
    """Sort key of an entry symbol: its letter's place in ``letter_order``, then its indices."""
    letter, indices = _entry_name(sym.name)
    if letter not in letter_order:
        return (len(letter_order), 0, 0)
    return (letter_order.index(letter), *indices)


@functools.lru_cache(maxsize=65536)
def _entry_name(name: str) -> tuple[str, tuple[int, ...]]:
    return entry_parts(name) or ("", ())


@dataclasses.dataclass(frozen=True)
class Term:
    """One term of a sum, written lazily: ``sign`` (+1/-1), ``coefficient`` and ``factors``.

    ``factors`` are SymPy objects in writing order (entry symbols, 0, or any expression).
    """

    sign: int
    factors: tuple[sp.Basic, ...]
    coefficient: int = 1

    def math(self) -> Math:
        """The term without its sign."""
        return product([symbol(f) for f in self.factors], self.coefficient)


def _is_monomial(term: sp.Expr) -> bool:
    coefficient, factors = term.as_coeff_mul()
    return bool(coefficient.is_Integer) and all(isinstance(f, sp.Symbol) for f in factors)


def _monomials(expr: sp.Expr) -> list[sp.Expr]:
    """The terms of ``expr``, each term that is not an integer times symbols expanded."""
    out: list[sp.Expr] = []
    for term in sp.Add.make_args(expr):
        out.extend([term] if _is_monomial(term) else sp.Add.make_args(sp.expand(term)))
    return out


def terms(expr: sp.Expr, factor_order: str, term_order: str) -> list[Term]:
    r"""The terms of an expanded polynomial in entry symbols, in reading order.

    Each term's factors are written in the order of their letters in ``factor_order`` (``"XF"``
    writes ``X_{0,0} F_{0,0}``); terms are sorted by the indices of their factors, the letters
    taken in ``term_order``. Products of sums are expanded; a term that is still not an integer
    times symbols is kept whole.

    >>> X, F = sp.symbols("X_0_1 F_1_0")
    >>> [(t.sign, t.math().latex) for t in terms(-2 * F * X + X, "XF", "F")]
    [(-1, '2\\,X_{0,1}\\,F_{1,0}'), (1, 'X_{0,1}')]
    """
    rows = []
    for term in _monomials(expr):
        coefficient, factors = term.as_coeff_mul()
        if not _is_monomial(term):
            rows.append((((len(term_order), 0, 0),), Term(1, (term,))))
            continue
        ordered = tuple(sorted(factors, key=lambda f: entry_sort_key(f, factor_order)))
        key = tuple(sorted(entry_sort_key(f, term_order) for f in factors))
        sign = -1 if coefficient < 0 else 1
        rows.append((key, Term(sign, ordered, abs(int(coefficient)))))
    return [term for _, term in sorted(rows, key=lambda row: row[0])]


def expression(expr: sp.Basic) -> Math:
    r"""Any SymPy expression, through SymPy's LaTeX printer and :class:`MathMLPrinter`.

    >>> i, n = sp.symbols("i n", integer=True)
    >>> m = expression(sp.Piecewise((i, sp.Eq(sp.Mod(i, 2), 0)), (0, True)))
    >>> "piecewise" in m.mathml, "<mtable" in m.mathml
    (False, True)
    """
    names = {s: symbol(s).latex for s in expr.free_symbols
             if isinstance(s, sp.Symbol) and ENTRY_NAME.match(s.name)}
    latex_text = LatexPrinter({"symbol_names": names}).doprint(expr)
    return Math(latex_text, numeric_entities(MathMLPrinter().doprint(expr)))


def _first_order(expr: sp.Derivative) -> bool:
    return len(expr.variable_count) == 1 and expr.variable_count[0][1] == 1


class LatexPrinter(SympyLatexPrinter):
    r"""SymPy's LaTeX printer, writing first derivatives as :math:`\partial L/\partial X_j`."""

    def _print_Derivative(self, expr: sp.Derivative) -> str:
        if not _first_order(expr):
            return super()._print_Derivative(expr)
        variable = expr.variable_count[0][0]
        return rf"\frac{{\partial {self._print(expr.expr)}}}{{\partial {self._print(variable)}}}"

    def _print_KroneckerDelta(self, expr: sp.KroneckerDelta, exp: object = None) -> str:
        indices = ", ".join(self._print(arg) for arg in expr.args)
        power = f"^{{{self._print(exp)}}}" if exp is not None else ""
        return rf"\delta_{{{indices}}}{power}"


class MathMLPrinter(MathMLPresentationPrinter):
    """SymPy's presentation-MathML printer, completed for the general proofs.

    Adds ``Piecewise`` (a brace and an ``mtable`` of cases), ``KroneckerDelta``, ``Mod``, the
    report's ``X_{i,j}`` entry symbols, first derivatives as ``∂L/∂X_j`` and ``Sum`` with every
    limit (SymPy's own keeps only the first). Like SymPy's methods, each ``_print_*`` returns a
    DOM node.
    """

    def _child(self, expr: sp.Basic) -> str:
        return self._print(expr).toxml()

    def _print_Symbol(self, sym: sp.Symbol, style: str = "plain") -> Element:
        parts = entry_parts(sym.name)
        if parts is None:
            return super()._print_Symbol(sym, style)
        return _node(entry(parts[0], *parts[1]).mathml)

    def _print_Derivative(self, expr: sp.Derivative) -> Element:
        if not _first_order(expr):
            return super()._print_Derivative(expr)
        variable = expr.variable_count[0][0]
        return _node(partial(Math("", self._child(expr.expr)), Math("", self._child(variable))).mathml)

    def _print_Sum(self, expr: sp.Sum) -> Element:
        """Every limit (SymPy's printer keeps only the first), outermost sum first."""
        signs = "".join(
            f"<munderover><mo>∑</mo><mrow>{self._child(index)}<mo>=</mo>{self._child(low)}</mrow>"
            f"{self._child(high)}</munderover>" for index, low, high in reversed(expr.limits))
        body = self._child(expr.function)
        if expr.function.is_Add:
            body = f"<mrow><mo>(</mo>{body}<mo>)</mo></mrow>"
        return _node(f"<mrow>{signs}{body}</mrow>")

    def _print_Piecewise(self, expr: sp.Piecewise) -> Element:
        rows = []
        for value, condition in expr.args:
            when = ("<mtext>otherwise</mtext>" if condition is sp.true
                    else f"<mrow><mtext>if&#xA0;</mtext>{self._child(condition)}</mrow>")
            rows.append(f"<mtr><mtd>{self._child(value)}</mtd><mtd>{when}</mtd></mtr>")
        return _node(f"<mrow><mo>{{</mo><mtable>{''.join(rows)}</mtable></mrow>")

    def _print_KroneckerDelta(self, expr: sp.KroneckerDelta) -> Element:
        indices = "<mo>,</mo>".join(self._child(arg) for arg in expr.args)
        return _node(f"<msub><mi>δ</mi><mrow>{indices}</mrow></msub>")

    def _print_Mod(self, expr: sp.Mod) -> Element:
        left, right = (self._child(arg) for arg in expr.args)
        return _node(f"<mrow><mo stretchy=\"false\">(</mo>{left}<mo lspace=\"0.3em\">mod</mo>{right}"
                     "<mo stretchy=\"false\">)</mo></mrow>")


def _node(markup: str) -> Element:
    return parseString(numeric_entities(markup)).documentElement


def numeric_entities(markup: str) -> str:
    """Named character references (``&InvisibleTimes;``, which SymPy writes) made numeric.

    >>> numeric_entities("<mo>&InvisibleTimes;</mo>")
    '<mo>&#x2062;</mo>'
    """
    return re.sub(r"&([A-Za-z][A-Za-z0-9]*);",
                  lambda m: "".join(f"&#x{ord(c):X};" for c in html.unescape(m.group(0))), markup)


def indexed(base: Math, indices: Sequence[Math]) -> Math:
    """``base`` subscripted by a comma-separated list of index formulas."""
    return subscript(base, join(_interleave(indices, op(",")), latex_sep=""))


def _interleave(items: Sequence[Math], separator: Math) -> list[Math]:
    out: list[Math] = []
    for position, item in enumerate(items):
        out.extend([separator, item] if position else [item])
    return out


def linear(pairs: Sequence[tuple[int, str]]) -> Math:
    """An index such as ``2i + a`` from ``(coefficient, variable)`` pairs (1 is not written).

    >>> linear([(2, "i"), (1, "a")]).latex, linear([(1, "p"), (-1, "u")]).latex
    ('2i+a', 'p-u')
    """
    parts: list[Math] = []
    for position, (coefficient, variable) in enumerate(pairs):
        if position:
            parts.append(op("+" if coefficient > 0 else "-"))
        elif coefficient < 0:
            parts.append(op("-"))
        if abs(coefficient) != 1:
            parts.append(number(abs(coefficient)))
        parts.append(ident(variable))
    return join(parts, latex_sep="")


def sigma(under: str, body: Math) -> Math:
    """``Σ_{under} body`` (the index ranges are stated in the text around it)."""
    variables = ident(under) if "," not in under else join(
        _interleave([ident(v.strip()) for v in under.split(",")], op(",")), latex_sep="")
    return Math(rf"\sum_{{{variables.latex}}} {body.latex}",
                f"<mrow><munder><mo>∑</mo>{variables.mathml}</munder>{body.mathml}</mrow>")
