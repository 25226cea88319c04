"""Grouped convolutions with sharded inputs: both ops' gradients equal lax autodiff on one device.

With jaxlib 0.10.2 to 0.12.0.1, XLA's SPMD partitioner all-reduces the partial sums of a
convolution with batch groups over the whole mesh, replicas included, where both operands shard
its contracted axis over part of the mesh: the filter gradient of a grouped convolution whose
input batch is sharded over "data" of a 4 x 2 mesh comes out twice the truth (4 times on a 2 x 4
mesh) in lax's own autodiff. The primitive lowers such a convolution per batch group in programs
that span several devices (``impl._partitioner``); the ``custom_vjp`` op's CPU formulations were
right already on these cases (not on a grouped convolution with no spatial axes, which they hand
to lax whole, so only the primitive is checked there). All of it runs in one subprocess with 8
host CPU devices; the oracle is ``jax.grad`` of native ``jax.lax.conv_general_dilated`` on one
device, in float64.
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
# (name, lhs shape, rhs shape, keyword arguments, lhs spec, rhs spec) on a 4 x 2 mesh
CASES = [
    ("groups 2", (8, 4, 6, 6), (4, 2, 3, 3), {"feature_group_count": 2}, P("data"), P()),
    ("depthwise", (8, 4, 6, 6), (8, 1, 3, 3), {"feature_group_count": 4}, P("data"), P()),
    ("groups 4, 1-D", (8, 8, 7), (8, 2, 3), {"feature_group_count": 4}, P("data"), P()),
    ("groups 2, 3-D, filter out-features sharded", (8, 4, 4, 4, 4), (4, 2, 3, 3, 3),
     {"feature_group_count": 2}, P("data"), P("model")),
    ("batch groups 2, contracted axis sharded", (4, 8, 6, 6), (4, 8, 3, 3),
     {"batch_group_count": 2}, P(None, "data"), P(None, "data")),
]


def grad(conv, kwargs, spatial):
    def loss(lhs, rhs):
        return jnp.sum(jnp.sin(conv(lhs, rhs, (1,) * spatial, "SAME" if spatial else (), **kwargs)))
    return jax.grad(loss, argnums=(0, 1))


def grads(conv, cases):
    # Every case's gradient in one program: one compilation per op.
    def all_grads(operands):
        return [grad(conv, case[3], len(case[1]) - 2)(*pair)
                for case, pair in zip(cases, operands, strict=True)]
    return jax.jit(all_grads)


def errors(cases, got, reference):
    return {case[0]: {"lhs": relative_error(g[0], r[0]), "rhs": relative_error(g[1], r[1])}
            for case, g, r in zip(cases, got, reference, strict=True)}


def measure(cases, mesh, suffix="", ops=OPS):
    operands = [(jnp.asarray(rng.standard_normal(case[1])), jnp.asarray(rng.standard_normal(case[2])))
                for case in cases]
    reference = grads(lax.conv_general_dilated, cases)(operands)
    sharded = [(jax.device_put(lhs, NamedSharding(mesh, case[4])),
                jax.device_put(rhs, NamedSharding(mesh, case[5])))
               for case, (lhs, rhs) in zip(cases, operands, strict=True)]
    results = {}
    for op_name, conv in ops.items():
        if op_name == "lax" and _partitioner.FIXED_PARTITIONER_JAXLIB <= _formulations._JAXLIB_VERSION:
            continue  # lax's own error is only looked at where it was wrong
        for name, error in errors(cases, grads(conv, cases)(sharded), reference).items():
            results[f"{name}{suffix}: {op_name}"] = error
    return sharded, reference, results


mesh = Mesh(np.array(jax.devices()).reshape(4, 2), ("data", "model"))
sharded, reference, results = measure(CASES, mesh)
results.update(measure(CASES[:1], Mesh(np.array(jax.devices()).reshape(2, 4), ("data", "model")),
                       ", 2 x 4 mesh")[2])
# No spatial axes (a matrix product): the op hands it to lax's convolution, as it does every
# convolution off CPU, through the primitive where the partitioner is wrong
# (``_formulations._lax_conv_partitioned``); the primitive's lowering splits it like any other.
results.update(measure([("groups 2, no spatial axes", (8, 4), (4, 2), {"feature_group_count": 2},
                         P("data"), P())], mesh)[2])
if _partitioner.FIXED_PARTITIONER_JAXLIB <= _formulations._JAXLIB_VERSION:
    # The per-group lowering forced on where the jaxlib does not need it, so that it is tested.
    jax.clear_caches()
    with mock.patch.object(_partitioner, "FIXED_PARTITIONER_JAXLIB", (99,)):
        forced = grads(primitive.conv_general_dilated, CASES)(sharded)
    results.update({f"{name}: primitive per group": error
                    for name, error in errors(CASES, forced, reference).items()})
# Eager: the primitive's impl compiles a bind on operands spread over devices through the lowering.
eager = grad(primitive.conv_general_dilated, CASES[0][3], 2)(*sharded[0])
results.update({f"{name}: primitive eager": error
                for name, error in errors(CASES[:1], [eager], reference[:1]).items()})
print(json.dumps(results))


def lowered(lhs, rhs, fixed):
    # The StableHLO of the primitive's jit(grad), with the workaround's jaxlib gate at ``fixed``.
    jax.clear_caches()
    with mock.patch.object(_partitioner, "FIXED_PARTITIONER_JAXLIB", fixed):
        return jax.jit(grad(primitive.conv_general_dilated, {"feature_group_count": 2}, 2)).lower(
            lhs, rhs).as_text()


lhs, rhs = jnp.asarray(rng.standard_normal((8, 4, 6, 6))), jnp.asarray(rng.standard_normal((4, 2, 3, 3)))
mesh = Mesh(np.array(jax.devices()).reshape(4, 2), ("data", "model"))
programs = {}
for where, operands in (("one device", (lhs, rhs)),
                        ("sharded", (jax.device_put(lhs, NamedSharding(mesh, P("data"))), rhs))):
    texts = {gate: lowered(*operands, fixed) for gate, fixed in
             (("never", (0,)), ("always", (99,)), ("as shipped", _partitioner.FIXED_PARTITIONER_JAXLIB))}
    programs[where] = {
        "as shipped is never": texts["as shipped"] == texts["never"],
        "as shipped is always": texts["as shipped"] == texts["always"],
        "batch-grouped convolutions": {gate: text.count("batch_group_count = 2")
                                       for gate, text in texts.items()},
    }
print(json.dumps(programs))
"""


