"""Inputs sharded along their spatial axes: both ops' gradients equal lax autodiff on one device.

With jaxlib 0.10.2, 0.11.2 and 0.12.0.1, XLA's SPMD partitioner all-reduces the partial sums of a
convolution whose window axis is sharded (the filter gradient X ⋆ G contracts X's and G's spatial
axes) over the replicas too, where one mesh axis shards that spatial axis and another replicates
it: lax's filter gradient of a dense 3x3 convolution whose input rows are sharded over "data" of a
4 x 2 mesh comes out twice the truth, four times over "data" of a 2 x 4 one. Both ops keep the
filter gradient's spatial axes whole in programs partitioned over several devices with those
jaxlibs (``impl._partitioner.whole_axes``). All of it runs in one subprocess with 8 host CPU
devices, once per partitioner (Shardy and GSPMD); the oracle is ``jax.grad`` of native
``jax.lax.conv_general_dilated`` on one device, in float64.
"""

import json

import pytest

from convgrad.tolerances import tolerance
from impl import _formulations, _partitioner
from tests.helpers import run_on_eight_cpu_devices

SCRIPT = """
import json
from unittest import mock
import jax
jax.config.update("jax_enable_x64", True)
jax.config.update("jax_use_shardy_partitioner", SHARDY)
import jax.numpy as jnp, numpy as np
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import impl
from impl import _formulations, _partitioner, primitive
from tests.conv_oracle import relative_error
assert len(jax.devices()) == 8, jax.devices()
rng = np.random.default_rng(0)
OPS = {"lax": lax.conv_general_dilated, "op": impl.conv_general_dilated,
       "primitive": primitive.conv_general_dilated}
SAME = {"padding": "SAME"}
NHWC = {"padding": "SAME", "dimension_numbers": ("NHWC", "HWIO", "NHWC")}
# (name, mesh shape, lhs shape, rhs shape, keyword arguments, lhs spec); the filter replicated
CASES = [
    ("rows over data, 4 x 2", (4, 2), (8, 4, 16, 16), (6, 4, 3, 3), SAME, P(None, None, "data")),
    ("rows over data, 2 x 4", (2, 4), (8, 4, 16, 16), (6, 4, 3, 3), SAME, P(None, None, "data")),
    ("rows over model, 4 x 2", (4, 2), (8, 4, 16, 16), (6, 4, 3, 3), SAME, P(None, None, "model")),
    ("columns over data, stride 2, rhs dilation 2", (4, 2), (8, 4, 16, 16), (6, 4, 3, 3),
     {"padding": "SAME", "window_strides": (2, 2), "rhs_dilation": (2, 2)},
     P(None, None, None, "data")),
    ("groups 2, rows over data", (4, 2), (8, 4, 16, 16), (6, 2, 3, 3),
     {"padding": "SAME", "feature_group_count": 2}, P(None, None, "data")),
    ("depthwise, rows over data", (4, 2), (8, 4, 16, 16), (4, 1, 3, 3),
     {"padding": "SAME", "feature_group_count": 4}, P(None, None, "data")),
    ("rows over data, input features over model", (4, 2), (8, 4, 16, 16), (6, 4, 3, 3), SAME,
     P(None, "model", "data")),
    ("NHWC, rows over data", (4, 2), (8, 16, 16, 4), (3, 3, 4, 6), NHWC, P(None, "data")),
    ("1-D k5, over data", (4, 2), (8, 4, 32), (6, 4, 5), SAME, P(None, None, "data")),
    ("3-D, depth over data", (2, 4), (4, 4, 8, 6, 6), (6, 4, 3, 3, 3), SAME, P(None, None, "data")),
    ("batch over data, rows over model", (4, 2), (8, 4, 16, 16), (6, 4, 3, 3), SAME,
     P("data", None, "model")),
]


def mesh_of(shape):
    return Mesh(np.array(jax.devices()).reshape(shape), ("data", "model"))


def case_grad(conv, case):
    _, _, lhs_shape, _, kwargs, _ = case
    kwargs = dict(kwargs)
    strides = kwargs.pop("window_strides", None)
    spatial = len(lhs_shape) - 2
    def loss(lhs, rhs):
        return jnp.sum(jnp.sin(conv(lhs, rhs, strides or (1,) * spatial, **kwargs)))
    return jax.grad(loss, argnums=(0, 1))


def error(got, reference):
    return {"lhs": relative_error(got[0], reference[0]), "rhs": relative_error(got[1], reference[1])}


operands = [(jnp.asarray(rng.standard_normal(case[2])), jnp.asarray(rng.standard_normal(case[3])))
            for case in CASES]
references = [jax.jit(case_grad(lax.conv_general_dilated, case))(*pair)
              for case, pair in zip(CASES, operands, strict=True)]
sharded = [(jax.device_put(lhs, NamedSharding(mesh_of(case[1]), case[5])), rhs)
           for case, (lhs, rhs) in zip(CASES, operands, strict=True)]
results = {}


def measure(suffix=""):
    for case, pair, reference in zip(CASES, sharded, references, strict=True):
        for op_name, conv in OPS.items():
            if op_name == "lax" and suffix:
                continue
            jax.clear_caches()
            results[f"{case[0]}{suffix}: {op_name}"] = error(
                jax.jit(case_grad(conv, case))(*pair), reference)


measure()
# Eagerly: both ops' backward passes run op by op on operands spread over the devices.
for op_name in ("op", "primitive"):
    results[f"rows over data, 4 x 2: {op_name} eager"] = error(
        case_grad(OPS[op_name], CASES[0])(*sharded[0]), references[0])
# vmap of jit(grad): the constraint's batching rule (a mapped axis left to the partitioner).
stacked_lhs = jnp.stack([operands[0][0], 2 * operands[0][0]])
vmap_reference = jax.vmap(case_grad(lax.conv_general_dilated, CASES[0]), (0, None))(
    stacked_lhs, operands[0][1])
stacked = jax.device_put(stacked_lhs, NamedSharding(mesh_of((4, 2)), P(None, None, None, "data")))
for op_name in ("op", "primitive"):
    results[f"vmapped, rows over data: {op_name}"] = error(
        jax.jit(jax.vmap(case_grad(OPS[op_name], CASES[0]), (0, None)))(stacked, operands[0][1]),
        vmap_reference)
# A mesh with explicit axes, whose types carry the shardings: the gradients keep lax's types.
explicit = jax.make_mesh((4, 2), ("data", "model"), axis_types=(jax.sharding.AxisType.Explicit,) * 2)
with jax.set_mesh(explicit):
    typed = (jax.device_put(operands[0][0], NamedSharding(explicit, P(None, None, "data"))),
             jax.device_put(operands[0][1], NamedSharding(explicit, P())))
    for op_name, conv in OPS.items():
        got = jax.jit(case_grad(conv, CASES[0]))(*typed)
        results[f"explicit axes, rows over data: {op_name}"] = error(got, references[0])
        if op_name == "lax":
            lax_types = [str(jax.typeof(part).sharding.spec) for part in got]
        else:
            assert [str(jax.typeof(part).sharding.spec) for part in got] == lax_types, op_name
if _partitioner.FIXED_PARTITIONER_JAXLIB <= _formulations._JAXLIB_VERSION:
    # The constraint forced on where the jaxlib does not need it, so that it is tested.
    with mock.patch.object(_partitioner, "FIXED_PARTITIONER_JAXLIB", (99,)):
        measure(", forced")
print(json.dumps(results))


def program(case, operands, fixed, optimised):
    # The op's jit(grad) as StableHLO, or optimised HLO, with the workaround's jaxlib gate at
    # ``fixed``.
    jax.clear_caches()
    with mock.patch.object(_partitioner, "FIXED_PARTITIONER_JAXLIB", fixed):
        lowered = jax.jit(case_grad(impl.conv_general_dilated, case)).lower(*operands)
        return lowered.compile().as_text() if optimised else lowered.as_text()


def gathers(operands):
    return {gate: program(CASES[0], operands, fixed, True).count("all-gather")
            for gate, fixed in (("never", (0,)), ("always", (99,)))}


data_parallel = jax.device_put(operands[0][0], NamedSharding(mesh_of((4, 2)), P("data")))
programs = {
    "one device": program(CASES[0], operands[0], (0,), False)
    == program(CASES[0], operands[0], (99,), False),
    "batch over data": gathers((data_parallel, operands[0][1])),
    "rows over data": gathers(sharded[0]),
}
print(json.dumps(programs))
"""


