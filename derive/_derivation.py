r"""Public result objects of the concrete derivations: :func:`derive_conv`, :func:`derive_2d`.

In every derivation the loss is linearised by the chain rule, :math:`L = \sum G \cdot O` with
:math:`G = \partial L / \partial O`, and

* ``dL_dX``, ``dL_dF`` come from differentiating L (the truth);
* ``rule_dL_dX`` is the full convolution of G (spread by the stride, zero-padded) with the rotated
  (dilated) filter, ``rule_dL_dF`` the valid correlation of the (padded) input with G;
* ``verified`` is True when every entry of ``dL_dX - rule_dL_dX`` and ``dL_dF - rule_dL_dF``
  expands to exactly 0.
"""

import dataclasses
from collections.abc import Sequence

import sympy

from derive._args import as_sequence, int_tuple, is_int
from derive._arrays import Grid, Index, indices
from derive._concrete import Progress, Sides, check_callables, compute, make_geometry
from derive._rule import ROTATED_FILTER_RULE, Rule

Pads = tuple[tuple[int, int], ...]


def _array(entries: dict[Index, sympy.Expr], shape: tuple[int, ...]) -> sympy.ImmutableDenseNDimArray:
    return sympy.ImmutableDenseNDimArray(
        [entries.get(index, sympy.S.Zero) for index in indices(shape)], shape)


def _stack(
    planes: dict[tuple[int, int], Grid], leading: tuple[int, int]
) -> sympy.ImmutableDenseNDimArray:
    """Planes of one common spatial shape, stacked as ``(*leading, *spatial)``."""
    spatial = next(iter(planes.values())).shape
    entries = {(*plane, *index): value for plane, grid in planes.items()
               for index, value in grid.entries.items()}
    return _array(entries, (*leading, *spatial))


@dataclasses.dataclass(frozen=True)
class ConvDerivation:
    r"""Exact derivative of a batched, multi-channel, grouped convolution, and its check.

    Layouts as in ``jax.lax.conv_general_dilated`` with the default dimension numbers (every
    array is a ``sympy.ImmutableDenseNDimArray``; ``.tolist()`` gives nested lists):

    * ``X``: ``(batch, in_features, *in_spatial)``, Symbols ``X_b_c_i_j`` (0-based, one index per
      axis);
    * ``F``: ``(out_features, in_features // feature_group_count, *window)``, Symbols
      ``F_o_c_i_j``;
    * ``G``, ``O``: ``(batch // batch_group_count, out_features, *out_spatial)``, ``G_b_o_i_j``;
    * ``dL_dX``, ``rule_dL_dX``: shape of ``X``; ``dL_dF``, ``rule_dL_dF``: shape of ``F``;
    * ``padded_G``: ``(*G.shape[:2], *padded)``, each plane of G spread by the stride and
      zero-padded as the full convolution sees it; ``rotated_F``: ``(*F.shape[:2], *dilated)``,
      each plane dilated and rotated by 180 degrees; ``padded_X``: ``(*X.shape[:2], ...)``, X
      dilated and padded as the dL/dF correlation sees it; ``spread_G``: G spread by the stride
      (the window of that correlation).

    ``padding`` is explicit ``(lo, hi)`` pairs; ``mismatches`` names the entries where the check
    failed (empty when ``verified``).
    """

    lhs_shape: tuple[int, ...]
    rhs_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    window_strides: tuple[int, ...]
    padding: Pads
    lhs_dilation: tuple[int, ...]
    rhs_dilation: tuple[int, ...]
    feature_group_count: int
    batch_group_count: int
    X: sympy.ImmutableDenseNDimArray
    F: sympy.ImmutableDenseNDimArray
    G: sympy.ImmutableDenseNDimArray
    O: sympy.ImmutableDenseNDimArray
    L: sympy.Expr
    dL_dX: sympy.ImmutableDenseNDimArray
    dL_dF: sympy.ImmutableDenseNDimArray
    padded_G: sympy.ImmutableDenseNDimArray
    rotated_F: sympy.ImmutableDenseNDimArray
    padded_X: sympy.ImmutableDenseNDimArray
    spread_G: sympy.ImmutableDenseNDimArray
    rule_dL_dX: sympy.ImmutableDenseNDimArray
    rule_dL_dF: sympy.ImmutableDenseNDimArray
    mismatches: tuple[str, ...]

    @property
    def verified(self) -> bool:
        """True when both differences expand to exactly 0, entry by entry."""
        return not self.mismatches


