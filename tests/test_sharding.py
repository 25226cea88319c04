"""jit(grad) of the op with inputs sharded over 8 host CPU devices equals unsharded native autodiff.

Runs in a subprocess, because the device count is fixed when JAX starts
(``XLA_FLAGS=--xla_force_host_platform_device_count=8``). The oracle is ``jax.grad`` of native
``jax.lax.conv_general_dilated`` on one device, in float64 at 1e-12
(``convgrad.crosscheck.sharding_check``).
"""

import json

import pytest

from tests.helpers import run_on_eight_cpu_devices

SCRIPT = """
import json, sys
import jax
jax.config.update("jax_enable_x64", True)
from convgrad import crosscheck
assert len(jax.devices()) == 8, jax.devices()
for mesh in ((8,), (4, 2), (2, 4)):
    print(json.dumps(crosscheck.sharding_check(jax.devices(), mesh, "float64")))
for mesh in ((4, 2), (2, 4)):
    print(json.dumps(crosscheck.sharding_check(jax.devices(), mesh, "float64", rows=True)))
"""


@pytest.fixture(scope="module")
def checks():
    return [json.loads(line) for line in run_on_eight_cpu_devices(SCRIPT).splitlines()]


def test_batch_sharded_over_eight_devices_matches_unsharded(checks):
    data_parallel = checks[0]
    assert data_parallel["mesh"] == {"data": 8}
    assert data_parallel["lhs_shards"] == 8 and data_parallel["grad_devices"] == 8
    assert data_parallel["max_rel_error"] <= 1e-12, data_parallel


@pytest.mark.parametrize("index", [1, 2])
def test_batch_and_out_features_sharded_on_2d_mesh_matches_unsharded(checks, index):
    check = checks[index]
    assert check["rhs_spec"] == ["model"]
    assert check["lhs_shards"] == check["mesh"]["data"]
    assert check["rhs_shards"] == check["mesh"]["model"]
    assert check["max_rel_error"] <= 1e-12, check


@pytest.mark.parametrize("index", [3, 4])
def test_rows_and_out_features_sharded_on_2d_mesh_matches_unsharded(checks, index):
    """Rows over "data", replicated over "model": the layout whose filter gradient jaxlib
    0.10-0.12.0's partitioner sums over the replicas in lax (``tests/test_sharded_spatial.py``)."""
    check = checks[index]
    assert check["lhs_spec"] == [None, None, "data"] and check["rhs_spec"] == ["model"]
    assert check["lhs_shards"] == check["mesh"]["data"]
    assert check["max_rel_error"] <= 1e-12, check


SHARD_MAP_SCRIPT = """
import json
import jax
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp, numpy as np
from jax.sharding import Mesh, PartitionSpec as P
import impl
from impl import primitive
from tests.conv_oracle import relative_error
mesh = Mesh(np.array(jax.devices()).reshape(4, 2), ("data", "model"))
keys = jax.random.split(jax.random.key(0))
results = {}
for dtype in ("float64", "float32"):
    lhs = jax.random.normal(keys[0], (16, 8, 28, 28), dtype)
    rhs = jax.random.normal(keys[1], (8, 8, 3, 3), dtype)

    def grad(conv):
        return jax.grad(lambda x, w: jnp.sum(jnp.sin(conv(x, w, (1, 1), "SAME"))), argnums=(0, 1))

    reference = jax.jit(grad(jax.lax.conv_general_dilated))(lhs.astype("float64"),
                                                              rhs.astype("float64"))
    for name, conv in (("op", impl.conv_general_dilated), ("primitive", primitive.conv_general_dilated)):
        for rhs_spec in (P(), P("model")):
            # The default check_vma=True: a replicated filter's gradient must come back summed.
            local = jax.jit(jax.shard_map(grad(conv), mesh=mesh, in_specs=(P("data"), rhs_spec),
                                          out_specs=(P("data"), rhs_spec)))
            got = local(lhs, rhs)
            results[f"{dtype} {name} rhs {tuple(rhs_spec)}"] = max(
                relative_error(a, b) for a, b in zip(got, reference))
    # Depthwise, stride 2, replicated filter: on CPU the op's backward pass orders its filter
    # gradient first through an optimization barrier (impl._op._after), under check_vma too.
    depthwise = jax.random.normal(keys[1], (8, 1, 3, 3), dtype)

    def depthwise_grad(conv):
        return jax.grad(lambda x, w: jnp.sum(jnp.sin(conv(x, w, (2, 2), "SAME",
                                                          feature_group_count=8))),
                        argnums=(0, 1))

    reference = jax.jit(depthwise_grad(jax.lax.conv_general_dilated))(
        lhs.astype("float64"), depthwise.astype("float64"))
    local = jax.jit(jax.shard_map(depthwise_grad(impl.conv_general_dilated), mesh=mesh,
                                  in_specs=(P("data"), P()), out_specs=(P("data"), P())))
    results[f"{dtype} op depthwise rhs ()"] = max(
        relative_error(a, b) for a, b in zip(local(lhs, depthwise), reference))
print(json.dumps(results))
"""


