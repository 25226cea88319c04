"""Where derive and impl meet: the exact forms, evaluated at random numbers, against autodiff.

Each case's symbolic O, dL/dX and dL/dF (from differentiating L = sum G*O) and the rule's forms
are lambdified and evaluated in float64 at random X, F, G; the oracles are jax.vjp of the native
``lax.conv_general_dilated`` (JAX's own autodiff) and of ``impl.conv_general_dilated`` (the op whose
backward pass is the rule), compared under the float64 tolerance of convgrad.tolerances.
"""

import jax
import numpy as np
import pytest
import sympy
from jax import lax

import impl
from derive import derive_2d, derive_conv, seed_case
from tests.helpers import assert_close, random_array


def _flat(array: object) -> list:
    return list(sympy.flatten(array.tolist()))


def _evaluate(derivation: object, x: np.ndarray, f: np.ndarray, g: np.ndarray) -> dict:
    """Every symbolic array of ``derivation`` at X = x, F = f, G = g (float64)."""
    symbols = [_flat(derivation.X), _flat(derivation.F), _flat(derivation.G)]
    values = {}
    for name in ("O", "dL_dX", "dL_dF", "rule_dL_dX", "rule_dL_dF"):
        expressions = getattr(derivation, name)
        function = sympy.lambdify(symbols, _flat(expressions), modules="numpy")
        flat = np.array(function(*(np.ravel(a) for a in (x, f, g))), dtype=np.float64)
        values[name] = flat.reshape(expressions.shape)
    return values


def _check(derivation, x, f, g, lax_kwargs, op_inputs):
    """Compare derivation at (x, f, g) with the forward and the vjp of lax and of the impl op."""
    exact = _evaluate(derivation, np.asarray(x), np.asarray(f), np.asarray(g))
    lhs, rhs = op_inputs(x), op_inputs(f)
    for name, conv in (("lax", lax.conv_general_dilated), ("impl", impl.conv_general_dilated)):
        out, vjp = jax.vjp(lambda a, b, conv=conv: conv(a, b, **lax_kwargs), lhs, rhs)
        dx, df = vjp(op_inputs(g))
        assert_close(out.reshape(exact["O"].shape), exact["O"], "float64", f"O vs {name}")
        for form in ("dL_dX", "rule_dL_dX"):
            assert_close(dx.reshape(exact[form].shape), exact[form], "float64", f"{form} vs {name}")
        for form in ("dL_dF", "rule_dL_dF"):
            assert_close(df.reshape(exact[form].shape), exact[form], "float64", f"{form} vs {name}")


def _no_reshape(array):
    return array


def _as_nchw(array):
    return array[None, None]


def test_seed_case_against_autodiff():
    rng = np.random.default_rng(0)
    d = seed_case()
    x, f, g = (random_array(rng, shape) for shape in ((3, 3), (2, 2), (2, 2)))
    _check(d, x, f, g, dict(window_strides=(1, 1), padding="VALID"), _as_nchw)
    exact = _evaluate(d, np.asarray(x), np.asarray(f), np.asarray(g))
    _, vjp = jax.vjp(impl.conv2d, x, f)
    dx, df = vjp(g)
    assert_close(dx, exact["dL_dX"], "float64", "conv2d dL/dX")
    assert_close(df, exact["dL_dF"], "float64", "conv2d dL/dF")


SINGLE_CHANNEL_2D = [
    dict(input_shape=(5, 7), filter_shape=(2, 3), stride=(2, 1), padding=((1, 0), (0, 2)),
         dilation=(1, 2)),
    dict(input_shape=(6, 4), filter_shape=(3, 2), stride=(3, 2), padding="SAME", dilation=(2, 1)),
    dict(input_shape=(4, 9), filter_shape=(1, 4), stride=(1, 3), padding=((-1, 2), (2, -1))),
]


@pytest.mark.parametrize("case", SINGLE_CHANNEL_2D)
def test_derive_2d_against_autodiff(case):
    rng = np.random.default_rng(1)
    d = derive_2d(**case)
    x, f, g = (random_array(rng, shape) for shape in (d.input_shape, d.filter_shape, d.output_shape))
    _check(d, x, f, g, dict(window_strides=d.stride, padding=d.padding, rhs_dilation=d.dilation),
           _as_nchw)


MULTI_CHANNEL = [
    dict(lhs_shape=(2, 4, 5, 6), rhs_shape=(6, 2, 2, 3), window_strides=(2, 1),
         padding=((1, 0), (0, 1)), rhs_dilation=(1, 2), feature_group_count=2),
    dict(lhs_shape=(4, 3, 5, 4), rhs_shape=(4, 3, 3, 2), window_strides=(1, 2), padding="SAME",
         batch_group_count=2),
    dict(lhs_shape=(2, 2, 4, 3), rhs_shape=(3, 2, 2, 2), window_strides=(2, 1),
         padding=((1, 1), (0, 1)), lhs_dilation=(2, 1), rhs_dilation=(1, 2)),
    dict(lhs_shape=(3, 2, 7), rhs_shape=(2, 2, 3), window_strides=(2,), padding=((2, -1),),
         rhs_dilation=(2,)),
    dict(lhs_shape=(1, 2, 3, 4, 3), rhs_shape=(2, 1, 2, 2, 2), window_strides=(1, 2, 1),
         padding="SAME", feature_group_count=2),
]


@pytest.mark.parametrize("case", MULTI_CHANNEL)
def test_derive_conv_against_autodiff(case):
    rng = np.random.default_rng(2)
    d = derive_conv(**case)
    assert d.verified
    x, f, g = (random_array(rng, shape) for shape in (d.lhs_shape, d.rhs_shape, d.out_shape))
    kwargs = dict(window_strides=d.window_strides, padding=d.padding, lhs_dilation=d.lhs_dilation,
                  rhs_dilation=d.rhs_dilation, feature_group_count=d.feature_group_count,
                  batch_group_count=d.batch_group_count)
    _check(d, x, f, g, kwargs, _no_reshape)
