r"""The rotated-filter rule as an identity for symbolic sizes, proved by sound index manipulations.

Per spatial axis the sizes are symbols: input n, filter k, output m, stride s, filter dilation d,
input (lhs) dilation a, low padding p (any sign). Every zero-padded, spread or rotated array is
written as a sum over its *real* entries with a Kronecker delta placing each one, e.g. the padded,
dilated input :math:`\tilde X_i = \sum_{r=0}^{n-1} X_r\,\delta_{i,\,a r + p}`, so that

.. math:: L = \sum_y G_y O_y = \sum_{y,t,r} G_y F_t X_r\,\delta_{s y + d t,\; a r + p}.

The proof then uses only four moves, each a sound identity, each applied by code here that checks
its conditions:

1. *distribute*: :math:`c \sum_i f_i = \sum_i c f_i` and :math:`\sum_i f_i \sum_j g_j =
   \sum_{i,j} f_i g_j` for finite sums whose variables are distinct and absent from the other
   factor (checked);
2. *differentiate the summand*: :math:`\partial/\partial v \sum f = \sum \partial f/\partial v`
   for a finite sum (``sympy.diff`` of the summand only; see below why not of the Sum);
3. *eliminate a unit delta*: :math:`\sum_{v=lo}^{hi} \delta_{v,e}\, h(v) = h(e)` when the
   delta's argument has coefficient :math:`\pm 1` in ``v`` (so the solution ``e`` is an integer,
   never a fraction like ``G[p/2]``) and :math:`lo \le e \le hi` for every value of the enclosing
   indices (checked at the corners of their box, ``e`` being linear in each of them);
4. *normalise deltas*: :math:`\delta_{A,B} = \delta_{A-B,0} = \delta_{B-A,0}`.

Both sides end as the same double sum, compared structurally. No step sums a delta whose index has
a coefficient other than 1 (the source of SymPy's non-integer ``G[p/2]``), no step simplifies a
``Sum`` containing ``Piecewise`` (SymPy 1.14's ``diff`` of a nested ``Sum`` moves a Piecewise that
depends on the inner index out of the inner sum, which is wrong; hence move 2), and the strided
delta :math:`\delta_{a j + p,\, s y + d t}` is never solved for ``y``: the proof compares summands.

Each identity is also cross-checked by substituting ranges of concrete sizes, expanding every sum
explicitly, and comparing with the concrete derivation (:func:`derive.derive_conv`).
"""

import dataclasses
import itertools
import math
from collections.abc import Sequence

import sympy
from sympy import Indexed, IndexedBase, KroneckerDelta, Sum

from derive._args import as_int, is_int
from derive._concrete import compute, full_name, make_geometry

PROOF_KINDS = ("stride1", "dilation", "stride", "padding", "general")

# The cross-check writes every step out at each concrete size: per entry of dL/dX (and dL/dF)
# the multiple sums over y, t and r (the derivative) and over y, t and v (u, r and y: the rule,
# distributed), about :func:`check_terms` terms for one tuple of sizes, each substituted and
# expanded by SymPy: some 6,000-8,000 a second single-threaded on a shared 2-core machine
# (255,600 terms, a 6x6 input and 2x2 filter in 2-D: 40 s; 110,880, n = 24 and k = 4 in 1-D:
# 13.5 s).
MAX_CHECK_TERMS = 2**18
"""At most this many terms (:func:`check_terms`) in the cross-check of one tuple of concrete
sizes, about 40 s; :func:`general_proof` refuses bigger sizes before the proof starts."""

_SYMBOLIC = {
    "stride1": (),
    "dilation": ("d",),
    "stride": ("s",),
    "padding": ("p",),
    "general": ("s", "d", "a", "p"),
}

X, F, G = IndexedBase("X"), IndexedBase("F"), IndexedBase("G")
LOSS = sympy.Symbol("L")


class ProofError(AssertionError):
    """A proof move's condition failed (a bug in a proof, never a user error)."""


@dataclasses.dataclass(frozen=True)
class AxisSymbols:
    """The sizes, options and index variables of one spatial axis (concrete ones are numbers)."""

    n: sympy.Expr
    k: sympy.Expr
    m: sympy.Expr
    s: sympy.Expr
    d: sympy.Expr
    a: sympy.Expr
    p: sympy.Expr
    y: sympy.Symbol
    t: sympy.Symbol
    r: sympy.Symbol
    v: sympy.Symbol
    u: sympy.Symbol
    j: sympy.Symbol
    q: sympy.Symbol

    def sizes(self) -> dict[str, sympy.Expr]:
        """The size and option symbols by their one-letter names."""
        return {name: getattr(self, name) for name in "nkmsdap"}