def test_both_ops_under_shard_map_with_its_default_type_checks():
    """Inside ``shard_map`` (``check_vma`` on, its default) over a 4 x 2 mesh: the op's loops,
    its ``custom_vjp`` rule (with a depthwise backward pass's ordering too) and the primitive
    type-check, and the gradient of a filter that is replicated over the data axis is the sum
    over devices, as native autodiff gives."""
    from convgrad.tolerances import tolerance

    results = json.loads(run_on_eight_cpu_devices(SHARD_MAP_SCRIPT).splitlines()[-1])
    assert len(results) == 10, results
    for name, error in results.items():
        assert error <= tolerance(name.split()[0]), (name, error)


WIDENED_SCRIPT = """
import json, os
os.environ["CONVGRAD_CPU_BFLOAT16"] = "float32"  # bfloat16 computed in float32, as on AVX2 CPUs
import jax
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp, numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import impl
from tests.conv_oracle import relative_error
mesh = Mesh(np.array(jax.devices()), ("data",))
keys = jax.random.split(jax.random.key(1))
results = {}
# Cases whose filter gradient is the loop that widens each step (impl._formulations.taps_matmul):
# sharded, jit lowers the loop-free formulation in float32 instead.
for filter_shape in ((32, 64, 1, 1), (32, 64, 3, 3)):
    for preferred in (None, jnp.float32):
        lhs = jax.random.normal(keys[0], (16, 64, 14, 14)).astype(jnp.bfloat16)
        rhs = (jax.random.normal(keys[1], filter_shape) / 24).astype(jnp.bfloat16)

        def grad(conv, preferred=preferred):
            def loss(x, w):
                out = conv(x, w, (1, 1), "SAME", preferred_element_type=preferred)
                return jnp.sum(jnp.sin(out.astype(jnp.promote_types(x.dtype, jnp.float32))))

            return jax.jit(jax.grad(loss, argnums=(0, 1)))

        reference = grad(jax.lax.conv_general_dilated, None)(lhs.astype("float64"),
                                                             rhs.astype("float64"))
        one = grad(impl.conv_general_dilated)(lhs, rhs)
        spread = grad(impl.conv_general_dilated)(
            jax.device_put(lhs, NamedSharding(mesh, P("data"))), rhs)
        local = jax.jit(jax.shard_map(grad(impl.conv_general_dilated), mesh=mesh,
                                      in_specs=(P("data"), P()), out_specs=(P("data"), P())))(
            lhs, rhs)
        name = f"{filter_shape[-1]}x{filter_shape[-1]} {'float32' if preferred else 'bfloat16'} result"
        results[name] = {
            "dtypes": sorted({str(g.dtype) for g in (*one, *spread, *local)}),
            "lhs_shards": len(spread[0].sharding.device_set),
            **{what: max(relative_error(a, b) for a, b in zip(got, reference))
               for what, got in (("one", one), ("spread", spread), ("shard_map", local))}}
print(json.dumps(results))
"""


def test_bfloat16_computed_in_float32_sharded_matches_one_device_and_native():
    """Where the host computes bfloat16 in float32 and the filter gradient's loop widens each step,
    the loop-free formulation that jit lowers for sharded inputs widens too, and inside
    ``shard_map`` the loop runs per device: all three match native autodiff in float64."""
    from convgrad.tolerances import tolerance

    results = json.loads(run_on_eight_cpu_devices(WIDENED_SCRIPT).splitlines()[-1])
    assert len(results) == 4, results
    for name, result in results.items():
        assert result["dtypes"] == ["bfloat16"] and result["lhs_shards"] == 8, (name, result)
        for where in ("one", "spread", "shard_map"):
            assert result[where] <= tolerance("bfloat16"), (name, where, result)
