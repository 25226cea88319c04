r"""Concrete derivations: every entry of dL/dX and dL/dF, exactly, for given sizes and options.

Two computations meet in each check:

* the derivative: the output O of ``jax.lax.conv_general_dilated`` written entry by entry from its
  index formula, ``L = \sum G \cdot O`` (the chain rule's linearisation, G = dL/dO), and each
  partial derivative of L taken monomial by monomial (every term of L is ``G * X * F`` with
  distinct symbols, so its derivative with respect to X is ``G * F``);
* the rule: spread-and-pad G, dilate and rotate F, slide one over the other (``derive._rule``).

Both sides are canonical SymPy sums of monomials; they are compared entry by entry.
"""

import dataclasses
import itertools
import math
from collections.abc import Callable, Sequence

import sympy

from derive._args import Axis, as_int, as_sequence, int_tuple, make_axes, optional_int_tuple
from derive._arrays import Grid, Index, canonical_sum, correlate, indices, product, spread_and_pad
from derive._rule import ROTATED_FILTER_RULE, Rule

Progress = Callable[[str, int, int], None]
SymbolName = Callable[[str, Index], str]

# Size limits of a concrete derivation, checked (by ``make_geometry``) before any SymPy work.
# Time and memory grow about linearly with the products and with the cells (each output entry,
# each a term of L, weighs most). Measured single-threaded on a shared 2-core machine (Python
# 3.11, SymPy 1.14, timings +-30 % with the load):
#   205x205 input, 5x5 filter:      1,010,025 products,    43,681 cells:  53 s, 0.9 GB;
#   1024x1024, 1x1, stride 1024:            1 product,  1,048,576 cells:  35 s, 1.0 GB;
#   512x512, 1x1:                     262,144 products,   262,144 cells:  33-50 s, 0.9 GB.
# So a case at the products limit with a 5x5 filter (about 410x410) takes about 4 minutes and
# 3.7 GB (estimated), and one at the cells limit with a 1x1 filter (1024x1024, where every output
# entry is a single product) about 2-3.5 minutes and 3.5 GB (estimated); the worst case within
# both (about 1020x1020 with a 2x2 filter) about 6 minutes and 6 GB. MAX_CELLS is the tighter
# one because outputs never outnumber cells and cost ~3 KB and ~150 us each: at 2**22 cells a
# 2048x2048 1x1 case would need some 14 GB. The command line (``convgrad report``) keeps its own,
# tighter limits (2**18 products, 2**16 cells).
MAX_PRODUCTS = 2**22
"""At most this many products in the forward pass: output entries x filter taps per output x
batch x output channels x input channels per group (taps that meet padding count too)."""
MAX_CELLS = 2**20
"""At most this many cells in the largest array built: the (batch, channel) planes of X or G
(the more numerous) times, per spatial axis, the dilated input plus the larger of the net padding
``lo + hi`` and the dilated filter less one (bounding the padded input and the padded G of the full
convolution); or the planes of F times the dilated filter, if more."""


def full_name(letter: str, index: Index) -> str:
    """``X_0_1_2_3``: the letter, then every index of the array (batch, channel, spatial)."""
    return "_".join([letter, *map(str, index)])


@dataclasses.dataclass(frozen=True)
class Geometry:
    """Shapes, groups and per-axis arithmetic of one convolution (NCHW / OIHW layouts)."""

    lhs_shape: tuple[int, ...]
    rhs_shape: tuple[int, ...]
    axes: tuple[Axis, ...]
    feature_group_count: int
    batch_group_count: int

    @property
    def out_shape(self) -> tuple[int, ...]:
        """``(batch // batch_group_count, out_features, *out_spatial)``."""
        return (self.lhs_shape[0] // self.batch_group_count, self.rhs_shape[0],
                *(axis.m for axis in self.axes))

    def lhs_plane(self, batch: int, out_feature: int, in_feature: int) -> tuple[int, int]:
        """The (batch, channel) of X that output plane (batch, out_feature) meets at filter input
        feature ``in_feature``: groups split X's channels (feature groups) or batch (batch groups).
        """
        features = self.rhs_shape[0]
        feature_group = out_feature // (features // self.feature_group_count)
        batch_group = out_feature // (features // self.batch_group_count)
        return (batch_group * self.out_shape[0] + batch,
                feature_group * self.rhs_shape[1] + in_feature)

    def plane_triples(self) -> itertools.product:
        """Every (batch, out_feature, in_feature) of the forward's channel sum."""
        return itertools.product(range(self.out_shape[0]), range(self.rhs_shape[0]),
                                 range(self.rhs_shape[1]))