def _axis_symbols(kind: str, suffix: str) -> AxisSymbols:
    def positive(name: str) -> sympy.Expr:
        symbolic = name in ("n", "k", "m") or name in _SYMBOLIC[kind]
        return sympy.Symbol(name + suffix, integer=True, positive=True) if symbolic else sympy.S.One

    padding = (sympy.Symbol("p" + suffix, integer=True) if "p" in _SYMBOLIC[kind] else sympy.S.Zero)
    index = {name: sympy.Symbol(name + suffix, integer=True) for name in "ytrvujq"}
    return AxisSymbols(*(positive(name) for name in "nkmsda"), padding, **index)


def _delta(left: sympy.Expr, right: sympy.Expr) -> KroneckerDelta:
    """``KroneckerDelta(left, right)``, kept unevaluated so that its arguments stay readable."""
    return KroneckerDelta(left, right, evaluate=False)


# ---- move 1: distribute ---------------------------------------------------------------------


def distribute(expr: sympy.Expr) -> sympy.Expr:
    """Pull every finite ``Sum`` in a product of sums out into one multiple ``Sum`` (move 1)."""
    if isinstance(expr, Sum):
        inner = distribute(expr.function)
        if isinstance(inner, Sum):
            return Sum(inner.function, *inner.limits, *expr.limits)
        return Sum(inner, *expr.limits)
    if not isinstance(expr, sympy.Mul):
        return expr
    summands, limits = [], []
    for factor in map(distribute, expr.args):
        if isinstance(factor, Sum):
            summands.append(factor.function)
            limits.extend(factor.limits)
        else:
            summands.append(factor)
    variables = [limit[0] for limit in limits]
    if len(set(variables)) != len(variables):
        raise ProofError(f"distribute: summation variables {variables} repeat")
    for factor in expr.args:
        bound = set(factor.variables) if isinstance(factor, Sum) else set()
        if (factor.free_symbols - bound) & set(variables):
            raise ProofError(f"distribute: {factor} depends on another sum's variable")
    return Sum(sympy.Mul(*summands), *limits) if limits else expr


# ---- move 2: differentiate the summand ------------------------------------------------------


def differentiate(total: Sum, wrt: Indexed) -> Sum:
    """``d total / d wrt`` as the sum of the derivatives of the summand (move 2)."""
    return Sum(sympy.diff(total.function, wrt), *total.limits)


# ---- move 3: eliminate a unit delta ---------------------------------------------------------


def _is_nonnegative(expr: sympy.Expr) -> bool:
    """Whether ``expr`` is >= 0 for all values of its (integer) symbols; False if unsure.

    Sufficient test: write each positive symbol x as x0 + 1 with x0 >= 0; a polynomial in
    nonnegative symbols with nonnegative coefficients is nonnegative.
    """
    shifted = {symbol: sympy.Symbol(f"{symbol.name}_0", integer=True, nonnegative=True) + 1
               for symbol in expr.free_symbols if symbol.is_positive}
    polynomial = sympy.expand(expr.xreplace(shifted))
    if polynomial.is_number:
        return bool(polynomial >= 0)
    if not all(symbol.is_nonnegative for symbol in polynomial.free_symbols):
        return False
    return all(coefficient >= 0 for coefficient in sympy.Poly(polynomial).coeffs())


def _nonnegative_on_box(expr: sympy.Expr, box: dict[sympy.Symbol, tuple]) -> bool:
    """Whether ``expr`` (linear in each box variable) is >= 0 wherever the box variables range."""
    variables = [var for var in box if var in expr.free_symbols]
    if any(sympy.degree(expr, var) > 1 for var in variables):
        return False
    for corner in itertools.product(*(box[var] for var in variables)):
        corner_values = dict(zip(variables, map(sympy.sympify, corner), strict=True))
        if not _is_nonnegative(expr.xreplace(corner_values)):
            return False
    return True


def eliminate(total: Sum, var: sympy.Symbol, value: sympy.Expr,
              domain: dict[sympy.Symbol, tuple]) -> sympy.Expr:
    """Sum ``var`` out of ``total`` through its factor ``delta(var, value)`` (move 3).

    ``domain`` gives the (lo, hi) range of the free indices; the ranges of the other summation
    variables come from ``total``'s limits.
    """
    limits = {limit[0]: limit[1:] for limit in total.limits}
    low, high = limits.pop(var)
    factors = list(sympy.Mul.make_args(total.function))
    matching = [
        factor for factor in factors
        if isinstance(factor, KroneckerDelta)
        and any(sympy.expand(sign * (factor.args[0] - factor.args[1]) - (var - value)) == 0
                for sign in (1, -1))
    ]
    if not matching:
        raise ProofError(f"eliminate: no factor delta({var}, {value}) in {total.function}")
    if value.free_symbols & {var} or any(var in bounds[0].free_symbols | bounds[1].free_symbols
                                         for bounds in limits.values()):
        raise ProofError(f"eliminate: {var} occurs in its own value or in another limit")
    box = {**domain, **limits}
    if not (_nonnegative_on_box(value - low, box) and _nonnegative_on_box(high - value, box)):
        raise ProofError(f"eliminate: {value} may leave [{low}, {high}] on {box}")
    factors.remove(matching[0])
    summand = sympy.Mul(*factors).xreplace({var: value})
    remaining = [(name, *bounds) for name, bounds in limits.items()]
    return Sum(summand, *remaining) if remaining else summand


