"""The rotated-filter rule: the backward pass of a convolution, built from convolutions.

This module holds the rule once. The ``jax.custom_vjp`` op (``impl._op``) and the primitive
(``impl.primitive``) both call these two functions, passing the convolution to build them from.
"""

from collections.abc import Callable, Sequence

import jax.numpy as jnp
import numpy as np
from jax import lax

from impl._config import ConvConfig
from impl._padding import lhs_cotangent_padding, rhs_cotangent_padding
from impl._partitioner import whole_axes

ConvFn = Callable[[jnp.ndarray, jnp.ndarray, ConvConfig], jnp.ndarray]


def _split_axis(array: jnp.ndarray, axis: int, groups: int) -> jnp.ndarray:
    """Split ``axis`` (size ``groups * rest``) into two axes ``(groups, rest)`` at ``axis``."""
    shape = list(array.shape)
    shape[axis:axis + 1] = [groups, shape[axis] // groups]
    return jnp.reshape(array, shape)


def _merge_axis_into(array: jnp.ndarray, src: int, dst: int) -> jnp.ndarray:
    """Fold axis ``src`` into axis ``dst`` (numbered after ``src`` is removed) as its major part."""
    moved = jnp.moveaxis(array, src, dst)
    shape = list(np.delete(array.shape, src))
    shape[dst] *= array.shape[src]
    return jnp.reshape(moved, shape)


def _swap_feature_axes(spec: Sequence[int]) -> tuple[int, ...]:
    """A dimension-number spec with its first two (batch/feature or out/in) roles exchanged."""
    return (spec[1], spec[0], *spec[2:])


def _spatial(shape: Sequence[int], spec: Sequence[int]) -> tuple[int, ...]:
    return tuple(shape[i] for i in spec[2:])


# dL/d(lhs): full convolution of the cotangent G with the 180°-rotated filter.
#
# Per spatial axis, the forward reads O[m] = Σ_t X̃[s·m + d·t] F[t], with X̃ the input dilated by
# a and padded by (lo, hi). Hence dL/dX̃[j] = Σ_t G̃[j - d·t] F[t] where G̃ is G dilated by s
# (G̃[s·m] = G[m], zeros between): a convolution of G̃ with F, i.e. a correlation of G̃ with
# rot180(F) = F[k-1-t]. As one lax convolution:
#   * flipped axes: every spatial axis of the filter is reversed (rev);
#   * swapped channels: the filter's in/out feature axes trade roles through dimension_numbers
#     (rhs spec (O, I, ...) -> (I, O, ...)); the cotangent's features are its input features;
#   * lhs_dilation = s (forward stride spreads G), window_strides = a (keep only rows of X̃ that
#     are real inputs), rhs_dilation = d (unchanged);
#   * padding low = d(k-1) - lo  (the full convolution's partial overlaps, less the forward's own
#     low pad), high = whatever makes the result as long as the dilated input
#     (``lhs_cotangent_padding``).
# Feature groups: each group g maps in-features I_g to out-features O_g, so the transpose maps O_g
# back to I_g: the filter's group axis moves from its out axis to its in axis (same group count).
# Batch groups: the forward summed batch group b into out-features O_b; the transpose spreads O_b
# back as feature groups and then moves the group axis from features back into the batch.
def lhs_cotangent(
    conv: ConvFn, cotangent: jnp.ndarray, rhs: jnp.ndarray, config: ConvConfig,
    lhs_shape: Sequence[int], lhs_dtype: np.dtype,
) -> jnp.ndarray:
    """dL/d(lhs) of ``conv(lhs, rhs, config)`` given the cotangent of its output."""
    lhs_spec, rhs_spec, out_spec = config.dimension_numbers
    if cotangent.size == 0:  # an empty output (a window larger than the padded input, say)
        return jnp.zeros(lhs_shape, lhs_dtype)
    groups = max(config.feature_group_count, config.batch_group_count)
    rotated_rhs = lax.rev(rhs, tuple(rhs_spec[2:]))
    if groups > 1:
        rotated_rhs = _merge_axis_into(_split_axis(rotated_rhs, rhs_spec[0], groups),
                                       rhs_spec[0], rhs_spec[1])
    padding = lhs_cotangent_padding(
        _spatial(lhs_shape, lhs_spec), _spatial(rhs.shape, rhs_spec), config.window_strides,
        _spatial(cotangent.shape, out_spec), config.padding, config.lhs_dilation,
        config.rhs_dilation)
    transposed = ConvConfig(
        window_strides=config.lhs_dilation,
        padding=padding,
        lhs_dilation=config.window_strides,
        rhs_dilation=config.rhs_dilation,
        dimension_numbers=lax.ConvDimensionNumbers(
            out_spec, _swap_feature_axes(rhs_spec), lhs_spec),
        feature_group_count=groups,
        batch_group_count=1,
        precision=config.precision,
        preferred_element_type=config.preferred_element_type,
    )
    grad = conv(cotangent, rotated_rhs.astype(cotangent.dtype), transposed).astype(lhs_dtype)
    if config.batch_group_count > 1:
        grad = _merge_axis_into(_split_axis(grad, lhs_spec[1], groups), lhs_spec[1], lhs_spec[0])
    return grad


# dL/d(rhs): valid correlation of the input with the cotangent.
#
# From the same index form, dL/dF[t] = Σ_m G[m] X̃[s·m + d·t]: for each filter tap t, the input
# read with step s and offset d·t, weighted by G. As one lax convolution with X as lhs and G as
# the "filter":
#   * the batch axis is contracted: lhs spec (N, C, ...) -> (C, N, ...) and G's spec
#     (N, O, ...) -> (O, N, ...) as a filter with in-features N, out-features O;
#   * window_strides = d (taps are d apart), rhs_dilation = s (G's entries are s apart),
#     lhs_dilation = a (unchanged);
#   * padding low = lo (same input alignment as the forward), high = exactly enough for k taps
#     (``rhs_cotangent_padding``).
# Groups trade places: per-group features of the forward become batch groups of this convolution
# (each output-feature group only sees its own input features), and forward batch groups become
# feature groups.
# Both operands' spatial axes are kept whole (``impl._partitioner.whole_axes``) where a jaxlib's
# SPMD partitioner would sum this convolution over replicas: a no-op in every other program.
def rhs_cotangent(
    conv: ConvFn, cotangent: jnp.ndarray, lhs: jnp.ndarray, config: ConvConfig,
    rhs_shape: Sequence[int], rhs_dtype: np.dtype,
) -> jnp.ndarray:
    """dL/d(rhs) of ``conv(lhs, rhs, config)`` given the cotangent of its output."""
    lhs_spec, rhs_spec, out_spec = config.dimension_numbers
    if cotangent.size == 0:
        return jnp.zeros(rhs_shape, rhs_dtype)
    padding = rhs_cotangent_padding(
        _spatial(lhs.shape, lhs_spec), _spatial(rhs_shape, rhs_spec), config.window_strides,
        _spatial(cotangent.shape, out_spec), config.padding, config.lhs_dilation,
        config.rhs_dilation)
    transposed = ConvConfig(
        window_strides=config.rhs_dilation,
        padding=padding,
        lhs_dilation=config.lhs_dilation,
        rhs_dilation=config.window_strides,
        dimension_numbers=lax.ConvDimensionNumbers(
            _swap_feature_axes(lhs_spec), _swap_feature_axes(out_spec),
            _swap_feature_axes(rhs_spec)),
        feature_group_count=config.batch_group_count,
        batch_group_count=config.feature_group_count,
        precision=config.precision,
        preferred_element_type=config.preferred_element_type,
    )
    lhs = whole_axes(lhs.astype(cotangent.dtype), lhs_spec[2:])
    cotangent = whole_axes(cotangent, out_spec[2:])
    return conv(lhs, cotangent, transposed).astype(rhs_dtype)
