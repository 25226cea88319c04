"""Validation of user arguments into one hashable, fully explicit convolution configuration."""

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax import lax

from impl._padding import PADDING_STRINGS, Pads, conv_output_shape, dilate_shape, padtype_to_pads
from impl._validation import as_index, as_sequence, int_pair


@dataclasses.dataclass(frozen=True)
class ConvConfig:
    """Every option of ``lax.conv_general_dilated`` in explicit form (padding as pairs).

    Hashable, so it can be a ``nondiff_argnums`` argument of ``jax.custom_vjp`` and a primitive
    parameter.
    """

    window_strides: tuple[int, ...]
    padding: Pads
    lhs_dilation: tuple[int, ...]
    rhs_dilation: tuple[int, ...]
    dimension_numbers: lax.ConvDimensionNumbers
    feature_group_count: int = 1
    batch_group_count: int = 1
    precision: Any = None
    preferred_element_type: Any = None

    def as_lax_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``jax.lax.conv_general_dilated``."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}


def _int_tuple(name: str, value: object, n_spatial: int, *, default: int | None) -> tuple[int, ...]:
    """``value`` as a tuple of ``n_spatial`` positive ints (``None`` means all ``default``)."""
    if value is None and default is not None:
        return (default,) * n_spatial
    value = as_sequence(value)
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise TypeError(f"{name} (={value!r}) must be a sequence of {n_spatial} positive ints")
    if len(value) != n_spatial:
        raise ValueError(
            f"{name} (={tuple(value)!r}) must have one entry per spatial dimension (={n_spatial})"
        )
    entries = []
    for entry in value:
        integer = as_index(entry)
        if integer is None:
            raise TypeError(f"{name} (={tuple(value)!r}) must contain ints, got {entry!r}")
        if integer <= 0:
            raise ValueError(f"{name} (={tuple(value)!r}) must be positive, got {integer}")
        entries.append(integer)
    return tuple(entries)


def _explicit_padding(padding: object, n_spatial: int) -> Pads | str:
    if isinstance(padding, str):
        if padding.upper() not in PADDING_STRINGS:
            raise ValueError(
                f"padding (={padding!r}) must be one of {PADDING_STRINGS} or (low, high) pairs"
            )
        return padding.upper()
    padding = as_sequence(padding)
    if not isinstance(padding, Sequence):
        raise TypeError(f"padding (={padding!r}) must be a string or a sequence of (low, high) pairs")
    if len(padding) != n_spatial:
        raise ValueError(
            f"padding (={tuple(padding)!r}) must have one (low, high) pair per spatial dimension "
            f"(={n_spatial})"
        )
    pairs = tuple(map(int_pair, padding))
    if None in pairs:
        raise TypeError(f"padding (={tuple(padding)!r}) must contain (low, high) int pairs")
    return pairs


def _dimension_numbers(
    lhs_shape: tuple[int, ...], rhs_shape: tuple[int, ...], dimension_numbers: object
) -> lax.ConvDimensionNumbers:
    if isinstance(dimension_numbers, lax.ConvDimensionNumbers):
        return _explicit_dimension_numbers(lhs_shape, rhs_shape, dimension_numbers)
    try:
        return lax.conv_dimension_numbers(lhs_shape, rhs_shape, dimension_numbers)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"dimension_numbers (={dimension_numbers!r}) do not fit lhs of shape {lhs_shape} and "
            f"rhs of shape {rhs_shape}: {err}"
        ) from None