# ---- move 4: normalise deltas ---------------------------------------------------------------


def normalise_deltas(expr: sympy.Expr) -> sympy.Expr:
    """Write every ``delta(A, B)`` as ``delta(E, 0)``, ``E = ±(A - B)`` expanded, sign canonical."""
    def canonical(delta: KroneckerDelta) -> KroneckerDelta:
        difference = sympy.expand(delta.args[0] - delta.args[1])
        if difference.could_extract_minus_sign():
            difference = -difference
        return _delta(difference, sympy.S.Zero)

    return expr.replace(lambda e: isinstance(e, KroneckerDelta), canonical)


def normalise(expr: sympy.Expr) -> sympy.Expr:
    """Move 4 on every delta, and the sums of a ``Sum`` with constant limits put in name order.

    Finite sums whose limits do not depend on each other's variables commute.
    """
    expr = normalise_deltas(expr)
    if not isinstance(expr, Sum):
        return expr
    variables = set(expr.variables)
    for _, low, high in expr.limits:
        if (low.free_symbols | high.free_symbols) & variables:
            raise ProofError(f"normalise: the limits of {expr} depend on its variables")
    return Sum(expr.function, *sorted(expr.limits, key=lambda limit: limit[0].name))


# ---- the proof -------------------------------------------------------------------------------


def _indexed(base: IndexedBase, indices: Sequence[sympy.Expr]) -> Indexed:
    return base[tuple(indices)]


def _placed(base: IndexedBase, variable: str, axes: Sequence[AxisSymbols],
            positions: Sequence[sympy.Expr], offsets: Sequence[sympy.Expr]) -> Sum:
    """``sum_w base[w] * prod_i delta(positions_i, offsets_i(w))``: an array whose entry ``w`` sits
    at position ``offsets(w)`` (zeros elsewhere), read at ``positions``."""
    variables = [getattr(axis, variable) for axis in axes]
    sizes = {"r": "n", "t": "k", "y": "m"}[variable]
    deltas = [_delta(position, offset) for position, offset in zip(positions, offsets, strict=True)]
    return Sum(_indexed(base, variables) * sympy.Mul(*deltas),
               *((var, 0, getattr(axis, sizes) - 1) for var, axis in zip(variables, axes, strict=True)))


def _padded_input(axes: Sequence[AxisSymbols], positions: Sequence[sympy.Expr]) -> Sum:
    """The dilated, padded input at ``positions``: X_r sits at ``a r + p``."""
    return _placed(X, "r", axes, positions, [axis.a * axis.r + axis.p for axis in axes])


def _forward(axes: Sequence[AxisSymbols]) -> tuple[sympy.Expr, sympy.Expr]:
    """(O_y, L): the forward pass and the linearised loss, sums of sums."""
    output = Sum(_indexed(F, [axis.t for axis in axes])
                 * _padded_input(axes, [axis.s * axis.y + axis.d * axis.t for axis in axes]),
                 *((axis.t, 0, axis.k - 1) for axis in axes))
    loss = Sum(_indexed(G, [axis.y for axis in axes]) * output,
               *((axis.y, 0, axis.m - 1) for axis in axes))
    return output, loss


@dataclasses.dataclass(frozen=True)
class _Step:
    description: str
    equation: sympy.Eq
    target: str