def _conv_derivation(sides: Sides) -> ConvDerivation:
    geometry, rule = sides.geometry, sides.rule
    axes = geometry.axes
    return ConvDerivation(
        lhs_shape=geometry.lhs_shape,
        rhs_shape=geometry.rhs_shape,
        out_shape=geometry.out_shape,
        window_strides=tuple(axis.s for axis in axes),
        padding=tuple((axis.lo, axis.hi) for axis in axes),
        lhs_dilation=tuple(axis.a for axis in axes),
        rhs_dilation=tuple(axis.d for axis in axes),
        feature_group_count=geometry.feature_group_count,
        batch_group_count=geometry.batch_group_count,
        X=_array(sides.X, geometry.lhs_shape),
        F=_array(sides.F, geometry.rhs_shape),
        G=_array(sides.G, geometry.out_shape),
        O=_array(sides.O, geometry.out_shape),
        L=sides.L,
        dL_dX=_array(sides.dL_dX, geometry.lhs_shape),
        dL_dF=_array(sides.dL_dF, geometry.rhs_shape),
        padded_G=_stack(rule.padded_G, geometry.out_shape[:2]),
        rotated_F=_stack(rule.rotated_F, geometry.rhs_shape[:2]),
        padded_X=_stack(rule.padded_X, geometry.lhs_shape[:2]),
        spread_G=_stack(rule.spread_G, geometry.out_shape[:2]),
        rule_dL_dX=_array(sides.rule_dL_dX, geometry.lhs_shape),
        rule_dL_dF=_array(sides.rule_dL_dF, geometry.rhs_shape),
        mismatches=sides.mismatches,
    )


def derive_conv(
    lhs_shape: Sequence[int],
    rhs_shape: Sequence[int],
    window_strides: Sequence[int] | None = None,
    padding: str | Sequence[tuple[int, int]] = "VALID",
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    feature_group_count: int = 1,
    batch_group_count: int = 1,
    *,
    progress: Progress | None = None,
    rule: Rule = ROTATED_FILTER_RULE,
) -> ConvDerivation:
    r"""Derive dL/dX and dL/dF of ``jax.lax.conv_general_dilated`` exactly, and check the rule.

    Arguments mean what they mean in ``jax.lax.conv_general_dilated`` with the default
    dimension numbers: ``lhs_shape`` is ``(batch, in_features, *in_spatial)``, ``rhs_shape`` is
    ``(out_features, in_features // feature_group_count, *window)``, with 1, 2, 3 or more spatial
    axes; ``window_strides``, ``lhs_dilation`` and ``rhs_dilation`` default to all ones;
    ``padding`` is ``'VALID'``, ``'SAME'``, ``'SAME_LOWER'`` or one ``(lo, hi)`` pair per spatial
    axis (negative crops). ``progress(stage, done, total)`` is called during long runs. ``rule``
    replaces parts of the rotated-filter rule (to show that wrong variants fail the check).

    Sizes, shapes and options are ints (NumPy integers too, not bools) or sequences / 1-D arrays
    of them. Raises ``TypeError`` / ``ValueError`` naming the argument and the value when the
    arguments are malformed or the dilated filter does not fit the padded, dilated input, and
    ``ValueError`` before any SymPy work when the case is too big to derive entry by entry: more
    than ``derive.MAX_PRODUCTS`` (2**22) products in the forward pass (output entries x filter
    taps per output x batch x output channels x input channels per group) or more than
    ``derive.MAX_CELLS`` (2**20) cells in one of the arrays it builds (see
    :data:`derive.MAX_CELLS`); a case at either limit takes minutes and gigabytes.
    :func:`derive.general_proof` covers every size.

    >>> d = derive_conv((2, 2, 4), (2, 1, 2), (2,), [(1, 0)], feature_group_count=2)
    >>> d.out_shape, d.verified
    ((2, 2, 2), True)
    >>> d.O[0, 1, 1]
    F_1_0_0*X_0_1_1 + F_1_0_1*X_0_1_2
    >>> d.dL_dF[1, 0, 0]
    G_0_1_1*X_0_1_1 + G_1_1_1*X_1_1_1
    """
    check_callables(progress, rule)
    geometry = make_geometry(lhs_shape, rhs_shape, window_strides, padding, lhs_dilation,
                             rhs_dilation, feature_group_count, batch_group_count)
    return _conv_derivation(compute(geometry, rule=rule, progress=progress))


