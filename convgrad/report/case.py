r"""The report of one concrete case: a ``derive.Derivation2D`` written out as a :class:`Document`.

Sections: the case and its symbols; the forward pass entry by entry; the loss L and G; the
derivatives from differentiation; the same in the rule's form (the valid correlation giving
:math:`\partial L/\partial F`; the full convolution of the zero-padded G with rot180(F) giving
:math:`\partial L/\partial X`, both matrices written out and each entry as its window sum); the
exact equality; the numeric cross-check. Big matrices show their corners (first three and last
two rows and columns) and long sums their first and last terms, with counts.
"""

from collections.abc import Sequence
from typing import Any

import sympy as sp

from convgrad.report import figures
from convgrad.report import mathtext as mt
from convgrad.report.mathtext import Math
from convgrad.report.model import (
    Block,
    DisplayMath,
    Document,
    Equation,
    Equations,
    Figure,
    Heading,
    Paragraph,
    Table,
)
from convgrad.report.numeric import COMPARISONS, QUANTITIES, CrossCheck

ALL_UP_TO = 8
MATRIX_ALL_UP_TO = 10
TERMS_UP_TO = 30
HEAD_TERMS, TAIL_TERMS = 10, 3

L = mt.ident("L")
TILDE_X = mt.accent(mt.ident("X"), "~", "tilde")
TILDE_G = mt.accent(mt.ident("G"), "~", "tilde")
ROTATED_F = mt.function("rot180", mt.ident("F"))


def shown_indices(size: int, all_up_to: int = ALL_UP_TO) -> list[int]:
    """Indices written out along an axis of ``size``: all up to ``all_up_to``, else the first 3
    and the last 2.

    >>> shown_indices(4), shown_indices(64)
    ([0, 1, 2, 3], [0, 1, 2, 62, 63])
    """
    if size <= all_up_to:
        return list(range(size))
    return [0, 1, 2, size - 2, size - 1]


def shown_cells(shape: Sequence[int]) -> list[tuple[int, int]]:
    """(row, column) of the entries written out of a matrix of ``shape`` (see :func:`shown_indices`)."""
    return [(r, c) for r in shown_indices(shape[0]) for c in shown_indices(shape[1])]


def _summary(shape: Sequence[int], all_up_to: int = ALL_UP_TO) -> str:
    rows, cols = (shown_indices(n, all_up_to) for n in shape)
    if len(rows) * len(cols) == shape[0] * shape[1]:
        return ""
    return (f"Showing {len(rows) * len(cols)} of {shape[0] * shape[1]} entries: rows "
            f"{_list(rows)}, columns {_list(cols)}.")


def _list(values: Sequence[int]) -> str:
    return ", ".join(str(v) for v in values)


def matrix_math(values: sp.Matrix) -> Math:
    """``values`` as a bracketed matrix, big ones cut to their corners with dots between."""
    rows, cols = (shown_indices(n, MATRIX_ALL_UP_TO) for n in values.shape)
    written = []
    for position, r in enumerate(rows):
        if position and r != rows[position - 1] + 1:
            written.append(_dots_row(cols, mt.DOTS_COLUMN, mt.DOTS_DIAGONAL))
        written.append(_dots_row(cols, None, mt.DOTS_ROW, values, r))
    return mt.matrix(written)


def _dots_row(cols: list[int], fill: Math | None, gap: Math, values: sp.Matrix | None = None,
              r: int = 0) -> list[Math]:
    row = []
    for position, c in enumerate(cols):
        if position and c != cols[position - 1] + 1:
            row.append(gap)
        row.append(fill if values is None else _cell(values[r, c]))
    return row


def _cell(value: sp.Basic) -> Math:
    if value == 0:
        return mt.ZERO
    return mt.symbol(value) if isinstance(value, sp.Symbol) else mt.expression(value)


