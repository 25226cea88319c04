"""The gradient is the op's own rotated-filter rule, and the suite's oracle would catch a wrong one.

* The op is a ``custom_vjp`` call, and its gradient reverses the filter's spatial axes.
* With JAX's own JVP and transpose rules of the convolution primitive disabled, the op is still
  differentiable (native lax is not): its backward pass never comes from JAX's autodiff.
* Deliberately wrong rules (no rotation, off-by-one padding, filter gradient flipped) are caught
  by the grid's comparison with native lax and by finite differences.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.interpreters import ad
from jax.test_util import check_grads

import impl
from tests.conv_oracle import assert_matches_lax, errors_against_lax, make_case, random_array

# Dense, 2-D, strided, padded and dilated: every term of the rule matters.
DENSE = make_case({"rank": 2, "padding": "explicit", "strides": "mixed", "lhs_dilation": False,
                   "rhs_dilation": True, "groups": "none", "layout": "default", "batch": "full"})
GROUPED = make_case({"rank": 2, "padding": "SAME", "strides": "mixed", "lhs_dilation": False,
                     "rhs_dilation": False, "groups": "feature", "layout": "channels_last",
                     "batch": "full"})


@pytest.fixture(autouse=True)
def _fresh_traces():
    # Traces cached by earlier tests must not hide a patched rule (or leak one to later tests).
    jax.clear_caches()
    yield
    jax.clear_caches()


def _operands(case, seed=0):
    rng = np.random.default_rng(seed)
    return (random_array(rng, case.lhs_shape, "float64"),
            random_array(rng, case.rhs_shape, "float64"))


def _loss(conv, case):
    return lambda lhs, rhs: jnp.sum(jnp.tanh(conv(lhs, rhs, **case.kwargs)))


def test_op_is_a_custom_vjp_call():
    jaxpr = jax.make_jaxpr(lambda lhs, rhs: impl.conv_general_dilated(lhs, rhs, **DENSE.kwargs))(
        *_operands(DENSE)).jaxpr
    assert [eqn.primitive.name for eqn in jaxpr.eqns] == ["custom_vjp_call"]


def test_gradient_reverses_the_filter_spatial_axes():
    lhs, rhs = _operands(DENSE)
    grad = jax.grad(_loss(impl.conv_general_dilated, DENSE), argnums=0)
    jaxpr = jax.make_jaxpr(grad)(lhs, rhs).jaxpr
    rhs_var = jaxpr.invars[1]
    reversals = [eqn for eqn in jaxpr.eqns
                 if eqn.primitive.name == "rev" and eqn.invars[0] is rhs_var]
    assert [eqn.params["dimensions"] for eqn in reversals] == [(2, 3)]


def _raise_if_called(*args, **kwargs):
    raise AssertionError("JAX's own conv_general_dilated autodiff rule was used")


@pytest.mark.parametrize("case", [DENSE, GROUPED], ids=["dense", "grouped"])
def test_backward_never_uses_jax_autodiff_of_the_convolution(case, monkeypatch):
    lhs, rhs = _operands(case)
    native_loss = _loss(lax.conv_general_dilated, case)
    expected_grad = jax.grad(native_loss, argnums=(0, 1))(lhs, rhs)
    expected_hvp = jax.grad(lambda lhs, rhs: jnp.sum(jax.grad(native_loss)(lhs, rhs) ** 2),
                            argnums=(0, 1))(lhs, rhs)
    jax.clear_caches()
    monkeypatch.setitem(ad.primitive_jvps, lax.conv_general_dilated_p, _raise_if_called)
    monkeypatch.setitem(ad.primitive_transposes, lax.conv_general_dilated_p, _raise_if_called)
    with pytest.raises(AssertionError, match="own conv_general_dilated autodiff rule"):
        jax.grad(native_loss)(lhs, rhs)  # the patch is effective

    ours_loss = _loss(impl.conv_general_dilated, case)
    grad = jax.grad(ours_loss, argnums=(0, 1))(lhs, rhs)
    hvp = jax.grad(lambda lhs, rhs: jnp.sum(jax.grad(ours_loss)(lhs, rhs) ** 2),
                   argnums=(0, 1))(lhs, rhs)
    for ours, expected in zip((*grad, *hvp), (*expected_grad, *expected_hvp), strict=True):
        np.testing.assert_allclose(ours, expected, rtol=1e-12, atol=1e-12)


# Wrong rules, injected where the op hands its convolution to the rule (impl._op calls
# ``lhs_cotangent(conv, cotangent, rhs, config, lhs_shape, lhs_dtype)`` and
# ``rhs_cotangent(conv, cotangent, lhs, config, rhs_shape, rhs_dtype)``). They are patched in the
# namespace the op's functions really use: pytest's doctest collection (import-mode=importlib) may
# load impl/_op.py a second time, so ``sys.modules["impl._op"]`` need not be that namespace.
OP_NAMESPACE = impl.conv_general_dilated.__globals__


def _spatial_axes(config):
    return tuple(config.dimension_numbers.rhs_spec[2:])


def _no_rotation(lhs_cotangent):
    """Reverse the filter before the rule reverses it again: dL/dlhs without the 180° rotation."""
    def wrong(conv, cotangent, rhs, config, *shape_and_dtype):
        return lhs_cotangent(conv, cotangent, lax.rev(rhs, _spatial_axes(config)), config,
                             *shape_and_dtype)
    return wrong


def _padding_off_by_one(lhs_cotangent):
    """The cotangent's low padding one short (and high padding one long)."""
    def wrong(conv, cotangent, rhs, config, *shape_and_dtype):
        shifted = tuple((lo + 1, hi - 1) for lo, hi in config.padding)
        return lhs_cotangent(conv, cotangent, rhs, dataclasses.replace(config, padding=shifted),
                             *shape_and_dtype)
    return wrong


