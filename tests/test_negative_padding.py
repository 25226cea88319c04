"""Negative padding on CPU: both ops right where XLA:CPU's own float32 kernel is not.

XLA:CPU's Eigen convolution kernel (few features; float32 and narrower types) reads outside its
input where a low padding is negative (openxla/xla#48713). The op's CPU formulations make such
paddings themselves (the phases of a strided input gradient, ``polyphase``; the folded 3-D
convolution), and users may ask for them. ``impl._formulations.native`` takes the crop off the
input first. Found by probing the op against lax: the causal 1-D convolution at stride 2 had an
input gradient wrong by 12-1e31 in float32.

Oracle: ``jax.vjp`` of lax in float64, on the same float32-rounded operands (XLA's float64
convolution is another kernel, which the bug does not touch), and for the smallest case a plain
NumPy sum written out here.
"""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import impl
import impl._formulations as formulations
from impl._config import make_config
from tests.helpers import assert_close

OPS = {"op": impl.conv_general_dilated, "primitive": impl.primitive.conv_general_dilated}

# (lhs shape, rhs shape, options): each had wrong float32 results from the op before the fix.
CASES = {
    "causal 1-D stride 2": ((2, 8, 31), (8, 8, 5), dict(window_strides=(2,), padding=((4, 0),))),
    "causal 2-D stride 2": ((2, 4, 16, 16), (8, 4, 3, 3),
                            dict(window_strides=(2, 2), padding=((2, 0), (2, 0)))),
    "grouped 1-D stride 3": ((1, 8, 30), (8, 4, 3), dict(window_strides=(3,), padding=((2, 0),),
                                                         feature_group_count=2)),
    "channels-last 1-D, mixed signs": ((2, 224, 32), (3, 4, 16), dict(
        window_strides=(3,), padding=((2, -1),), feature_group_count=8,
        dimension_numbers=("NWC", "WIO", "NWC"))),
    "3-D folded, mixed signs": ((4, 4, 6, 6, 8), (5, 2, 3, 8, 16), dict(
        window_strides=(3, 1, 1), padding=((2, 1), (1, 0), (-2, 1)), lhs_dilation=(3, 3, 1),
        rhs_dilation=(2, 1, 1), dimension_numbers=("NDHWC", "DHWIO", "NDHWC"))),
    # Crops of a dilated axis (kept: XLA's path for it is right) and of an undilated one.
    "2-D, crops, lhs dilation on one axis": ((2, 4, 7, 6), (3, 4, 3, 2), dict(
        window_strides=(2, 1), padding=((-2, 1), (-3, 2)), lhs_dilation=(2, 1))),
    # Wrong in lax itself (its forward hits the kernel directly): 0.09-1e21 relative in float32.
    "lax's own: crop 1, pad 1": ((2, 2, 5), (1, 2, 4), dict(window_strides=(1,),
                                                            padding=((-1, 1),))),
}


def _outputs(conv, options, lhs, rhs, cotangent):
    """(output, dL/dlhs, dL/drhs) of ``conv(lhs, rhs, **options)`` for ``cotangent``."""
    out, vjp = jax.vjp(lambda a, b: conv(a, b, **options), lhs, rhs)
    return (out, *vjp(cotangent))


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("case", CASES)
def test_float32_values_and_gradients_match_float64(case, op):
    lhs_shape, rhs_shape, options = CASES[case]
    rng = np.random.default_rng(0)
    lhs, rhs = (jnp.asarray(rng.standard_normal(shape), jnp.float32)
                for shape in (lhs_shape, rhs_shape))
    out_shape = jax.eval_shape(lambda a, b: lax.conv_general_dilated(a, b, **options),
                               lhs, rhs).shape
    cotangent = jnp.asarray(rng.standard_normal(out_shape), jnp.float32)
    expected = _outputs(lax.conv_general_dilated, options,
                        *(operand.astype(jnp.float64) for operand in (lhs, rhs, cotangent)))
    step = jax.jit(functools.partial(_outputs, OPS[op], options))
    for _ in range(2):  # what is read outside the input differs from run to run
        for name, actual, wanted in zip(("output", "dL/dlhs", "dL/drhs"),
                                        step(lhs, rhs, cotangent), expected, strict=True):
            assert actual.dtype == jnp.float32
            assert_close(actual, wanted, "float32", f"{case}, {op}, {name}")