def _check_groups(lhs_shape: tuple[int, ...], rhs_shape: tuple[int, ...], feature_group_count: int,
                  batch_group_count: int) -> None:
    if feature_group_count > 1 and batch_group_count > 1:
        raise ValueError(f"feature_group_count (={feature_group_count}) and batch_group_count "
                         f"(={batch_group_count}) cannot both exceed 1")
    if lhs_shape[1] != rhs_shape[1] * feature_group_count:
        raise ValueError(f"lhs channels (={lhs_shape[1]}) must equal rhs input channels "
                         f"(={rhs_shape[1]}) times feature_group_count (={feature_group_count})")
    for name, count in (("feature_group_count", feature_group_count),
                        ("batch_group_count", batch_group_count)):
        if rhs_shape[0] % count:
            raise ValueError(f"{name} (={count}) must divide rhs output features (={rhs_shape[0]})")
    if lhs_shape[0] % batch_group_count:
        raise ValueError(f"batch_group_count (={batch_group_count}) must divide the lhs batch "
                         f"(={lhs_shape[0]})")


def size_of(geometry: Geometry) -> tuple[int, int]:
    """(products, cells) of a derivation, as :data:`MAX_PRODUCTS` and :data:`MAX_CELLS` count
    them; pure integer arithmetic, nothing is built."""
    products = math.prod(geometry.out_shape) * math.prod(geometry.rhs_shape[1:])
    extent = math.prod(axis.dilated_n + max(axis.lo + axis.hi, axis.dilated_k - 1)
                       for axis in geometry.axes)
    planes = max(math.prod(geometry.lhs_shape[:2]), math.prod(geometry.out_shape[:2]))
    filters = math.prod(geometry.rhs_shape[:2]) * math.prod(axis.dilated_k for axis in geometry.axes)
    return products, max(planes * extent, filters)


def _check_limits(geometry: Geometry, arguments: str) -> None:
    products, cells = size_of(geometry)
    advice = ("take smaller sizes, or derive.general_proof for the rule at every (symbolic) size")
    if products > MAX_PRODUCTS:
        raise ValueError(f"{arguments} give {products:,} products in the forward pass, more than "
                         f"derive.MAX_PRODUCTS (={MAX_PRODUCTS:,}); {advice}")
    if cells > MAX_CELLS:
        raise ValueError(f"{arguments} give arrays of up to {cells:,} cells, more than "
                         f"derive.MAX_CELLS (={MAX_CELLS:,}); {advice}")


def check_callables(progress: object, rule: object) -> None:
    """``progress`` is None or callable; ``rule`` is a :class:`Rule` of callables."""
    if progress is not None and not callable(progress):
        raise TypeError(f"progress (={progress!r}) must be None or a callable "
                        "progress(stage, done, total)")
    if not isinstance(rule, Rule):
        raise TypeError(f"rule (={rule!r}) must be a derive.Rule (e.g. "
                        "dataclasses.replace(derive.ROTATED_FILTER_RULE, ...))")
    for field in dataclasses.fields(rule):
        if not callable(getattr(rule, field.name)):
            raise TypeError(f"rule.{field.name} (={getattr(rule, field.name)!r}) must be callable")


