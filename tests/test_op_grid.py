"""The op's output and both cotangents against ``jax.vjp`` of ``jax.lax.conv_general_dilated``.

Oracles: native lax autodiff (every axis of the interface, every dtype), finite differences
(``jax.test_util.check_grads``, second order, float64) and the tutorial's NumPy loops
(``impl.reference``). The default run takes a subset of the grid that covers every pair of axis
values; ``-m slow`` runs the full cartesian product.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.test_util import check_grads

import impl
from convgrad.tolerances import tolerance
from impl import reference
from tests.conv_oracle import (
    AXES,
    all_choices,
    assert_matches_lax,
    choice_name,
    make_case,
    pairwise_cover,
    random_array,
    relative_error,
    vjp_outputs,
)
from tests.helpers import assert_close

LOW_PRECISION_DTYPES = ("float32", "float16", "bfloat16", "complex64", "complex128")

COVER = pairwise_cover()
# Each covering case once more in one of the other dtypes, in turn: every dtype meets every
# spatial rank and several paddings, groups and layouts (the rule itself is dtype-agnostic).
DTYPE_CASES = [(choice, LOW_PRECISION_DTYPES[index % len(LOW_PRECISION_DTYPES)])
               for index, choice in enumerate(COVER)]


def test_cover_has_every_feasible_pair_of_axis_values():
    # Brute force over the full product: the greedy subset really is a pairwise covering.
    covered = {pair for choice in COVER for pair in itertools.combinations(choice.items(), 2)}
    for choice in all_choices(AXES):
        assert set(itertools.combinations(choice.items(), 2)) <= covered, choice


@pytest.mark.parametrize("choice", COVER, ids=choice_name)
def test_float64_pairwise_grid(choice):
    assert_matches_lax(make_case(choice), "float64")


@pytest.mark.parametrize(("choice", "dtype"), DTYPE_CASES,
                         ids=[f"{dtype}-{choice_name(choice)}" for choice, dtype in DTYPE_CASES])
def test_other_dtypes_on_the_covering_cases(choice, dtype):
    assert_matches_lax(make_case(choice), dtype)


@pytest.mark.parametrize("choice", COVER, ids=choice_name)
def test_float32_against_float64_lax_on_the_covering_cases(choice):
    # lax's own float32 convolution can be wrong where the op computes like it (XLA:CPU with
    # negative padding, openxla/xla#48713: tests/test_negative_padding.py), so here the oracle is
    # float64 lax on the same float32-rounded operands.
    case = make_case(choice)
    rng = np.random.default_rng(0)
    lhs, rhs = (random_array(rng, shape, "float32") for shape in (case.lhs_shape, case.rhs_shape))
    out = jax.eval_shape(lambda lhs, rhs: lax.conv_general_dilated(lhs, rhs, **case.kwargs),
                         lhs, rhs)
    cotangent = random_array(rng, out.shape, "float32")
    ours = jax.jit(lambda *operands: vjp_outputs(impl.conv_general_dilated, *operands,
                                                 case.kwargs))(lhs, rhs, cotangent)
    oracle = vjp_outputs(lax.conv_general_dilated, *(operand.astype("float64") for operand in
                                                     (lhs, rhs, cotangent)), case.kwargs)
    for what, actual, expected in zip(("O", "dL/dlhs", "dL/drhs"), ours, oracle, strict=True):
        assert actual.dtype == jnp.float32
        assert relative_error(actual, expected) <= tolerance("float32"), f"{case.name}: {what}"


@pytest.mark.slow
@pytest.mark.parametrize("choice", list(all_choices()), ids=choice_name)
def test_float64_full_grid(choice):
    assert_matches_lax(make_case(choice), "float64")


@pytest.mark.slow
@pytest.mark.parametrize("dtype", LOW_PRECISION_DTYPES)
@pytest.mark.parametrize("choice", COVER, ids=choice_name)
def test_every_dtype_on_every_covering_case(choice, dtype):
    assert_matches_lax(make_case(choice), dtype)


BASE_2D = {"rank": 2, "padding": "SAME", "strides": "mixed", "lhs_dilation": False,
           "rhs_dilation": True, "groups": "feature", "layout": "channels_last", "batch": "full"}


@pytest.mark.parametrize("precision", [
    lax.Precision.HIGHEST, "highest", "default", (lax.Precision.DEFAULT, lax.Precision.HIGHEST),
])
def test_precision(precision):
    assert_matches_lax(make_case(BASE_2D), "float32", precision=precision)


@pytest.mark.parametrize(("dtype", "preferred"), [
    ("bfloat16", "float32"), ("float16", "float32"), ("float32", "float64"),
    ("complex64", "complex128"),
])
def test_preferred_element_type(dtype, preferred):
    case = make_case({**BASE_2D, "groups": "batch", "layout": "odd"})
    assert_matches_lax(case, dtype, preferred_element_type=jnp.dtype(preferred))


@pytest.mark.parametrize(("dtype", "preferred"), [("int32", None), ("int8", "int32"),
                                                  ("bool", None)])
def test_integer_and_bool_forward_equals_lax(dtype, preferred):
    # Forward only: integer and bool convolutions are exact, so the results must be identical.
    case = make_case({**BASE_2D, "groups": "depthwise"})
    rng = np.random.default_rng(0)
    lhs, rhs = (jnp.asarray(rng.integers(-3, 4, shape)).astype(dtype)
                for shape in (case.lhs_shape, case.rhs_shape))
    kwargs = {**case.kwargs, "preferred_element_type": preferred}
    ours = impl.conv_general_dilated(lhs, rhs, **kwargs)
    native = lax.conv_general_dilated(lhs, rhs, **kwargs)
    assert ours.dtype == native.dtype
    np.testing.assert_array_equal(ours, native)


CHECK_GRADS_CHOICES = [
    {"rank": 1, "padding": "negative", "strides": "mixed", "lhs_dilation": True,
     "rhs_dilation": True, "groups": "none", "layout": "default", "batch": "full"},
    {"rank": 2, "padding": "SAME_LOWER", "strides": "mixed", "lhs_dilation": False,
     "rhs_dilation": True, "groups": "depthwise", "layout": "odd", "batch": "full"},
    {"rank": 2, "padding": "explicit", "strides": "unit", "lhs_dilation": True,
     "rhs_dilation": False, "groups": "batch", "layout": "object", "batch": "full"},
    {"rank": 3, "padding": "SAME", "strides": "mixed", "lhs_dilation": False,
     "rhs_dilation": True, "groups": "feature", "layout": "channels_last", "batch": "full"},
]


@pytest.mark.parametrize("choice", CHECK_GRADS_CHOICES, ids=choice_name)
def test_second_order_against_finite_differences(choice):
    # Finite differences are independent of both the rule and lax's transpose rules.
    case = make_case(choice)
    rng = np.random.default_rng(1)
    lhs = random_array(rng, case.lhs_shape, "float64")
    rhs = random_array(rng, case.rhs_shape, "float64")
    check_grads(lambda lhs, rhs: impl.conv_general_dilated(lhs, rhs, **case.kwargs),
                (lhs, rhs), order=2, modes=["rev"])


def test_check_grads_detects_a_wrong_gradient():
    # The finite-difference oracle is not vacuous: a function whose vjp is scaled is rejected.
    @jax.custom_vjp
    def doubled_grad(x):
        return jnp.sin(x)

    doubled_grad.defvjp(lambda x: (jnp.sin(x), x), lambda x, g: (2 * g * jnp.cos(x),))
    with pytest.raises(AssertionError):
        check_grads(doubled_grad, (jnp.linspace(0.1, 1.0, 5),), order=1, modes=["rev"])


@pytest.mark.parametrize(("height", "width", "kh", "kw"), [
    (1, 1, 1, 1), (5, 4, 5, 4), (6, 3, 1, 1), (1, 9, 1, 4), (9, 1, 3, 1), (7, 8, 2, 5),
])
def test_conv2d_matches_loops_at_edge_sizes(height, width, kh, kw):
    # Edge shapes the random-size test in test_reference.py may miss: filter as large as the input
    # (one output), 1x1 filters, single rows and columns.
    rng = np.random.default_rng(height * 100 + width * 10 + kh + kw)
    x, f = rng.standard_normal((height, width)), rng.standard_normal((kh, kw))
    upstream = rng.standard_normal((height - kh + 1, width - kw + 1))
    out, vjp = jax.vjp(jax.jit(impl.conv2d), x, f)
    dx, df = vjp(upstream)
    ref_dx, ref_df = reference.conv_backward(upstream, x, f)
    assert_close(out, reference.conv_forward(x, f), what="O")
    assert_close(dx, ref_dx, what="dL/dX")
    assert_close(df, ref_df, what="dL/dF")


@pytest.mark.parametrize("seed", range(4))
def test_conv2d_second_order_matches_lax(seed):
    # Hessian-vector products of a nonlinear loss by reverse-over-reverse (custom_vjp has no
    # forward mode), through the rule applied to the rule.
    rng = np.random.default_rng(seed)
    height, width = rng.integers(3, 9, size=2)
    kh, kw = rng.integers(1, height + 1), rng.integers(1, width + 1)
    x, f = rng.standard_normal((height, width)), rng.standard_normal((kh, kw))
    direction = (rng.standard_normal(x.shape), rng.standard_normal(f.shape))

    def native(x, f):
        return lax.conv_general_dilated(x[None, None], f[None, None], (1, 1), "VALID")[0, 0]

    def hvp(conv):
        grad = jax.grad(lambda x, f: jnp.sum(jnp.tanh(conv(x, f))), argnums=(0, 1))
        return jax.grad(lambda x, f: sum(jnp.vdot(g, v) for g, v in zip(grad(x, f), direction,
                                                                         strict=True)),
                        argnums=(0, 1))(x, f)

    for ours, expected in zip(hvp(impl.conv2d), hvp(native), strict=True):
        assert relative_error(ours, expected) <= 1e-12