def _lhs_steps(axes: Sequence[AxisSymbols], loss: Sum) -> tuple[list[_Step], sympy.Expr, sympy.Expr]:
    """Steps of dL/dX_j: differentiation, then the rule; returns (steps, truth, rule) at the end."""
    j = [axis.j for axis in axes]
    derivative = sympy.Derivative(LOSS, _indexed(X, j), evaluate=False)
    domain = {axis.j: (0, axis.n - 1) for axis in axes}
    truth = differentiate(loss, _indexed(X, j))
    steps = [_Step("Differentiate the summand (sympy.diff); the sum is finite, so the derivative of "
                   "the sum is the sum of the derivatives.", sympy.Eq(derivative, truth), "dX")]
    for axis in axes:
        truth = eliminate(truth, axis.r, axis.j, domain)
    steps.append(_Step(f"Sum out {', '.join(str(axis.r) for axis in axes)} with its unit delta "
                       "(r = j, within [0, n-1] because j is).", sympy.Eq(derivative, truth), "dX"))
    reach = [axis.d * (axis.k - 1) for axis in axes]
    padded_G = _placed(G, "y", axes, [axis.a * axis.j + axis.v for axis in axes],
                       [K - axis.p + axis.s * axis.y for K, axis in zip(reach, axes, strict=True)])
    rotated_F = _placed(F, "t", axes, [axis.v for axis in axes],
                        [K - axis.d * axis.t for K, axis in zip(reach, axes, strict=True)])
    rule = Sum(padded_G * rotated_F, *((axis.v, 0, K) for K, axis in zip(reach, axes, strict=True)))
    steps.append(_Step(
        "The rule: slide the rotated, dilated filter (F_t at position d(k-1) - d t) over G spread "
        "by the stride and zero-padded by d(k-1) - p before it (G_y at position d(k-1) - p + s y), "
        "with window stride a; the padded G has length a(n-1)+1 + d(k-1), so every position "
        "a j + v read here lies in it.", sympy.Eq(derivative, rule), "dX"))
    rule = distribute(rule)
    steps.append(_Step("Distribute: a product of finite sums is one multiple sum.",
                       sympy.Eq(derivative, rule), "dX"))
    for K, axis in zip(reach, axes, strict=True):
        rule = eliminate(rule, axis.v, K - axis.d * axis.t, domain)
    steps.append(_Step("Sum out v with its unit delta (v = d(k-1) - d t, within [0, d(k-1)] "
                       "because 0 <= t <= k-1).", sympy.Eq(derivative, rule), "dX"))
    return steps, truth, rule


def _rhs_steps(axes: Sequence[AxisSymbols], loss: Sum) -> tuple[list[_Step], sympy.Expr, sympy.Expr]:
    """Steps of dL/dF_q: differentiation, then the rule; returns (steps, truth, rule) at the end."""
    q = [axis.q for axis in axes]
    derivative = sympy.Derivative(LOSS, _indexed(F, q), evaluate=False)
    domain = {axis.q: (0, axis.k - 1) for axis in axes}
    truth = differentiate(loss, _indexed(F, q))
    steps = [_Step("Differentiate the summand (sympy.diff).", sympy.Eq(derivative, truth), "dF")]
    for axis in axes:
        truth = eliminate(truth, axis.t, axis.q, domain)
    steps.append(_Step("Sum out t with its unit delta (t = q, within [0, k-1] because q is).",
                       sympy.Eq(derivative, truth), "dF"))
    padded_X = _padded_input(axes, [axis.d * axis.q + axis.u for axis in axes])
    spread_G = _placed(G, "y", axes, [axis.u for axis in axes], [axis.s * axis.y for axis in axes])
    rule = Sum(padded_X * spread_G, *((axis.u, 0, axis.s * (axis.m - 1)) for axis in axes))
    steps.append(_Step(
        "The rule: the valid correlation of the dilated input padded by p before it (X_r at "
        "position a r + p) with G spread by the stride (G_y at position s y), window stride d; the "
        "padded input has length s(m-1)+1 + d(k-1), so every position d q + u read here lies in it.",
        sympy.Eq(derivative, rule), "dF"))
    rule = distribute(rule)
    steps.append(_Step("Distribute: a product of finite sums is one multiple sum.",
                       sympy.Eq(derivative, rule), "dF"))
    for axis in axes:
        rule = eliminate(rule, axis.u, axis.s * axis.y, domain)
    steps.append(_Step("Sum out u with its unit delta (u = s y, within [0, s(m-1)] because "
                       "0 <= y <= m-1).", sympy.Eq(derivative, rule), "dF"))
    return steps, truth, rule


def _conclude(derivative: sympy.Derivative, target: str, truth: sympy.Expr,
              rule: sympy.Expr) -> _Step:
    """Normalise both sides (move 4); they must be the very same expression."""
    normal_truth, normal_rule = normalise(truth), normalise(rule)
    if normal_truth != normal_rule:
        raise ProofError(f"{target}: {normal_truth} != {normal_rule}")
    return _Step("Normalise the deltas (delta(A, B) = delta(A - B, 0)) and the order of the finite "
                 "sums: the derivative and the rule are the same sum.",
                 sympy.Eq(derivative, normal_rule), target)