def sum_row(lhs: Math | None, terms: list[mt.Term], note: str = "") -> Equation:
    """``lhs = sum of terms``; a long sum keeps its first and last terms and counts the rest."""
    if not terms:
        return Equation(lhs, (mt.ZERO,), (1,), note)
    written: list[tuple[int, Math]]
    if len(terms) > TERMS_UP_TO:
        omitted = len(terms) - HEAD_TERMS - TAIL_TERMS
        note = f"{len(terms)} terms, {omitted} not shown" + (f"; {note}" if note else "")
        written = [*((t.sign, t.math()) for t in terms[:HEAD_TERMS]), (1, mt.DOTS_ROW),
                   *((t.sign, t.math()) for t in terms[-TAIL_TERMS:])]
    else:
        written = [(t.sign, t.math()) for t in terms]
    signs, maths = zip(*written, strict=True)
    return Equation(lhs, tuple(maths), tuple(signs), note)


def entry_rows(lhs_letter: str, matrix: sp.Matrix, factor_order: str, term_order: str,
               derivative: bool, plane: tuple[int, ...] = ()) -> Equations:
    """``lhs_letter[*plane, r, c] = matrix[r, c]`` (or ``∂L/∂lhs_letter[...]``) for the shown
    entries, each a sum of terms with factors in ``factor_order`` (see :func:`mt.terms`)."""
    rows = []
    for r, c in shown_cells(matrix.shape):
        lhs = mt.entry(lhs_letter, *plane, r, c)
        lhs = mt.partial(L, lhs) if derivative else lhs
        rows.append(sum_row(lhs, mt.terms(matrix[r, c], factor_order, term_order)))
    return Equations(tuple(rows))


def summary_paragraph(shape: Sequence[int], all_up_to: int = ALL_UP_TO) -> list[Block]:
    """A line saying which entries of a big matrix of ``shape`` are shown (none when all are)."""
    text = _summary(shape, all_up_to)
    return [Paragraph((text,))] if text else []


def matrix_blocks(name: Math, values: sp.Matrix, *middle: Math) -> list[Block]:
    """``name = [matrix]``, with a line saying which entries are shown when it is big."""
    return [DisplayMath(mt.join([name, mt.op("="), *middle, matrix_math(values)])),
            *summary_paragraph(values.shape, MATRIX_ALL_UP_TO)]


def shape_text(shape: Sequence[int]) -> str:
    """``"3×4"``."""
    return "×".join(str(n) for n in shape)


def padding_text(padding: Sequence[Sequence[int]]) -> str:
    """The two axes' (lo, hi) padding in words."""
    if all(tuple(pair) == (0, 0) for pair in padding):
        return "no padding (VALID)"
    (top, bottom), (left, right) = padding
    return f"padding {top} above, {bottom} below, {left} left, {right} right"


def title(derivation: Any) -> str:
    """A one-line description of the case."""
    return (f"Backpropagation through a convolution: input {shape_text(derivation.input_shape)}, "
            f"filter {shape_text(derivation.filter_shape)}, stride {tuple(derivation.stride)}, "
            f"{padding_text(derivation.padding)}, dilation {tuple(derivation.dilation)}")


def case_document(derivation: Any, check: CrossCheck, with_figures: bool = True) -> Document:
    """The whole report of ``derivation`` (a ``derive.Derivation2D``) and its cross-check."""
    blocks: list[Block] = [
        *_setup_section(derivation),
        *_forward_section(derivation, with_figures),
        *loss_section("ij", shape_text(derivation.output_shape),
                      matrix_blocks(mt.ident("G"), derivation.G), list(derivation.O), derivation.L),
        *_differentiation_section(derivation),
        *_rule_f_section(derivation),
        *_rule_x_section(derivation, with_figures),
        *_equality_section(derivation),
        *cross_check_section(check),
    ]
    return Document(title(derivation), blocks)


def _setup_section(d: Any) -> list[Block]:
    (sh, sw), (dh, dw) = d.stride, d.dilation
    blocks: list[Block] = [
        Heading(2, "The case"),
        Paragraph((
            "Input ", mt.ident("X"), f" of {shape_text(d.input_shape)}, filter ", mt.ident("F"),
            f" of {shape_text(d.filter_shape)}, stride ({sh}, {sw}), dilation ({dh}, {dw}), "
            f"{padding_text(d.padding)}; the output ", mt.ident("O"),
            f" is {shape_text(d.output_shape)}. Indices start at 0; each entry is its own symbol, "
            "so every formula below is exact.",
        )),
        *matrix_blocks(mt.ident("X"), d.X),
        *matrix_blocks(mt.ident("F"), d.F),
    ]
    return blocks