@dataclasses.dataclass(frozen=True)
class Derivation2D:
    r"""Exact derivative of a single-channel 2-D convolution, entry by entry, and its check.

    Every matrix is a ``sympy.ImmutableMatrix`` of exact expressions in the Symbols ``X_i_j``
    (input, ``input_shape``), ``F_i_j`` (filter, ``filter_shape``) and ``G_i_j`` (= dL/dO,
    ``output_shape``), 0-based:

    * ``O``: the output, :math:`O_{ij} = \sum_{uv} X_{s_h i + d_h u - lo_h,\, s_w j + d_w v - lo_w}
      F_{uv}` (padding entries are zero);
    * ``L``: :math:`\sum_{ij} G_{ij} O_{ij}`;
    * ``dL_dX`` (``input_shape``), ``dL_dF`` (``filter_shape``): from differentiating L;
    * ``padded_G``: G spread by the stride and zero-padded, as the full convolution sees it;
      ``rotated_F``: the dilated filter rotated by 180 degrees; ``rule_dL_dX``: ``rotated_F``
      slid over ``padded_G`` (the full convolution of G with rot180(F));
    * ``padded_X``: X padded as the dL/dF correlation sees it; ``spread_G``: G spread by the
      stride; ``rule_dL_dF``: the valid correlation of ``padded_X`` with ``spread_G``, window
      stride = dilation;
    * ``verified``: both differences expand to exactly 0; ``mismatches`` names any entry that
      does not.
    """

    input_shape: tuple[int, int]
    filter_shape: tuple[int, int]
    output_shape: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[tuple[int, int], tuple[int, int]]
    dilation: tuple[int, int]
    X: sympy.ImmutableMatrix
    F: sympy.ImmutableMatrix
    G: sympy.ImmutableMatrix
    O: sympy.ImmutableMatrix
    L: sympy.Expr
    dL_dX: sympy.ImmutableMatrix
    dL_dF: sympy.ImmutableMatrix
    padded_G: sympy.ImmutableMatrix
    rotated_F: sympy.ImmutableMatrix
    padded_X: sympy.ImmutableMatrix
    spread_G: sympy.ImmutableMatrix
    rule_dL_dX: sympy.ImmutableMatrix
    rule_dL_dF: sympy.ImmutableMatrix
    mismatches: tuple[str, ...]

    @property
    def verified(self) -> bool:
        """True when both differences expand to exactly 0, entry by entry."""
        return not self.mismatches


def _spatial_name(letter: str, index: Index) -> str:
    return "_".join([letter, *map(str, index[2:])])


def _matrix(entries: dict[Index, sympy.Expr], shape: tuple[int, ...]) -> sympy.ImmutableMatrix:
    rows, cols = shape[-2:]
    return sympy.ImmutableMatrix(rows, cols, [entries.get((0, 0, i, j), sympy.S.Zero)
                                              for i in range(rows) for j in range(cols)])


def _grid_matrix(grid: Grid) -> sympy.ImmutableMatrix:
    return _matrix({(0, 0, *index): value for index, value in grid.entries.items()}, grid.shape)


def _pair(name: str, value: object) -> tuple[int, int]:
    """One int for both axes (NumPy integers too), or a pair (a sequence or 1-D array)."""
    if is_int(value):
        value = (value, value)
    elif isinstance(value, str | bytes) or not (isinstance(value, Sequence)
                                                or getattr(value, "ndim", None) == 1):
        raise TypeError(f"{name} (={value!r}) must be an int or a sequence of 2 ints")
    return int_tuple(name, value, 2, minimum=1)