def _explicit_dimension_numbers(
    lhs_shape: tuple[int, ...], rhs_shape: tuple[int, ...], dimension_numbers: Any
) -> lax.ConvDimensionNumbers:
    """A ``lax.ConvDimensionNumbers`` checked and made of int tuples (so hashable).

    Each of its three specs must be a permutation of the operands' axes, ``range(ndim)``, its
    entries ints as ``operator.index`` reads them (lists, NumPy ints and arrays are fine). lax takes
    the object unchecked and fails later, with an ``IndexError``, a ``zip`` error, an XLA verifier
    error (a repeated axis) or "unhashable type" (lists).
    """
    ndim = len(lhs_shape)
    specs = []
    for name, spec in zip(("lhs_spec", "rhs_spec", "out_spec"), dimension_numbers, strict=True):
        spec = as_sequence(spec)
        axes = (tuple(map(as_index, spec))
                if isinstance(spec, Sequence) and not isinstance(spec, str) else (None,))
        if None in axes or sorted(axes) != list(range(ndim)):
            raise ValueError(
                f"dimension_numbers (={dimension_numbers!r}) must hold three permutations of the "
                f"axes of lhs of shape {lhs_shape} and rhs of shape {rhs_shape}, "
                f"{tuple(range(ndim))} in some order, as ints; its {name} (={spec!r}) is not one"
            )
        specs.append(axes)
    return lax.ConvDimensionNumbers(*specs)


def _check_crop(in_spatial: tuple[int, ...], pads: Pads, lhs_dilation: tuple[int, ...]) -> None:
    """No padding crops more than the whole (lhs-dilated) input off an axis, as lax requires.

    Cropping it all (an empty padded input) or leaving less than a window is not an error: lax
    returns an empty output there, and so do both ops.
    """
    for axis, (size, (lo, hi)) in enumerate(zip(dilate_shape(in_spatial, lhs_dilation), pads,
                                                strict=True)):
        if size + lo + hi < 0:
            raise ValueError(
                f"padding (={pads!r}) crops {-(lo + hi)} entries off spatial axis {axis} in all, "
                f"more than the {size} the input has there after lhs_dilation (={lhs_dilation}) "
                "(lax: negative padding larger than the size of the corresponding dimension)"
            )


def _check_ranks(lhs_shape: tuple[int, ...], rhs_shape: tuple[int, ...]) -> None:
    if len(lhs_shape) != len(rhs_shape):
        raise ValueError(
            f"lhs rank (={len(lhs_shape)}, shape {lhs_shape}) must equal rhs rank "
            f"(={len(rhs_shape)}, shape {rhs_shape})"
        )
    if len(lhs_shape) < 2:
        raise ValueError(
            f"lhs and rhs rank (={len(lhs_shape)}) must be at least 2 (batch/feature axes)"
        )


def _check_dtypes(lhs: Any, rhs: Any) -> None:
    lhs_dtype, rhs_dtype = np.dtype(lhs.dtype), np.dtype(rhs.dtype)
    if lhs_dtype != rhs_dtype:
        raise TypeError(f"lhs dtype (={lhs_dtype}) must equal rhs dtype (={rhs_dtype})")


def _preferred_element_type(preferred_element_type: object) -> Any:
    if preferred_element_type is None:
        return None
    try:
        return jax.dtypes.canonicalize_dtype(preferred_element_type)
    except TypeError as err:
        raise TypeError(
            f"preferred_element_type (={preferred_element_type!r}) must be a dtype or None: {err}"
        ) from None


def _check_groups(
    lhs_shape: tuple[int, ...],
    rhs_shape: tuple[int, ...],
    dnums: lax.ConvDimensionNumbers,
    feature_group_count: object,
    batch_group_count: object,
) -> tuple[int, int]:
    """The two group counts, checked against each other and the operands, as ints."""
    counts = []
    for name, count in (("feature_group_count", feature_group_count),
                        ("batch_group_count", batch_group_count)):
        integer = as_index(count)
        if integer is None:
            raise TypeError(f"{name} (={count!r}) must be a positive int")
        if integer <= 0:
            raise ValueError(f"{name} (={count}) must be positive")
        counts.append(integer)
    feature_group_count, batch_group_count = counts
    if feature_group_count > 1 and batch_group_count > 1:
        raise ValueError(
            f"feature_group_count (={feature_group_count}) and batch_group_count "
            f"(={batch_group_count}) cannot both exceed 1"
        )
    batch, in_features = lhs_shape[dnums.lhs_spec[0]], lhs_shape[dnums.lhs_spec[1]]
    out_features, rhs_in_features = rhs_shape[dnums.rhs_spec[0]], rhs_shape[dnums.rhs_spec[1]]
    if in_features != rhs_in_features * feature_group_count:
        raise ValueError(
            f"lhs input features (={in_features}) must equal rhs input features "
            f"(={rhs_in_features}) times feature_group_count (={feature_group_count})"
        )
    for name, count in (("feature_group_count", feature_group_count),
                        ("batch_group_count", batch_group_count)):
        if out_features % count:
            raise ValueError(
                f"{name} (={count}) must divide rhs output features (={out_features})"
            )
    if batch % batch_group_count:
        raise ValueError(
            f"batch_group_count (={batch_group_count}) must divide the lhs batch size (={batch})"
        )
    return feature_group_count, batch_group_count