def _forward_formula(d: Any) -> Math:
    (sh, sw), (dh, dw) = d.stride, d.dilation
    source = TILDE_X if _padded(d) else mt.ident("X")
    window = mt.indexed(source, [mt.linear([(sh, "i"), (dh, "a")]), mt.linear([(sw, "j"), (dw, "b")])])
    body = mt.product([window, mt.indexed(mt.ident("F"), [mt.ident("a"), mt.ident("b")])])
    return mt.join([mt.indexed(mt.ident("O"), [mt.ident("i"), mt.ident("j")]), mt.op("="),
                    mt.sigma("a,b", body)])


def _padded(d: Any) -> bool:
    return any(tuple(pair) != (0, 0) for pair in d.padding)


def _forward_section(d: Any, with_figures: bool) -> list[Block]:
    kh, kw = d.filter_shape
    source: tuple[str | Math, ...] = ("the input",)
    if _padded(d):
        source = ("the input with its zero padding, ", TILDE_X, ",")
    blocks: list[Block] = [
        Heading(2, "Forward pass"),
        Paragraph(("The output is the valid cross-correlation of ", *source, " with the filter, "
                   f"over a = 0…{kh - 1} and b = 0…{kw - 1}:")),
        DisplayMath(_forward_formula(d)),
        Paragraph(("Entry by entry:",)),
        *summary_paragraph(d.O.shape),
        entry_rows("O", d.O, "XF", "F", derivative=False),
    ]
    if with_figures:
        layout = figures.forward_panels(d)
        blocks.append(Figure(figures.render_png(layout),
                             "Forward pass: each output entry is the sum of the input cells under "
                             "the filter's taps (dark orange; light orange where a tap meets the "
                             "zero padding, grey) times the filter's entries.",
                             "Grids of the padded input with the filter window of several output "
                             "entries highlighted, next to the filter and the output grid.",
                             tuple(tuple(row) for row in layout)))
    return blocks


def loss_section(indices: str, shape_label: str, g_blocks: Sequence[Block],
                 output_entries: Sequence[sp.Expr], loss: sp.Expr) -> list[Block]:
    """The section defining L = Σ G·O and G = ∂L/∂O over the output ``indices`` (e.g. "ij").

    ``g_blocks`` show G (whose shape ``shape_label`` describes); L is written out term by term when
    the output entries have at most ``TERMS_UP_TO`` terms in all.
    """
    index = [mt.ident(name) for name in indices]
    loss_math = mt.join([L, mt.op("="), mt.sigma(",".join(indices), mt.product(
        [mt.indexed(mt.ident("G"), index), mt.indexed(mt.ident("O"), index)]))])
    g_def = mt.join([mt.indexed(mt.ident("G"), index), mt.op("="),
                     mt.partial(L, mt.indexed(mt.ident("O"), index))])
    blocks: list[Block] = [
        Heading(2, "The loss and G"),
        Paragraph(("Whatever the loss, the chain rule only needs its gradient at the output, ",
                   g_def, ". Taking G as symbols and")),
        DisplayMath(loss_math),
        Paragraph(("gives exactly that gradient at O, so differentiating this L differentiates any "
                   "loss through the convolution. G (", f"{shape_label}) is:")),
        *g_blocks,
    ]
    if sum(len(sp.Add.make_args(entry)) for entry in output_entries) <= TERMS_UP_TO:
        blocks += [Paragraph(("Written out:",)),
                   Equations((sum_row(L, mt.terms(loss, "GXF", "GF")),))]
    return blocks


def _differentiation_section(d: Any) -> list[Block]:
    return [
        Heading(2, "Gradients by differentiation"),
        Paragraph(("Differentiating L with respect to every filter entry:",)),
        *summary_paragraph(d.F.shape),
        entry_rows("F", d.dL_dF, "GX", "G", derivative=True),
        Paragraph(("and with respect to every input entry:",)),
        *summary_paragraph(d.X.shape),
        entry_rows("X", d.dL_dX, "GF", "G", derivative=True),
    ]


