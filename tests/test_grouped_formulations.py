"""Batch-grouped convolutions with few output positions on CPU (impl._formulations).

The filter gradient of a grouped convolution is a convolution with batch groups (the forward's
groups) and few output positions (the forward's taps); for a depthwise convolution every batch
group is one lhs batch element. ``batch_grouped_reduce`` computes such a convolution as one
variadic reduction with an operand per output position, ``batch_grouped_blocks`` the depthwise
case as the diagonals of block-wise dense convolutions. Both are called here directly, in float64
against native lax, on the filter-gradient convolutions the rule builds for the oracle's depthwise
and feature-grouped cases and on the oracle's batch-grouped forward (every spatial rank, padding,
stride, dilation and layout; 1-2 lhs elements and 2-3 outputs per group); the op is checked against
native autodiff on the same grid by tests/test_op_grid.py.
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import impl._formulations as formulations
from convgrad.tolerances import tolerance
from impl import _rule
from impl._config import ConvConfig, make_config, spatial_shapes
from tests.conv_oracle import (
    AXES,
    case_operands,
    choice_name,
    formulation_error,
    pairwise_cover,
    rule_convolution,
)

DEPTHWISE_AXES = {**AXES, "groups": ("depthwise",), "batch": ("full",)}
COVER = pairwise_cover(DEPTHWISE_AXES)
OTHER_GROUPS = pairwise_cover({**AXES, "groups": ("feature", "batch"), "batch": ("full",)})


def _filter_gradient(choice: dict[str, Any], dtype: str
                     ) -> tuple[jax.Array, jax.Array, ConvConfig]:
    return rule_convolution("rhs", choice, dtype, seed=3)


def _forward(choice: dict[str, Any], dtype: str) -> tuple[jax.Array, jax.Array, ConvConfig]:
    return case_operands(choice, dtype, seed=3)


@pytest.mark.parametrize("choice", COVER, ids=choice_name)
def test_depthwise_filter_gradients_equal_native_in_float64(choice: dict[str, Any]) -> None:
    lhs, rhs, config = _filter_gradient(choice, "float64")
    # The case really is one lhs batch element per batch group, the one these serve.
    assert config.batch_group_count == lhs.shape[config.dimension_numbers.lhs_spec[0]] > 1
    for formulation in (formulations.batch_grouped_reduce, formulations.batch_grouped_blocks):
        error = formulation_error(formulation, lhs, rhs, config)
        assert error <= tolerance("float64"), f"{formulation.__name__}: {error:.3e}"


@pytest.mark.parametrize("choice", COVER, ids=choice_name)
def test_a_depthwise_forward_and_its_filter_gradient_pad_the_input_alike(
        choice: dict[str, Any]) -> None:
    """``grouped_taps`` (the forward) and ``batch_grouped_reduce`` (its filter gradient, whose lhs
    is the forward's in another layout) pad the input with the same one ``lax.pad``, in the
    input's own layout and only as far as the windows read, so that XLA keeps one padded copy
    (``SHARED_PADDING``, item 23 of benchmarks/README.md)."""
    lhs, rhs, config = _forward(choice, "float64")
    gradient_lhs, cotangent, gradient_config = _filter_gradient(choice, "float64")
    np.testing.assert_array_equal(gradient_lhs, lhs)
    pads = []
    for array, filters, conv in ((lhs, rhs, config), (gradient_lhs, cotangent, gradient_config)):
        _, window, out_spatial = spatial_shapes(conv, array.shape, filters.shape)
        jaxpr = jax.make_jaxpr(lambda x, conv=conv, window=window, out_spatial=out_spatial:
                               formulations._padded_canonical(x, conv, window, out_spatial,
                                                              x.dtype))(array)
        pads.append([eqn.params["padding_config"] for eqn in jaxpr.eqns
                     if eqn.primitive.name == "pad"])
    assert len(pads[0]) == 1 and pads[0] == pads[1]
    # Never past the stated padding: the high side is trimmed, the low side kept.
    stated = {axis: pad for axis, pad in zip(config.dimension_numbers.lhs_spec[2:],
                                             config.padding, strict=True)}
    for axis, (lo, hi, _) in enumerate(pads[0][0]):
        stated_lo, stated_hi = stated.get(axis, (0, 0))
        assert lo == stated_lo and hi <= stated_hi, (axis, lo, hi)


@pytest.mark.parametrize("choice", OTHER_GROUPS, ids=choice_name)
def test_other_batch_groups_as_one_reduction_equal_native_in_float64(
        choice: dict[str, Any]) -> None:
    # Feature groups: the filter gradient has batch groups of 2 lhs elements, 3 outputs each.
    # Batch groups: the forward itself, 2 lhs elements and 2 outputs per group.
    lhs, rhs, config = (_filter_gradient if choice["groups"] == "feature" else _forward)(
        choice, "float64")
    groups = config.batch_group_count
    assert 1 < groups < lhs.shape[config.dimension_numbers.lhs_spec[0]]
    error = formulation_error(formulations.batch_grouped_reduce, lhs, rhs, config)
    assert error <= tolerance("float64"), f"{error:.3e}"


@pytest.mark.parametrize("dtype, preferred", [("float32", None), ("bfloat16", None),
                                              ("bfloat16", "float32")])
@pytest.mark.parametrize("choice", COVER[:4], ids=choice_name)
def test_the_reduction_in_the_dtypes_that_use_it(choice: dict[str, Any], dtype: str,
                                                 preferred: str | None) -> None:
    lhs, rhs, config = _filter_gradient(choice, dtype)
    config = ConvConfig(**{**config.as_lax_kwargs(), "preferred_element_type": preferred})
    error = formulation_error(formulations.batch_grouped_reduce, lhs, rhs, config)
    assert error <= tolerance(preferred or dtype), f"{error:.3e}"


def _filter_gradient_choice(lhs_shape: tuple[int, ...], rhs_shape: tuple[int, ...],
                            groups: int) -> str:
    """The CPU formulation of a grouped convolution's filter gradient (SAME, stride 1)."""
    lhs = jax.ShapeDtypeStruct(lhs_shape, jnp.float32)
    rhs = jax.ShapeDtypeStruct(rhs_shape, jnp.float32)
    config = make_config(lhs, rhs, (1,) * (len(lhs_shape) - 2), "SAME",
                         feature_group_count=groups)
    captured = []

    def capture(a: jax.Array, b: jax.Array, c: ConvConfig) -> jax.Array:
        captured.append(formulations.cpu_formulation(a.shape, b.shape, c, a.dtype).__name__)
        return formulations.native(a, b, c)

    jax.eval_shape(lambda x, g: _rule.rhs_cotangent(capture, g, x, config, rhs.shape, rhs.dtype),
                   lhs, jax.ShapeDtypeStruct((lhs_shape[0], rhs_shape[0], *lhs_shape[2:]),
                                             jnp.float32))
    return captured[0]


@pytest.mark.parametrize("lhs_shape, rhs_shape, groups, expected", [
    # Depthwise, up to MAX_REDUCED_OUTPUTS output positions (3x3: 5.3-6.7 against 17-21 ms; 7x7:
    # 31 against 90 ms; 7x7x7: 17 against 320 ms, benchmarks/README.md item 4); beyond, the blocks
    # of dense convolutions.
    ((16, 64, 56, 56), (64, 1, 3, 3), 64, "batch_grouped_reduce"),
    ((16, 64, 56, 56), (64, 1, 7, 7), 64, "batch_grouped_reduce"),
    ((16, 64, 56, 56), (64, 1, 19, 19), 64, "batch_grouped_blocks"),
    # 3-D depthwise: the reduction, not the fold into 2-D (whose batch-grouped 2-D convolution
    # took 9 s where the 3-D native one took 64 ms and the reduction 2.4 ms).
    ((2, 64, 8, 28, 28), (64, 1, 3, 3, 3), 64, "batch_grouped_reduce"),
    ((2, 32, 8, 28, 28), (32, 1, 7, 7, 7), 32, "batch_grouped_reduce"),
    # More groups than per_group takes: the reduction (native: 26 s; the reduction 22 ms).
    ((16, 128, 56, 56), (128, 2, 3, 3), 64, "batch_grouped_reduce"),
    ((2, 128, 8, 14, 14), (128, 2, 3, 3, 3), 64, "batch_grouped_reduce"),
    # A few groups of many features: one dense convolution per group (12.8 against 22.7 ms).
    ((16, 64, 56, 56), (64, 8, 3, 3), 8, "per_group"),
    ((16, 128, 28, 28), (128, 4, 3, 3), 32, "per_group"),
])
def test_which_grouped_filter_gradients_are_one_reduction(
        lhs_shape: tuple[int, ...], rhs_shape: tuple[int, ...], groups: int,
        expected: str) -> None:
    assert _filter_gradient_choice(lhs_shape, rhs_shape, groups) == expected