def _divisible_in_range(numerator: sympy.Expr, divisor: sympy.Expr, top: sympy.Expr) -> sympy.Expr:
    """``divisor | numerator`` and ``0 <= numerator <= top``."""
    return sympy.And(sympy.Eq(sympy.Mod(numerator, divisor), 0), numerator >= 0, numerator <= top)


def _closed_forms(axes: Sequence[AxisSymbols]) -> list[_Step]:
    """Each derivative as one sum with the strided delta solved: a Piecewise with divisibility."""
    lhs_offsets = [axis.a * axis.j + axis.p - axis.d * axis.t for axis in axes]
    lhs_term = sympy.Piecewise(
        (_indexed(G, [c / axis.s for c, axis in zip(lhs_offsets, axes, strict=True)]),
         sympy.And(*(_divisible_in_range(c, axis.s, axis.s * (axis.m - 1))
                     for c, axis in zip(lhs_offsets, axes, strict=True)))),
        (0, True))
    rhs_offsets = [axis.d * axis.q + axis.s * axis.y - axis.p for axis in axes]
    rhs_term = sympy.Piecewise(
        (_indexed(X, [c / axis.a for c, axis in zip(rhs_offsets, axes, strict=True)]),
         sympy.And(*(_divisible_in_range(c, axis.a, axis.a * (axis.n - 1))
                     for c, axis in zip(rhs_offsets, axes, strict=True)))),
        (0, True))
    lemma = ("the delta picks the one index y = c / s if s divides c and 0 <= c <= s(m-1), and "
             "none otherwise (s >= 1, so at most one y); this step is cross-checked on the "
             "concrete sizes, not proved by the moves above.")
    return [
        _Step("Closed form of dL/dX: sum over y with " + lemma,
              sympy.Eq(sympy.Derivative(LOSS, _indexed(X, [axis.j for axis in axes]), evaluate=False),
                       Sum(_indexed(F, [axis.t for axis in axes]) * lhs_term,
                           *((axis.t, 0, axis.k - 1) for axis in axes))), "dX"),
        _Step("Closed form of dL/dF: sum over r, likewise with a in place of s: "
              + lemma.replace("y = c / s", "r = c / a").replace("s divides", "a divides")
              .replace("s(m-1)", "a(n-1)").replace("s >= 1, so at most one y", "a >= 1"),
              sympy.Eq(sympy.Derivative(LOSS, _indexed(F, [axis.q for axis in axes]), evaluate=False),
                       Sum(_indexed(G, [axis.y for axis in axes]) * rhs_term,
                           *((axis.y, 0, axis.m - 1) for axis in axes))), "dF"),
    ]


# ---- cross-check on concrete sizes -----------------------------------------------------------


def expand_sums(expr: sympy.Expr) -> sympy.Expr:
    """Every ``Sum`` with integer limits written out term by term (no SymPy summation)."""
    if not expr.has(Sum):
        return expr
    if isinstance(expr, Sum):
        ranges = [range(int(low), int(high) + 1) for _, low, high in expr.limits]
        return sympy.Add(*(
            expand_sums(expr.function.xreplace(dict(zip(expr.variables, values, strict=True))))
            for values in itertools.product(*ranges)))
    return expr.func(*map(expand_sums, expr.args))


def _concrete_symbols(expr: sympy.Expr) -> sympy.Expr:
    """``X[2, 1]`` -> ``X_0_0_2_1`` (batch 0, channel 0), the names of :func:`derive_conv`."""
    return expr.xreplace({
        atom: sympy.Symbol(full_name(str(atom.base), (0, 0, *map(int, atom.indices))))
        for atom in expr.atoms(Indexed)
    })


@dataclasses.dataclass(frozen=True)
class Sizes:
    """Concrete sizes of one axis: input n, filter k, stride s, dilations d and a, padding."""

    n: int
    k: int
    s: int = 1
    d: int = 1
    a: int = 1
    lo: int = 0
    hi: int = 0


def _fits(sizes: Sizes) -> bool:
    return sizes.d * (sizes.k - 1) + 1 <= sizes.a * (sizes.n - 1) + 1 + sizes.lo + sizes.hi


def default_sizes(kind: str) -> list[Sizes]:
    """The concrete 1-D sizes each kind is cross-checked on (every n >= k >= 1 up to a bound)."""
    grids = {
        "stride1": dict(n=range(1, 6), k=range(1, 5)),
        "dilation": dict(n=range(1, 7), k=range(1, 4), d=range(1, 4)),
        "stride": dict(n=range(1, 7), k=range(1, 4), s=range(1, 4)),
        "padding": dict(n=range(1, 5), k=range(1, 4), lo=range(-1, 3), hi=range(0, 2)),
        "general": dict(n=range(2, 5), k=range(1, 3), s=range(1, 3), d=range(1, 3),
                        a=range(1, 3), lo=range(-1, 2), hi=range(0, 2)),
    }
    grid = grids[kind]
    samples = [Sizes(**dict(zip(grid, values, strict=True)))
               for values in itertools.product(*grid.values())]
    samples = [sizes for sizes in samples if _fits(sizes) and (kind == "padding" or sizes.k <= sizes.n)]
    return samples[::{"general": 7, "padding": 2}.get(kind, 1)]


