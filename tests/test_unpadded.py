"""Convolutions without padding, and 3-D ones that fold into plain 2-D ones, on CPU (item 35).

With jaxlib 0.10, XLA:CPU ran a dense 2-D convolution whose padding is zero on every side at half
the speed of the same one with any padding (``benchmarks/probe_unpadded.py``), so the op's
``native`` formulation pads the high end of the widest output axis by one stride and slices the
extra output off (``_one_more_output``). A 3-D convolution with one tap on its first window axis
(the 1x3x3 convolutions of (2+1)-D video networks), or its filter gradient, folds into a 2-D one
without copies, which then takes the 2-D rules (``_folds_to_plain``).

Oracles: lax itself in float64 (``formulations.lax_conv``, the unpadded convolution as asked), and
``jax.vjp`` of lax in float64 for the op's gradients.
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import impl
import impl._formulations as formulations
from impl._config import make_config
from tests.helpers import assert_close


@pytest.fixture
def older_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    """As with jaxlib 0.10, whatever jaxlib is installed (the rule is for its kernels only)."""
    monkeypatch.setattr(formulations, "_newer_kernels", lambda: False)


def _operands(lhs_shape: tuple[int, ...], rhs_shape: tuple[int, ...], dtype: str = "float64",
              seed: int = 0) -> tuple[jax.Array, jax.Array]:
    rng = np.random.default_rng(seed)
    return (jnp.asarray(rng.standard_normal(lhs_shape), dtype),
            jnp.asarray(rng.standard_normal(rhs_shape), dtype))


def _paddings(function: Any, *args: jax.Array) -> list[tuple[tuple[int, int], ...]]:
    """The padding of every convolution ``function`` traces."""
    jaxpr = jax.make_jaxpr(function)(*args)
    return [tuple(eqn.params["padding"]) for eqn in jaxpr.jaxpr.eqns
            if eqn.primitive.name == "conv_general_dilated"]


@pytest.mark.parametrize("lhs_shape, rhs_shape, strides, rhs_dilation, layout, padded_axis", [
    ((2, 3, 7, 9), (4, 3, 3, 2), (1, 1), (1, 1), "NCHW", 1),   # 5 x 8 outputs: the second axis
    ((2, 3, 9, 6), (4, 3, 2, 3), (1, 1), (1, 1), "NCHW", 0),   # 8 x 4: the first
    ((2, 3, 9, 8), (4, 3, 3, 3), (2, 3), (1, 1), "NCHW", 0),   # strided: 4 x 2
    ((2, 3, 8, 9), (4, 3, 2, 2), (1, 2), (3, 1), "NCHW", 0),   # rhs dilation 3 on the first: 5 x 4
    ((2, 7, 9, 3), (3, 2, 3, 4), (1, 1), (1, 1), "NHWC", 1),   # channels last: 5 x 8
])
def test_an_unpadded_2d_convolution_gets_one_more_output_and_the_same_values(
        older_kernels: None, lhs_shape: tuple[int, ...], rhs_shape: tuple[int, ...],
        strides: tuple[int, int], rhs_dilation: tuple[int, int], layout: str,
        padded_axis: int) -> None:
    lhs, rhs = _operands(lhs_shape, rhs_shape)
    numbers = ("NCHW", "OIHW", "NCHW") if layout == "NCHW" else ("NHWC", "HWIO", "NHWC")
    config = make_config(lhs, rhs, strides, "VALID", rhs_dilation=rhs_dilation,
                         dimension_numbers=numbers)
    assert formulations._unpadded_slow(config)
    expected = formulations.lax_conv(lhs, rhs, config)
    actual = formulations.native(lhs, rhs, config)
    assert actual.shape == expected.shape and np.any(np.asarray(expected) != 0)
    assert_close(actual, expected, "float64")
    want = [(0, 0), (0, 0)]
    want[padded_axis] = (0, strides[padded_axis])
    assert _paddings(lambda a, b: formulations.native(a, b, config), lhs, rhs) == [tuple(want)]


@pytest.mark.parametrize("lhs_shape, rhs_shape, options, why", [
    ((2, 3, 8, 8), (4, 3, 3, 3), {"padding": ((1, 0), (0, 0))}, "padded on one side"),
    ((2, 3, 8, 8), (4, 3, 3, 3), {"lhs_dilation": (2, 1)}, "lhs dilation (measured 1.04-1.09)"),
    ((2, 4, 8, 8), (4, 2, 3, 3), {"feature_group_count": 2}, "groups (1.01-1.09)"),
    ((2, 3, 16), (4, 3, 3), {}, "1-D (1.2-1.8)"),
    ((2, 3, 4, 8, 8), (4, 3, 3, 3, 3), {}, "3-D (1.05)"),
])
def test_other_unpadded_convolutions_keep_lax_s_padding(
        older_kernels: None, lhs_shape: tuple[int, ...], rhs_shape: tuple[int, ...],
        options: dict[str, Any], why: str) -> None:
    lhs, rhs = _operands(lhs_shape, rhs_shape)
    n = len(lhs_shape) - 2
    options = {"padding": ((0, 0),) * n, **options}
    config = make_config(lhs, rhs, (1,) * n, options.pop("padding"), **options)
    assert not formulations._unpadded_slow(config), why
    assert _paddings(lambda a, b: formulations.native(a, b, config), lhs, rhs) == [
        config.padding], why


def test_with_newer_kernels_the_unpadded_convolution_is_left_to_lax(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(formulations, "_newer_kernels", lambda: True)  # jaxlib 0.11 and later
    lhs, rhs = _operands((2, 3, 8, 8), (4, 3, 3, 3))
    config = make_config(lhs, rhs, (1, 1), "VALID")
    assert not formulations._unpadded_slow(config)
    assert _paddings(lambda a, b: formulations.native(a, b, config), lhs, rhs) == [
        ((0, 0), (0, 0))]


def test_the_switch_turns_it_off(older_kernels: None, monkeypatch: pytest.MonkeyPatch) -> None:
    lhs, rhs = _operands((2, 3, 8, 8), (4, 3, 3, 3))
    config = make_config(lhs, rhs, (1, 1), "VALID")
    assert formulations._unpadded_slow(config)
    monkeypatch.setattr(formulations, "UNPADDED_AS_PADDED", False)
    assert not formulations._unpadded_slow(config)


def _gradients(conv: Any, lhs: jax.Array, rhs: jax.Array, cotangent: jax.Array,
               **options: Any) -> tuple[jax.Array, ...]:
    out, pullback = jax.vjp(lambda a, b: conv(a, b, **options), lhs, rhs)
    return (out, *pullback(cotangent))


@pytest.mark.parametrize("lhs_shape, rhs_shape, options", [
    # VALID 2-D, whose forward and filter gradient are unpadded convolutions.
    ((3, 6, 11, 10), (5, 6, 3, 3), {"window_strides": (1, 1), "padding": "VALID"}),
    ((3, 6, 11, 10), (5, 6, 3, 2), {"window_strides": (2, 1), "padding": "VALID",
                                    "rhs_dilation": (1, 2)}),
    # 1x3x3 in 3-D: a plain fold, and its filter gradient one with a single output on that axis.
    ((2, 6, 4, 9, 8), (5, 6, 1, 3, 3), {"window_strides": (1, 1, 1), "padding": "VALID"}),
    ((2, 6, 4, 9, 8), (5, 6, 1, 3, 3), {"window_strides": (2, 1, 2), "padding": "SAME"}),
])
def test_the_op_agrees_with_lax_in_float64(older_kernels: None, lhs_shape: tuple[int, ...],
                                           rhs_shape: tuple[int, ...],
                                           options: dict[str, Any]) -> None:
    lhs, rhs = _operands(lhs_shape, rhs_shape)
    out_shape = jax.eval_shape(lambda a, b: lax.conv_general_dilated(a, b, **options), lhs, rhs)
    cotangent = _operands(out_shape.shape, (1,), seed=1)[0]
    expected = _gradients(lax.conv_general_dilated, lhs, rhs, cotangent, **options)
    for op in (impl.conv_general_dilated, impl.primitive.conv_general_dilated):
        for got, want, what in zip(_gradients(op, lhs, rhs, cotangent, **options), expected,
                                   ("output", "dL/dX", "dL/dF"), strict=True):
            assert_close(got, want, "float64", f"{op.__module__} {what}")


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_the_1x3x3_float32_step_agrees_with_float64(older_kernels: None, dtype: str) -> None:
    # Shapes where the plain fold's 2-D rules take matrix products (float32 ones only since the
    # fold counts as plain), against the op's own result in float64 (native kernels there).
    lhs, rhs = _operands((2, 48, 2, 28, 28), (48, 48, 1, 3, 3), "float32")
    lhs, rhs = lhs.astype(dtype).astype("float64"), rhs.astype(dtype).astype("float64")
    options = {"window_strides": (1, 1, 1), "padding": "SAME"}
    cotangent = _operands((2, 48, 2, 28, 28), (1,), seed=1)[0].astype(dtype).astype("float64")
    expected = _gradients(lax.conv_general_dilated, lhs, rhs, cotangent, **options)
    narrow = [array.astype(dtype) for array in (lhs, rhs, cotangent)]
    actual = jax.jit(lambda a, b, g: _gradients(impl.conv_general_dilated, a, b, g, **options))(
        *narrow)
    for got, want, what in zip(actual, expected, ("output", "dL/dX", "dL/dF"), strict=True):
        assert_close(got, want, dtype, what)