@pytest.fixture(scope="module")
def measured():
    lines = run_on_eight_cpu_devices(SCRIPT).splitlines()
    return json.loads(lines[-2]), json.loads(lines[-1])


def test_both_ops_match_lax_on_one_device_where_sharded(measured):
    """Both ops' jit(grad), lhs and rhs, over feature groups of 2 and 4, depthwise, 1-D to 3-D,
    4 x 2 and 2 x 4 meshes, the filter replicated or sharded, and a forward call with batch
    groups, and with no spatial axes (which the op hands to lax's convolution, as it does every
    one off CPU); the primitive also eagerly and, on jaxlib releases that do not need it, through
    its per-group lowering forced on."""
    results, _ = measured
    cases = ["groups 2", "depthwise", "groups 4, 1-D", "groups 2, 3-D, filter out-features sharded",
             "batch groups 2, contracted axis sharded", "groups 2, 2 x 4 mesh"]
    expected = {f"{case}: {op}" for case in cases for op in ("op", "primitive")}
    expected |= {"groups 2: primitive eager", "groups 2, no spatial axes: primitive",
                 "groups 2, no spatial axes: op"}
    if _formulations._JAXLIB_VERSION >= _partitioner.FIXED_PARTITIONER_JAXLIB:
        expected |= {f"{case}: primitive per group" for case in cases[:5]}
    else:
        expected |= {f"{case}: lax" for case in [*cases, "groups 2, no spatial axes"]}
    assert set(results) == expected, sorted(results)
    for name, error in results.items():
        if not name.endswith(": lax"):
            assert max(error.values()) <= tolerance("float64"), (name, error)


def test_cases_reach_the_partitioner_bug(measured):
    """The grid holds the programs the partitioner gets wrong: on the jaxlib releases the
    workaround is for, lax's own sharded filter gradient is off by the replica count less one
    (1 on a 4 x 2 mesh, 3 on a 2 x 4 one), as the primitive's was before it."""
    results, _ = measured
    if _formulations._JAXLIB_VERSION >= _partitioner.FIXED_PARTITIONER_JAXLIB:
        pytest.skip(f"jaxlib {_formulations._JAXLIB_VERSION} partitions grouped convolutions right")
    assert results["groups 2: lax"]["rhs"] == pytest.approx(1.0)
    assert results["groups 2, 2 x 4 mesh: lax"]["rhs"] == pytest.approx(3.0)
    assert results["batch groups 2, contracted axis sharded: lax"]["lhs"] > 0.5
    assert results["groups 2, no spatial axes: lax"]["rhs"] == pytest.approx(1.0)


def test_one_device_program_is_unchanged(measured):
    """On one device the primitive's jit(grad) lowers to the same StableHLO with the workaround
    on or off, its filter gradient one batch-grouped convolution; on 8 devices the workaround
    replaces that convolution by dense ones, and is on only for jaxlib before 0.12.1."""
    _, programs = measured
    one, sharded = programs["one device"], programs["sharded"]
    assert one["as shipped is never"] and one["as shipped is always"], one
    assert one["batch-grouped convolutions"] == {"never": 1, "always": 1, "as shipped": 1}, one
    assert sharded["batch-grouped convolutions"]["never"] == 1, sharded
    assert sharded["batch-grouped convolutions"]["always"] == 0, sharded
    old_jaxlib = _formulations._JAXLIB_VERSION < _partitioner.FIXED_PARTITIONER_JAXLIB
    assert sharded["as shipped is always"] == old_jaxlib, sharded
    assert sharded["as shipped is never"] == (not old_jaxlib), sharded
