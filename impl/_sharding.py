"""``out_sharding`` as ``jax.lax.conv_general_dilated`` takes it, for both ops.

Under a mesh with explicit axes (``jax.sharding.AxisType.Explicit``, ``jax.set_mesh``) every array's
type carries its sharding, and lax gives its convolution's result the type that ``out_sharding``
names, or where it names none, the one its sharding rule infers (the lhs batch sharding; a
``ShardingTypeError`` where the rhs or the lhs features are sharded). lax also decides what
``out_sharding`` may be: a ``TypeError`` for what is neither a ``NamedSharding`` nor a
``PartitionSpec``; a ``ValueError`` for a ``PartitionSpec`` outside a mesh, Auto or Manual axis
names, another mesh than the context's, or a sharding that does not divide the result. Outside a
mesh, with unsharded operands, a ``NamedSharding`` is taken and the result left unsharded.

Both ops take that type from lax's own shape and sharding rules (``jax.eval_shape``: no values,
no derivatives), and compute under ``jax.sharding.auto_axes``: the operands keep their shardings
as Auto axes, so the forward formulations and the rotated-filter rule run as under ``jit`` with
sharded inputs, and the result is resharded to lax's type. Differentiating the reshards gives each
operand's gradient its operand's type, as lax's transposes do. Resharding the result alone would
not do: under explicit axes the op's own convolutions (forward and rule) need sharding types of
their own, and lax refuses them where the rhs is sharded.
"""

import functools
from collections.abc import Callable

import jax
from jax.sharding import NamedSharding, PartitionSpec

from impl._config import ConvConfig

OutSharding = NamedSharding | PartitionSpec | None


def _has_explicit_axes(*arrays: jax.Array) -> bool:
    """Whether the context mesh or an operand's type has explicit mesh axes."""
    meshes = (jax.sharding.get_abstract_mesh(), *(jax.typeof(array).sharding.mesh
                                                  for array in arrays))
    return any(mesh.explicit_axes for mesh in meshes)


def result_sharding(
    lhs: jax.Array, rhs: jax.Array, config: ConvConfig, out_sharding: OutSharding
) -> NamedSharding | None:
    """The sharding that lax's result type has over explicit mesh axes, or ``None`` (no such axes).

    Raises lax's own errors for a bad ``out_sharding`` and for a result whose sharding lax cannot
    infer (``ShardingTypeError``: "Please specify the output sharding via `out_sharding`").
    """
    if out_sharding is None and not _has_explicit_axes(lhs, rhs):
        return None
    lax_result = jax.eval_shape(
        functools.partial(jax.lax.conv_general_dilated, **config.as_lax_kwargs(),
                          out_sharding=out_sharding), lhs, rhs)
    sharding = lax_result.sharding
    if not isinstance(sharding, NamedSharding) or not sharding.mesh.explicit_axes:
        return None
    return sharding


def with_result_sharding(
    conv: Callable[[jax.Array, jax.Array], jax.Array],
    lhs: jax.Array,
    rhs: jax.Array,
    sharding: NamedSharding | None,
) -> jax.Array:
    """``conv(lhs, rhs)`` computed over Auto axes, its result of type ``sharding`` (see above)."""
    if sharding is None:
        return conv(lhs, rhs)
    return jax.sharding.auto_axes(conv, axes=sharding.mesh.explicit_axes,
                                  out_sharding=sharding)(lhs, rhs)