def check_terms(sample: Sequence[Sizes]) -> int:
    """The number of terms the cross-check expands at these per-axis sizes (see
    :data:`MAX_CHECK_TERMS`): ``prod(n m k) * (prod(n) + prod(k) + prod(K) + prod(M) + 2)`` with
    K = d(k-1)+1 the dilated filter and M = s(m-1)+1 the spread output."""
    def total(size: object) -> int:
        return math.prod(map(size, sample))

    inputs, filters = total(lambda sizes: sizes.n), total(lambda sizes: sizes.k)
    outputs = total(_output_size)
    dilated = total(lambda sizes: sizes.d * (sizes.k - 1) + 1)
    spread = total(lambda sizes: sizes.s * (_output_size(sizes) - 1) + 1)
    return inputs * outputs * filters * (inputs + filters + dilated + spread + 2)


def _output_size(sizes: Sizes) -> int:
    padded = sizes.a * (sizes.n - 1) + 1 + sizes.lo + sizes.hi
    return (padded - sizes.d * (sizes.k - 1) - 1) // sizes.s + 1


def _substitution(axes: Sequence[AxisSymbols], samples: Sequence[Sizes]) -> dict:
    values = {}
    for axis, sizes in zip(axes, samples, strict=True):
        concrete = dict(n=sizes.n, k=sizes.k, m=_output_size(sizes), s=sizes.s, d=sizes.d,
                        a=sizes.a, p=sizes.lo)
        for name, symbol in axis.sizes().items():
            if isinstance(symbol, sympy.Symbol):
                values[symbol] = sympy.Integer(concrete[name])
            elif symbol != concrete[name]:
                raise ValueError(f"sizes (={sizes}) must have {name} = {symbol} for this proof "
                                 "(only what its kind makes symbolic may vary)")
    return values


def _cross_check(axes: Sequence[AxisSymbols], steps: Sequence[_Step],
                 samples: Sequence[Sizes]) -> list[str]:
    """Each step's right-hand side at these sizes, against the concrete derivation."""
    geometry = make_geometry((1, 1, *(s.n for s in samples)), (1, 1, *(s.k for s in samples)),
                             [s.s for s in samples], [(s.lo, s.hi) for s in samples],
                             [s.a for s in samples], [s.d for s in samples], 1, 1)
    sides = compute(geometry)
    expected = {"O": sides.O, "dX": sides.dL_dX, "dF": sides.dL_dF}
    free = {"O": "y", "dX": "j", "dF": "q"}
    values = _substitution(axes, samples)
    failures = []
    for number, step in enumerate(steps, start=1):
        rhs = step.equation.rhs.xreplace(values)
        if step.target == "L":
            cases = [({}, sides.L)]
        else:
            variables = [getattr(axis, free[step.target]) for axis in axes]
            cases = [(dict(zip(variables, map(sympy.Integer, index[2:]), strict=True)), entry)
                     for index, entry in expected[step.target].items()]
        for assignment, entry in cases:
            found = _concrete_symbols(expand_sums(rhs.xreplace(assignment)))
            if sympy.expand(found - entry) != 0:
                failures.append(f"step {number} at {list(samples)} {assignment}")
    return failures


# ---- the public result -----------------------------------------------------------------------

_STATEMENTS = {
    "stride1": "stride 1, no dilation, no padding (m = n - k + 1)",
    "dilation": "filter dilation d (m = n - d(k-1))",
    "stride": "stride s (m = floor((n - k) / s) + 1)",
    "padding": "padding p before the input, any sign, and any padding after it",
    "general": "stride s, filter dilation d, input dilation a and padding p together",
}


def _statement(kind: str, ndim: int) -> str:
    axes = "one spatial axis" if ndim == 1 else (
        f"{ndim} spatial axes (each sum below runs over every axis: the summands are products of "
        "one factor per axis, so the proof is the 1-D proof applied axis by axis)")
    return (
        f"For {_STATEMENTS[kind]}, {axes}, every input size n >= 1, filter size k >= 1 and output "
        "size m >= 1, every 0 <= j < n and 0 <= q < k, with L = sum_y G_y O_y (G = dL/dO): "
        "dL/dX_j equals the full convolution of G, spread by the stride and zero-padded, with the "
        "rotated (dilated) filter, read at position a j; and dL/dF_q equals the valid correlation "
        "of the padded (dilated) input with G spread by the stride, read at position d q."
    )