@pytest.fixture(scope="module", params=["Shardy", "GSPMD"])
def measured(request):
    """Each partitioner JAX offers: Shardy (the default) and GSPMD, the latter only with the
    jaxlib releases the workaround is for (newer ones deprecate it)."""
    shardy = request.param == "Shardy"
    if not shardy and _formulations._JAXLIB_VERSION >= _partitioner.FIXED_PARTITIONER_JAXLIB:
        pytest.skip("GSPMD is checked with the jaxlib releases the workaround is for")
    lines = run_on_eight_cpu_devices(SCRIPT.replace("SHARDY", str(shardy))).splitlines()
    return json.loads(lines[-2]), json.loads(lines[-1])


CASES = ["rows over data, 4 x 2", "rows over data, 2 x 4", "rows over model, 4 x 2",
         "columns over data, stride 2, rhs dilation 2", "groups 2, rows over data",
         "depthwise, rows over data", "rows over data, input features over model",
         "NHWC, rows over data", "1-D k5, over data", "3-D, depth over data",
         "batch over data, rows over model"]


def test_both_ops_match_lax_on_one_device_where_spatial_axes_are_sharded(measured):
    """Both ops' jit(grad), lhs and rhs, with rows, columns, 1-D or 3-D axes sharded over one axis
    of a 4 x 2 or 2 x 4 mesh (dense, strided and dilated, grouped, depthwise, channels last, the
    input features sharded over the other axis); both also eagerly, under vmap and under a mesh
    with explicit axes (with lax's result types), and, on jaxlib releases that do not need it,
    with the constraint forced on."""
    results, _ = measured
    expected = {f"{case}: {op}" for case in CASES for op in ("lax", "op", "primitive")}
    expected |= {"rows over data, 4 x 2: op eager", "rows over data, 4 x 2: primitive eager",
                 "vmapped, rows over data: op",
                 "vmapped, rows over data: primitive"}
    expected |= {f"explicit axes, rows over data: {op}" for op in ("lax", "op", "primitive")}
    if _formulations._JAXLIB_VERSION >= _partitioner.FIXED_PARTITIONER_JAXLIB:
        expected |= {f"{case}, forced: {op}" for case in CASES for op in ("op", "primitive")}
    assert set(results) == expected, sorted(results)
    for name, error in results.items():
        if not name.endswith(": lax"):
            assert max(error.values()) <= tolerance("float64"), (name, error)


