r"""The convolution as a JAX primitive: forward mode too, reverse mode still the rotated-filter rule.

``jax.custom_vjp`` functions cannot be differentiated in forward mode, so ``jax.jvp``,
``jax.jacfwd``, ``jax.hessian`` and Hessian-vector products fail on ``impl.conv_general_dilated``
(jax-ml/jax#16049). This module offers the same op as a primitive, ``conv_general_dilated_p``,
with every rule JAX asks of one:

* abstract evaluation: the native ``conv_general_dilated_p``'s (``jax.extend.core.primitives``);
* JVP: the op is bilinear, so :math:`d(X \star F) = dX \star F + X \star dF`, each term a bind of
  this primitive (so every order of derivative is again this primitive); symbolic-zero tangents
  are skipped;
* transpose: the rotated-filter rule, ``impl._rule.lhs_cotangent`` / ``rhs_cotangent`` built from
  this primitive (the same two functions the ``custom_vjp`` op calls);
* batching: the vmapped axis folded into the batch or feature axes (``impl._primitive_batching``);
* lowering and impl: the native ``jax.lax.conv_general_dilated`` on every backend; on CPU, with
  the negative padding of undilated axes taken off the input first (``impl._formulations.native``:
  XLA:CPU's own kernel reads outside its input there, openxla/xla#48713). With jaxlib before
  0.12.1, whose SPMD partitioner gets batch groups wrong, a convolution with batch groups (the
  filter gradient of a grouped one) in a program that spans several devices is one dense
  convolution per group (``impl._partitioner``); eager operands on several devices are compiled
  through that lowering. With those releases the filter gradient's operands also keep their
  spatial axes whole in such programs (``impl._partitioner.whole_axes``, called by the rule).
"""

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.extend.core import Primitive
from jax.extend.core import primitives as lax_primitives
from jax.interpreters import ad, batching, mlir
from jax.sharding import NamedSharding, PartitionSpec

from impl import _formulations, _partitioner, _rule, _vma
from impl._config import ConvConfig, make_config
from impl._primitive_batching import batch_rule
from impl._sharding import result_sharding, with_result_sharding

conv_general_dilated_p = Primitive("convgrad_conv_general_dilated")


def _bind(lhs: jax.Array, rhs: jax.Array, config: ConvConfig) -> jax.Array:
    """This primitive as a ``conv(lhs, rhs, config)`` function, the form the rule builds from.

    Under ``shard_map`` both operands are first typed as varying over the same mesh axes, as lax
    does for its own convolution; JAX transposes that cast into the sum over devices.
    """
    lhs, rhs = _vma.to_common_type(lhs, rhs)
    return conv_general_dilated_p.bind(lhs, rhs, config=config)


def _lowering(dense_conv: _partitioner.DenseConv) -> Callable[..., Sequence[Any]]:
    """The lowering rule that computes this primitive as ``dense_conv(lhs, rhs, config)``, or,
    where the SPMD partitioner would get its batch groups wrong (``impl._partitioner``), as one
    ``dense_conv`` per batch group. The choice is made in Python for the program being lowered,
    so a program on one device is exactly what it was without that workaround."""

    def conv(lhs: jax.Array, rhs: jax.Array, *, config: ConvConfig) -> jax.Array:
        return dense_conv(lhs, rhs, config)

    def per_batch_group(lhs: jax.Array, rhs: jax.Array, *, config: ConvConfig) -> jax.Array:
        return _formulations.per_group(lhs, rhs, config, dense_conv)

    def lower(ctx: mlir.LoweringRuleContext, lhs: Any, rhs: Any, *, config: ConvConfig
              ) -> Sequence[Any]:
        split = _partitioner.splits_batch_groups(config, ctx.module_context.axis_context)
        return mlir.lower_fun(per_batch_group if split else conv, multiple_results=False)(
            ctx, lhs, rhs, config=config)

    return lower


@functools.partial(jax.jit, static_argnames="config")
def _compiled(lhs: jax.Array, rhs: jax.Array, *, config: ConvConfig) -> jax.Array:
    return conv_general_dilated_p.bind(lhs, rhs, config=config)


def _impl(lhs: jax.Array, rhs: jax.Array, *, config: ConvConfig) -> jax.Array:
    """An eager bind: operands on one device run the native convolution as before; operands that
    span several devices compile the bind as one program (as JAX applies its own primitives), so
    that it takes ``_lowering``'s choice for a partitioned program."""
    devices = {device for operand in (lhs, rhs)
               for device in getattr(getattr(operand, "sharding", None), "device_set", ())}
    if len(devices) > 1:
        return _compiled(lhs, rhs, config=config)
    return _formulations.native_per_backend(lhs, rhs, config)


