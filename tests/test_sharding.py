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