def window_terms(lhs: sp.Matrix, window: sp.Matrix, top: int, left: int) -> list[mt.Term]:
    """Products ``lhs[top + u, left + v] * window[u, v]`` over the window's nonzero taps."""
    return [mt.Term(1, (lhs[top + u, left + v], window[u, v]))
            for u in range(window.rows) for v in range(window.cols) if window[u, v] != 0]


def _rule_f_section(d: Any) -> list[Block]:
    (sh, sw), (dh, dw) = d.stride, d.dilation
    source = TILDE_X if _padded(d) else mt.ident("X")
    ab = [mt.ident("a"), mt.ident("b")]
    formula = mt.join([
        mt.partial(L, mt.indexed(mt.ident("F"), ab)), mt.op("="),
        mt.sigma("i,j", mt.product([
            mt.indexed(source, [mt.linear([(dh, "a"), (sh, "i")]), mt.linear([(dw, "b"), (sw, "j")])]),
            mt.indexed(mt.ident("G"), [mt.ident("i"), mt.ident("j")])])),
    ])
    rows = []
    for a, b in shown_cells(d.F.shape):
        terms = window_terms(d.padded_X, d.spread_G, dh * a, dw * b)
        rows += window_rows(mt.partial(L, mt.entry("F", a, b)), terms, d.rule_dL_dF[a, b], "XG", "G")
    padded_x: list[Block] = []
    if d.padded_X.shape != d.X.shape:
        padded_x = [Paragraph(("The input padded as the correlation sees it (",
                               shape_text(d.padded_X.shape), "; rows and columns that no "
                               "window reaches are cut off):")),
                    *matrix_blocks(TILDE_X, d.padded_X)]
    return [
        Heading(2, "The rule: ∂L/∂F is a valid correlation"),
        Paragraph((mt.partial(L, mt.ident("F")), " is the valid cross-correlation of the ",
                   "(padded) input with G" + spread_text(d.stride, d.dilation) + ":")),
        DisplayMath(formula),
        *padded_x,
        Paragraph(("Entry by entry, each a sum over the G window, then simplified:",)),
        *summary_paragraph(d.F.shape),
        Equations(tuple(rows)),
    ]


def spread_text(stride: Sequence[int], dilation: Sequence[int]) -> str:
    """How stride and dilation enter the correlation giving ∂L/∂F ("" when both are 1)."""
    parts = []
    if tuple(stride) != (1, 1):
        parts.append(f"G's entries {tuple(stride)} apart (the forward stride spreads G)")
    if tuple(dilation) != (1, 1):
        parts.append(f"the window moving {tuple(dilation)} at a time (the filter's dilation "
                     "becomes the correlation's stride)")
    return f", {' and '.join(parts)}" if parts else ""


def window_rows(lhs: Math, in_window: list[mt.Term], rule_entry: sp.Expr,
                factor_order: str, term_order: str) -> list[Equation]:
    """``lhs`` = the window sum ``in_window``, then = its simplified form (one row if the same)."""
    simplified = mt.terms(rule_entry, factor_order, term_order)
    if len(in_window) == len(simplified):
        return [sum_row(lhs, simplified)]
    return [sum_row(lhs, in_window), sum_row(None, simplified)]