def derive_2d(
    input_shape: Sequence[int] = (3, 3),
    filter_shape: Sequence[int] = (2, 2),
    stride: int | Sequence[int] = 1,
    padding: str | Sequence[tuple[int, int]] = "VALID",
    dilation: int | Sequence[int] = 1,
    *,
    progress: Progress | None = None,
    rule: Rule = ROTATED_FILTER_RULE,
) -> Derivation2D:
    r"""Derive dL/dX and dL/dF of a single-channel 2-D convolution exactly, and check the rule.

    ``input_shape`` ``(H, W)``, ``filter_shape`` ``(KH, KW)``; ``stride`` and ``dilation`` (of
    the filter) are one int or one per axis; ``padding`` is ``'VALID'``, ``'SAME'``,
    ``'SAME_LOWER'`` or ``((lo, hi), (lo, hi))``. The convolution is the cross-correlation of
    ``jax.lax.conv_general_dilated`` (no filter flip in the forward pass). ``progress(stage, done,
    total)`` is called during long runs (a 64x64 input takes seconds). Sizes are ints (NumPy
    integers too) or sequences / 1-D arrays of them.

    Raises ``TypeError`` / ``ValueError`` naming the argument and its value for malformed
    arguments, and ``ValueError`` before any SymPy work for a case too big to derive entry by
    entry: more than ``derive.MAX_PRODUCTS`` (2**22) products in the forward pass (output entries
    x filter taps; a 205x205 input with a 5x5 filter has 2**20 and takes about a minute, the
    limit about 4 minutes and 4 GB) or more than ``derive.MAX_CELLS`` (2**20) cells in the
    padded arrays (a 1024x1024 input; minutes and gigabytes with a small filter).
    :func:`derive.general_proof` covers every size.

    >>> d = derive_2d((3, 4), (2, 2), stride=(1, 2), padding=((0, 0), (1, 0)))
    >>> d.output_shape, d.verified
    ((2, 2), True)
    >>> d.O[0, 0]
    F_0_1*X_0_0 + F_1_1*X_1_0
    >>> d.padded_G
    Matrix([
    [    0, 0,     0, 0, 0],
    [G_0_0, 0, G_0_1, 0, 0],
    [G_1_0, 0, G_1_1, 0, 0],
    [    0, 0,     0, 0, 0]])
    >>> d.rule_dL_dX[1, 2], d.dL_dX[1, 2]
    (F_0_1*G_1_1 + F_1_1*G_0_1, F_0_1*G_1_1 + F_1_1*G_0_1)
    """
    check_callables(progress, rule)
    strides, dilations = _pair("stride", stride), _pair("dilation", dilation)
    shapes = {name: as_sequence(name, shape, "a (rows, columns) pair of ints")
              for name, shape in (("input_shape", input_shape), ("filter_shape", filter_shape))}
    if any(len(shape) != 2 for shape in shapes.values()):
        raise ValueError(f"input_shape (={shapes['input_shape']}) and filter_shape "
                         f"(={shapes['filter_shape']}) must each have 2 entries (rows, columns)")
    sizes = {name: int_tuple(name, shape, 2, minimum=1) for name, shape in shapes.items()}
    arguments = (f"input_shape (={sizes['input_shape']}), filter_shape (={sizes['filter_shape']}), "
                 f"stride (={strides}), padding (={{padding}}) and dilation (={dilations})")
    geometry = make_geometry((1, 1, *sizes["input_shape"]), (1, 1, *sizes["filter_shape"]),
                             strides, padding, None, dilations, 1, 1, arguments=arguments)
    sides = compute(geometry, name=_spatial_name, rule=rule, progress=progress)
    return _derivation_2d(sides)


def _derivation_2d(sides: Sides) -> Derivation2D:
    geometry, rule = sides.geometry, sides.rule
    axes = geometry.axes
    return Derivation2D(
        input_shape=geometry.lhs_shape[2:],
        filter_shape=geometry.rhs_shape[2:],
        output_shape=geometry.out_shape[2:],
        stride=tuple(axis.s for axis in axes),
        padding=tuple((axis.lo, axis.hi) for axis in axes),
        dilation=tuple(axis.d for axis in axes),
        X=_matrix(sides.X, geometry.lhs_shape),
        F=_matrix(sides.F, geometry.rhs_shape),
        G=_matrix(sides.G, geometry.out_shape),
        O=_matrix(sides.O, geometry.out_shape),
        L=sides.L,
        dL_dX=_matrix(sides.dL_dX, geometry.lhs_shape),
        dL_dF=_matrix(sides.dL_dF, geometry.rhs_shape),
        padded_G=_grid_matrix(rule.padded_G[(0, 0)]),
        rotated_F=_grid_matrix(rule.rotated_F[(0, 0)]),
        padded_X=_grid_matrix(rule.padded_X[(0, 0)]),
        spread_G=_grid_matrix(rule.spread_G[(0, 0)]),
        rule_dL_dX=_matrix(sides.rule_dL_dX, geometry.lhs_shape),
        rule_dL_dF=_matrix(sides.rule_dL_dF, geometry.rhs_shape),
        mismatches=sides.mismatches,
    )


def seed_case(*, rule: Rule = ROTATED_FILTER_RULE) -> Derivation2D:
    r"""The tutorial's case: a 3x3 input X, a 2x2 filter F, stride 1, no padding.

    >>> d = seed_case()
    >>> d.O[0, 0]
    F_0_0*X_0_0 + F_0_1*X_0_1 + F_1_0*X_1_0 + F_1_1*X_1_1
    >>> d.dL_dF[0, 0]
    G_0_0*X_0_0 + G_0_1*X_0_1 + G_1_0*X_1_0 + G_1_1*X_1_1
    >>> d.padded_G
    Matrix([
    [0,     0,     0, 0],
    [0, G_0_0, G_0_1, 0],
    [0, G_1_0, G_1_1, 0],
    [0,     0,     0, 0]])
    >>> d.rotated_F
    Matrix([
    [F_1_1, F_1_0],
    [F_0_1, F_0_0]])
    >>> d.dL_dX[1, 1]
    F_0_0*G_1_1 + F_0_1*G_1_0 + F_1_0*G_0_1 + F_1_1*G_0_0
    >>> d.verified
    True
    """
    return derive_2d((3, 3), (2, 2), rule=rule)