def test_cases_reach_the_partitioner_bug(measured):
    """The grid holds the programs the partitioner gets wrong: with the jaxlib releases the
    workaround is for, lax's own filter gradient is off by the replica count less one (1 where
    the other mesh axis has 2 devices, 3 where it has 4), its input gradient right; where every
    mesh axis shards the input (batch over one, rows over the other), lax is right."""
    results, _ = measured
    if _formulations._JAXLIB_VERSION >= _partitioner.FIXED_PARTITIONER_JAXLIB:
        for case in CASES:
            assert max(results[f"{case}: lax"].values()) <= tolerance("float64"), case
        return
    assert results["rows over data, 4 x 2: lax"]["rhs"] == pytest.approx(1.0)
    assert results["explicit axes, rows over data: lax"]["rhs"] == pytest.approx(1.0)
    assert results["rows over data, 2 x 4: lax"]["rhs"] == pytest.approx(3.0)
    assert results["rows over model, 4 x 2: lax"]["rhs"] == pytest.approx(3.0)
    assert results["3-D, depth over data: lax"]["rhs"] == pytest.approx(3.0)
    assert results["rows over data, 4 x 2: lax"]["lhs"] <= tolerance("float64")
    assert max(results["batch over data, rows over model: lax"].values()) <= tolerance("float64")


def test_workaround_changes_only_programs_with_sharded_spatial_axes(measured):
    """On one device the op's jit(grad) lowers to the same StableHLO with the workaround on or
    off; batch-sharded over 4 x 2 (data parallel) its compiled program gathers nothing more; with
    rows sharded it gathers them before the filter gradient, and without it gathers nothing."""
    _, programs = measured
    assert programs["one device"] is True
    assert programs["batch over data"]["always"] == programs["batch over data"]["never"], programs
    assert programs["rows over data"]["always"] > programs["rows over data"]["never"], programs