def test_the_smallest_case_against_a_plain_sum():
    # O[b, o, w] = Σ_{c, t} X̃[b, c, w + t] F[o, c, t], X̃ = X cropped by 1 at the start and padded
    # by one zero at the end.
    rng = np.random.default_rng(1)
    x, f = rng.standard_normal((2, 2, 5)), rng.standard_normal((1, 2, 4))
    padded = np.concatenate([x[:, :, 1:], np.zeros((2, 2, 1))], axis=2)        # length 5
    expected = np.einsum("bcwt,oct->bow", np.stack(
        [padded[:, :, t:t + 2] for t in range(4)], axis=-1), f)                 # 2 outputs
    for op in OPS.values():
        actual = op(jnp.float32(x), jnp.float32(f), (1,), ((-1, 1),))
        assert_close(actual, expected, "float32")


@pytest.mark.parametrize("padding, lhs_dilation, zeros, left", [
    (((-1, 2), (2, -3)), (1, 1), False, ((0, 2), (2, 0))),
    (((-2, 1), (0, -1)), (3, 1), False, ((-2, 1), (0, 0))),  # the dilated axis kept as it is
    (((-5, 3), (1, 1)), (1, 1), True, ((0, 0), (1, 1))),     # crops past the input's 3 rows
])
def test_native_hands_xla_no_negative_padding_on_undilated_axes(padding, lhs_dilation,
                                                                    zeros, left):
    rng = np.random.default_rng(2)
    lhs = jnp.asarray(rng.standard_normal((2, 3, 3, 6)))                 # float64 (conftest)
    rhs = jnp.asarray(rng.standard_normal((4, 3, 1, 2)))
    config = make_config(lhs, rhs, (1, 1), padding, lhs_dilation)
    expected = formulations.lax_conv(lhs, rhs, config)  # float64: XLA's right kernel
    actual = formulations.native(lhs, rhs, config)
    jaxpr = jax.make_jaxpr(lambda a, b: formulations.native(a, b, config))(lhs, rhs)
    assert expected.shape == actual.shape
    assert np.all(np.asarray(actual) == 0) if zeros else np.any(np.asarray(expected) != 0)
    assert_close(actual, expected, "float64")
    convolutions = [eqn for eqn in jaxpr.jaxpr.eqns if eqn.primitive.name == "conv_general_dilated"]
    assert len(convolutions) == 1 and convolutions[0].params["padding"] == left


# The grid that found it (a review's scan): 1-D, 8 features, strides 2-4, every padding kind and
# the causal ones, dense and 2 groups; 15 of its 216 cases were wrong before the fix.
GRID_PADDINGS = {"SAME": "SAME", "SAME_LOWER": "SAME_LOWER", "VALID": "VALID",
                 "causal": lambda k: ((k - 1, 0),), "anticausal": lambda k: ((0, k - 1),),
                 "one each side": lambda k: ((1, 1),)}


@pytest.mark.slow
@pytest.mark.parametrize("padding", GRID_PADDINGS)
@pytest.mark.parametrize("groups", [1, 2])
def test_strided_1d_grid_in_float32_matches_float64(padding, groups):
    rng = np.random.default_rng(3)
    for size, window, stride in itertools.product((20, 31), (2, 3, 5), (2, 3, 4)):
        pads = GRID_PADDINGS[padding]
        options = dict(window_strides=(stride,), feature_group_count=groups,
                       padding=pads if isinstance(pads, str) else pads(window))
        lhs = rng.standard_normal((2, 8, size))
        rhs = rng.standard_normal((8, 8 // groups, window))
        out_shape = jax.eval_shape(lambda a, b, options=options: lax.conv_general_dilated(
            a, b, **options), lhs, rhs).shape
        cotangent = rng.standard_normal(out_shape)
        expected = _outputs(lax.conv_general_dilated, options, lhs, rhs, cotangent)
        actual = jax.jit(functools.partial(_outputs, impl.conv_general_dilated, options))(
            *(jnp.asarray(operand, jnp.float32) for operand in (lhs, rhs, cotangent)))
        for name, value, wanted in zip(("output", "dL/dlhs", "dL/drhs"), actual, expected,
                                       strict=True):
            assert_close(value, wanted, "float32", f"{size}, k={window}, s={stride}: {name}")
