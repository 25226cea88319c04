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
"""

from collections.abc import Callable
from typing import Any

import jax

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