@dataclasses.dataclass(frozen=True)
class GeneralProof:
    r"""A proof that the rotated-filter rule is the derivative, for symbolic sizes.

    * ``kind``: one of :data:`PROOF_KINDS`; ``ndim``: number of spatial axes;
    * ``statement``: the claim in words;
    * ``identities``: the two proven equations, :math:`\partial L/\partial X_j = ` the rule's
      full convolution and :math:`\partial L/\partial F_q = ` the rule's valid correlation, in
      ``IndexedBase`` objects ``X``, ``F``, ``G`` and size symbols ``n k m s d a p`` (suffixed
      ``_1``, ``_2``... per axis when ``ndim > 1``);
    * ``steps``: ``(description, sympy.Eq)`` in order: the forward pass, the loss, then for dL/dX
      and for dL/dF the derivative, the rule, and their common normal form;
    * ``closed_forms``: ``(description, sympy.Eq)``: dL/dX_j and dL/dF_q as single sums with
      the strided delta solved (a ``Piecewise`` with a divisibility condition, never a bare
      ``G[c/s]``); these are cross-checked on the concrete sizes only, not proved by the moves;
    * ``checked_sizes``: the concrete per-axis :class:`Sizes` tuples on which every step was
      evaluated and compared with :func:`derive.derive_conv`; ``failures`` names any mismatch;
    * ``verified``: the symbolic proof went through (it raises ``ProofError`` otherwise) and
      every concrete cross-check agreed.
    """

    kind: str
    ndim: int
    statement: str
    identities: tuple[sympy.Eq, sympy.Eq]
    steps: tuple[tuple[str, sympy.Eq], ...]
    closed_forms: tuple[tuple[str, sympy.Eq], ...]
    checked_sizes: tuple[tuple[Sizes, ...], ...]
    failures: tuple[str, ...]

    @property
    def verified(self) -> bool:
        """True when every step was checked at every size in ``checked_sizes``."""
        return not self.failures


def _samples(kind: str, ndim: int) -> list[tuple[Sizes, ...]]:
    one_axis = default_sizes(kind)
    if ndim == 1:
        return [(sizes,) for sizes in one_axis]
    small = [sizes for sizes in one_axis if sizes.n <= 3][:4]
    return list(itertools.product(small, repeat=ndim))[::3] or [tuple(small[:1] * ndim)]


_EXAMPLE = "e.g. [(Sizes(n=5, k=2),)] in 1-D, [(Sizes(n=4, k=2), Sizes(n=3, k=1))] in 2-D"


def _checked_sizes(name: str, sizes: object) -> Sizes:
    """One :class:`Sizes`: int fields (NumPy integers too), n, k, s, d, a >= 1, the dilated
    filter within the padded, dilated input, and the cross-check within its limits."""
    if not isinstance(sizes, Sizes):
        raise TypeError(f"{name} (={sizes!r}) must be a derive.Sizes; {_EXAMPLE}")
    values = {field.name: as_int(f"{name}.{field.name}", getattr(sizes, field.name),
                                 minimum=None if field.name in ("lo", "hi") else 1)
              for field in dataclasses.fields(Sizes)}
    checked = Sizes(**values)
    if not _fits(checked):
        raise ValueError(f"{name} (={sizes}): the dilated filter (={checked.d * (checked.k - 1) + 1})"
                         " must fit in the padded, dilated input (="
                         f"{checked.a * (checked.n - 1) + 1 + checked.lo + checked.hi})")
    return checked