def make_geometry(
    lhs_shape: Sequence[int],
    rhs_shape: Sequence[int],
    window_strides: Sequence[int] | None,
    padding: str | Sequence[tuple[int, int]],
    lhs_dilation: Sequence[int] | None,
    rhs_dilation: Sequence[int] | None,
    feature_group_count: int,
    batch_group_count: int,
    *,
    arguments: str | None = None,
) -> Geometry:
    """Validate every argument of :func:`derive_conv` (``ValueError`` / ``TypeError``), sizes
    included (:data:`MAX_PRODUCTS`, :data:`MAX_CELLS`). ``arguments`` names the arguments and
    their values in the size errors (by default those of :func:`derive_conv`); its ``{padding}``
    is replaced by the padding as given and as (lo, hi) pairs."""
    lhs_entries = as_sequence("lhs_shape", lhs_shape, "a sequence of ints")
    rhs_entries = as_sequence("rhs_shape", rhs_shape, "a sequence of ints")
    if len(lhs_entries) != len(rhs_entries) or len(lhs_entries) < 3:
        raise ValueError(f"lhs_shape (={lhs_entries}) and rhs_shape (={rhs_entries}) must "
                         "have the same rank, at least 3 (batch/features, channels, spatial...)")
    rank = len(lhs_entries) - 2
    lhs = int_tuple("lhs_shape", lhs_entries, rank + 2, minimum=1)
    rhs = int_tuple("rhs_shape", rhs_entries, rank + 2, minimum=1)
    features = as_int("feature_group_count", feature_group_count, minimum=1)
    batches = as_int("batch_group_count", batch_group_count, minimum=1)
    _check_groups(lhs, rhs, features, batches)
    strides = optional_int_tuple("window_strides", window_strides, rank)
    lhs_dilations = optional_int_tuple("lhs_dilation", lhs_dilation, rank)
    rhs_dilations = optional_int_tuple("rhs_dilation", rhs_dilation, rank)
    axes = make_axes(lhs[2:], rhs[2:], strides, padding, lhs_dilations, rhs_dilations)
    geometry = Geometry(lhs, rhs, axes, features, batches)
    if arguments is None:
        arguments = (f"lhs_shape (={lhs}), rhs_shape (={rhs}), window_strides (={strides}), "
                     f"padding (={{padding}}), lhs_dilation (={lhs_dilations}), rhs_dilation "
                     f"(={rhs_dilations}), feature_group_count (={features}) and "
                     f"batch_group_count (={batches})")
    pads = tuple((axis.lo, axis.hi) for axis in axes)
    padding_text = f"{padding!r}, i.e. {pads}" if isinstance(padding, str) else str(pads)
    _check_limits(geometry, arguments.replace("{padding}", padding_text))
    return geometry


def _symbols(letter: str, shape: tuple[int, ...], name: SymbolName) -> dict[Index, sympy.Symbol]:
    return {index: sympy.Symbol(name(letter, index)) for index in indices(shape)}