def _abstract_eval(
    lhs: jax.core.ShapedArray, rhs: jax.core.ShapedArray, *, config: ConvConfig
) -> jax.core.ShapedArray:
    """The native primitive's abstract evaluation: its shape, dtype, weak-type and sharding rules
    and its errors (e.g. a narrowing ``preferred_element_type``), so the types are lax's exactly."""
    out, _ = lax_primitives.conv_general_dilated_p.abstract_eval(
        lhs, rhs, **config.as_lax_kwargs(), out_sharding=None)
    return out


def _transpose_lhs(
    cotangent: jax.Array, lhs: Any, rhs: jax.Array, *, config: ConvConfig
) -> jax.Array:
    """dL/d(lhs): ``lhs`` is the undefined primal (only its ``aval`` is known)."""
    return _rule.lhs_cotangent(_bind, cotangent, rhs, config, lhs.aval.shape, lhs.aval.dtype)


def _transpose_rhs(
    cotangent: jax.Array, lhs: jax.Array, rhs: Any, *, config: ConvConfig
) -> jax.Array:
    """dL/d(rhs): ``rhs`` is the undefined primal (only its ``aval`` is known)."""
    return _rule.rhs_cotangent(_bind, cotangent, lhs, config, rhs.aval.shape, rhs.aval.dtype)


conv_general_dilated_p.def_impl(_impl)
conv_general_dilated_p.def_abstract_eval(_abstract_eval)
# Bilinear: the JVP is bind(dX, F) + bind(X, dF) (symbolic-zero tangents skipped), and each
# argument's transpose is the rotated-filter rule, called through the functions above.
ad.defbilinear(conv_general_dilated_p, _transpose_lhs, _transpose_rhs)
batching.primitive_batchers[conv_general_dilated_p] = (
    lambda args, dims, *, config: batch_rule(_bind, args, dims, config=config))
mlir.register_lowering(conv_general_dilated_p, _lowering(_formulations.lax_conv))
mlir.register_lowering(conv_general_dilated_p, _lowering(_formulations.native), platform="cpu")


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
    r"""``jax.lax.conv_general_dilated`` as a primitive: every transformation, rule in reverse.

    Same signature, defaults, validation and result as ``impl.conv_general_dilated``; see
    ``jax.lax.conv_general_dilated`` for the meaning of each argument. With the default
    ``dimension_numbers`` the layouts are

    * ``lhs``: ``(batch, in_features, *in_spatial)``,
    * ``rhs``: ``(out_features, in_features // feature_group_count, *window)``,
    * result: ``(batch // batch_group_count, out_features, *out_spatial)``.

    ``out_sharding`` (a ``NamedSharding``, a ``PartitionSpec`` or ``None``) is the result's sharding
    under a mesh with explicit axes, as in lax and ``impl.conv_general_dilated``: the primitive is
    bound over Auto axes and its result resharded to lax's result type (``impl/_sharding.py``).

    Reverse mode (``jax.grad``, ``jax.vjp``, ``jax.jacrev``) transposes the op with the
    rotated-filter rule, :math:`\partial L/\partial X = G \ast \mathrm{rot180}(F)` and
    :math:`\partial L/\partial F = X \star G`; forward mode (``jax.jvp``, ``jax.linearize``,
    ``jax.jacfwd``) uses bilinearity, :math:`dO = dX \star F + X \star dF`. Both build their
    convolutions from this primitive, so ``jax.hessian``, Hessian-vector products, ``jax.vmap``,
    ``jax.jit`` and ``jax.export`` compose to any order.

    Raises ``TypeError``/``ValueError`` on bad arguments before any computation (and for
    ``out_sharding``, lax's own errors, ``ShardingTypeError`` included).

    >>> import jax, jax.numpy as jnp
    >>> x = jnp.arange(9.0).reshape(1, 1, 3, 3)
    >>> f = jnp.ones((1, 1, 2, 2))
    >>> conv_general_dilated(x, f, (1, 1), "VALID")[0, 0].tolist()
    [[8.0, 12.0], [20.0, 24.0]]
    >>> loss = lambda f: jnp.sum(conv_general_dilated(x, f, (1, 1), "VALID") ** 2)
    >>> jax.hessian(loss)(f).shape
    (1, 1, 2, 2, 1, 1, 2, 2)
    """
    lhs, rhs = jnp.asarray(lhs), jnp.asarray(rhs)
    config = make_config(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                         dimension_numbers, feature_group_count, batch_group_count, precision,
                         preferred_element_type)
    sharding = result_sharding(lhs, rhs, config, out_sharding)
    return with_result_sharding(lambda lhs, rhs: _bind(lhs, rhs, config), lhs, rhs, sharding)


__all__ = ["conv_general_dilated", "conv_general_dilated_p"]
