"""Batching rule of the convolution primitive: fold the vmapped axis into the convolution's own axes.

As ``jax.lax`` does for its convolution, no loop: a vmapped ``lhs`` joins the batch axis, a vmapped
``rhs`` joins the output features, and when both are vmapped each vmapped entry becomes one more
feature group (or batch group). Groups stay outermost within the axis they occupy, so each vmapped
entry only ever meets its own slice of the other operand and the result is exact.
"""

import dataclasses
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from impl._config import ConvConfig

ConvFn = Callable[[jax.Array, jax.Array, ConvConfig], jax.Array]


def _split_axis(array: jax.Array, axis: int, size: int) -> jax.Array:
    """Split ``axis`` (length ``size * rest``) into two axes ``(size, rest)`` starting at ``axis``."""
    shape = list(array.shape)
    shape[axis:axis + 1] = [size, shape[axis] // size]
    return jnp.reshape(array, shape)


def _merge_axis(array: jax.Array, src: int, dst: int) -> jax.Array:
    """Fold axis ``src`` into axis ``dst`` (numbered once ``src`` is removed) as its major part."""
    shape = list(np.delete(array.shape, src))
    shape[dst] *= array.shape[src]
    return jnp.reshape(jnp.moveaxis(array, src, dst), shape)


def _both_batched(
    conv: ConvFn, lhs: jax.Array, rhs: jax.Array, config: ConvConfig
) -> tuple[jax.Array, int]:
    """``lhs`` and ``rhs`` vmapped on axis 0: entry b of the vmap is group b of one convolution.

    Without batch groups, lhs features ``(B·C)`` meet rhs out-features ``(B·O)`` in ``B·G`` feature
    groups; with batch groups, the lhs batch ``(B·N)`` is split into ``B·G`` batch groups instead.
    """
    lhs_spec, rhs_spec, out_spec = config.dimension_numbers
    size = lhs.shape[0]
    if config.batch_group_count > 1:
        lhs = _merge_axis(lhs, 0, lhs_spec[0])
        config = dataclasses.replace(config, batch_group_count=config.batch_group_count * size)
    else:
        lhs = _merge_axis(lhs, 0, lhs_spec[1])
        config = dataclasses.replace(config, feature_group_count=config.feature_group_count * size)
    out = conv(lhs, _merge_axis(rhs, 0, rhs_spec[0]), config)
    return _split_axis(out, out_spec[1], size), out_spec[1]


def _lhs_batched(
    conv: ConvFn, lhs: jax.Array, rhs: jax.Array, config: ConvConfig
) -> tuple[jax.Array, int]:
    """``lhs`` vmapped on axis 0: the vmap joins the batch axis, inside each batch group."""
    lhs_spec, _, out_spec = config.dimension_numbers
    size, groups = lhs.shape[0], config.batch_group_count
    if groups == 1:
        lhs = _merge_axis(lhs, 0, lhs_spec[0])
    else:
        # batch (G·N) -> (G, N) -> (G, B·N) -> (G·B·N): group g still holds only its own rows.
        lhs = _split_axis(lhs, lhs_spec[0] + 1, groups)
        lhs = _merge_axis(_merge_axis(lhs, 0, lhs_spec[0] + 1), lhs_spec[0], lhs_spec[0])
    out = conv(lhs, rhs, config)
    return _split_axis(out, out_spec[0], size), out_spec[0]


def _rhs_batched(
    conv: ConvFn, lhs: jax.Array, rhs: jax.Array, config: ConvConfig
) -> tuple[jax.Array, int]:
    """``rhs`` vmapped on axis 0: the vmap joins the output features, inside each group."""
    _, rhs_spec, out_spec = config.dimension_numbers
    size = rhs.shape[0]
    groups = max(config.feature_group_count, config.batch_group_count)
    # out-features (G·O) -> (G, O) -> (G, B·O) -> (G·B·O), and back on the result.
    rhs = _split_axis(rhs, rhs_spec[0] + 1, groups)
    rhs = _merge_axis(_merge_axis(rhs, 0, rhs_spec[0] + 1), rhs_spec[0], rhs_spec[0])
    out = _split_axis(conv(lhs, rhs, config), out_spec[1], groups)
    out = _split_axis(out, out_spec[1] + 1, size)
    return _merge_axis(out, out_spec[1], out_spec[1] + 1), out_spec[1]


def batch_rule(
    conv: ConvFn,
    args: Sequence[jax.Array],
    dims: Sequence[int | None],
    *,
    config: ConvConfig,
) -> tuple[jax.Array, int | None]:
    """``jax.vmap`` of ``conv(lhs, rhs, config)`` with ``lhs``/``rhs`` vmapped on ``dims``.

    ``conv`` is the primitive's bind; ``dims`` holds each operand's vmapped axis or ``None``.
    Returns the result and its vmapped axis, as ``jax.interpreters.batching`` expects.
    """
    lhs, rhs = args
    lhs_dim, rhs_dim = dims
    if lhs_dim is None and rhs_dim is None:
        return conv(lhs, rhs, config), None
    lhs = lhs if lhs_dim is None else jnp.moveaxis(lhs, lhs_dim, 0)
    rhs = rhs if rhs_dim is None else jnp.moveaxis(rhs, rhs_dim, 0)
    size = (lhs if lhs_dim is not None else rhs).shape[0]
    if size == 0:
        return _empty(conv, lhs, rhs, lhs_dim is not None, rhs_dim is not None, config), 0
    if lhs_dim is not None and rhs_dim is not None:
        return _both_batched(conv, lhs, rhs, config)
    if lhs_dim is not None:
        return _lhs_batched(conv, lhs, rhs, config)
    return _rhs_batched(conv, lhs, rhs, config)


def _empty(
    conv: ConvFn, lhs: jax.Array, rhs: jax.Array, lhs_batched: bool, rhs_batched: bool,
    config: ConvConfig,
) -> jax.Array:
    """The result of a vmap over zero entries (folding an empty axis would make zero groups)."""
    unbatched = [jax.ShapeDtypeStruct(array.shape[batched:], array.dtype)
                 for array, batched in ((lhs, lhs_batched), (rhs, rhs_batched))]
    out = jax.eval_shape(lambda lhs, rhs: conv(lhs, rhs, config), *unbatched)
    return jnp.zeros((0, *out.shape), out.dtype)