class _Reporter:
    """Calls ``progress(stage, done, total)`` about a hundred times per stage."""

    def __init__(self, progress: Progress | None, stage: str, total: int) -> None:
        self.progress, self.stage, self.total = progress, stage, total
        self.every = max(1, total // 100)
        self.step(0)

    def step(self, done: int) -> None:
        if self.progress is not None and (done % self.every == 0 or done == self.total):
            self.progress(self.stage, done, self.total)


def _forward(geometry: Geometry, X: dict, F: dict, progress: Progress | None) -> dict[Index, sympy.Expr]:
    """Each output entry ``O[b, o, y] = sum_{c, t} X[b', c', y*s + t*d - lo (/ a)] F[o, c, t]``."""
    taps = [[[(t, i) for t in range(axis.k) if (i := axis.input_index(y, t)) is not None]
             for y in range(axis.m)] for axis in geometry.axes]
    out_spatial = geometry.out_shape[2:]
    reporter = _Reporter(progress, "forward", geometry.out_shape[0] * geometry.out_shape[1])
    O_terms: dict[Index, list] = {}
    for done, (batch, feature) in enumerate(itertools.product(*map(range, geometry.out_shape[:2]))):
        for y in indices(out_spatial):
            O_terms[(batch, feature, *y)] = [
                product(X[(*geometry.lhs_plane(batch, feature, channel), *(i for _, i in pairs))],
                        F[(feature, channel, *(t for t, _ in pairs))])
                for channel in range(geometry.rhs_shape[1])
                for pairs in itertools.product(*(axis_taps[y_axis] for axis_taps, y_axis
                                                 in zip(taps, y, strict=True)))
            ]
        reporter.step(done + 1)
    return {index: canonical_sum(terms) for index, terms in O_terms.items()}


def _monomial_partials(term: sympy.Expr) -> list[tuple[sympy.Symbol, sympy.Expr]]:
    """``(x, d term / d x)`` for each factor x of a product of distinct Symbols."""
    factors = term.args if term.is_Mul else (term,)
    assert all(factor.is_Symbol for factor in factors) and len(set(factors)) == len(factors), term
    if len(factors) == 2:
        return [(factors[0], factors[1]), (factors[1], factors[0])]
    return [(factor, sympy.Mul(*factors[:i], *factors[i + 1:])) for i, factor in enumerate(factors)]


def _differentiate(
    O: dict[Index, sympy.Expr], G: dict, wrt: Sequence[dict], progress: Progress | None
) -> list[dict[Index, list]]:
    """Terms of dL/dV for each array V of ``wrt`` (index -> Symbol), ``L = sum G * O``.

    The chain rule: dL/dv = sum over outputs of G[out] * dO[out]/dv, and dO/dv is taken term by
    term of the expanded O entry.
    """
    derivatives: list[dict[Index, list]] = [{index: [] for index in array} for array in wrt]
    where = {symbol: derivatives[k][index] for k, array in enumerate(wrt)
             for index, symbol in array.items()}
    reporter = _Reporter(progress, "derivative", len(O))
    for done, (out_index, entry) in enumerate(O.items()):
        for term in sympy.Add.make_args(entry):
            for symbol, partial in ([] if term == 0 else _monomial_partials(term)):
                where[symbol].append(product(G[out_index], partial))
        reporter.step(done + 1)
    return derivatives


def _plane(array: dict, shape: tuple[int, ...], plane: tuple[int, int]) -> Grid:
    spatial = shape[2:]
    return Grid(spatial, {y: array[(*plane, *y)] for y in indices(spatial)})


@dataclasses.dataclass(frozen=True)
class RuleSide:
    """The rule's intermediate arrays (per plane) and its results (index -> list of terms)."""

    padded_G: dict[tuple[int, int], Grid]
    rotated_F: dict[tuple[int, int], Grid]
    padded_X: dict[tuple[int, int], Grid]
    spread_G: dict[tuple[int, int], Grid]
    dL_dX: dict[Index, list]
    dL_dF: dict[Index, list]


def _apply_rule(geometry: Geometry, X: dict, F: dict, G: dict, rule: Rule,
                progress: Progress | None) -> RuleSide:
    """dL/dX and dL/dF from the rule: correlations of spread/padded/rotated planes."""
    axes = geometry.axes
    out_shape = geometry.out_shape
    spread = [rule.cotangent_spread(axis) for axis in axes]
    padded_G = {plane: spread_and_pad(_plane(G, out_shape, plane), spread,
                                      [rule.lhs_cotangent_pads(axis) for axis in axes])
                for plane in itertools.product(*map(range, out_shape[:2]))}
    spread_G = {plane: spread_and_pad(_plane(G, out_shape, plane), spread, [(0, 0)] * len(axes))
                for plane in padded_G}
    rotated_F = {plane: rule.rotate_filter(spread_and_pad(
                     _plane(F, geometry.rhs_shape, plane), [rule.filter_spread(axis) for axis in axes],
                     [(0, 0)] * len(axes)))
                 for plane in itertools.product(*map(range, geometry.rhs_shape[:2]))}
    padded_X = {plane: spread_and_pad(_plane(X, geometry.lhs_shape, plane),
                                      [rule.input_spread(axis) for axis in axes],
                                      [rule.rhs_cotangent_pads(axis) for axis in axes])
                for plane in itertools.product(*map(range, geometry.lhs_shape[:2]))}
    lhs_strides = [rule.lhs_window_stride(axis) for axis in axes]
    rhs_strides = [rule.rhs_window_stride(axis) for axis in axes]
    dX: dict[Index, list] = {}
    dF: dict[Index, list] = {}
    triples = list(geometry.plane_triples())
    reporter = _Reporter(progress, "rule", len(triples))
    for done, (batch, feature, channel) in enumerate(triples):
        lhs_plane = geometry.lhs_plane(batch, feature, channel)
        for y, terms in correlate(padded_G[(batch, feature)], rotated_F[(feature, channel)],
                                  lhs_strides).items():
            dX.setdefault((*lhs_plane, *y), []).extend(terms)
        for t, terms in correlate(padded_X[lhs_plane], spread_G[(batch, feature)],
                                  rhs_strides).items():
            dF.setdefault((feature, channel, *t), []).extend(terms)
        reporter.step(done + 1)
    return RuleSide(padded_G, rotated_F, padded_X, spread_G, dX, dF)


def _compare(name: str, truth: dict[Index, sympy.Expr], rule: dict[Index, sympy.Expr],
             reporter: _Reporter, done: int) -> list[str]:
    """Indices where ``truth - rule`` does not expand to 0 (or the rule has no/extra entries)."""
    mismatches = [f"{name}{list(index)}: rule has an extra entry"
                  for index in rule.keys() - truth.keys()]
    for index, expected in truth.items():
        found = rule.get(index, sympy.S.Zero)
        # Identical canonical sums have difference 0; anything else is expanded to decide.
        if expected != found and sympy.expand(expected - found) != 0:
            mismatches.append(f"{name}{list(index)}")
        done += 1
        reporter.step(done)
    return mismatches


@dataclasses.dataclass(frozen=True)
class Sides:
    """Everything a concrete derivation computes, keyed by full (batch, channel, spatial) index."""

    geometry: Geometry
    X: dict[Index, sympy.Symbol]
    F: dict[Index, sympy.Symbol]
    G: dict[Index, sympy.Symbol]
    O: dict[Index, sympy.Expr]
    L: sympy.Expr
    dL_dX: dict[Index, sympy.Expr]
    dL_dF: dict[Index, sympy.Expr]
    rule: RuleSide
    rule_dL_dX: dict[Index, sympy.Expr]
    rule_dL_dF: dict[Index, sympy.Expr]
    mismatches: tuple[str, ...]


def _sums(terms: dict[Index, list]) -> dict[Index, sympy.Expr]:
    return {index: canonical_sum(entry_terms) for index, entry_terms in terms.items()}


def compute(geometry: Geometry, name: SymbolName = full_name, rule: Rule = ROTATED_FILTER_RULE,
            progress: Progress | None = None) -> Sides:
    """Derive dL/dX and dL/dF both ways for ``geometry`` and compare them exactly."""
    X = _symbols("X", geometry.lhs_shape, name)
    F = _symbols("F", geometry.rhs_shape, name)
    G = _symbols("G", geometry.out_shape, name)
    O = _forward(geometry, X, F, progress)
    L = sympy.Add(*(sympy.Mul(G[index], entry) for index, entry in O.items()))
    dX_terms, dF_terms = _differentiate(O, G, (X, F), progress)
    dL_dX, dL_dF = _sums(dX_terms), _sums(dF_terms)
    rule_side = _apply_rule(geometry, X, F, G, rule, progress)
    rule_dX, rule_dF = _sums(rule_side.dL_dX), _sums(rule_side.dL_dF)
    reporter = _Reporter(progress, "verify", len(dL_dX) + len(dL_dF))
    mismatches = (_compare("dL_dX", dL_dX, rule_dX, reporter, 0)
                  + _compare("dL_dF", dL_dF, rule_dF, reporter, len(dL_dX)))
    return Sides(geometry, X, F, G, O, L, dL_dX, dL_dF, rule_side, rule_dX, rule_dF,
                 tuple(mismatches))
