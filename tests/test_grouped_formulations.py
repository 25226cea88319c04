"""The filter gradient of a depthwise convolution on CPU (impl._formulations).

That gradient is a convolution with one lhs batch element per batch group (the forward's
channels) and few output positions (the forward's taps). ``batch_grouped_reduce`` computes it as
one variadic reduction with an operand per output position, ``batch_grouped_blocks`` as the
diagonals of block-wise dense convolutions. Both are called here directly on the gradient
convolutions the rule builds for the oracle's depthwise cases (every spatial rank, padding,
stride, dilation and layout, a channel multiplier of 2), in float64 against native lax; the op
itself is checked against native autodiff on the same grid by tests/test_op_grid.py.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import impl._formulations as formulations
from convgrad.tolerances import tolerance
from impl import _rule
from impl._config import ConvConfig, make_config
from tests.conv_oracle import AXES, make_case, pairwise_cover, random_array, relative_error

DEPTHWISE_AXES = {**AXES, "groups": ("depthwise",), "batch": ("full",)}
COVER = pairwise_cover(DEPTHWISE_AXES)


def _name(choice: dict[str, Any]) -> str:
    return "-".join(f"{key}={value}" for key, value in choice.items())


def _filter_gradient(choice: dict[str, Any], dtype: str
                     ) -> tuple[jax.Array, jax.Array, ConvConfig]:
    """(lhs, rhs, config) of the convolution the rule computes the filter gradient with."""
    case = make_case(choice)
    rng = np.random.default_rng(3)
    lhs = random_array(rng, case.lhs_shape, dtype)
    rhs = random_array(rng, case.rhs_shape, dtype)
    config = make_config(lhs, rhs, **case.kwargs)
    out = jax.eval_shape(lambda a, b: formulations.native(a, b, config), lhs, rhs)
    cotangent = random_array(rng, out.shape, dtype)
    captured = []

    def capture(a: jax.Array, b: jax.Array, c: ConvConfig) -> jax.Array:
        captured.append((a, b, c))
        return formulations.native(a, b, c)

    _rule.rhs_cotangent(capture, cotangent, lhs, config, rhs.shape, rhs.dtype)
    (gradient,) = captured
    return gradient


def _against_native(formulation: Callable[..., jax.Array], lhs: jax.Array, rhs: jax.Array,
                    config: ConvConfig) -> float:
    ours, native = jax.jit(lambda a, b: (formulation(a, b, config),
                                         formulations.native(a, b, config)))(lhs, rhs)
    assert ours.shape == native.shape and ours.dtype == native.dtype
    assert np.any(np.asarray(native) != 0), "the native result is all zero"
    return relative_error(ours, native)


@pytest.mark.parametrize("choice", COVER, ids=_name)
def test_depthwise_filter_gradients_equal_native_in_float64(choice: dict[str, Any]) -> None:
    lhs, rhs, config = _filter_gradient(choice, "float64")
    # The case really is one lhs batch element per batch group, the one these serve.
    assert config.batch_group_count == lhs.shape[config.dimension_numbers.lhs_spec[0]] > 1
    for formulation in (formulations.batch_grouped_reduce, formulations.batch_grouped_blocks):
        error = _against_native(formulation, lhs, rhs, config)
        assert error <= tolerance("float64"), f"{formulation.__name__}: {error:.3e}"


@pytest.mark.parametrize("dtype, preferred", [("float32", None), ("bfloat16", None),
                                              ("bfloat16", "float32")])
@pytest.mark.parametrize("choice", COVER[:4], ids=_name)
def test_the_reduction_in_the_dtypes_that_use_it(choice: dict[str, Any], dtype: str,
                                                 preferred: str | None) -> None:
    lhs, rhs, config = _filter_gradient(choice, dtype)
    config = ConvConfig(**{**config.as_lax_kwargs(), "preferred_element_type": preferred})
    error = _against_native(formulations.batch_grouped_reduce, lhs, rhs, config)
    assert error <= tolerance(preferred or dtype), f"{error:.3e}"


def _filter_gradient_choice(window: tuple[int, int]) -> str:
    """The CPU formulation of a (16, 64, 56, 56) depthwise convolution's filter gradient."""
    lhs = jax.ShapeDtypeStruct((16, 64, 56, 56), jnp.float32)
    rhs = jax.ShapeDtypeStruct((64, 1, *window), jnp.float32)
    config = make_config(lhs, rhs, (1, 1), "SAME", feature_group_count=64)
    captured = []

    def capture(a: jax.Array, b: jax.Array, c: ConvConfig) -> jax.Array:
        captured.append(formulations.cpu_formulation(a.shape, b.shape, c, a.dtype).__name__)
        return formulations.native(a, b, c)

    jax.eval_shape(lambda x, g: _rule.rhs_cotangent(capture, g, x, config, rhs.shape, rhs.dtype),
                   lhs, lhs)
    return captured[0]


@pytest.mark.parametrize("window, expected", [
    # One reduction up to MAX_UNROLLED_TAPS output positions (3x3: 5.3 against 17-19 ms; 7x7:
    # 31 against 90 ms, benchmarks/README.md); beyond, the blocks of dense convolutions.
    ((3, 3), "batch_grouped_reduce"),
    ((7, 7), "batch_grouped_reduce"),
    ((7, 8), "batch_grouped_blocks"),
])
def test_which_depthwise_filter_gradients_are_one_reduction(window: tuple[int, int],
                                                            expected: str) -> None:
    assert _filter_gradient_choice(window) == expected
