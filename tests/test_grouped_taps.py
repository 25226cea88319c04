"""Feature-grouped convolutions as shift-and-add on CPU (``impl._formulations.grouped_taps``).

``grouped_taps`` sums, for each input feature of a group and each tap, one strided window read of
the padded input scaled by one weight per (group, output). It is called here directly, in float64
against native lax, on the oracle's depthwise and feature-grouped cases (every spatial rank,
padding, stride, dilation and layout; 1-2 input features and 2-3 outputs per group) and on the
input-gradient convolutions the rule builds for them (lhs dilation from the forward's strides).
The cases the op picks it for (``_grouped_taps_pay``: 56 x 56 outputs and more) are too large for
the oracle's grid, so one such case also runs through the op against native autodiff.
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import impl
import impl._formulations as formulations
from convgrad.tolerances import tolerance
from impl._config import ConvConfig, make_config
from tests.conv_oracle import (
    AXES,
    case_operands,
    choice_name,
    formulation_error,
    pairwise_cover,
    relative_error,
    rule_convolution,
)

COVER = pairwise_cover({**AXES, "groups": ("depthwise", "feature"), "batch": ("full",)})


def _forward(choice: dict[str, Any], dtype: str) -> tuple[jax.Array, jax.Array, ConvConfig]:
    return case_operands(choice, dtype, seed=5)


def _input_gradient(choice: dict[str, Any], dtype: str) -> tuple[jax.Array, jax.Array, ConvConfig]:
    return rule_convolution("lhs", choice, dtype, seed=5)


@pytest.mark.parametrize("convolution", [_forward, _input_gradient], ids=["forward", "input-grad"])
@pytest.mark.parametrize("choice", COVER, ids=choice_name)
def test_grouped_taps_equals_native_in_float64(choice: dict[str, Any], convolution: Any) -> None:
    lhs, rhs, config = convolution(choice, "float64")
    assert config.feature_group_count > 1 and config.batch_group_count == 1
    error = formulation_error(formulations.grouped_taps, lhs, rhs, config)
    assert error <= tolerance("float64"), f"{error:.3e}"


@pytest.mark.parametrize("dtype, preferred", [("float32", None), ("bfloat16", None),
                                              ("bfloat16", "float32")])
@pytest.mark.parametrize("choice", COVER[:3], ids=choice_name)
def test_grouped_taps_in_the_dtypes_that_use_it(choice: dict[str, Any], dtype: str,
                                                preferred: str | None) -> None:
    lhs, rhs, config = _forward(choice, dtype)
    config = ConvConfig(**{**config.as_lax_kwargs(), "preferred_element_type": preferred})
    error = formulation_error(formulations.grouped_taps, lhs, rhs, config)
    assert error <= tolerance(preferred or dtype), f"{error:.3e}"


def _choice(lhs_shape: tuple[int, ...], rhs_shape: tuple[int, ...], groups: int, stride: int = 1,
            lhs_dilation: int = 1) -> str:
    """The CPU formulation of a grouped convolution (padding 1 per side)."""
    rank = len(lhs_shape) - 2
    lhs = jax.ShapeDtypeStruct(lhs_shape, jnp.float32)
    rhs = jax.ShapeDtypeStruct(rhs_shape, jnp.float32)
    config = make_config(lhs, rhs, (stride,) * rank, ((1, 1),) * rank,
                         lhs_dilation=(lhs_dilation,) * rank, feature_group_count=groups)
    return formulations.cpu_formulation(lhs_shape, rhs_shape, config, jnp.float32).__name__


@pytest.mark.parametrize("lhs_shape, rhs_shape, groups, stride, lhs_dilation, expected", [
    # Depthwise, any plane (item 3 of benchmarks/README.md).
    ((16, 64, 56, 56), (64, 1, 3, 3), 64, 1, 1, "grouped_taps"),
    ((16, 64, 14, 14), (64, 1, 7, 7), 64, 1, 1, "grouped_taps"),
    # Groups of 2-8 features from 56 x 56 outputs, up to 72 terms per output (0.63-1.01 of the
    # step against the blocks, _grouped_taps_pay): the suite's g=8, 16 groups of 4, 1-D.
    ((16, 64, 56, 56), (64, 8, 3, 3), 8, 1, 1, "grouped_taps"),
    ((16, 64, 56, 56), (64, 4, 3, 3), 16, 1, 1, "grouped_taps"),
    ((8, 32, 8000), (32, 2, 5), 16, 1, 1, "grouped_taps"),
    # The blocks where they measured faster: 28 x 28 (ResNeXt g=32: 1.04-1.07 slower as taps),
    # strided onto 28 x 28 (1.25), 16 features per group (144 terms: 1.36), 3-D (folded into 2-D).
    ((16, 128, 28, 28), (128, 4, 3, 3), 32, 1, 1, "group_blocks"),
    ((16, 64, 56, 56), (64, 8, 3, 3), 8, 2, 1, "group_blocks"),
    ((16, 64, 56, 56), (64, 16, 3, 3), 4, 1, 1, "group_blocks"),
    ((2, 32, 8, 56, 56), (32, 2, 3, 3, 3), 16, 1, 1, "fold_first_axis"),
    # A strided input gradient (lhs dilation) goes to polyphase, whose phases keep the blocks.
    ((16, 64, 28, 28), (64, 8, 3, 3), 8, 1, 2, "polyphase"),
])
def test_which_grouped_convolutions_are_shift_and_add(lhs_shape, rhs_shape, groups, stride,
                                                      lhs_dilation, expected) -> None:
    assert _choice(lhs_shape, rhs_shape, groups, stride, lhs_dilation) == expected


def test_the_op_with_grouped_taps_matches_native_autodiff_in_float64() -> None:
    # Two groups of two features on 56 x 56: the op's forward and input gradient are grouped_taps.
    rng = np.random.default_rng(7)
    lhs = jnp.asarray(rng.standard_normal((2, 4, 56, 56)))
    rhs = jnp.asarray(rng.standard_normal((6, 2, 3, 3)))
    kwargs = dict(window_strides=(1, 1), padding=((1, 1), (1, 1)), feature_group_count=2)
    assert _choice(lhs.shape, rhs.shape, 2) == "grouped_taps"

    def loss(conv: Any) -> Any:
        return jax.jit(jax.value_and_grad(
            lambda a, b: jnp.sum(jnp.sin(conv(a, b, **kwargs))), argnums=(0, 1)))

    (value, grads), (expected_value, expected_grads) = (loss(impl.conv_general_dilated)(lhs, rhs),
                                                        loss(lax.conv_general_dilated)(lhs, rhs))
    assert relative_error(value, expected_value) <= tolerance("float64")
    for grad, expected in zip(grads, expected_grads, strict=True):
        assert relative_error(grad, expected) <= tolerance("float64")
