"""The convolution op: lax forward (per-backend exact formulation), rotated-filter backward."""

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from impl import _formulations, _vma
from impl._config import ConvConfig, make_config
from impl._rule import lhs_cotangent, rhs_cotangent
from impl._sharding import result_sharding, with_result_sharding


def _forward_conv(lhs: jnp.ndarray, rhs: jnp.ndarray, config: ConvConfig) -> jnp.ndarray:
    # The same sums as lax.conv_general_dilated, in the formulation that is fastest for this
    # backend and case (on CPU: dense convolutions per group or block of channels, matrix
    # products, polyphase input dilation, 3-D folded to 2-D; elsewhere the native convolution):
    # see impl/_formulations.py.
    return _formulations.conv(lhs, rhs, config)


def _require_inexact(name: str, dtype: np.dtype) -> None:
    if not jnp.issubdtype(dtype, jnp.inexact):
        raise TypeError(
            f"{name} (dtype={dtype}) must be floating or complex to be differentiated"
        )


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def conv_with_rule(config: ConvConfig, lhs: jnp.ndarray, rhs: jnp.ndarray) -> jnp.ndarray:
    """``lax.conv_general_dilated`` under an explicit ``config``, differentiated by the rule."""
    return _forward_conv(lhs, rhs, config)


def _conv_fwd(
    config: ConvConfig, lhs: jnp.ndarray, rhs: jnp.ndarray
) -> tuple[jnp.ndarray, tuple[jnp.ndarray, jnp.ndarray]]:
    # The primal through the op itself, so that an outer derivative of this forward pass (grad of
    # grad, jacrev of jacrev) also takes the rule, never JAX's autodiff of the convolution.
    return conv_with_rule(config, lhs, rhs), (lhs, rhs)


def _conv_bwd(
    config: ConvConfig, residuals: tuple[jnp.ndarray, jnp.ndarray], cotangent: jnp.ndarray
) -> tuple[jnp.ndarray, jnp.ndarray]:
    lhs, rhs = residuals
    _require_inexact("lhs", lhs.dtype)
    _require_inexact("rhs", rhs.dtype)
    # The rule's own convolutions are this op again, so higher reverse-mode derivatives are the
    # rule applied to the rule.
    conv = _rule_conv
    cotangent = _materialized(cotangent)

    def input_gradient(cotangent: jnp.ndarray) -> jnp.ndarray:
        return lhs_cotangent(conv, cotangent, rhs, config, lhs.shape, lhs.dtype)

    def filter_gradient() -> jnp.ndarray:
        return rhs_cotangent(conv, cotangent, lhs, config, rhs.shape, rhs.dtype)

    if _formulations.filter_gradient_first(lhs.shape, rhs.shape, config, lhs.dtype):
        rhs_grad = filter_gradient()
        lhs_grad = input_gradient(_after(rhs_grad, cotangent))
    else:
        lhs_grad, rhs_grad = input_gradient(cotangent), filter_gradient()
    # Under shard_map, an operand that varies over fewer mesh axes than the output (a filter
    # replicated over a data-parallel axis) gets the sum of the per-device cotangents.
    return _vma.sum_to_type_of(lhs_grad, lhs), _vma.sum_to_type_of(rhs_grad, rhs)


def _after(first: jnp.ndarray, array: jnp.ndarray) -> jnp.ndarray:
    # On CPU, ``array`` only once ``first`` is computed (``_formulations.filter_gradient_first``):
    # an optimization barrier's results wait for all its operands (in the depthwise step XLA then
    # runs the filter gradient's reduction before the input gradient's pad). Other backends keep
    # their own schedule.
    return jax.lax.platform_dependent(
        first, array, cpu=lambda a, b: jax.lax.optimization_barrier((a, b))[1],
        default=lambda a, b: b)


def _materialized(cotangent: jnp.ndarray) -> jnp.ndarray:
    # Computed once on CPU before the rule's convolutions read it (see _formulations.materialize).
    # Measured on XLA:CPU (benchmarks/README.md): for 32- and 64-bit cotangents this saves up to
    # half the gradient's time (depthwise 69 -> 36 ms, dense 3x3 0.98 -> 0.92 of native); for
    # 16-bit ones it cost 11-19% on dense convolutions and saved nothing elsewhere, so those are
    # left to XLA.
    if cotangent.size == 0 or cotangent.dtype.itemsize < 4:
        return cotangent
    return jax.lax.platform_dependent(cotangent, cpu=_formulations.materialize,
                                      default=lambda array: array)


