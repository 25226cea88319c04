"""The matrix-product formulations of dense convolutions on CPU (impl._formulations).

``shift_matmul`` (one matrix product for all taps, then a sum of shifted reads),
``channels_last_matmul`` (the same over blocks of channels-last images padded once, then strided
slices), ``taps_matmul`` (few output positions, i.e. a filter gradient: one matrix product per lhs
feature) and ``columns_matmul`` (im2col columns per batch element, one matrix product) compute the
same sums as the native convolution in another order; ``winograd`` (Winograd's F(2x2, 3x3): 16
matrix products between an input and an output transform) and ``winograd_window`` (F(3x3, 2x2)
over 2x2 tiles of a filter gradient's window) an expression equal to them. The CPU
formulation choice uses them only for float32 and bfloat16, so the float64 grid of
tests/test_op_grid.py never reaches them: here they are called directly on the oracle's grid of
options, in float64 against native lax, and the op that uses them is checked against native
autodiff in the dtypes that select them.
"""

import dataclasses
import json
import math
import re
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import impl
import impl._formulations as formulations
from convgrad.tolerances import tolerance
from impl._config import ConvConfig, make_config, spatial_shapes
from tests.conv_oracle import (
    AXES,
    STRIDES,
    all_choices,
    case_operands,
    choice_name,
    formulation_error,
    pairwise_cover,
    random_array,
    relative_error,
    rule_convolution_of,
)
from tests.helpers import run_on_eight_cpu_devices

# Dense cases of rank 1 and 2 (the formulations are chosen for nothing else), every other option.
DENSE_AXES = {**AXES, "rank": (1, 2), "groups": ("none",), "batch": ("full",)}
COVER = pairwise_cover(DENSE_AXES)


def _against_native(formulation: Callable[..., jax.Array], choice: dict[str, Any],
                    dtype: str, **extra: Any) -> float:
    lhs, rhs, config = case_operands(choice, dtype, 7, **extra)
    return formulation_error(formulation, lhs, rhs, config, choice_name(choice))


def _formulations_for(choice: dict[str, Any]) -> list[Callable[..., jax.Array]]:
    """``taps_matmul``, ``columns_matmul`` and ``channels_last_matmul`` take every dense option,
    ``shift_matmul`` all but lhs dilation together with strides."""
    every = [formulations.taps_matmul, formulations.columns_matmul,
             formulations.channels_last_matmul]
    if choice["lhs_dilation"] and STRIDES[choice["strides"]][:choice["rank"]] != (1,) * choice[
            "rank"]:
        return every
    return [formulations.shift_matmul, *every]


def test_shift_matmul_refuses_lhs_dilation_with_strides() -> None:
    lhs, rhs = jnp.ones((1, 2, 5, 5)), jnp.ones((3, 2, 2, 2))
    config = make_config(lhs, rhs, (1, 2), ((1, 1), (1, 1)), lhs_dilation=(2, 1))
    with pytest.raises(ValueError, match="lhs dilation"):
        formulations.shift_matmul(lhs, rhs, config)


def _flat_formulations_for(choice: dict[str, Any]) -> list[Callable[..., jax.Array]]:
    """``tap_products`` and ``position_products`` where the case is one they compute
    (``_flat_products_fit``; ``position_products`` also needs unit rhs dilation)."""
    lhs, rhs, config = case_operands(choice, "float64", 7)
    in_spatial, window, out_spatial = spatial_shapes(config, lhs.shape, rhs.shape)
    chosen = []
    if formulations._flat_products_fit(in_spatial, out_spatial, config):
        chosen.append(formulations.tap_products)
    if max(config.rhs_dilation) == 1 and formulations._flat_products_fit(in_spatial, window,
                                                                         config):
        chosen.append(formulations.position_products)
    return chosen


@pytest.mark.parametrize("choice", COVER, ids=choice_name)
def test_matmul_formulations_equal_native_in_float64(choice: dict[str, Any]) -> None:
    for formulation in [*_formulations_for(choice), *_flat_formulations_for(choice)]:
        error = _against_native(formulation, choice, "float64")
        assert error <= tolerance("float64"), f"{formulation.__name__}: {error:.3e}"


@pytest.mark.slow
@pytest.mark.parametrize("choice", list(all_choices(DENSE_AXES)), ids=choice_name)
def test_matmul_formulations_equal_native_on_the_full_grid(choice: dict[str, Any]) -> None:
    for formulation in [*_formulations_for(choice), *_flat_formulations_for(choice)]:
        error = _against_native(formulation, choice, "float64")
        assert error <= tolerance("float64"), f"{formulation.__name__}: {error:.3e}"


def test_the_flat_products_fit_some_of_the_cover() -> None:
    """The cover above reaches ``tap_products`` and ``position_products`` on some cases."""
    reached = {formulation.__name__ for choice in COVER
               for formulation in _flat_formulations_for(choice)}
    assert reached == {"tap_products", "position_products"}


@pytest.mark.parametrize("dtype, preferred", [("float32", None), ("bfloat16", None),
                                              ("bfloat16", "float32")])
@pytest.mark.parametrize("choice", COVER[:6], ids=choice_name)
def test_matmul_formulations_in_the_dtypes_that_select_them(
        choice: dict[str, Any], dtype: str, preferred: str | None) -> None:
    for formulation in _formulations_for(choice):
        error = _against_native(formulation, choice, dtype, preferred_element_type=preferred)
        assert error <= tolerance(preferred or dtype), f"{formulation.__name__}: {error:.3e}"


def _filter_gradient_case(seed: int, images: int) -> tuple[jax.Array, jax.Array, ConvConfig]:
    """(lhs, rhs, config) of the filter gradient's convolution for a strided, dilated float64
    forward of ``images`` images: its lhs features are the forward's images."""
    rng = np.random.default_rng(seed)
    lhs, rhs = random_array(rng, (images, 3, 9, 7), "float64"), random_array(rng, (4, 3, 3, 2),
                                                                              "float64")
    forward = make_config(lhs, rhs, (2, 1), ((1, 0), (2, 1)), rhs_dilation=(1, 2))
    cotangent = random_array(rng, formulations.native(lhs, rhs, forward).shape, "float64")
    return rule_convolution_of("rhs", lhs, rhs, forward, cotangent)


