"""``out_sharding``, the last argument of ``jax.lax.conv_general_dilated``, taken by both ops as lax
takes it.

Oracle: lax itself, called with the same arguments (float64, at the float64 tolerance): the same
result values, the same result type under a mesh with explicit axes (``jax.typeof(out)``, and the
result's concrete sharding), the same exception where lax raises one, and under ``jax.jit`` the
gradients of lax's own autodiff, with lax's gradient types. The mesh cases run in a subprocess with
8 host CPU devices (the device count is fixed when JAX starts).
"""

import inspect
import json

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

import impl
from convgrad.tolerances import tolerance
from tests.helpers import assert_close, random_array, run_on_eight_cpu_devices

OPS = {"op": impl.conv_general_dilated, "primitive": impl.primitive.conv_general_dilated}
BOTH_OPS = pytest.mark.parametrize("op", OPS.values(), ids=OPS.keys())


@BOTH_OPS
def test_signature_is_lax_s_out_sharding_included(op):
    ours, lax = inspect.signature(op).parameters, inspect.signature(
        jax.lax.conv_general_dilated).parameters
    assert list(ours) == list(lax)
    assert [p.default for p in ours.values()] == [p.default for p in lax.values()]
    assert ours["out_sharding"].default is None


@BOTH_OPS
def test_out_sharding_none_is_the_default_program(op):
    rng = np.random.default_rng(0)
    lhs, rhs = random_array(rng, (2, 3, 6, 6)), random_array(rng, (4, 3, 3, 3))
    with_none = jax.make_jaxpr(lambda x, f: op(x, f, (1, 1), "SAME", out_sharding=None))(lhs, rhs)
    without = jax.make_jaxpr(lambda x, f: op(x, f, (1, 1), "SAME"))(lhs, rhs)
    assert str(with_none) == str(without)
    assert_close(op(lhs, rhs, (1, 1), "SAME", out_sharding=None),
                 jax.lax.conv_general_dilated(lhs, rhs, (1, 1), "SAME"))


@BOTH_OPS
@pytest.mark.parametrize("out_sharding", ["data", P("data")], ids=["a string", "a spec, no mesh"])
def test_refused_without_a_mesh_as_lax_refuses(op, out_sharding):
    lhs, rhs = np.ones((2, 3, 6, 6)), np.ones((4, 3, 3, 3))
    with pytest.raises((TypeError, ValueError)) as lax_error:
        jax.lax.conv_general_dilated(lhs, rhs, (1, 1), "SAME", out_sharding=out_sharding)
    with pytest.raises(type(lax_error.value)) as our_error:
        op(lhs, rhs, (1, 1), "SAME", out_sharding=out_sharding)
    assert str(our_error.value) == str(lax_error.value)