def _flipped_filter_gradient(rhs_cotangent):
    """dL/drhs with its taps in reverse order (the rotation applied to the wrong gradient)."""
    def wrong(conv, cotangent, lhs, config, *shape_and_dtype):
        return lax.rev(rhs_cotangent(conv, cotangent, lhs, config, *shape_and_dtype),
                       _spatial_axes(config))
    return wrong


WRONG_RULES = [
    ("lhs_cotangent", _no_rotation, "dL/dlhs"),
    ("lhs_cotangent", _padding_off_by_one, "dL/dlhs"),
    ("rhs_cotangent", _flipped_filter_gradient, "dL/drhs"),
]


@pytest.mark.parametrize("case", [DENSE, GROUPED], ids=["dense", "grouped"])
@pytest.mark.parametrize(("target", "make_wrong", "broken"), WRONG_RULES,
                         ids=[rule[1].__name__.strip("_") for rule in WRONG_RULES])
def test_grid_oracle_catches_a_wrong_rule(case, target, make_wrong, broken, monkeypatch):
    monkeypatch.setitem(OP_NAMESPACE, target, make_wrong(OP_NAMESPACE[target]))
    errors = errors_against_lax(case)
    assert errors[broken] > 0.1, errors  # far above any tolerance in the table
    assert all(error <= 1e-12 for what, error in errors.items() if what != broken), errors
    with pytest.raises(AssertionError, match=f"{broken} rel error"):
        assert_matches_lax(case)


def test_finite_differences_catch_a_wrong_rule(monkeypatch):
    monkeypatch.setitem(OP_NAMESPACE, "lhs_cotangent", _no_rotation(OP_NAMESPACE["lhs_cotangent"]))
    with pytest.raises(AssertionError):
        check_grads(lambda lhs, rhs: impl.conv_general_dilated(lhs, rhs, **DENSE.kwargs),
                    _operands(DENSE), order=1, modes=["rev"])