def make_config(
    lhs: Any,
    rhs: Any,
    window_strides: Sequence[int],
    padding: str | Sequence[tuple[int, int]],
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers: Any = None,
    feature_group_count: int = 1,
    batch_group_count: int = 1,
    precision: Any = None,
    preferred_element_type: Any = None,
) -> ConvConfig:
    """Validate the arguments of ``conv_general_dilated`` and return them in explicit form.

    Raises ``TypeError``/``ValueError`` naming the argument, the rule and the value, before any
    computation.
    """
    for name, array in (("lhs", lhs), ("rhs", rhs)):
        if not hasattr(array, "shape") or not hasattr(array, "dtype"):
            raise TypeError(f"{name} (={type(array).__name__}) must be an array")
    lhs_shape, rhs_shape = tuple(lhs.shape), tuple(rhs.shape)
    _check_ranks(lhs_shape, rhs_shape)
    _check_dtypes(lhs, rhs)
    dnums = _dimension_numbers(lhs_shape, rhs_shape, dimension_numbers)
    n_spatial = len(lhs_shape) - 2
    strides = _int_tuple("window_strides", window_strides, n_spatial, default=None)
    lhs_dil = _int_tuple("lhs_dilation", lhs_dilation, n_spatial, default=1)
    rhs_dil = _int_tuple("rhs_dilation", rhs_dilation, n_spatial, default=1)
    feature_group_count, batch_group_count = _check_groups(
        lhs_shape, rhs_shape, dnums, feature_group_count, batch_group_count)
    in_spatial = tuple(lhs_shape[i] for i in dnums.lhs_spec[2:])
    window = tuple(rhs_shape[i] for i in dnums.rhs_spec[2:])
    if any(k <= 0 for k in window):
        raise ValueError(f"the rhs window (={window}) must have a positive size along every "
                         "spatial dimension")
    pads = _explicit_padding(padding, n_spatial)
    if isinstance(pads, str):
        if any(dil > 1 for dil in lhs_dil):
            raise ValueError(
                f"padding (={padding!r}) must be explicit (low, high) pairs when lhs_dilation "
                f"(={lhs_dil}) exceeds 1, as in jax.lax.conv_general_dilated"
            )
        pads = padtype_to_pads(in_spatial, dilate_shape(window, rhs_dil), strides, pads)
    _check_crop(in_spatial, pads, lhs_dil)
    # A window larger than the padded input gives an empty output, as in lax (whose zero
    # gradients the rule returns: impl._rule).
    return ConvConfig(
        window_strides=strides,
        padding=pads,
        lhs_dilation=lhs_dil,
        rhs_dilation=rhs_dil,
        dimension_numbers=dnums,
        feature_group_count=feature_group_count,
        batch_group_count=batch_group_count,
        precision=tuple(precision) if isinstance(precision, list) else precision,
        preferred_element_type=_preferred_element_type(preferred_element_type),
    )


def spatial_shapes(
    config: ConvConfig, lhs_shape: Sequence[int], rhs_shape: Sequence[int]
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """(input, window, output) spatial sizes, in the order of the dimension numbers."""
    lhs_spec, rhs_spec, _ = config.dimension_numbers
    in_spatial = tuple(lhs_shape[i] for i in lhs_spec[2:])
    window = tuple(rhs_shape[i] for i in rhs_spec[2:])
    out_spatial = conv_output_shape(in_spatial, window, config.window_strides, config.padding,
                                    config.lhs_dilation, config.rhs_dilation)
    return in_spatial, window, out_spatial