SCRIPT = """
import json
import jax
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp, numpy as np
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P
import impl
from tests.conv_oracle import relative_error

OPS = {"lax": jax.lax.conv_general_dilated, "op": impl.conv_general_dilated,
       "primitive": impl.primitive.conv_general_dilated}
mesh = jax.make_mesh((4, 2), ("data", "model"), axis_types=(AxisType.Explicit,) * 2)
other = jax.make_mesh((8,), ("data",), axis_types=(AxisType.Explicit,))
rng = np.random.default_rng(0)
NCHW = dict(window_strides=(1, 1), padding="SAME")
# Strided, rhs-dilated, asymmetric padding, channels last.
NHWC = dict(window_strides=(2, 1), padding=((1, 0), (2, 1)), rhs_dilation=(1, 2),
            dimension_numbers=("NHWC", "HWIO", "NHWC"))
LAYOUTS = {"NCHW": ((8, 4, 6, 6), (6, 4, 3, 3), NCHW, 0, 1),
           "NHWC": ((8, 7, 6, 4), (3, 2, 4, 6), NHWC, 0, 3)}


def outcome(compute):
    try:
        arrays = compute()
    except Exception as error:  # lax's and ours, compared by type and message
        message = str(error).split("This error occurs at source")[0]
        return {"error": [type(error).__name__, message]}
    return {"types": [str(jax.typeof(a)) for a in arrays],
            "shardings": [str(a.sharding) for a in arrays], "values": arrays}


def compare(results, name, compute):
    outcomes = {op: outcome(lambda: compute(conv)) for op, conv in OPS.items()}
    reference = outcomes["lax"].pop("values", None)
    for op in ("op", "primitive"):
        values = outcomes[op].pop("values", None)
        if values is not None and reference is not None:
            outcomes[op]["max_rel_error"] = max(map(relative_error, values, reference))
    results[name] = outcomes


results = {}
with jax.set_mesh(mesh):
    for layout, (lhs_shape, rhs_shape, kwargs, batch, feature) in LAYOUTS.items():
        lhs_spec, rhs_spec, both, features = [None] * 4, [None] * 4, [None] * 4, [None] * 4
        lhs_spec[batch] = "data"
        rhs_spec[3 if layout == "NHWC" else 0] = "model"
        both[batch], both[feature], features[feature] = "data", "model", "model"
        lhs = jax.device_put(rng.standard_normal(lhs_shape), NamedSharding(mesh, P(*lhs_spec)))
        rhs = jax.device_put(rng.standard_normal(rhs_shape), NamedSharding(mesh, P()))
        rhs_by_features = jax.sharding.reshard(rhs, P(*rhs_spec))
        cases = {
            "NCHW": {"None": (rhs, None),
                     "None, rhs sharded": (rhs_by_features, None),
                     "spec (batch, features)": (rhs_by_features, P(*both)),
                     "NamedSharding (features), rhs replicated": (
                         rhs, NamedSharding(mesh, P(*features)))},
            "NHWC": {"spec (batch)": (rhs, P("data")),
                     "NamedSharding (features)": (rhs_by_features,
                                                  NamedSharding(mesh, P(*features)))},
        }[layout]
        for case, (filter_, out_sharding) in cases.items():
            def result_and_gradients(conv):
                # One compiled program per op and case: the result, and the gradients of a loss.
                def loss(x, f):
                    out = conv(x, f, **kwargs, out_sharding=out_sharding)
                    return jnp.sum(jnp.sin(out)), out

                def run(x, f):
                    (_, out), grads = jax.value_and_grad(loss, (0, 1), has_aux=True)(x, f)
                    return out, *grads

                return jax.jit(run)(lhs, filter_)

            compare(results, f"{layout} {case}", result_and_gradients)
    lhs = jax.device_put(rng.standard_normal((8, 4, 6, 6)), NamedSharding(mesh, P("data")))
    rhs = rng.standard_normal((6, 4, 3, 3))
    for case, out_sharding in {"axis not in the mesh": P("nope"),
                               "spec does not divide": P(None, None, "data"),
                               "another mesh": NamedSharding(other, P("data"))}.items():
        compare(results, f"refused: {case}",
                lambda conv: (conv(lhs, rhs, (1, 1), "SAME", out_sharding=out_sharding),))
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def results():
    return json.loads(run_on_eight_cpu_devices(SCRIPT).splitlines()[-1])


CASES = ["NCHW None", "NCHW spec (batch, features)", "NCHW NamedSharding (features), rhs replicated",
         "NHWC spec (batch)", "NHWC NamedSharding (features)"]
REFUSALS = ["NCHW None, rhs sharded", "refused: axis not in the mesh",
            "refused: spec does not divide", "refused: another mesh"]


def test_every_case_ran(results):
    assert sorted(results) == sorted(CASES + REFUSALS)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("op", OPS)
def test_types_and_values_are_lax_s(results, case, op):
    """The result and, under ``jax.jit``, both gradients: lax's types, shardings and values."""
    lax, ours = results[case]["lax"], results[case][op]
    assert "types" in lax, lax  # the oracle computed this case
    assert ours["types"] == lax["types"] and ours["shardings"] == lax["shardings"], (lax, ours)
    assert ours["max_rel_error"] <= tolerance("float64"), ours


def test_cases_shard_what_they_say(results):
    """The oracle's own types (result, lhs gradient, rhs gradient): the cases shard the batch, the
    output features or both, so that a test that ignored ``out_sharding`` would fail. NHWC
    output: (8, (7 + 1 - 3) // 2 + 1, 6 + 3 - (2 - 1) * 2, 6) = (8, 3, 7, 6)."""
    assert results["NCHW None"]["lax"]["types"] == [
        "float64[8@data,6,6,6]", "float64[8@data,4,6,6]", "float64[6,4,3,3]"]
    assert results["NCHW spec (batch, features)"]["lax"]["types"] == [
        "float64[8@data,6@model,6,6]", "float64[8@data,4,6,6]", "float64[6@model,4,3,3]"]
    assert results["NCHW NamedSharding (features), rhs replicated"]["lax"]["types"][0] == (
        "float64[8,6@model,6,6]")
    assert results["NHWC NamedSharding (features)"]["lax"]["types"] == [
        "float64[8,3,7,6@model]", "float64[8@data,7,6,4]", "float64[3,2,4,6@model]"]


@pytest.mark.parametrize("case", REFUSALS)
@pytest.mark.parametrize("op", OPS)
def test_refused_where_lax_refuses(results, case, op):
    """lax's exception type and message (less the source line some name)."""
    outcomes = results[case]
    assert "error" in outcomes["lax"], outcomes["lax"]
    assert outcomes[op] == outcomes["lax"]