def _checked_samples(sizes: object, axes: Sequence[AxisSymbols]) -> list[tuple[Sizes, ...]]:
    """``general_proof``'s ``sizes``, validated: at least one tuple of ``ndim`` Sizes each, of
    the kind's form, small enough to cross-check (``TypeError`` / ``ValueError`` otherwise)."""
    what = f"a sequence of tuples of {len(axes)} derive.Sizes (one per spatial axis); {_EXAMPLE}"
    if isinstance(sizes, str | bytes) or not isinstance(sizes, Sequence):
        raise TypeError(f"sizes (={sizes!r}) must be {what}")
    if not sizes:
        raise ValueError(f"sizes (={sizes!r}) must hold at least one tuple of Sizes to cross-check "
                         "(None for the default ones)")
    samples = []
    for number, sample in enumerate(sizes):
        name = f"sizes[{number}]"
        if isinstance(sample, str | bytes) or not isinstance(sample, Sequence):
            raise TypeError(f"{name} (={sample!r}) must be a tuple of {len(axes)} derive.Sizes, one "
                            f"per spatial axis; {_EXAMPLE}")
        if len(sample) != len(axes):
            raise ValueError(f"{name} (={tuple(sample)!r}) must have one Sizes per spatial axis "
                             f"(ndim = {len(axes)}), got {len(sample)}")
        checked = tuple(_checked_sizes(f"{name}[{axis}]", entry) for axis, entry in enumerate(sample))
        for axis, (symbols, entry) in enumerate(zip(axes, checked, strict=True)):
            try:
                _substitution([symbols], [entry])
            except ValueError as error:
                raise ValueError(f"{name}[{axis}]: {error}") from None
        terms = check_terms(checked)
        if terms > MAX_CHECK_TERMS:
            raise ValueError(f"{name} (={checked!r}) would expand {terms:,} terms in the "
                             f"cross-check, more than derive.MAX_CHECK_TERMS (={MAX_CHECK_TERMS:,}); "
                             "take smaller sizes (the proof itself holds at every size)")
        samples.append(checked)
    return samples


def general_proof(kind: str = "stride1", ndim: int = 1,
                  sizes: Sequence[Sequence[Sizes]] | None = None) -> GeneralProof:
    r"""Prove, for symbolic sizes, that the rotated-filter rule is dL/dX and dL/dF.

    ``kind`` picks what is symbolic besides the sizes n, k, m (see :data:`PROOF_KINDS`):
    ``'stride1'``, ``'dilation'`` (d), ``'stride'`` (s), ``'padding'`` (p), or ``'general'``
    (s, d, a and p at once). ``ndim`` is the number of spatial axes (1, 2 or 3; 2 for images).
    ``sizes`` replaces the default concrete cross-check sizes: a non-empty sequence of tuples of
    ``ndim`` :class:`Sizes` each (one per axis), each small enough that the cross-check expands at
    most :data:`derive.MAX_CHECK_TERMS` terms. Bad arguments raise ``TypeError`` / ``ValueError``
    naming the argument and its value, before the proof starts.

    >>> proof = general_proof("stride", sizes=[(Sizes(n=5, k=2, s=2),), (Sizes(n=6, k=3, s=3),)])
    >>> proof.verified, proof.failures
    (True, ())
    >>> proof.identities[1].lhs
    Derivative(L, F[q])
    >>> proof.steps[-1][1].rhs
    Sum(KroneckerDelta(q - r + s*y, 0)*G[y]*X[r], (r, 0, n - 1), (y, 0, m - 1))
    """
    if not isinstance(kind, str) or kind not in PROOF_KINDS:
        raise ValueError(f"kind (={kind!r}) must be one of {PROOF_KINDS}")
    if not is_int(ndim):
        raise TypeError(f"ndim (={ndim!r}) must be an int: 1, 2 or 3")
    if not 1 <= as_int("ndim", ndim) <= 3:
        raise ValueError(f"ndim (={ndim!r}) must be 1, 2 or 3")
    ndim = as_int("ndim", ndim)
    axes = [_axis_symbols(kind, "" if ndim == 1 else f"_{i}") for i in range(1, ndim + 1)]
    samples = _samples(kind, ndim) if sizes is None else _checked_samples(sizes, axes)
    output, loss = _forward(axes)
    y = [axis.y for axis in axes]
    steps = [
        _Step("The forward pass; the padded, dilated input is a sum over X's real entries, X_r "
              "sitting at position a r + p (a delta, zero elsewhere).",
              sympy.Eq(_indexed(IndexedBase("O"), y), output), "O"),
        _Step("The loss, linearised by the chain rule: L = sum_y G_y O_y with G = dL/dO.",
              sympy.Eq(LOSS, loss), "L"),
    ]
    loss = distribute(loss)
    steps.append(_Step("Distribute: one multiple sum of monomials G_y F_t X_r times deltas.",
                       sympy.Eq(LOSS, loss), "L"))
    identities = []
    for side in (_lhs_steps, _rhs_steps):
        side_steps, truth, rule = side(axes, loss)
        derivative = side_steps[0].equation.lhs
        steps.extend(side_steps)
        identities.append(sympy.Eq(derivative, side_steps[2].equation.rhs))
        steps.append(_conclude(derivative, side_steps[0].target, truth, rule))
    closed_forms = _closed_forms(axes)
    failures = [failure for sample in samples
                for failure in _cross_check(axes, [*steps, *closed_forms], sample)]
    return GeneralProof(kind, ndim, _statement(kind, ndim), tuple(identities),
                        tuple((step.description, step.equation) for step in steps),
                        tuple((step.description, step.equation) for step in closed_forms),
                        tuple(samples), tuple(failures))
