"""Batch-grouped convolutions that XLA's SPMD partitioner gets wrong, lowered in a form it gets right.

With jaxlib 0.10.2, 0.11.2, 0.12.0 and 0.12.0.1, the partitioner computes a convolution with
``batch_group_count > 1`` wrongly where both operands shard its contracted (input-feature) axis
over part of the mesh, the other mesh axes holding replicas. That convolution is the filter
gradient of every feature-grouped convolution, so ``jax.grad`` of a grouped or depthwise layer
whose input batch is sharded over "data" of a 4 x 2 ("data", "model") mesh came out wrong by
1.0-3.0 relative in lax's own autodiff, and in the primitive, which lowers to lax's convolutions
(1-, 2- and 3-D, 2, 4 or depthwise groups; ``tests/test_sharded_groups.py``). jaxlib 0.12.1
partitions the same programs right. The primitive's lowering therefore computes such a
convolution as one dense convolution per batch group, in programs that span several devices, on
jaxlib releases before ``FIXED_PARTITIONER_JAXLIB``; a program on one device, or one device per
program (a ``shard_map`` body with every mesh axis manual), keeps the native convolution. The
``custom_vjp`` op binds the primitive where it would hand such a convolution to lax
(``_formulations._lax_conv_partitioned``: off CPU, and on CPU where no formulation takes it).

The same releases also sum a filter gradient over replicas where a mesh axis shards the input's
spatial axes and another replicates them, dense convolutions included; the rotated-filter rule
keeps those axes whole there (``whole_axes``, below).
"""

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir
from jax.sharding import NamedSharding, PartitionSpec

from impl import _formulations
from impl._config import ConvConfig

# The first jaxlib release whose partitioner was measured right on every case above (0.10.2,
# 0.11.2, 0.12.0 and 0.12.0.1 were wrong; 0.11.0 and 0.11.1 were not measured).
FIXED_PARTITIONER_JAXLIB = (0, 12, 1)

DenseConv = Callable[[jax.Array, jax.Array, ConvConfig], jax.Array]


def splits_batch_groups(config: ConvConfig, axis_context: Any) -> bool:
    """Whether a program lowered in ``axis_context`` computes ``config`` one batch group at a time
    (``_formulations.per_group``): it has batch groups, spans several devices
    (``_formulations._one_device_per_program``, the test ``_formulations._one_device_p`` lowers
    by) and is partitioned by a jaxlib before ``FIXED_PARTITIONER_JAXLIB``."""
    return (_formulations._splits_batch_groups(config)
            and not _formulations._one_device_per_program(axis_context))


# The second bug, with the same jaxlib releases: where a mesh axis shards an input's spatial axis
# and another mesh axis replicates it, the partitioner all-reduces the partial sums of a
# convolution whose window is that sharded axis (the filter gradient, X ⋆ G, contracts X's and G's
# spatial axes) over the replicas too. lax's filter gradient of a dense 3x3 convolution whose
# input rows were sharded over "data" of a 4 x 2 mesh came out twice the truth (4 times on 2 x 4),
# with Shardy and with GSPMD, and right with 0.12.1 (``tests/test_sharded_spatial.py``). Keeping
# those axes whole (replicated: the partitioner all-gathers them where they are sharded, and
# leaves the program as it was where they are not) gives it the convolutions it gets right: the
# batch axis contracted over its shards, or nothing to contract at all.
_whole_axes_p = Primitive("convgrad_whole_axes")


def whole_axes(array: jax.Array, axes: Sequence[int]) -> jax.Array:
    """``array`` itself; in a program partitioned over several devices by a jaxlib before
    ``FIXED_PARTITIONER_JAXLIB``, with ``axes`` replicated and its other axes left to the
    partitioner (a sharding constraint). On one device, in a ``shard_map`` body, or with a jaxlib
    that partitions right, the program is exactly what it was without it."""
    if not axes or _formulations._JAXLIB_VERSION >= FIXED_PARTITIONER_JAXLIB:
        return array
    return _whole_axes_p.bind(array, axes=tuple(axes))


def _whole_axes_lowering(ctx: mlir.LoweringRuleContext, array: Any, *, axes: tuple[int, ...]
                         ) -> Sequence[Any]:
    """A sharding constraint in a program that jit partitions over several devices (its axis
    context counts them); nothing in any other program. The constraint names no mesh: the given
    axes closed and replicated, the others open, as ``jax.lax.with_sharding_constraint`` writes
    ``PartitionSpec.UNCONSTRAINED``. It is built with JAX's own lowering helpers, which no public
    API exposes; they are only reached with the jaxlib releases above, whose code no longer
    changes (and by ``tests/test_sharded_spatial.py``, which forces them on with newer ones)."""
    if getattr(ctx.module_context.axis_context, "num_devices", 1) <= 1:
        return [array]
    from jax._src import config as jax_config
    from jax._src.interpreters import mlir as jax_mlir
    from jax._src.lib import xla_client
    from jax._src.named_sharding import SdyArray, SdyDim

    (aval,) = ctx.avals_in
    free = set(range(aval.ndim)) - set(axes)
    if jax_config.use_shardy_partitioner.value:
        sharding = SdyArray(mesh_shape=None, dim_shardings=tuple(
            SdyDim(axes=(), is_open=axis in free) for axis in range(aval.ndim)))
        return [jax_mlir.wrap_with_sharding_op(ctx, array, aval, sharding)]
    replicated = xla_client.HloSharding.replicate().to_proto()
    return [jax_mlir.wrap_with_sharding_op(ctx, array, aval, replicated, unspecified_dims=free)]


def _whole_axes_batch(args: Sequence[jax.Array], dims: Sequence[int | None], *,
                      axes: tuple[int, ...]) -> tuple[jax.Array, int | None]:
    """vmap: the mapped axis (``None`` where unmapped) is one more axis left to the partitioner."""
    (array,), (dim,) = args, dims
    if dim is None:
        return _whole_axes_p.bind(array, axes=axes), dim
    return _whole_axes_p.bind(array, axes=tuple(axis + (axis >= dim) for axis in axes)), dim


@functools.partial(jax.jit, static_argnames="axes")
def _whole_axes_compiled(array: jax.Array, axes: tuple[int, ...]) -> jax.Array:
    return _whole_axes_p.bind(array, axes=axes)


def _whole_axes_impl(array: jax.Array, *, axes: tuple[int, ...]) -> jax.Array:
    """Eagerly, an array on several devices is moved to the sharding without ``axes`` (a
    ``NamedSharding``: under GSPMD a lone constraint compiled on its own left the array as it
    was) or, with another sharding, goes through the lowering above, as JAX applies its own
    primitives; on one device it is returned as it is."""
    sharding = getattr(array, "sharding", None)
    if len(getattr(sharding, "device_set", ())) <= 1:
        return array
    if isinstance(sharding, NamedSharding):
        spec = [*sharding.spec, *[None] * (array.ndim - len(sharding.spec))]
        whole = [None if axis in axes else entry for axis, entry in enumerate(spec)]
        return jax.device_put(array, NamedSharding(sharding.mesh, PartitionSpec(*whole)))
    return _whole_axes_compiled(array, axes)


_whole_axes_p.def_impl(_whole_axes_impl)
_whole_axes_p.def_abstract_eval(lambda aval, *, axes: aval)
ad.deflinear(_whole_axes_p, lambda cotangent, *, axes: [_whole_axes_p.bind(cotangent, axes=axes)])
batching.primitive_batchers[_whole_axes_p] = _whole_axes_batch
mlir.register_lowering(_whole_axes_p, _whole_axes_lowering)