def _rule_conv(lhs: jnp.ndarray, rhs: jnp.ndarray, config: ConvConfig) -> jnp.ndarray:
    return conv_with_rule(config, lhs, rhs)


conv_with_rule.defvjp(_conv_fwd, _conv_bwd)


def conv_general_dilated(
    lhs: jax.typing.ArrayLike,
    rhs: jax.typing.ArrayLike,
    window_strides: Sequence[int],
    padding: str | Sequence[tuple[int, int]],
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers: Any = None,
    feature_group_count: int = 1,
    batch_group_count: int = 1,
    precision: Any = None,
    preferred_element_type: Any = None,
    out_sharding: NamedSharding | PartitionSpec | None = None,
) -> jax.Array:
    r"""``jax.lax.conv_general_dilated`` whose gradient is the rotated-filter rule.

    Same signature, defaults and result as ``jax.lax.conv_general_dilated``; see its documentation
    for the meaning of each argument. With the default ``dimension_numbers`` the layouts are

    * ``lhs``: ``(batch, in_features, *in_spatial)``,
    * ``rhs``: ``(out_features, in_features // feature_group_count, *window)``,
    * result: ``(batch // batch_group_count, out_features, *out_spatial)``.

    ``out_sharding`` (a ``NamedSharding``, a ``PartitionSpec`` or ``None``) is the result's sharding
    under a mesh with explicit axes, as in lax: the result's type (``jax.typeof(out).sharding``),
    the values accepted and the errors raised are lax's, and each operand's gradient has its
    operand's sharding (``impl/_sharding.py``).

    Reverse-mode derivatives use a ``jax.custom_vjp`` whose backward pass is
    :math:`\partial L/\partial X = G \ast \mathrm{rot180}(F)` (full convolution) and
    :math:`\partial L/\partial F = X \star G` (valid correlation), generalised to strides,
    padding, dilations, groups and layouts (see ``impl/_rule.py``).

    Raises ``TypeError``/``ValueError`` on bad arguments before any computation (and for
    ``out_sharding``, lax's own errors, ``ShardingTypeError`` included).

    >>> import jax.numpy as jnp
    >>> x = jnp.arange(9.0).reshape(1, 1, 3, 3)
    >>> f = jnp.ones((1, 1, 2, 2))
    >>> conv_general_dilated(x, f, (1, 1), "VALID")[0, 0].tolist()
    [[8.0, 12.0], [20.0, 24.0]]
    """
    lhs, rhs = jnp.asarray(lhs), jnp.asarray(rhs)
    config = make_config(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                         dimension_numbers, feature_group_count, batch_group_count, precision,
                         preferred_element_type)
    sharding = result_sharding(lhs, rhs, config, out_sharding)
    return with_result_sharding(functools.partial(conv_with_rule, config), lhs, rhs, sharding)


def conv2d(x: jax.typing.ArrayLike, f: jax.typing.ArrayLike) -> jax.Array:
    """The tutorial's op: valid cross-correlation of a 2-D input with a 2-D filter.

    ``x``: ``(H, W)``; ``f``: ``(kh, kw)`` with ``kh <= H`` and ``kw <= W``; result
    ``(H - kh + 1, W - kw + 1)`` with ``O[h, w] = sum(x[h:h+kh, w:w+kw] * f)``. Gradients use the
    rotated-filter rule.

    >>> import jax.numpy as jnp
    >>> conv2d(jnp.arange(9.0).reshape(3, 3), jnp.eye(2)).tolist()
    [[4.0, 6.0], [10.0, 12.0]]
    """
    x, f = jnp.asarray(x), jnp.asarray(f)
    for name, array in (("x", x), ("f", f)):
        if array.ndim != 2:
            raise ValueError(f"{name} (shape={array.shape}) must be 2-D")
    return conv_general_dilated(x[None, None], f[None, None], (1, 1), "VALID")[0, 0]