@pytest.mark.parametrize("images_per_step", [1, 2, 3, 6])
def test_taps_matmul_sums_blocks_of_images_as_native(images_per_step: int,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Where ``_taps_blocks_pay``, a filter gradient's loop takes blocks of the forward's images
    (``TAPS_BLOCK_BYTES``): every block size, one image per step to all six in one, gives
    native's sums (float64 here, the rule forced on)."""
    monkeypatch.setattr(formulations, "_taps_blocks_pay", lambda dtype: True)
    images, weights, config = _filter_gradient_case(11, images=6)
    _, window, out_spatial = spatial_shapes(config, images.shape, weights.shape)
    one_image = np.prod(out_spatial) * 3 * np.prod(window) * 8  # its columns' bytes
    monkeypatch.setattr(formulations, "TAPS_BLOCK_BYTES", int(images_per_step * one_image))

    jaxpr = jax.make_jaxpr(lambda a, b: formulations.taps_matmul(a, b, config))(images, weights)
    (loop,) = [eqn for eqn in jaxpr.eqns if eqn.primitive.name == "scan"]
    assert loop.params["length"] == 6 // images_per_step
    error = formulation_error(formulations.taps_matmul, images, weights, config)
    assert error <= tolerance("float64"), f"{images_per_step} per step: {error:.3e}"


@pytest.mark.parametrize("chunk", [1, 2, 3, 6])
@pytest.mark.parametrize("strides", [(1, 1), (2, 1)])
def test_taps_matmul_takes_large_steps_in_chunks_as_native(
        chunk: int, strides: tuple[int, int], monkeypatch: pytest.MonkeyPatch) -> None:
    """Where one step's columns exceed ``MAX_MATMUL_BLOCK_BYTES`` (``TAPS_CHUNKS``), each step
    multiplies them in chunks of the forward's input features, one product per chunk: every
    chunk size gives native's sums (float64)."""
    rng = np.random.default_rng(13)
    lhs, rhs = random_array(rng, (3, 6, 9, 7), "float64"), random_array(rng, (4, 6, 3, 2),
                                                                         "float64")
    forward = make_config(lhs, rhs, strides, ((1, 0), (2, 1)), rhs_dilation=(1, 2))
    cotangent = random_array(rng, formulations.native(lhs, rhs, forward).shape, "float64")
    images, weights, config = rule_convolution_of("rhs", lhs, rhs, forward, cotangent)
    _, window, out_spatial = spatial_shapes(config, images.shape, weights.shape)
    one_feature = np.prod(out_spatial) * np.prod(window) * 8  # its columns' bytes in one step
    monkeypatch.setattr(formulations, "MAX_MATMUL_BLOCK_BYTES", int(chunk * one_feature))

    jaxpr = jax.make_jaxpr(lambda a, b: formulations.taps_matmul(a, b, config))(images, weights)
    (loop,) = [eqn for eqn in jaxpr.eqns if eqn.primitive.name == "scan"]
    products = str(loop.params["jaxpr"]).count("dot_general")
    assert products == 6 // chunk
    error = formulation_error(formulations.taps_matmul, images, weights, config)
    assert error <= tolerance("float64"), f"chunks of {chunk}: {error:.3e}"


def test_large_filter_gradients_take_taps_matmul_in_chunks(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # 256 features on 56x56 in float32: 28.9 MB of columns per image, above
    # MAX_MATMUL_BLOCK_BYTES; in chunks (item 30), else the native kernel. (Without Winograd,
    # which takes this filter gradient where it measured faster: item 32.)
    for newer in (False, True):
        monkeypatch.setattr(formulations, "WINOGRAD_WINDOW", 0)
        assert _chosen(monkeypatch, (4, 256, 56, 56), (256, 256, 3, 3), "float32",
                       newer=newer)[2] == "taps_matmul"
        monkeypatch.undo()
    monkeypatch.setattr(formulations, "WINOGRAD_WINDOW", 0)
    monkeypatch.setattr(formulations, "TAPS_CHUNKS", False)
    assert _chosen(monkeypatch, (4, 256, 56, 56), (256, 256, 3, 3), "float32")[2] == "native"


@pytest.mark.parametrize("unblocked", [True, False])
def test_taps_matmul_scans_single_images_as_they_lie(unblocked: bool,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """With one lhs feature (forward image) per step, ``taps_matmul`` scans its (C, B, *S)
    operands as they lie, not a (C, 1, B, *S) reshape that XLA:CPU copied whole into the loop's
    layout (``SCAN_UNBLOCKED``, items 21 and 22 of benchmarks/README.md), and gives native's sums
    (float64); switched off, it scans the reshape, with the same sums."""
    monkeypatch.setattr(formulations, "_taps_blocks_pay", lambda dtype: False)
    monkeypatch.setattr(formulations, "SCAN_UNBLOCKED", unblocked)
    images, weights, config = _filter_gradient_case(12, images=5)
    jaxpr = jax.make_jaxpr(lambda a, b: formulations.taps_matmul(a, b, config))(images, weights)
    error = formulation_error(formulations.taps_matmul, images, weights, config)
    (loop,) = [eqn for eqn in jaxpr.eqns if eqn.primitive.name == "scan"]
    # The scanned operands: (C, B, *S) and (C, O, *K) as they lie, or with a size-1 block axis
    # after C. (The loop's other operand, the running sum, is a matrix.)
    shapes = [v.aval.shape for v in loop.invars if v.aval.ndim > 2]
    if unblocked:
        assert [shape[0] for shape in shapes] == [5, 5] and {len(shape) for shape in shapes} == {4}
    else:
        assert [shape[:2] for shape in shapes] == [(5, 1), (5, 1)] and {
            len(shape) for shape in shapes} == {5}
    assert loop.params["length"] == 5
    assert error <= tolerance("float64"), f"unblocked={unblocked}: {error:.3e}"


@pytest.mark.parametrize("padding, rhs_dilation, gaps", [
    (((1, 1), (1, 1)), (1, 1), (1, 1)),      # SAME: one zero column and row shared
    (((2, 0), (0, 2)), (1, 1), (2, 2)),      # one-sided
    (((0, 0), (0, 0)), (1, 1), (0, 0)),      # VALID: no gaps at all
    (((3, 2), (1, 2)), (2, 1), (3, 2)),      # min(lo, hi) ≤ d·(k - 1): 2 ≤ 4, 1 ≤ 2
    (((3, 3), (1, 1)), (1, 1), None),        # min(lo, hi) = 3 > k - 1: an output would not fit
    (((1, -1), (1, 1)), (1, 1), None),       # negative padding crops: padded apart instead
])
def test_flat_layout_gaps(padding: Any, rhs_dilation: tuple[int, int], gaps: Any) -> None:
    """``_flat_gaps``: max(lo, hi) zeros after each axis, where every output fits the layout."""
    lhs, rhs = jnp.ones((1, 1, 7, 6)), jnp.ones((1, 1, 3, 3))
    config = make_config(lhs, rhs, (1, 1), padding, rhs_dilation=rhs_dilation)
    in_spatial, _, out_spatial = spatial_shapes(config, lhs.shape, rhs.shape)
    assert formulations._flat_gaps(in_spatial, out_spatial, config) == gaps
    dilated = make_config(lhs, rhs, (1, 1), padding, lhs_dilation=(2, 1))
    in_spatial, _, out_spatial = spatial_shapes(dilated, lhs.shape, rhs.shape)
    assert formulations._flat_gaps(in_spatial, out_spatial, dilated) is None


@pytest.mark.parametrize("plane, out_spatial, window, padding, rhs_dilation, masks", [
    # SAME, 3 taps: the first reads before position 0, the last past position 2; the middle
    # reads inside everywhere.
    ((3,), (3,), (3,), ((1, 1),), (1,), [[0, 1, 1], None, [1, 1, 0]]),
    # VALID: every kept output (i < 3) reads inside; position 3 is computed and dropped.
    ((4,), (3,), (2,), ((0, 0),), (1,), [None, None]),
    # rhs dilation 2, padding (2, 2) on 4: tap 0 reads i - 2, tap 1 i, tap 2 i + 2.
    ((4,), (4,), (3,), ((2, 2),), (2,), [[0, 0, 1, 1], None, [1, 1, 0, 0]]),
    # 2-D, a 2x1 window with padding (1, 0) rows and none across: row 0 masks its first tap.
    ((2, 3), (2, 3), (2, 1), ((1, 0), (0, 0)), (1, 1), [[0, 0, 0, 1, 1, 1], None]),
])
def test_edge_masks(plane: tuple[int, ...], out_spatial: tuple[int, ...],
                    window: tuple[int, ...], padding: Any, rhs_dilation: tuple[int, ...],
                    masks: list[Any]) -> None:
    """``_edge_masks``: per tap, the positions whose read stays inside the plane (row-major)."""
    lhs = jnp.ones((1, 1, *plane))
    rhs = jnp.ones((1, 1, *window))
    config = make_config(lhs, rhs, (1,) * len(plane), padding, rhs_dilation=rhs_dilation)
    got = formulations._edge_masks(plane, out_spatial, window, config)
    assert [None if m is None else m.astype(int).tolist() for m in got] == masks


@pytest.mark.parametrize("layout", ["apart", "flat", "masked"])
@pytest.mark.parametrize("lhs_shape, rhs_shape, padding, rhs_dilation", [
    ((6, 3, 9), (4, 3, 3), ((1, 1),), (1,)),
    ((6, 3, 9, 7), (4, 3, 3, 3), ((1, 1), (1, 1)), (1, 1)),
    ((6, 3, 9, 7), (4, 3, 3, 2), ((2, 0), (0, 3)), (2, 1)),
    ((6, 3, 9, 7), (4, 3, 3, 3), ((0, 0), (2, 1)), (1, 2)),
    ((6, 3, 9, 7), (4, 3, 3, 3), ((3, 0), (1, 1)), (1, 1)),  # lo > k - 1: the tail is cropped
    ((6, 3, 5, 6, 4), (4, 3, 2, 3, 2), ((1, 0), (1, 1), (0, 1)), (1, 1, 2)),
])
def test_channels_last_flat_layout_equals_native(
        lhs_shape: tuple[int, ...], rhs_shape: tuple[int, ...], padding: Any,
        rhs_dilation: tuple[int, ...], layout: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``channels_last_matmul`` at unit strides, padded apart (``FLAT_LAYOUT`` off), in the flat
    layout (planes end to end, sharing their zeros) and, where every output axis fits its input
    axis, in the masked flat layout (end to end without zeros, ``MASKED_FLAT``), in blocks of two
    of the six images, gives native's sums in float64 for rank 1 to 3, one-sided and uneven
    padding and rhs dilation."""
    monkeypatch.setattr(formulations, "FLAT_LAYOUT", layout != "apart")
    monkeypatch.setattr(formulations, "MASKED_FLAT", layout == "masked")
    rng = np.random.default_rng(5)
    lhs, rhs = random_array(rng, lhs_shape, "float64"), random_array(rng, rhs_shape, "float64")
    config = make_config(lhs, rhs, (1,) * len(padding), padding, rhs_dilation=rhs_dilation)
    in_spatial, window, out_spatial = spatial_shapes(config, lhs.shape, rhs.shape)
    gaps = formulations._flat_gaps(in_spatial, out_spatial, config)
    assert gaps is not None or layout == "apart"
    masked = layout == "masked" and all(m <= n for m, n in zip(out_spatial, in_spatial,
                                                               strict=True))
    extents = ([n + lo + hi for n, (lo, hi) in zip(in_spatial, padding, strict=True)]
               if layout == "apart" else in_spatial if masked
               else [n + g for n, g in zip(in_spatial, gaps, strict=True)])
    one_image = np.prod(extents) * np.prod(window) * rhs_shape[0] * 8  # its Y's bytes
    monkeypatch.setattr(formulations, "CHANNELS_LAST_BLOCK_BYTES", int(2 * one_image))
    jaxpr = jax.make_jaxpr(lambda a, b: formulations.channels_last_matmul(a, b, config))(lhs, rhs)
    (loop,) = [eqn for eqn in jaxpr.eqns if eqn.primitive.name == "scan"]
    assert loop.params["length"] == 3
    # The masks, one (1, positions, 1) constant per masked tap, only in the masked layout.
    masks = re.findall(rf"bool\[1,{np.prod(in_spatial)},1\]", str(jaxpr))
    assert bool(masks) == masked
    error = formulation_error(formulations.channels_last_matmul, lhs, rhs, config)
    assert error <= tolerance("float64"), f"{error:.3e}"


# Cases for tap_products and position_products: rank 1 to 3, SAME, one-sided, VALID and uneven
# padding, rhs dilation (tap_products only), a channels-last layout.
FLAT_CASES = [
    ((3, 4, 7, 7), (5, 4, 3, 3), ((1, 1), (1, 1)), (1, 1), None),
    ((3, 4, 9, 6), (5, 4, 3, 2), ((2, 0), (0, 1)), (1, 1), None),
    ((3, 4, 9, 6), (5, 4, 3, 3), ((0, 0), (0, 0)), (1, 1), None),
    ((3, 4, 9, 7), (5, 4, 3, 3), ((2, 2), (1, 1)), (2, 1), None),
    ((2, 3, 11), (4, 3, 5), ((2, 2),), (1,), None),
    ((2, 3, 5, 6, 4), (4, 3, 2, 3, 2), ((1, 0), (1, 1), (0, 1)), (1, 1, 1), None),
    ((3, 7, 6, 4), (3, 3, 4, 5), ((1, 1), (1, 1)), (1, 1), ("NHWC", "HWIO", "NHWC")),
]


@pytest.mark.parametrize("lhs_shape, rhs_shape, padding, rhs_dilation, layout", FLAT_CASES)
def test_flat_products_equal_native_in_float64(
        lhs_shape: tuple[int, ...], rhs_shape: tuple[int, ...], padding: Any,
        rhs_dilation: tuple[int, ...], layout: Any) -> None:
    """``tap_products`` on a stride-1 convolution and on the rule's input gradient of it, and
    ``position_products`` on the rule's filter gradient of it (unit rhs dilation), give native's
    sums in float64."""
    rng = np.random.default_rng(11)
    lhs, rhs = random_array(rng, lhs_shape, "float64"), random_array(rng, rhs_shape, "float64")
    config = make_config(lhs, rhs, (1,) * len(padding), padding, rhs_dilation=rhs_dilation,
                         dimension_numbers=layout)
    cotangent = random_array(rng, formulations.native(lhs, rhs, config).shape, "float64")
    cases = [(formulations.tap_products, (lhs, rhs, config)),
             (formulations.tap_products, rule_convolution_of("lhs", lhs, rhs, config, cotangent))]
    if max(rhs_dilation) == 1:
        cases.append((formulations.position_products,
                      rule_convolution_of("rhs", lhs, rhs, config, cotangent)))
    for formulation, (a, b, c) in cases:
        in_spatial, window, out_spatial = spatial_shapes(c, a.shape, b.shape)
        inner = window if formulation is formulations.position_products else out_spatial
        if not formulations._flat_products_fit(in_spatial, inner, c):
            assert padding == ((0, 0), (0, 0)) and formulation is formulations.tap_products
            continue  # VALID's input gradient pads by k - 1: outputs larger than the input
        error = formulation_error(formulation, a, b, c)
        assert error <= tolerance("float64"), f"{formulation.__name__}: {error:.3e}"


# Cases for winograd (3x3 windows, unit strides and dilations): even, odd and uneven planes,
# planes smaller than the window, SAME, VALID, one-sided, wide and negative padding, channels last
# and a permuted layout.
WINOGRAD_CASES = [
    ((3, 4, 7, 7), (5, 4, 3, 3), ((1, 1), (1, 1)), None),
    ((2, 3, 8, 6), (4, 3, 3, 3), ((1, 1), (1, 1)), None),
    ((2, 3, 9, 6), (4, 3, 3, 3), ((0, 0), (0, 0)), None),
    ((2, 3, 6, 5), (4, 3, 3, 3), ((2, 0), (0, 2)), None),
    ((1, 2, 5, 4), (3, 2, 3, 3), ((2, 3), (3, 2)), None),
    ((2, 3, 8, 7), (2, 3, 3, 3), ((-1, 1), (1, -2)), None),
    ((2, 2, 1, 2), (3, 2, 3, 3), ((1, 1), (1, 1)), None),
    ((3, 7, 6, 4), (3, 3, 4, 5), ((1, 1), (1, 1)), ("NHWC", "HWIO", "NHWC")),
    ((7, 3, 5, 4), (3, 5, 3, 3), ((1, 2), (0, 1)), ("HCWN", "WOIH", "CWNH")),
]


@pytest.mark.parametrize("lhs_shape, rhs_shape, padding, layout", WINOGRAD_CASES)
def test_winograd_equals_native_in_float64(lhs_shape: tuple[int, ...], rhs_shape: tuple[int, ...],
                                           padding: Any, layout: Any) -> None:
    """``winograd`` on a 3x3 stride-1 convolution and on the rule's input gradient of it (the
    full convolution of the cotangent with the rotated filter, also 3x3 at stride 1) gives
    native's sums in float64."""
    rng = np.random.default_rng(13)
    lhs, rhs = random_array(rng, lhs_shape, "float64"), random_array(rng, rhs_shape, "float64")
    config = make_config(lhs, rhs, (1, 1), padding, dimension_numbers=layout)
    cotangent = random_array(rng, formulations.native(lhs, rhs, config).shape, "float64")
    for a, b, c in [(lhs, rhs, config), rule_convolution_of("lhs", lhs, rhs, config, cotangent)]:
        _, window, out_spatial = spatial_shapes(c, a.shape, b.shape)
        assert formulations._winograd_fits(window, out_spatial, c)
        error = formulation_error(formulations.winograd, a, b, c)
        assert error <= tolerance("float64"), f"{error:.3e}"


# Each Winograd formulation with a case it computes: a 3x3 window (F(2x2, 3x3)); a 3x3 output
# from a 7x6 window (F(3x3, 2x2)).
WINOGRAD_FORMULATIONS = {
    "winograd": ((3, 8, 5, 6), (6, 8, 3, 3), ((1, 1), (1, 1))),
    "winograd_window": ((3, 8, 9, 8), (6, 8, 7, 6), ((0, 0), (0, 0))),
}


@pytest.mark.parametrize("name", WINOGRAD_FORMULATIONS)
@pytest.mark.parametrize("dtype, preferred", [("float32", None), ("bfloat16", None),
                                              ("bfloat16", "float32"), ("float32", "float64")])
def test_winograd_in_other_dtypes(name: str, dtype: str, preferred: str | None) -> None:
    """The transforms and products run in at least float32, the result in the op's type."""
    lhs_shape, rhs_shape, padding = WINOGRAD_FORMULATIONS[name]
    rng = np.random.default_rng(14)
    lhs, rhs = random_array(rng, lhs_shape, dtype), random_array(rng, rhs_shape, dtype)
    config = make_config(lhs, rhs, (1, 1), padding, preferred_element_type=preferred,
                         precision=lax.Precision.HIGHEST)
    error = formulation_error(getattr(formulations, name), lhs, rhs, config)
    assert error <= tolerance(dtype), f"{error:.3e}"


@pytest.mark.parametrize("name", WINOGRAD_FORMULATIONS)
def test_winograd_in_float32_is_about_as_accurate_as_the_native_kernel(name: str) -> None:
    """Against a float64 reference, Winograd's float32 error (root mean square over the output)
    stays within 3x of XLA's float32 kernel's, on the forward (``winograd``) and on the rule's
    filter gradient (``winograd_window``) of 256 features on 7x7 (items 31 and 32 of
    benchmarks/README.md measured 0.7-1.8x with 64-512 features)."""
    rng = np.random.default_rng(15)
    lhs = random_array(rng, (16, 256, 7, 7), "float64")
    rhs = random_array(rng, (256, 256, 3, 3), "float64") / 48  # scaled as initialized
    config = make_config(lhs, rhs, (1, 1), ((1, 1), (1, 1)))
    if name == "winograd_window":
        cotangent = random_array(rng, formulations.native(lhs, rhs, config).shape, "float64")
        lhs, rhs, config = rule_convolution_of("rhs", lhs, rhs, config, cotangent)
    exact = np.asarray(formulations.native(lhs, rhs, config))
    single = (lhs.astype(np.float32), rhs.astype(np.float32))
    errors = {}
    for formulation in (formulations.native, getattr(formulations, name)):
        got = np.asarray(jax.jit(lambda a, b, f=formulation: f(a, b, config))(*single))
        errors[formulation.__name__] = float(np.sqrt(np.mean((got - exact) ** 2)))
    assert 0 < errors[name] <= 3 * errors["native"], errors


@pytest.mark.parametrize("name", WINOGRAD_FORMULATIONS)
def test_winograd_puts_non_finite_values_where_lax_does_some_as_nan(name: str) -> None:
    """What README.md's list of differences says: with an Inf input, Winograd's outputs are
    non-finite wherever lax's are, but NaN where lax's are Inf (Inf - Inf in the transforms);
    F(2x2, 3x3) makes no other output non-finite (each output row and column of a tile combines
    exactly the input rows and columns its window reads), F(3x3, 2x2) may (its output transform
    combines rows that cancel in exact arithmetic). Every output finite in both agrees with lax.
    The op keeps this: a guard recomputing natively cost 2-11% of the step (benchmarks/README.md,
    NaN and Inf)."""
    lhs_shape, rhs_shape, padding = WINOGRAD_FORMULATIONS[name]
    rng = np.random.default_rng(16)
    rhs = random_array(rng, rhs_shape, "float32")
    nan_for_inf = extra = 0
    for position in [(1, 2, 2, 3), (0, 0, 0, 0), (2, 7, 4, 5), (2, 5, 3, 1)]:
        lhs = random_array(rng, lhs_shape, "float32").at[position].set(np.inf)
        config = make_config(lhs, rhs, (1, 1), padding)
        ours = np.asarray(getattr(formulations, name)(lhs, rhs, config))
        native = np.asarray(lax.conv_general_dilated(lhs, rhs, **config.as_lax_kwargs()))
        finite = np.isfinite(native)
        assert not finite.all() and not np.isnan(native).any(), position
        assert not np.isfinite(ours[~finite]).any(), position
        nan_for_inf += int(np.isnan(ours[~finite]).sum())
        extra += int((~np.isfinite(ours[finite])).sum())
        both = finite & np.isfinite(ours)
        np.testing.assert_allclose(ours[both], native[both], rtol=1e-5, atol=1e-5)
    assert nan_for_inf > 0  # the difference is real
    assert (extra > 0) == (name == "winograd_window"), extra


@pytest.mark.parametrize("kwargs", [{"window_strides": (2, 1)}, {"rhs_dilation": (1, 2)},
                                    {"lhs_dilation": (2, 1)}, {"feature_group_count": 2}])
def test_winograd_refuses_what_it_does_not_compute(kwargs: dict[str, Any]) -> None:
    lhs, rhs = jnp.ones((1, 4, 8, 8)), jnp.ones((4, 4 // kwargs.get("feature_group_count", 1), 3, 3))
    config = make_config(lhs, rhs, kwargs.pop("window_strides", (1, 1)), ((1, 1), (1, 1)),
                         **kwargs)
    with pytest.raises(ValueError, match="3x3 window"):
        formulations.winograd(lhs, rhs, config)
    with pytest.raises(ValueError, match="3x3 window"):
        formulations.winograd(jnp.ones((1, 4, 8, 8)), jnp.ones((4, 4, 3, 2)),
                              make_config(jnp.ones((1, 4, 8, 8)), jnp.ones((4, 4, 3, 2)), (1, 1),
                                          "SAME"))


def test_winograd_pays(monkeypatch: pytest.MonkeyPatch) -> None:
    """float32, from 128 features on both sides (64 with jaxlib 0.10's kernels) and 256 rows
    per product (images x 2x2 tiles), planes of up to 28x28, AVX-512 hosts; ``WINOGRAD``
    switches it."""
    pays = formulations._winograd_pays
    f32 = np.dtype(np.float32)
    monkeypatch.setattr(formulations, "_newer_kernels", lambda: False)
    assert pays(f32, 16, 64, 64, (7, 7)) and not pays(f32, 16, 63, 64, (7, 7))
    monkeypatch.setattr(formulations, "_newer_kernels", lambda: True)
    assert not pays(f32, 16, 64, 64, (7, 7))
    assert pays(f32, 16, 128, 128, (7, 7))            # 16 x 16 tiles
    assert not pays(f32, 15, 128, 128, (7, 7))        # 240 rows
    assert not pays(f32, 16, 127, 128, (7, 7)) and not pays(f32, 16, 128, 127, (7, 7))
    assert pays(f32, 2, 512, 512, (28, 28)) and not pays(f32, 2, 512, 512, (28, 29))
    assert not pays(np.dtype(np.float64), 64, 512, 512, (7, 7))
    # bfloat16 where its products are slow (jaxlib 0.12.1 and later), computed in float32.
    monkeypatch.setattr(formulations, "_slow_bfloat16_products", lambda: False)
    assert not pays(np.dtype(jnp.bfloat16), 64, 512, 512, (7, 7))
    monkeypatch.setattr(formulations, "_slow_bfloat16_products", lambda: True)
    assert pays(np.dtype(jnp.bfloat16), 64, 512, 512, (7, 7))
    monkeypatch.setenv(formulations._host.AVX512_OVERRIDE, "no")
    assert not pays(f32, 16, 256, 256, (7, 7))
    monkeypatch.setenv(formulations._host.AVX512_OVERRIDE, "yes")
    monkeypatch.setattr(formulations, "WINOGRAD", 0)
    assert not pays(f32, 16, 256, 256, (7, 7))


# Cases for winograd_window (a 3x3 output, unit strides and dilations) beyond the filter
# gradients of WINOGRAD_CASES: odd, even and uneven windows, a window of 2, negative padding,
# channels last and permuted layouts.
WINOGRAD_WINDOW_CASES = [
    ((2, 3, 9, 9), (4, 3, 7, 7), ((0, 0), (0, 0)), None),
    ((2, 3, 9, 7), (4, 3, 8, 5), ((1, 0), (0, 0)), None),
    ((3, 2, 4, 4), (5, 2, 2, 2), ((0, 0), (0, 0)), None),
    ((2, 3, 11, 11), (4, 3, 8, 8), ((-1, 0), (0, -1)), None),
    ((2, 6, 7, 3), (6, 4, 3, 5), ((1, 1), (-1, 0)), ("NHWC", "HWIO", "NHWC")),
    ((6, 3, 5, 2), (3, 4, 3, 4), ((-1, 1), (0, 0)), ("HCWN", "WOIH", "CWNH")),
]


@pytest.mark.parametrize("lhs_shape, rhs_shape, padding, layout", WINOGRAD_CASES)
def test_winograd_window_computes_the_rules_filter_gradient_in_float64(
        lhs_shape: tuple[int, ...], rhs_shape: tuple[int, ...], padding: Any,
        layout: Any) -> None:
    """``winograd_window`` on the rule's filter gradient of a 3x3 stride-1 convolution (the
    convolution of the input with the cotangent, a 3x3 output) gives native's sums in float64,
    in every layout: OIHW filters take the products with outputs first, HWIO ones stack the
    nine outputs in front."""
    rng = np.random.default_rng(16)
    lhs, rhs = random_array(rng, lhs_shape, "float64"), random_array(rng, rhs_shape, "float64")
    config = make_config(lhs, rhs, (1, 1), padding, dimension_numbers=layout)
    cotangent = random_array(rng, formulations.native(lhs, rhs, config).shape, "float64")
    a, b, c = rule_convolution_of("rhs", lhs, rhs, config, cotangent)
    _, window, out_spatial = spatial_shapes(c, a.shape, b.shape)
    assert tuple(out_spatial) == (3, 3)
    if min(window) < 2:  # the forward's output plane is the window: 1 x 2 here
        assert not formulations._winograd_window_fits(window, out_spatial, c)
        return
    assert formulations._winograd_window_fits(window, out_spatial, c)
    error = formulation_error(formulations.winograd_window, a, b, c)
    assert error <= tolerance("float64"), f"{error:.3e}"


@pytest.mark.parametrize("lhs_shape, rhs_shape, padding, layout", WINOGRAD_WINDOW_CASES)
def test_winograd_window_equals_native_in_float64(
        lhs_shape: tuple[int, ...], rhs_shape: tuple[int, ...], padding: Any,
        layout: Any) -> None:
    rng = np.random.default_rng(17)
    lhs, rhs = random_array(rng, lhs_shape, "float64"), random_array(rng, rhs_shape, "float64")
    config = make_config(lhs, rhs, (1, 1), padding, dimension_numbers=layout)
    _, window, out_spatial = spatial_shapes(config, lhs.shape, rhs.shape)
    assert formulations._winograd_window_fits(window, out_spatial, config)
    error = formulation_error(formulations.winograd_window, lhs, rhs, config)
    assert error <= tolerance("float64"), f"{error:.3e}"


@pytest.mark.parametrize("kwargs", [{"window_strides": (2, 1)}, {"rhs_dilation": (1, 2)},
                                    {"lhs_dilation": (2, 1)}, {"feature_group_count": 2}])
def test_winograd_window_refuses_what_it_does_not_compute(kwargs: dict[str, Any]) -> None:
    strides = kwargs.pop("window_strides", (1, 1))
    lhs = jnp.ones((1, 4, 3 * strides[0] + 2, 5))
    rhs = jnp.ones((4, 4 // kwargs.get("feature_group_count", 1), 3, 3))
    config = make_config(lhs, rhs, strides, ((0, 0), (0, 0)), **kwargs)
    with pytest.raises(ValueError, match="3x3 output"):
        formulations.winograd_window(lhs, rhs, config)
    lhs, rhs = jnp.ones((1, 4, 8, 8)), jnp.ones((4, 4, 5, 5))  # a 4x4 output
    with pytest.raises(ValueError, match="3x3 output"):
        formulations.winograd_window(lhs, rhs, make_config(lhs, rhs, (1, 1), "VALID"))


def test_winograd_window_pays(monkeypatch: pytest.MonkeyPatch) -> None:
    """float32 from 256 input and output features (128 with jaxlib 0.10's kernels); bfloat16
    where its products are slow, with up to 1024 terms per product (images x the window's 2x2
    tiles); AVX-512 hosts; ``WINOGRAD_WINDOW`` switches it. Arguments: the filter gradient's
    convolution (batch: input features; features: images; window: the forward's output plane)."""
    pays = formulations._winograd_window_pays
    f32, bf16 = np.dtype(np.float32), np.dtype(jnp.bfloat16)
    monkeypatch.setattr(formulations, "_newer_kernels", lambda: False)
    assert pays(f32, 128, 64, 128, (14, 14)) and not pays(f32, 127, 64, 128, (14, 14))
    assert not pays(f32, 128, 64, 127, (14, 14))
    monkeypatch.setattr(formulations, "_newer_kernels", lambda: True)
    assert not pays(f32, 128, 64, 128, (14, 14))
    assert pays(f32, 256, 32, 256, (7, 7)) and pays(f32, 256, 16, 256, (56, 56))
    assert not pays(f32, 255, 32, 256, (7, 7)) and not pays(f32, 256, 32, 255, (7, 7))
    assert not pays(np.dtype(np.float64), 512, 32, 512, (7, 7))
    monkeypatch.setattr(formulations, "_slow_bfloat16_products", lambda: False)
    assert not pays(bf16, 512, 32, 512, (7, 7))
    monkeypatch.setattr(formulations, "_slow_bfloat16_products", lambda: True)
    assert pays(bf16, 512, 64, 512, (7, 7))                 # 64 x 16 tiles: 1024 terms
    assert not pays(bf16, 512, 65, 512, (7, 7))
    assert pays(bf16, 256, 4, 256, (28, 28)) and not pays(bf16, 256, 16, 256, (28, 28))
    monkeypatch.setenv(formulations._host.AVX512_OVERRIDE, "no")
    assert not pays(f32, 512, 32, 512, (7, 7))
    monkeypatch.setenv(formulations._host.AVX512_OVERRIDE, "yes")
    monkeypatch.setattr(formulations, "WINOGRAD_WINDOW", 0)
    assert not pays(f32, 512, 32, 512, (7, 7))


@pytest.mark.parametrize("dtype, preferred", [("float32", None), ("bfloat16", None),
                                              ("bfloat16", "float32")])
def test_flat_products_in_the_dtypes_that_select_them(dtype: str, preferred: str | None) -> None:
    rng = np.random.default_rng(12)
    lhs, rhs = random_array(rng, (3, 8, 5, 6), dtype), random_array(rng, (6, 8, 3, 3), dtype)
    config = make_config(lhs, rhs, (1, 1), ((1, 1), (1, 1)), preferred_element_type=preferred)
    cotangent = random_array(rng, formulations.native(lhs, rhs, config).shape, dtype)
    for formulation, (a, b, c) in [
            (formulations.tap_products, (lhs, rhs, config)),
            (formulations.position_products,
             rule_convolution_of("rhs", lhs, rhs, config, cotangent))]:
        error = formulation_error(formulation, a, b, c)
        assert error <= tolerance(preferred or dtype), f"{formulation.__name__}: {error:.3e}"


def test_flat_products_fit() -> None:
    """Unit strides, no lhs dilation, dense, non-negative padding, inner extents within the
    input's plane."""
    lhs, rhs = jnp.ones((1, 4, 7, 6)), jnp.ones((2, 4, 3, 3))
    fits = formulations._flat_products_fit
    same = make_config(lhs, rhs, (1, 1), ((1, 1), (1, 1)))
    assert fits((7, 6), (7, 6), same) and not fits((7, 6), (8, 6), same)
    assert not fits((7, 6), (4, 3), make_config(lhs, rhs, (2, 1), ((1, 1), (1, 1))))
    assert not fits((7, 6), (7, 6), make_config(lhs, rhs, (1, 1), ((1, 1), (1, 1)),
                                                lhs_dilation=(1, 2)))
    assert not fits((7, 6), (5, 6), make_config(lhs, rhs, (1, 1), ((1, -1), (1, 1))))
    grouped = make_config(lhs, jnp.ones((2, 2, 3, 3)), (1, 1), ((1, 1), (1, 1)),
                          feature_group_count=2)
    assert not fits((7, 6), (7, 6), grouped)


@pytest.mark.parametrize("blocks_shape, dtype, size, rows", [
    ((3, 178, 4), np.float32, 504, 126),   # 504 outputs = 126 rows of 4 features, of 178
    ((3, 178, 3), np.float32, 534, 178),   # exactly a step's rows
    ((3, 178, 3), np.float32, 537, None),  # one row more than a step holds
    ((3, 178, 5), np.float32, 378, None),  # not a whole number of rows
    ((3, 178, 4), np.uint16, 504, None),   # stored bfloat16 inputs, float32 outputs
])
def test_output_rows(blocks_shape: tuple[int, ...], dtype: Any, size: int, rows: Any) -> None:
    """``_output_rows``: the rows a step's outputs take over its own input rows, where they fit
    (same storage type, whole rows, no more than the step holds)."""
    blocks = jnp.zeros(blocks_shape, dtype)
    assert formulations._output_rows(blocks, size, np.dtype(np.float32)) == rows


@pytest.mark.parametrize("masked", [True, False])
@pytest.mark.parametrize("over_input", [True, False])
@pytest.mark.parametrize("lhs_shape, rhs_shape, padding, in_place", [
    # Blocks of 2 images, 10x8 planes with their gaps plus 9 + 9 margin rows: 178 rows a step
    # (masked: 9x7 planes without gaps plus 8 + 8 margin rows, 142 rows; the same fit).
    ((6, 4, 9, 7), (4, 4, 3, 3), ((1, 1), (1, 1)), True),    # 2·9·7·4 = 504 outputs = 126 rows
    ((6, 3, 9, 7), (2, 3, 3, 3), ((1, 1), (1, 1)), True),    # 252 outputs = 84 rows of 3
    ((6, 2, 9, 7), (4, 2, 3, 3), ((1, 1), (1, 1)), False),   # 504 outputs, 356 input values
    ((6, 5, 9, 7), (3, 5, 3, 3), ((1, 1), (1, 1)), False),   # 378 outputs: not whole rows of 5
])
def test_channels_last_output_over_input(
        lhs_shape: tuple[int, ...], rhs_shape: tuple[int, ...], padding: Any, in_place: bool,
        over_input: bool, masked: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The flat layout's loop (with gaps, or masked without them) writes each block's output over
    its own input rows where they fit (``_output_rows`` gives their rows), else maps the blocks;
    both give native's sums in float64."""
    monkeypatch.setattr(formulations, "OUTPUT_OVER_INPUT", over_input)
    monkeypatch.setattr(formulations, "MASKED_FLAT", masked)
    rows = []
    output_rows = formulations._output_rows
    monkeypatch.setattr(formulations, "_output_rows",
                        lambda *args: rows.append(output_rows(*args)) or rows[-1])
    rng = np.random.default_rng(6)
    lhs, rhs = random_array(rng, lhs_shape, "float64"), random_array(rng, rhs_shape, "float64")
    config = make_config(lhs, rhs, (1, 1), padding)
    one_image = (63 if masked else 80) * 9 * rhs_shape[0] * 8  # its Y's bytes in the layout
    monkeypatch.setattr(formulations, "CHANNELS_LAST_BLOCK_BYTES", int(2.5 * one_image))
    jaxpr = jax.make_jaxpr(lambda a, b: formulations.channels_last_matmul(a, b, config))(lhs, rhs)
    (loop,) = [eqn for eqn in jaxpr.eqns if eqn.primitive.name == "scan"]
    assert loop.params["length"] == 3
    expected = lhs_shape[0] // 3 * 9 * 7 * rhs_shape[0] // lhs_shape[1]  # 2 images, rows of C
    assert rows == [expected if in_place and over_input else None]
    error = formulation_error(formulations.channels_last_matmul, lhs, rhs, config)
    assert error <= tolerance("float64"), f"{error:.3e}"


@pytest.mark.parametrize("as_matrix", [True, False])
@pytest.mark.parametrize("layout, lhs_shape, rhs_shape", [
    (None, (4, 3, 9, 7), (5, 3, 3, 3)),                              # the matrix transpose
    (("NWCH", "WHOI", "NCHW"), (4, 7, 3, 9), (3, 3, 5, 3)),          # default output: the same
    (("NHWC", "HWIO", "NHWC"), (4, 9, 7, 3), (3, 3, 3, 5)),          # channels last: none
    (("NCHW", "OIHW", "NHCW"), (4, 3, 9, 7), (5, 3, 3, 3)),          # another output order
    (None, (4, 3, 9), (5, 3, 3)),                                    # 1-D: the same either way
])
def test_channels_last_result_transpose(
        layout: Any, lhs_shape: tuple[int, ...], rhs_shape: tuple[int, ...], as_matrix: bool,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``channels_last_matmul`` moves a default-layout result to channels first as one
    (positions × features) transpose per image (``TRANSPOSE_AS_MATRIX``), other output layouts
    by a transpose of all axes; either way, native's sums in float64."""
    monkeypatch.setattr(formulations, "TRANSPOSE_AS_MATRIX", as_matrix)
    rng = np.random.default_rng(7)
    lhs, rhs = random_array(rng, lhs_shape, "float64"), random_array(rng, rhs_shape, "float64")
    rank = len(lhs_shape) - 2
    config = make_config(lhs, rhs, (1,) * rank, ((1, 1),) * rank, dimension_numbers=layout)
    jaxpr = jax.make_jaxpr(lambda a, b: formulations.channels_last_matmul(a, b, config))(lhs, rhs)
    lhs_spec, rhs_spec, out_spec = config.dimension_numbers
    _, _, out_spatial = spatial_shapes(config, lhs.shape, rhs.shape)
    matrices = (lhs.shape[lhs_spec[0]], rhs.shape[rhs_spec[0]], math.prod(out_spatial))
    matrix_transposes = [eqn for eqn in jaxpr.eqns if eqn.primitive.name == "transpose"
                         and eqn.params["permutation"] == (0, 2, 1)
                         and eqn.outvars[0].aval.shape == matrices]   # (N, O, positions)
    default_output = tuple(out_spec) == tuple(range(rank + 2))
    # In 1-D the transpose of all axes is that matrix transpose too.
    assert len(matrix_transposes) == (default_output and (as_matrix or rank == 1)), jaxpr
    error = formulation_error(formulations.channels_last_matmul, lhs, rhs, config)
    assert error <= tolerance("float64"), f"{error:.3e}"


OVER_INPUT_SHARD_MAP_SCRIPT = """
import json
import jax
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp, numpy as np
from jax.sharding import Mesh, PartitionSpec as P
import impl._formulations as formulations
from impl._config import make_config
from tests.conv_oracle import relative_error
formulations.CHANNELS_LAST_BLOCK_BYTES = 2 * 10 * 8 * 9 * 2 * 8  # blocks of 2 of 6 images
mesh = Mesh(np.array(jax.devices()).reshape(4, 2), ("data", "model"))
keys = jax.random.split(jax.random.key(0))
lhs = jax.random.normal(keys[0], (24, 4, 9, 7), "float64")
rhs = jax.random.normal(keys[1], (4, 4, 3, 3), "float64")
local = make_config(lhs[:6], rhs[:2], (1, 1), ((1, 1), (1, 1)))
rows, output_rows = [], formulations._output_rows
formulations._output_rows = lambda *args: rows.append(output_rows(*args)) or rows[-1]

def conv(a, b):
    return formulations.channels_last_matmul(a, b, local)

# Images over "data", output features over "model" (check_vma on, its default): the loop's
# writes vary over both axes.
got = jax.jit(jax.shard_map(conv, mesh=mesh, in_specs=(P("data"), P("model")),
                            out_specs=P("data", "model")))(lhs, rhs)
want = jax.lax.conv_general_dilated(lhs, rhs, (1, 1), ((1, 1), (1, 1)))
print(json.dumps({"error": relative_error(got, want), "rows": rows}))
"""


def test_channels_last_output_over_input_under_shard_map() -> None:
    """Inside ``shard_map`` with the images over one mesh axis and the filters' output features
    over another, the loop that writes over its input type-checks and gives native's sums."""
    result = json.loads(run_on_eight_cpu_devices(OVER_INPUT_SHARD_MAP_SCRIPT).splitlines()[-1])
    assert result["rows"] == [2 * 9 * 7 * 2 // 4], result  # 2 images' outputs, in rows of 4
    assert result["error"] <= tolerance("float64"), result


WINOGRAD_SHARDED_SCRIPT = """
import json
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import impl
from impl import _formulations
assert len(jax.devices()) == 8, jax.devices()
chosen, choose = set(), _formulations.cpu_formulation

def record(*args, **kwargs):
    formulation = choose(*args, **kwargs)
    chosen.add(formulation.__name__)
    return formulation

_formulations.cpu_formulation = record
keys = jax.random.split(jax.random.key(0))
# 256 features on 7x7, 16 images: 256 rows per Winograd product (_winograd_pays), and 256
# features on both sides of the filter gradient (_winograd_window_pays).
lhs = jax.random.normal(keys[0], (16, 256, 7, 7))
rhs = jax.random.normal(keys[1], (256, 256, 3, 3)) / 48
grad = jax.jit(jax.grad(lambda x, w: jnp.sum(jnp.sin(impl.conv_general_dilated(
    x, w, (1, 1), "SAME"))), argnums=(0, 1)))
one = grad(lhs, rhs)
results = {}
for name, shape, rhs_spec in [("batch", (8,), P()), ("batch and outputs", (4, 2), P("o"))]:
    mesh = Mesh(np.array(jax.devices()).reshape(shape), ("b", "o")[:len(shape)])
    x = jax.device_put(lhs, NamedSharding(mesh, P("b")))
    w = jax.device_put(rhs, NamedSharding(mesh, rhs_spec))
    got = grad(x, w)
    results[name] = {
        "all-gather": grad.lower(x, w).compile().as_text().count("all-gather"),
        "input gradient spec": [str(axis) for axis in got[0].sharding.spec],
        "max difference": max(float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))
                              for a, b in zip(got, one))}
results["chosen"] = sorted(chosen)
print(json.dumps(results))
"""


def test_winograd_under_sharding() -> None:
    """Loop-free, ``winograd`` and ``winograd_window`` (the filter gradient, whose products
    contract the sharded images) also serve programs spread over 8 devices: with the images over
    the devices, and with the filters' output features over a second mesh axis, the gradients
    are one device's (float32) and the input gradient stays sharded over the images."""
    result = json.loads(run_on_eight_cpu_devices(WINOGRAD_SHARDED_SCRIPT).splitlines()[-1])
    assert {"winograd", "winograd_window"} <= set(result["chosen"]), result
    for mesh in ("batch", "batch and outputs"):
        assert result[mesh]["input gradient spec"][0] == "b", result
        assert result[mesh]["max difference"] <= tolerance("float32"), result
    assert result["batch"]["all-gather"] == 0, result


@dataclasses.dataclass
class _Recorder:
    """Records the CPU formulation chosen for each convolution the op traces."""

    chosen: list[str] = dataclasses.field(default_factory=list)
    nested: list[str] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        self.choose = formulations.cpu_formulation

    def __call__(self, *args: Any, **kwargs: Any) -> Callable[..., jax.Array]:
        formulation = self.choose(*args, **kwargs)
        # The choice for one device per program; ``conv`` also traces a loop-free one for
        # programs spread over several devices (tested below, in a subprocess).
        if formulations._PER_IMAGE_LOOPS.get():
            (self.nested if kwargs.get("nested") else self.chosen).append(formulation.__name__)
        return formulation


def _chosen(monkeypatch: pytest.MonkeyPatch, lhs_shape: tuple[int, ...],
            rhs_shape: tuple[int, ...], dtype: str, recorder: _Recorder | None = None,
            newer: bool = False, slow_bfloat16: bool = False, **kwargs: Any) -> list[str]:
    """Formulations of (forward, input gradient, filter gradient) of ``jax.grad`` of the op.

    ``newer``: as made with jaxlib 0.11 or later (the rules refitted for its kernels,
    ``_newer_kernels``), whatever jaxlib is installed; by default as with 0.10.
    ``slow_bfloat16``: with ``newer``, as with jaxlib 0.12.1 or later
    (``_slow_bfloat16_products`` and ``_slow_small_plane_kernels``); by default as with 0.11 to
    0.12.0.
    """
    recorder = recorder or _Recorder()
    monkeypatch.setattr(formulations, "cpu_formulation", recorder)
    monkeypatch.setattr(formulations, "_newer_kernels", lambda: newer)
    monkeypatch.setattr(formulations, "_slow_bfloat16_products", lambda: slow_bfloat16)
    monkeypatch.setattr(formulations, "_slow_small_plane_kernels", lambda: slow_bfloat16)

    kwargs = {"window_strides": (1,) * (len(lhs_shape) - 2), **kwargs}

    def loss(lhs: jax.Array, rhs: jax.Array) -> jax.Array:
        out = impl.conv_general_dilated(lhs, rhs, padding="SAME", **kwargs)
        return jnp.sum(out.astype(jnp.float32))

    jax.make_jaxpr(jax.grad(loss, argnums=(0, 1)))(jax.ShapeDtypeStruct(lhs_shape, dtype),
                                                   jax.ShapeDtypeStruct(rhs_shape, dtype))
    return recorder.chosen


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_a_resnet_layer_uses_the_matrix_product_formulations(
        monkeypatch: pytest.MonkeyPatch, dtype: str) -> None:
    assert _chosen(monkeypatch, (16, 64, 56, 56), (64, 64, 3, 3), dtype) == [
        "shift_matmul", "shift_matmul", "taps_matmul"]
    # Stride 2: the forward by input phases; its input gradient (lhs dilation) by polyphase.
    assert _chosen(monkeypatch, (16, 128, 56, 56), (128, 128, 3, 3), dtype,
                   window_strides=(2, 2)) == ["shift_matmul", "polyphase", "taps_matmul"]


@pytest.mark.parametrize("dtype, forward", [("float32", "native"),
                                            ("bfloat16", "columns_matmul")])
def test_one_dimensional_audio_uses_columns_and_dilated_shifts(
        monkeypatch: pytest.MonkeyPatch, dtype: str, forward: str) -> None:
    # Stride 2: the forward as columns in bfloat16 (XLA's 1-D float32 kernel is as fast), the
    # input gradient (lhs dilation 2) as products of the undilated cotangent read with dilation,
    # the filter gradient by taps.
    assert _chosen(monkeypatch, (8, 64, 8000), (128, 64, 5), dtype, window_strides=(2,)) == [
        forward, "shift_matmul", "taps_matmul"]


@pytest.mark.parametrize("lhs_shape, rhs_shape", [
    ((32, 16, 4000), (16, 16, 3)),         # few features
    ((8, 32, 4000), (32, 32, 25)),         # a long window
])
def test_one_dimensional_cases_where_the_native_kernel_measured_as_fast(
        monkeypatch: pytest.MonkeyPatch, lhs_shape: tuple[int, ...],
        rhs_shape: tuple[int, ...]) -> None:
    for dtype in ("float32", "bfloat16"):
        chosen = _chosen(monkeypatch, lhs_shape, rhs_shape, dtype)
        assert chosen == ["native", "native", "taps_matmul"], (dtype, chosen)


def test_lhs_dilation_four_in_one_dimension_keeps_polyphase(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Stride 4: the input gradient's lhs dilation 4 measured faster as phases than dilated shifts.
    for dtype in ("float32", "bfloat16"):
        chosen = _chosen(monkeypatch, (8, 64, 8000), (128, 64, 8), dtype, window_strides=(4,))
        assert chosen[1] == "polyphase", (dtype, chosen)


@pytest.mark.parametrize("lhs_shape, rhs_shape, strides, expected", [
    # Below 28x28 at stride 1 with up to 512 features, channels last in blocks of images (on
    # every CPU: _channels_last_pays); with more features, and from 28x28, per image.
    ((256, 32, 16, 16), (32, 32, 3, 3), (1, 1),
     ["channels_last_matmul", "channels_last_matmul", "taps_matmul"]),
    ((64, 128, 14, 14), (128, 128, 3, 3), (1, 1),
     ["channels_last_matmul", "channels_last_matmul", "taps_matmul"]),
    ((32, 512, 7, 7), (512, 512, 3, 3), (1, 1),
     ["channels_last_matmul", "channels_last_matmul", "native"]),
    ((16, 1024, 7, 7), (1024, 1024, 3, 3), (1, 1), ["shift_matmul", "shift_matmul", "native"]),
    ((16, 64, 28, 28), (64, 64, 3, 3), (1, 1), ["shift_matmul", "shift_matmul", "taps_matmul"]),
    # Few contracted features at stride 1: the native kernel (16 measured slower as products).
    ((64, 16, 32, 32), (16, 16, 3, 3), (1, 1), ["native", "native", "taps_matmul"]),
    ((16, 24, 56, 56), (24, 24, 3, 3), (1, 1), ["shift_matmul", "shift_matmul", "taps_matmul"]),
    # 5x5 windows: channels last on any plane.
    ((8, 32, 56, 56), (32, 32, 5, 5), (1, 1),
     ["channels_last_matmul", "channels_last_matmul", "taps_matmul"]),
    # Strided: channels last would multiply every input position; the shifts split the phases.
    ((32, 256, 28, 28), (256, 256, 3, 3), (2, 2), ["shift_matmul", "polyphase", "taps_matmul"]),
    ((64, 256, 6, 6), (256, 256, 3, 3), (1, 1), ["native", "native", "native"]),
    # Too little work per image: 8x8 positions x 32 x 32 features.
    ((256, 32, 8, 8), (32, 32, 3, 3), (1, 1), ["native", "native", "native"]),
])
def test_in_bfloat16_products_serve_planes_from_7x7(
        monkeypatch: pytest.MonkeyPatch, lhs_shape: tuple[int, ...], rhs_shape: tuple[int, ...],
        strides: tuple[int, ...], expected: list[str]) -> None:
    # The filter gradient keeps its 14x14 minimum (a 7x7 forward output is its 49-tap window).
    assert _chosen(monkeypatch, lhs_shape, rhs_shape, "bfloat16",
                   window_strides=strides) == expected


def test_in_bfloat16_they_also_serve_nested_convolutions(monkeypatch: pytest.MonkeyPatch) -> None:
    shapes = ((2, 32, 8, 28, 28), (32, 32, 3, 3, 3))
    for dtype, expected in (("float32", set()), ("bfloat16", {"shift_matmul", "taps_matmul"})):
        recorder = _Recorder()
        assert _chosen(monkeypatch, *shapes, dtype, recorder) == ["fold_first_axis"] * 3
        assert set(recorder.nested) & {"shift_matmul", "taps_matmul"} == expected


@pytest.mark.parametrize("lhs_shape, rhs_shape, dtype, expected", [
    # Other dtypes keep the native kernel (not measured faster).
    ((16, 64, 56, 56), (64, 64, 3, 3), "float64", ["native", "native", "native"]),
    ((16, 64, 56, 56), (64, 64, 3, 3), "float16", ["native", "native", "native"]),
    # float32 at stride 1: XLA's kernel is faster from 96 output features on (128 x 128 on
    # 28x28; there Winograd takes the forward and input gradient, item 31, and with jaxlib 0.10
    # the filter gradient, item 32) and the products slower below 48 contracted features;
    # bfloat16 takes them.
    ((16, 128, 28, 28), (128, 128, 3, 3), "float32",
     ["winograd", "winograd", "winograd_window"]),
    ((16, 128, 28, 28), (128, 128, 3, 3), "bfloat16",
     ["shift_matmul", "shift_matmul", "taps_matmul"]),
    ((64, 32, 28, 28), (32, 32, 3, 3), "float32", ["native", "native", "taps_matmul"]),
    # Planes below 14x14: the filter gradient's loop steps are too small; in float32 the
    # per-image products too (bfloat16 takes them from 7x7 outputs, below).
    ((256, 32, 8, 8), (32, 32, 3, 3), "float32", ["native", "native", "native"]),
    ((256, 32, 16, 16), (32, 32, 3, 3), "float32", ["native", "native", "taps_matmul"]),
    # 3-D: folded into 2-D sub-convolutions, where in float32 the products measured slower.
    ((2, 32, 8, 28, 28), (32, 32, 3, 3, 3), "float32",
     ["fold_first_axis", "fold_first_axis", "fold_first_axis"]),
])
def test_where_the_matrix_product_formulations_are_not_used(
        monkeypatch: pytest.MonkeyPatch, lhs_shape: tuple[int, ...], rhs_shape: tuple[int, ...],
        dtype: str, expected: list[str]) -> None:
    assert _chosen(monkeypatch, lhs_shape, rhs_shape, dtype) == expected


@pytest.mark.parametrize("lhs_shape, rhs_shape, dtype, strides, expected", [
    # float32 at stride 1: XLA's kernel (0.10: the products from 48 contracted features).
    ((16, 64, 56, 56), (64, 64, 3, 3), "float32", (1, 1), ["native", "native", "taps_matmul"]),
    ((12, 64, 28, 28), (64, 64, 5, 5), "float32", (1, 1), ["native", "native", "native"]),
    # Strided from 48 features (the input gradient by phases, as before); not on 3 (the stem).
    ((16, 128, 56, 56), (128, 128, 3, 3), "float32", (2, 2),
     ["shift_matmul", "polyphase", "taps_matmul"]),
    ((16, 3, 112, 112), (32, 3, 3, 3), "float32", (2, 2), ["native", "polyphase", "native"]),
    # bfloat16 from 48 contracted features, small planes in channels last whatever the CPU.
    ((16, 64, 56, 56), (64, 64, 3, 3), "bfloat16", (1, 1),
     ["shift_matmul", "shift_matmul", "taps_matmul"]),
    ((128, 64, 16, 16), (64, 64, 3, 3), "bfloat16", (1, 1),
     ["channels_last_matmul", "channels_last_matmul", "taps_matmul"]),
    ((64, 32, 28, 28), (32, 32, 3, 3), "bfloat16", (1, 1), ["native", "native", "taps_matmul"]),
    ((16, 16, 64, 64), (16, 16, 3, 3), "bfloat16", (1, 1), ["native", "native", "native"]),
    # The filter gradient's products from 24 features in bfloat16 and 48 in float32 (3x3
    # windows; item 33: 32 float32 features lost on the Xeon with AMX).
    ((16, 24, 56, 56), (24, 24, 3, 3), "bfloat16", (1, 1), ["native", "native", "taps_matmul"]),
    ((16, 24, 56, 56), (24, 24, 3, 3), "float32", (1, 1), ["native", "native", "native"]),
    ((256, 32, 16, 16), (32, 32, 3, 3), "float32", (1, 1), ["native", "native", "native"]),
    ((16, 48, 28, 28), (48, 48, 3, 3), "float32", (1, 1), ["native", "native", "taps_matmul"]),
    ((64, 16, 32, 32), (16, 16, 3, 3), "float32", (1, 1), ["native", "native", "native"]),
    # 1-D, stride 2: the input gradient's products in bfloat16 from 128 contracted features, not
    # in float32 (item 33); the filter gradient's products from 48 features.
    ((8, 64, 4000), (128, 64, 5), "float32", (2,), ["native", "polyphase", "taps_matmul"]),
    ((8, 64, 4000), (128, 64, 5), "bfloat16", (2,),
     ["columns_matmul", "shift_matmul", "taps_matmul"]),
    # The filter gradient over 5x5 windows: bfloat16 from 64 features.
    ((12, 64, 28, 28), (64, 64, 5, 5), "bfloat16", (1, 1),
     ["channels_last_matmul", "channels_last_matmul", "taps_matmul"]),
    ((8, 32, 56, 56), (32, 32, 5, 5), "bfloat16", (1, 1), ["native", "native", "native"]),
])
def test_with_jaxlib_0_11_the_refitted_rules_answer(
        monkeypatch: pytest.MonkeyPatch, lhs_shape: tuple[int, ...], rhs_shape: tuple[int, ...],
        dtype: str, strides: tuple[int, ...], expected: list[str]) -> None:
    # Its convolution kernels got faster, its matrix kernel did not (_newer_kernels).
    assert _chosen(monkeypatch, lhs_shape, rhs_shape, dtype, newer=True,
                   window_strides=strides) == expected


def test_the_refitted_float32_rules_have_their_switches(monkeypatch: pytest.MonkeyPatch) -> None:
    """``NEWER_FLOAT32_1D_SHIFT`` and ``MIN_NEWER_FLOAT32_TAPS_FEATURES`` give back the rules for
    jaxlib 0.11 and later as they were before item 33 (for ``benchmarks/ab_constants.py``)."""
    monkeypatch.setattr(formulations, "NEWER_FLOAT32_1D_SHIFT", True)
    monkeypatch.setattr(formulations, "MIN_NEWER_FLOAT32_TAPS_FEATURES", 24)
    assert _chosen(monkeypatch, (8, 64, 4000), (128, 64, 5), "float32", newer=True,
                   window_strides=(2,)) == ["native", "shift_matmul", "taps_matmul"]
    assert _chosen(monkeypatch, (256, 32, 16, 16), (32, 32, 3, 3), "float32",
                   newer=True) == ["native", "native", "taps_matmul"]


@pytest.mark.parametrize("lhs_shape, rhs_shape, strides, expected", [
    ((16, 64, 56, 56), (64, 64, 3, 3), (1, 1), ["native", "native", "taps_matmul"]),
    ((128, 64, 16, 16), (64, 64, 3, 3), (1, 1), ["native", "native", "taps_matmul"]),
    ((12, 64, 28, 28), (64, 64, 5, 5), (1, 1), ["native", "native", "taps_matmul"]),
    # Strided from 48 features, as float32.
    ((16, 128, 56, 56), (128, 128, 3, 3), (2, 2), ["shift_matmul", "polyphase", "taps_matmul"]),
])
def test_with_jaxlib_0_12_1_bfloat16_products_answer_as_float32_at_unit_strides(
        monkeypatch: pytest.MonkeyPatch, lhs_shape: tuple[int, ...], rhs_shape: tuple[int, ...],
        strides: tuple[int, ...], expected: list[str]) -> None:
    # Its bfloat16 products ran at its float32 speed (_slow_bfloat16_products): only the filter
    # gradient's products keep bfloat16's own rule. float32 answers as with 0.11.
    assert _chosen(monkeypatch, lhs_shape, rhs_shape, "bfloat16", newer=True,
                   slow_bfloat16=True, window_strides=strides) == expected
    monkeypatch.undo()
    float32 = _chosen(monkeypatch, lhs_shape, rhs_shape, "float32", newer=True,
                      slow_bfloat16=True, window_strides=strides)
    monkeypatch.undo()
    assert float32 == _chosen(monkeypatch, lhs_shape, rhs_shape, "float32", newer=True,
                              window_strides=strides)


@pytest.mark.parametrize("lhs_shape, rhs_shape, expected", [
    # At least 32 features per unit of the plane's side: channels last, as with 0.11; below
    # taps_matmul's planes the filter gradient as one product per tap (position_products).
    ((64, 256, 7, 7), (256, 256, 3, 3),
     ["channels_last_matmul", "channels_last_matmul", "position_products"]),
    ((32, 512, 7, 7), (512, 512, 3, 3),
     ["channels_last_matmul", "channels_last_matmul", "position_products"]),
    ((16, 512, 14, 14), (512, 512, 3, 3),
     ["channels_last_matmul", "channels_last_matmul", "taps_matmul"]),
    # Fewer: the native kernel, as float32.
    ((16, 256, 14, 14), (256, 256, 3, 3), ["native", "native", "taps_matmul"]),
    ((64, 128, 14, 14), (128, 128, 3, 3), ["native", "native", "taps_matmul"]),
    # More features than channels last serves (not measured): the native kernel forward; the
    # filter gradient still as position_products (_flat_products_pay, below).
    ((8, 1024, 7, 7), (1024, 1024, 3, 3), ["native", "native", "position_products"]),
])
def test_with_jaxlib_0_12_1_small_planes_with_many_features_keep_channels_last(
        monkeypatch: pytest.MonkeyPatch, lhs_shape: tuple[int, ...], rhs_shape: tuple[int, ...],
        expected: list[str]) -> None:
    # Item 30: XLA's kernel is slowest on the smallest planes (_many_features_on_small_plane).
    # Without Winograd, which takes most of these forwards and filter gradients with these
    # jaxlibs (items 31 and 32).
    monkeypatch.setattr(formulations, "WINOGRAD", 0)
    monkeypatch.setattr(formulations, "WINOGRAD_WINDOW", 0)
    assert _chosen(monkeypatch, lhs_shape, rhs_shape, "bfloat16", newer=True,
                   slow_bfloat16=True) == expected


@pytest.mark.parametrize("lhs_shape, rhs_shape, dtype, expected", [
    # float32: one product per tap over the whole batch, the filter gradient one per tap too.
    ((32, 512, 7, 7), (512, 512, 3, 3), "float32",
     ["tap_products", "tap_products", "position_products"]),
    ((64, 256, 7, 7), (256, 256, 3, 3), "float32",
     ["tap_products", "tap_products", "position_products"]),
    ((16, 640, 8, 8), (640, 640, 3, 3), "float32",
     ["tap_products", "tap_products", "position_products"]),
    # From 14x14 the filter gradient stays taps_matmul's.
    ((16, 512, 14, 14), (512, 512, 3, 3), "float32",
     ["tap_products", "tap_products", "taps_matmul"]),
    # Fewer than 32 features per unit of the side: as before.
    ((16, 256, 14, 14), (256, 256, 3, 3), "float32", ["native", "native", "taps_matmul"]),
    ((64, 128, 7, 7), (128, 128, 3, 3), "float32", ["native", "native", "native"]),
    ((64, 128, 7, 7), (128, 128, 3, 3), "bfloat16", ["native", "native", "native"]),
    # Strided: not these (the forward's stride is the filter gradient's window stride).
    ((32, 512, 14, 14), (512, 512, 3, 3), "float32", ["native", "polyphase", "native"]),
])
def test_with_jaxlib_0_12_1_small_planes_with_many_features_take_flat_products(
        monkeypatch: pytest.MonkeyPatch, lhs_shape: tuple[int, ...], rhs_shape: tuple[int, ...],
        dtype: str, expected: list[str]) -> None:
    # Item 30: its convolution kernel ran these at half jaxlib 0.10.2's speed (_flat_products_pay).
    # Without Winograd, which takes the float32 forwards and filter gradients where it pays
    # (below).
    strides = (2, 2) if lhs_shape == (32, 512, 14, 14) else (1, 1)

    def chosen(**kwargs: Any) -> list[str]:
        monkeypatch.undo()
        monkeypatch.setattr(formulations, "WINOGRAD", 0)
        monkeypatch.setattr(formulations, "WINOGRAD_WINDOW", 0)
        return _chosen(monkeypatch, lhs_shape, rhs_shape, dtype, window_strides=strides, **kwargs)

    assert chosen(newer=True, slow_bfloat16=True) == expected
    # Not with the earlier jaxlibs.
    assert "tap_products" not in chosen(newer=True)
    assert "position_products" not in chosen()


@pytest.mark.parametrize("newer, slow", [(False, False), (True, False), (True, True)],
                         ids=["jaxlib 0.10", "jaxlib 0.11-0.12.0", "jaxlib 0.12.1"])
@pytest.mark.parametrize("lhs_shape, rhs_shape, dtype, strides, pays", [
    # float32, 3x3 at stride 1, from 128 features and 256 rows (images x 2x2 tiles) per product,
    # planes up to 28x28 (_winograd_pays, item 31).
    ((32, 512, 7, 7), (512, 512, 3, 3), "float32", (1, 1), True),
    ((64, 256, 7, 7), (256, 256, 3, 3), "float32", (1, 1), True),
    ((16, 640, 8, 8), (640, 640, 3, 3), "float32", (1, 1), True),
    ((16, 512, 14, 14), (512, 512, 3, 3), "float32", (1, 1), True),
    ((16, 256, 14, 14), (256, 256, 3, 3), "float32", (1, 1), True),
    ((4, 256, 28, 28), (256, 256, 3, 3), "float32", (1, 1), True),
    ((64, 128, 14, 14), (128, 128, 3, 3), "float32", (1, 1), True),
    # Too few rows, too few features, larger planes, bfloat16, strides.
    ((9, 512, 7, 7), (512, 512, 3, 3), "float32", (1, 1), False),
    ((2, 512, 14, 14), (512, 512, 3, 3), "float32", (1, 1), False),
    ((256, 32, 16, 16), (32, 32, 3, 3), "float32", (1, 1), False),
    ((16, 64, 56, 56), (64, 64, 3, 3), "float32", (1, 1), False),
    ((4, 256, 56, 56), (256, 256, 3, 3), "float32", (1, 1), False),
    ((32, 512, 7, 7), (512, 512, 3, 3), "bfloat16", (1, 1), "with slow bfloat16 products"),
    ((32, 512, 14, 14), (512, 512, 3, 3), "float32", (2, 2), False),
])
def test_winograd_serves_3x3_with_many_features_on_small_planes(
        monkeypatch: pytest.MonkeyPatch, newer: bool, slow: bool, lhs_shape: tuple[int, ...],
        rhs_shape: tuple[int, ...], dtype: str, strides: tuple[int, ...], pays: bool | str
) -> None:
    chosen = _chosen(monkeypatch, lhs_shape, rhs_shape, dtype, newer=newer, slow_bfloat16=slow,
                     window_strides=strides)
    if pays == "with slow bfloat16 products":  # bfloat16: only where its products are slow
        pays = slow
    if pays:  # the forward and the rule's input gradient; the filter gradient by its own rule
        assert chosen[:2] == ["winograd", "winograd"] and chosen[2] != "winograd"
    else:
        assert "winograd" not in chosen


@pytest.mark.parametrize("newer, slow", [(False, False), (True, False), (True, True)],
                         ids=["jaxlib 0.10", "jaxlib 0.11-0.12.0", "jaxlib 0.12.1"])
@pytest.mark.parametrize("lhs_shape, rhs_shape, dtype, strides, pays", [
    # Filter gradients of 3x3 stride-1 convolutions from 256 features on both sides (128 with
    # jaxlib 0.10), on any plane (_winograd_window_pays, item 32).
    ((32, 512, 7, 7), (512, 512, 3, 3), "float32", (1, 1), True),
    ((4, 256, 56, 56), (256, 256, 3, 3), "float32", (1, 1), True),
    ((9, 512, 7, 7), (512, 512, 3, 3), "float32", (1, 1), True),
    ((64, 128, 14, 14), (128, 128, 3, 3), "float32", (1, 1), "with jaxlib 0.10"),
    ((16, 64, 56, 56), (64, 64, 3, 3), "float32", (1, 1), False),
    ((32, 512, 14, 14), (512, 512, 3, 3), "float32", (2, 2), False),
    ((32, 512, 7, 7), (512, 512, 5, 5), "float32", (1, 1), False),
    # bfloat16 where its products are slow, up to 1024 terms per product.
    ((32, 512, 7, 7), (512, 512, 3, 3), "bfloat16", (1, 1), "with slow bfloat16 products"),
    ((16, 256, 28, 28), (256, 256, 3, 3), "bfloat16", (1, 1), False),
])
def test_winograd_window_serves_filter_gradients_with_many_features(
        monkeypatch: pytest.MonkeyPatch, newer: bool, slow: bool, lhs_shape: tuple[int, ...],
        rhs_shape: tuple[int, ...], dtype: str, strides: tuple[int, ...], pays: bool | str
) -> None:
    chosen = _chosen(monkeypatch, lhs_shape, rhs_shape, dtype, newer=newer, slow_bfloat16=slow,
                     window_strides=strides)
    pays = {"with slow bfloat16 products": slow, "with jaxlib 0.10": not newer}.get(pays, pays)
    if pays:
        assert chosen[2] == "winograd_window" and "winograd_window" not in chosen[:2]
    else:
        assert "winograd_window" not in chosen


def test_the_op_with_winograd_window_matches_native_autodiff(monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    shapes = (8, 256, 7, 7), (256, 256, 3, 3)
    assert _chosen(monkeypatch, *shapes, "float32")[2] == "winograd_window"
    monkeypatch.undo()
    _assert_op_matches_native_autodiff(*shapes, "float32", (1, 1))


def test_winograd_with_64_features_only_with_jaxlib_0_10(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    shapes = (128, 64, 16, 16), (64, 64, 3, 3)
    assert _chosen(monkeypatch, *shapes, "float32")[:2] == ["winograd", "winograd"]
    monkeypatch.undo()
    assert "winograd" not in _chosen(monkeypatch, *shapes, "float32", newer=True)


def test_the_op_with_winograd_matches_native_autodiff(monkeypatch: pytest.MonkeyPatch) -> None:
    shapes = (16, 256, 7, 7), (256, 256, 3, 3)
    assert _chosen(monkeypatch, *shapes, "float32")[:2] == ["winograd", "winograd"]
    monkeypatch.undo()
    _assert_op_matches_native_autodiff(*shapes, "float32", (1, 1))


def test_the_slow_bfloat16_rule_starts_at_jaxlib_0_12_1(monkeypatch: pytest.MonkeyPatch) -> None:
    for version, slow in (((0, 10, 2), False), ((0, 12, 0, 1), False), ((0, 12, 1), True),
                          ((0, 13), True)):
        monkeypatch.setattr(formulations, "_JAXLIB_VERSION", version)
        assert formulations._slow_bfloat16_products() is slow, version
        assert formulations._slow_small_plane_kernels() is slow, version
    # Only on hosts with AMX (conftest.py pins one; item 37 of benchmarks/README.md).
    monkeypatch.setenv(formulations._host.AMX_OVERRIDE, "no")
    assert not formulations._slow_bfloat16_products()
    assert formulations._slow_small_plane_kernels()
    monkeypatch.setenv(formulations._host.AMX_OVERRIDE, "yes")
    assert formulations._slow_bfloat16_products()
    monkeypatch.setattr(formulations, "SLOW_BFLOAT16_PRODUCTS", False)
    assert not formulations._slow_bfloat16_products()
    assert formulations._slow_small_plane_kernels()
    monkeypatch.setattr(formulations, "FLAT_PRODUCTS", False)
    assert not formulations._slow_small_plane_kernels()


def test_many_features_on_small_planes() -> None:
    """From 32 features per unit of a plane's side, below 28x28 planes."""
    many = formulations._many_features_on_small_plane
    assert many(224, 49) and not many(223, 49)           # 7x7: 32 x 7
    assert many(448, 196) and not many(447, 196)         # 14x14
    assert many(1024, 27 * 27) and not many(4096, 28 * 28)


@pytest.mark.parametrize("dtype, strides, lhs_shape, rhs_shape, expected", [
    # float32 at stride 1 takes them from 48 contracted features, below 96 output features.
    ("float32", (1, 1), (2, 64, 28, 30), (64, 64, 3, 2),
     ["shift_matmul", "shift_matmul", "taps_matmul"]),
    # bfloat16 at stride 1 from 24 contracted features.
    ("bfloat16", (1, 1), (2, 24, 28, 30), (24, 24, 3, 2),
     ["shift_matmul", "shift_matmul", "taps_matmul"]),
    ("bfloat16", (1, 1), (4, 64, 12, 11), (64, 64, 3, 2),
     ["channels_last_matmul", "channels_last_matmul", "native"]),
    ("float32", (1, 1), (2, 64, 28, 29), (64, 64, 5, 5),
     ["channels_last_matmul", "channels_last_matmul", "taps_matmul"]),
    *[(dtype, (2, 2), (2, 4, 56, 59), (5, 4, 3, 2), ["shift_matmul", "polyphase", "taps_matmul"])
      for dtype in ("float32", "bfloat16")],
    ("bfloat16", (1,), (2, 128, 900), (128, 128, 3),
     ["columns_matmul", "columns_matmul", "taps_matmul"]),
    ("float32", (2,), (2, 4, 1801), (5, 4, 4), ["native", "shift_matmul", "taps_matmul"]),
    ("bfloat16", (2,), (2, 8, 1801), (128, 8, 4), ["columns_matmul", "shift_matmul", "taps_matmul"]),
])
def test_the_op_with_them_matches_native_autodiff(
        monkeypatch: pytest.MonkeyPatch, dtype: str, strides: tuple[int, ...],
        lhs_shape: tuple[int, ...], rhs_shape: tuple[int, ...], expected: list[str]) -> None:
    assert _chosen(monkeypatch, lhs_shape, rhs_shape, dtype, window_strides=strides) == expected
    monkeypatch.undo()
    monkeypatch.setattr(formulations, "_newer_kernels", lambda: False)  # as asserted above
    _assert_op_matches_native_autodiff(lhs_shape, rhs_shape, dtype, strides)


@pytest.mark.parametrize("dtype, expected", [
    ("float32", ["tap_products", "tap_products", "position_products"]),
    ("bfloat16", ["channels_last_matmul", "channels_last_matmul", "position_products"]),
])
def test_the_op_with_flat_products_matches_native_autodiff(
        monkeypatch: pytest.MonkeyPatch, dtype: str, expected: list[str]) -> None:
    # 224 features on 7x7 planes: 32 per unit of the side, as with jaxlib 0.12.1 (item 30).
    shapes = (2, 224, 7, 7), (224, 224, 3, 3)
    assert _chosen(monkeypatch, *shapes, dtype, newer=True, slow_bfloat16=True) == expected
    monkeypatch.undo()
    for rule in ("_newer_kernels", "_slow_bfloat16_products", "_slow_small_plane_kernels"):
        monkeypatch.setattr(formulations, rule, lambda: True)  # as asserted above
    _assert_op_matches_native_autodiff(*shapes, dtype, (1, 1))


def _assert_op_matches_native_autodiff(lhs_shape: tuple[int, ...], rhs_shape: tuple[int, ...],
                                       dtype: str, strides: tuple[int, ...]) -> None:
    """The op's output and both gradients (SAME padding) against native autodiff's."""
    rng = np.random.default_rng(3)
    lhs, rhs = random_array(rng, lhs_shape, dtype), random_array(rng, rhs_shape, dtype)
    out_shape = jax.eval_shape(lambda: lax.conv_general_dilated(lhs, rhs, strides, "SAME")).shape
    cotangent = random_array(rng, out_shape, dtype)

    def outputs(conv: Callable[..., jax.Array], *operands: jax.Array) -> tuple[jax.Array, ...]:
        lhs, rhs, cotangent = operands
        out, vjp = jax.vjp(lambda lhs, rhs: conv(lhs, rhs, strides, "SAME"), lhs, rhs)
        return (out, *vjp(cotangent))

    ours = jax.jit(lambda *operands: outputs(impl.conv_general_dilated, *operands))(
        lhs, rhs, cotangent)
    native = jax.jit(lambda *operands: outputs(lax.conv_general_dilated, *operands))(
        lhs, rhs, cotangent)
    for what, actual, expected in zip(("O", "dL/dlhs", "dL/drhs"), ours, native, strict=True):
        assert actual.dtype == expected.dtype
        error = relative_error(actual, expected)
        assert error <= tolerance(dtype), f"{what}: {error:.3e}"


SHARDED_SCRIPT = """
import json
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import impl
from impl import _formulations
assert len(jax.devices()) == 8, jax.devices()
mesh = Mesh(np.array(jax.devices()), ("b",))
keys = jax.random.split(jax.random.key(0))
# 64 features: the loops are chosen by the rules for jaxlib 0.10 and for 0.11 and later alike,
# bfloat16's as before jaxlib 0.12.1 (which leaves unit-stride bfloat16 to the native kernel).
_formulations.SLOW_BFLOAT16_PRODUCTS = False
# The filter scaled as initialized (fan-in 576), so that the outputs and cos(outputs) stay O(1).
lhs = jax.random.normal(keys[0], (16, 64, 28, 28))
rhs = jax.random.normal(keys[1], (64, 64, 3, 3)) / 24

def grad(conv, strides=(1, 1)):
    return jax.grad(lambda x, w: jnp.sum(jnp.sin(conv(x, w, strides, "SAME"))), argnums=(0, 1))

def count(hlo):
    return {op: hlo.count(op) for op in ("all-gather", "while(")}

one = jax.jit(grad(impl.conv_general_dilated))
spread_lhs = jax.device_put(lhs, NamedSharding(mesh, P("b")))
spread_rhs = jax.device_put(rhs, NamedSharding(mesh, P()))
local = jax.jit(jax.shard_map(grad(impl.conv_general_dilated), mesh=mesh, in_specs=(P("b"), P()),
                              out_specs=(P("b"), P())))
strided = jax.jit(grad(impl.conv_general_dilated, (2, 2)))
wide, rhs16 = jnp.ones((16, 64, 56, 56), jnp.bfloat16), rhs.astype(jnp.bfloat16)
small, rhs64 = jnp.ones((16, 64, 12, 12), jnp.bfloat16), jnp.ones((64, 64, 3, 3), jnp.bfloat16)
print(json.dumps({
    "one device": count(one.lower(lhs, rhs).compile().as_text()),
    "batch sharded": count(one.lower(spread_lhs, spread_rhs).compile().as_text()),
    "input gradient spec": list(one(spread_lhs, spread_rhs)[0].sharding.spec),
    "max difference": max(float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b))) for a, b in zip(
        one(spread_lhs, spread_rhs), one(lhs, rhs))),
    "shard_map": count(local.lower(spread_lhs, spread_rhs).compile().as_text()),
    # bfloat16, stride 2: the loops also sit inside polyphase's phases there.
    "one device, bfloat16 stride 2": count(strided.lower(wide, rhs16).compile().as_text()),
    "batch sharded, bfloat16 stride 2": count(strided.lower(
        jax.device_put(wide, NamedSharding(mesh, P("b"))),
        jax.device_put(rhs16, NamedSharding(mesh, P()))).compile().as_text()),
    # bfloat16 small planes: channels last in blocks of images.
    "one device, bfloat16 small planes": count(one.lower(small, rhs64).compile().as_text()),
    "batch sharded, bfloat16 small planes": count(one.lower(
        jax.device_put(small, NamedSharding(mesh, P("b"))),
        jax.device_put(rhs64, NamedSharding(mesh, P()))).compile().as_text()),
}))
"""


def test_per_image_loops_are_lowered_only_for_one_device_per_program() -> None:
    """A loop's iterations are not split by XLA's SPMD partitioner: over 8 devices the op lowers
    the loop-free formulations (no all-gather of the batch, input gradient still sharded); on one
    device, and per device inside shard_map, it keeps the loops."""
    result = json.loads(run_on_eight_cpu_devices(SHARDED_SCRIPT).splitlines()[-1])
    assert result["one device"]["while("] > 0, result
    assert result["shard_map"]["while("] > 0, result
    assert result["one device, bfloat16 stride 2"]["while("] > 0, result
    assert result["batch sharded"] == {"all-gather": 0, "while(": 0}, result
    assert result["batch sharded, bfloat16 stride 2"] == {"all-gather": 0, "while(": 0}, result
    assert result["one device, bfloat16 small planes"]["while("] > 0, result
    assert result["batch sharded, bfloat16 small planes"] == {"all-gather": 0, "while(": 0}, result
    assert result["input gradient spec"] == ["b"], result
    # The loop-free formulations against the per-image ones on one device: same sums, float32.
    assert result["max difference"] <= tolerance("float32"), result


@pytest.mark.parametrize("plain", [True, False])
def test_a_fold_with_one_tap_on_its_first_axis_takes_the_2d_rules(
        monkeypatch: pytest.MonkeyPatch, plain: bool) -> None:
    # A 1x3x3 convolution folds into a 2-D one over (images x depth) without copies, and its
    # filter gradient (one output on that axis) into one over (features x depth): both take the
    # 2-D rules, float32 products included (item 35 of benchmarks/README.md); with the switch off
    # they are nested ones, where float32 keeps the native kernel.
    monkeypatch.setattr(formulations, "DEPTH_ONE_AS_2D", plain)
    recorder = _Recorder()
    chosen = _chosen(monkeypatch, (2, 64, 8, 28, 28), (64, 64, 1, 3, 3), "float32", recorder)
    top, subs = chosen[::2] if plain else chosen, chosen[1::2] if plain else recorder.nested
    assert top == ["fold_first_axis"] * 3
    products = {"shift_matmul", "taps_matmul", "channels_last_matmul"}
    if plain:
        assert len(subs) == 3 and not recorder.nested
        assert set(subs) & products, subs
    else:
        assert len(subs) == 3 and not set(subs) & products, subs