def _rule_x_section(d: Any, with_figures: bool) -> list[Block]:
    pq = [mt.ident("p"), mt.ident("q")]
    formula = mt.join([
        mt.partial(L, mt.indexed(mt.ident("X"), pq)), mt.op("="),
        mt.sigma("u,v", mt.product([
            mt.indexed(TILDE_G, [mt.linear([(1, "p"), (1, "u")]), mt.linear([(1, "q"), (1, "v")])]),
            mt.indexed(mt.ident("R"), [mt.ident("u"), mt.ident("v")])])),
    ])
    rows = []
    for p, q in shown_cells(d.X.shape):
        terms = window_terms(d.padded_G, d.rotated_F, p, q)
        rows += window_rows(mt.partial(L, mt.entry("X", p, q)), terms, d.rule_dL_dX[p, q], "GF", "G")
    blocks: list[Block] = [
        Heading(2, "The rule: ∂L/∂X is a full convolution with the rotated filter"),
        Paragraph(("Spread G by the stride, pad it with zeros so that the filter overlaps every "
                   "output it touched, and slide the filter rotated by 180° over it: ",
                   TILDE_G, " (", shape_text(d.padded_G.shape), ") is G ", g_spread_text(d.stride),
                   "zero-padded, and ", mt.join([mt.ident("R"), mt.op("="), ROTATED_F]),
                   f" ({shape_text(d.rotated_F.shape)}) the filter{dilated_text(d.dilation)} rotated.")),
        *matrix_blocks(TILDE_G, d.padded_G),
        *matrix_blocks(mt.ident("R"), d.rotated_F, ROTATED_F, mt.op("=")),
        Paragraph(("Then, over u and v across R:",)),
        DisplayMath(formula),
        Paragraph(("Entry by entry, each the window sum (zeros from the padding included), "
                   "then simplified:",)),
        *summary_paragraph(d.X.shape),
        Equations(tuple(rows)),
    ]
    if with_figures:
        layout = figures.rule_panels(d)
        blocks.append(Figure(figures.render_png(layout),
                             "The full convolution: rot180(F) (orange) slides over the zero-padded "
                             "G; each window position gives one entry of ∂L/∂X, the sum of the "
                             "products where a filter tap meets an entry of G (dark orange).",
                             "Grids of the zero-padded G with the rotated filter's window at "
                             "several positions, each titled with the entry of dL/dX it gives.",
                             tuple(tuple(row) for row in layout)))
    return blocks


def g_spread_text(stride: Sequence[int]) -> str:
    """How the stride spreads G ("" for stride 1)."""
    if tuple(stride) == (1, 1):
        return ""
    return f"with its entries spread {tuple(stride)} apart (the stride), "


def dilated_text(dilation: Sequence[int]) -> str:
    """How the filter is dilated ("" for dilation 1)."""
    return "" if tuple(dilation) == (1, 1) else f" dilated by {tuple(dilation)} and"


def _equality_section(d: Any) -> list[Block]:
    return equality_blocks(d.verified, d.X.rows * d.X.cols + d.F.rows * d.F.cols)


def equality_blocks(verified: bool, count: int) -> list[Block]:
    """The verdict of derive's exact check over ``count`` entries of ∂L/∂X and ∂L/∂F."""
    if verified:
        verdict = (f"Exactly equal: for all {count} entries of ∂L/∂X and ∂L/∂F, the derivative "
                   "from differentiation minus the rule's form expands to 0 (checked by derive "
                   "in exact SymPy arithmetic).")
    else:
        verdict = ("NOT equal: derive's exact check found an entry where differentiation and "
                   "the rule differ.")
    return [Heading(2, "Differentiation and rule agree exactly"), Paragraph((verdict,))]


def cross_check_section(check: CrossCheck) -> list[Block]:
    names = {"O": "O", "dL_dX": "∂L/∂X", "dL_dF": "∂L/∂F"}
    rows = tuple(
        (names[q], *(f"{check.errors[c][q]:.2e}" for c in COMPARISONS)) for q in QUANTITIES
    )
    verdict = "passed" if check.passed else "FAILED"
    return [
        Heading(2, "Numeric cross-check"),
        Paragraph((f"X, F and G drawn from a standard normal distribution (seed {check.seed}) in "
                   f"{check.dtype}; the exact forms evaluated there term by term and "
                   f"compared with {check.op} (whose backward pass is the rotated-filter rule, "
                   "through jax.vjp with cotangent G) and with jax.grad of L = Σ G·O through "
                   "the native jax.lax.conv_general_dilated. Largest absolute errors:",)),
        Table(("quantity", *COMPARISONS.values()), rows),
        Paragraph((f"Tolerance {check.tolerance:.0e} × the largest magnitude (at least 1): "
                   f"{verdict}.",)),
    ]
