"""The host checks (``impl._host``) and the formulations they choose.

On an x86 CPU without bfloat16 dot-product instructions the op computes bfloat16 convolutions in
float32 (item 15 of benchmarks/README.md), on one without AVX-512 its float32 products also serve
small planes and folded 3-D convolutions (item 16), and on one without AMX bfloat16 keeps its own
formulations with jaxlib 0.12.1, float32's filter-gradient products need more features (item
37), and with jaxlib 0.10 float32 products serve small planes (item 38). conftest.py pins the
other choices for the rest of the suite; here each is set by ``CONVGRAD_CPU_BFLOAT16``,
``CONVGRAD_CPU_AVX512`` or ``CONVGRAD_CPU_AMX`` and checked against native and in the program.
"""

import math
import re
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import impl
from convgrad.tolerances import tolerance
from impl import _formulations, _host
from impl._config import ConvConfig, make_config
from tests.conv_oracle import relative_error
from tests.helpers import random_array


@pytest.mark.parametrize("variable, choice, lacks, on, off", [
    (_host.BFLOAT16_OVERRIDE, _host.bfloat16_in_float32, _host.lacks_bfloat16_dot, "float32",
     " Native "),
    (_host.AVX512_OVERRIDE, _host.without_avx512, _host.lacks_avx512, "no", " YES"),
    (_host.AMX_OVERRIDE, _host.without_amx, _host.lacks_amx, "No", "yes "),
], ids=["bfloat16", "avx512", "amx"])
def test_host_choice_follows_the_override(monkeypatch: pytest.MonkeyPatch, variable: str,
                                          choice: Callable[[], bool],
                                          lacks: Callable[[str], bool], on: str, off: str) -> None:
    monkeypatch.setenv(variable, on)
    assert choice()
    monkeypatch.setenv(variable, off)
    assert not choice()
    monkeypatch.setenv(variable, "fp32")
    with pytest.raises(ValueError, match=f"{variable}='fp32'"):
        choice()
    monkeypatch.delenv(variable)
    assert choice() == lacks(_host._cpuinfo())


@pytest.mark.parametrize("flags, lacks_bfloat16_dot, lacks_avx512, lacks_amx", [
    ("fpu sse2 avx avx2 fma", True, True, True),                  # e.g. AMD EPYC (Zen 1-3)
    ("fpu avx2 avx512f avx512_bf16", False, False, True),         # AMD Zen 4, Intel Cooper Lake
    ("fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile", False, False, False),  # Sapphire Rapids
    ("fpu avx2 avx512f", True, False, True),                      # AVX-512 without BF16 (Skylake)
])
def test_x86_flags_decide(flags: str, lacks_bfloat16_dot: bool, lacks_avx512: bool,
                          lacks_amx: bool) -> None:
    cpuinfo = f"processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: {flags}\n\nprocessor\t: 1\n"
    assert _host.lacks_bfloat16_dot(cpuinfo) is lacks_bfloat16_dot
    assert _host.lacks_avx512(cpuinfo) is lacks_avx512
    assert _host.lacks_amx(cpuinfo) is lacks_amx


# (lhs, rhs, keyword arguments): cases whose bfloat16 formulations differ from float32's
# (matrix products per image, channels last), a strided and a grouped one, a dense 1-D one (which
# stays native, where bfloat16 formulations would take columns), and a float32 result.
CASES = [
    ((2, 64, 28, 28), (64, 64, 3, 3), {}),
    ((4, 32, 12, 12), (32, 32, 3, 3), {}),
    ((2, 32, 15, 15), (48, 32, 3, 3), {"window_strides": (2, 2)}),
    ((2, 32, 14, 14), (32, 4, 3, 3), {"feature_group_count": 8}),
    ((2, 16, 300), (128, 16, 5), {"window_strides": (2,)}),
    ((2, 64, 28, 28), (64, 64, 3, 3), {"preferred_element_type": jnp.float32}),
]


def _outputs(conv, lhs: jax.Array, rhs: jax.Array, kwargs: dict):
    strides = kwargs.get("window_strides", (1,) * (lhs.ndim - 2))
    padding = kwargs.get("padding", "SAME")
    options = {k: v for k, v in kwargs.items() if k not in ("window_strides", "padding")}

    def forward(lhs: jax.Array, rhs: jax.Array) -> jax.Array:
        return conv(lhs, rhs, strides, padding, **options)

    def loss(lhs: jax.Array, rhs: jax.Array) -> jax.Array:
        return jnp.sum(jnp.sin(forward(lhs, rhs).astype(jnp.float32)))

    return jax.jit(lambda a, b: (forward(a, b), *jax.grad(loss, (0, 1))(a, b)))(lhs, rhs)


def _operands(lhs_shape: tuple, rhs_shape: tuple, dtype: str, seed: int
              ) -> tuple[jax.Array, jax.Array]:
    """A standard-normal lhs and a filter scaled by its fan-in, both of ``dtype``."""
    rng = np.random.default_rng(seed)
    lhs = random_array(rng, lhs_shape, dtype)
    rhs = (random_array(rng, rhs_shape) / np.sqrt(np.prod(rhs_shape[1:]))).astype(dtype)
    return lhs, rhs


def _assert_matches_native(lhs: jax.Array, rhs: jax.Array, kwargs: dict) -> None:
    """The op's output and gradients against native's, within the operands' dtype's tolerance."""
    ours = _outputs(impl.conv_general_dilated, lhs, rhs, kwargs)
    native = _outputs(lax.conv_general_dilated, lhs, rhs, kwargs)
    for what, actual, expected in zip(("O", "dL/dlhs", "dL/drhs"), ours, native, strict=True):
        assert actual.dtype == expected.dtype, what
        error = relative_error(actual, expected)
        assert error <= tolerance(lhs.dtype), f"{what}: {error:.3e}"


def _assert_bfloat16_matches_native(lhs_shape: tuple, rhs_shape: tuple, kwargs: dict) -> None:
    """The op's bfloat16 output and gradients against native's, within bfloat16's tolerance."""
    _assert_matches_native(*_operands(lhs_shape, rhs_shape, "bfloat16", 0), kwargs)


@pytest.mark.parametrize("lhs_shape, rhs_shape, kwargs", CASES, ids=str)
def test_bfloat16_in_float32_equals_native(monkeypatch: pytest.MonkeyPatch, lhs_shape: tuple,
                                           rhs_shape: tuple, kwargs: dict) -> None:
    monkeypatch.setenv(_host.BFLOAT16_OVERRIDE, "float32")
    _assert_bfloat16_matches_native(lhs_shape, rhs_shape, kwargs)


def _lowered_bfloat16_step(lhs_shape: tuple, rhs_shape: tuple, kwargs: dict) -> str:
    """The op's bfloat16 forward and gradients (``_outputs``), lowered for this host's CPU."""
    lhs = jax.ShapeDtypeStruct(lhs_shape, jnp.bfloat16)
    rhs = jax.ShapeDtypeStruct(rhs_shape, jnp.bfloat16)
    return jax.jit(lambda a, b: _outputs(impl.conv_general_dilated, a, b, kwargs)).lower(
        lhs, rhs).as_text()


def _product_dtypes(lhs_shape: tuple, rhs_shape: tuple, kwargs: dict) -> set[str]:
    """Operand dtypes of the convolutions and matrix products of the op's lowered CPU step."""
    text = _lowered_bfloat16_step(lhs_shape, rhs_shape, kwargs)
    return set(re.findall(r"stablehlo\.(?:dot_general|convolution).*?: \(tensor<[^>]*x(\w+)>", text))


@pytest.mark.parametrize("lhs_shape, rhs_shape, kwargs", CASES[:1] + CASES[-1:], ids=str)
def test_the_float32_choice_multiplies_in_float32(monkeypatch: pytest.MonkeyPatch,
                                                  lhs_shape: tuple, rhs_shape: tuple,
                                                  kwargs: dict) -> None:
    monkeypatch.setenv(_host.BFLOAT16_OVERRIDE, "float32")
    assert _product_dtypes(lhs_shape, rhs_shape, kwargs) == {"f32"}
    monkeypatch.setenv(_host.BFLOAT16_OVERRIDE, "native")
    # With a float32 result the rule's convolutions read a float32 cotangent: only the forward's
    # products are bfloat16 then.
    assert "bf16" in _product_dtypes(lhs_shape, rhs_shape, kwargs)


def test_dense_one_dimensional_cases_keep_the_native_bfloat16_kernel(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(_host.BFLOAT16_OVERRIDE, "float32")
    assert _product_dtypes((2, 16, 300), (128, 16, 5), {"window_strides": (2,)}) == {"bf16"}
    assert _product_dtypes((2, 16, 300), (16, 4, 5), {"feature_group_count": 4}) == {"f32"}


# (lhs, rhs): float32 cases that the rule for CPUs without AVX-512 computes differently: a small
# plane (channels last) and a 3-D convolution (products inside the folded 2-D one).
AVX2_CASES = [((4, 32, 16, 16), (32, 32, 3, 3)), ((1, 16, 3, 28, 28), (32, 16, 3, 3, 3))]


def _compiled_convolutions(lhs: jax.Array, rhs: jax.Array) -> int:
    """Convolutions left in XLA's optimised CPU program of the op's forward and gradients."""
    text = jax.jit(lambda a, b: _outputs(impl.conv_general_dilated, a, b, {})).lower(
        lhs, rhs).compile().as_text()
    return len(re.findall(r"= \S+ convolution\(", text))


@pytest.mark.parametrize("lhs_shape, rhs_shape", AVX2_CASES, ids=str)
def test_float32_without_avx512_equals_native(monkeypatch: pytest.MonkeyPatch, lhs_shape: tuple,
                                              rhs_shape: tuple) -> None:
    lhs, rhs = _operands(lhs_shape, rhs_shape, "float32", 1)
    monkeypatch.setenv(_host.AVX512_OVERRIDE, "yes")
    with_avx512 = _compiled_convolutions(lhs, rhs)
    monkeypatch.setenv(_host.AVX512_OVERRIDE, "no")
    without = _compiled_convolutions(lhs, rhs)
    if _formulations._newer_kernels():
        assert without == with_avx512  # the rule is for jaxlib 0.10's kernels only
    else:
        assert without < with_avx512, (without, with_avx512)
    _assert_matches_native(lhs, rhs, {})


@pytest.mark.parametrize("setting, expected", [("no", True), ("yes", False)])
@pytest.mark.parametrize("newer", [False, True])
def test_filter_gradient_blocks_follow_the_avx512_setting_in_float32(
        monkeypatch: pytest.MonkeyPatch, setting: str, expected: bool, newer: bool) -> None:
    # Unlike ``_avx2_float32``, measured faster with jaxlib 0.12's kernels as well.
    monkeypatch.setenv(_host.AVX512_OVERRIDE, setting)
    monkeypatch.setattr(_formulations, "_newer_kernels", lambda: newer)
    assert _formulations._taps_blocks_pay(np.dtype(np.float32)) is expected
    assert _formulations._taps_blocks_pay(np.dtype(np.float64)) is False
    assert _formulations._taps_blocks_pay(np.dtype(jnp.bfloat16)) is False


def _loop_operands(lhs: jax.Array, rhs: jax.Array) -> list[tuple[str, int]]:
    """(dtype, elements) of the arrays that the while loops of the op's compiled CPU step carry."""
    text = jax.jit(lambda a, b: _outputs(impl.conv_general_dilated, a, b, {})).lower(
        lhs, rhs).compile().as_text()
    carried = []
    for line in text.splitlines():
        found = re.search(r"= \((.*?)\) while\(", line)
        if found:
            carried += [(kind, math.prod(int(n) for n in extents.split(",") if n))
                        for kind, extents in re.findall(r"(\w+)\[([\d,]*)\]", found.group(1))]
    return carried


# (lhs, rhs, the loops' switches): bfloat16 cases computed in float32 whose filter gradient is
# ``taps_matmul``'s loop over images: a 1x1 and a 3x3 convolution (whose forward and input
# gradient are ``shift_matmul``'s loops with jaxlib 0.10); and a small plane whose forward and
# input gradient are ``channels_last_matmul``'s loop over blocks of images (with the rules of an
# AVX2 host and jaxlib 0.10, pinned below).
WIDENED_LOOPS = ("TAPS_WIDEN_PER_STEP", "SHIFT_WIDEN_PER_STEP")
WIDENING_CASES = [((4, 64, 14, 14), (64, 64, 1, 1), WIDENED_LOOPS),
                  ((2, 64, 28, 28), (64, 64, 3, 3), WIDENED_LOOPS),
                  ((8, 64, 16, 16), (64, 64, 3, 3), ("CHANNELS_LAST_WIDEN_PER_STEP",))]


@pytest.mark.parametrize("lhs_shape, rhs_shape, switches", WIDENING_CASES,
                         ids=["taps 1x1", "taps and shift 3x3", "channels last 3x3"])
def test_the_loops_widen_each_step_not_the_whole_input(
        monkeypatch: pytest.MonkeyPatch, lhs_shape: tuple, rhs_shape: tuple,
        switches: tuple[str, ...]) -> None:
    monkeypatch.setenv(_host.BFLOAT16_OVERRIDE, "float32")
    if "CHANNELS_LAST_WIDEN_PER_STEP" in switches:
        monkeypatch.setenv(_host.AVX512_OVERRIDE, "no")
        monkeypatch.setattr(_formulations, "_newer_kernels", lambda: False)
        config = make_config(jax.ShapeDtypeStruct(lhs_shape, jnp.float32),
                             jax.ShapeDtypeStruct(rhs_shape, jnp.float32), (1, 1), "SAME")
        chosen = _formulations.cpu_formulation(lhs_shape, rhs_shape, config,
                                               np.dtype(np.float32))
        assert chosen is _formulations.channels_last_matmul
    lhs, rhs = _operands(lhs_shape, rhs_shape, "bfloat16", 2)
    size = math.prod(lhs_shape)

    def wide_copies(carried: list[tuple[str, int]]) -> list[tuple[str, int]]:
        return [(kind, n) for kind, n in carried if kind == "f32" and n >= size]

    per_step = _loop_operands(lhs, rhs)
    for switch in switches:
        monkeypatch.setattr(_formulations, switch, False)
    whole = _loop_operands(lhs, rhs)
    # The loops carry the input's bits (padded, for channels last) where they carried float32
    # copies.
    assert not wide_copies(per_step) and any(
        kind == "u16" and n >= size for kind, n in per_step), per_step
    assert wide_copies(whole), whole
    # The same float32 products of the same exactly widened values, in the same blocks: the
    # same bits.
    expected = _outputs(impl.conv_general_dilated, lhs, rhs, {})
    for switch in switches:
        monkeypatch.setattr(_formulations, switch, True)
    actual = _outputs(impl.conv_general_dilated, lhs, rhs, {})
    for what, a, e in zip(("O", "dL/dlhs", "dL/drhs"), actual, expected, strict=True):
        assert a.dtype == e.dtype == jnp.bfloat16, what
        np.testing.assert_array_equal(np.asarray(a, np.float32), np.asarray(e, np.float32), what)


@pytest.mark.parametrize("strides, newer, expected", [
    ((1, 1), False, True), ((2, 2), False, False), ((2, 2), True, True), ((1, 1), True, True)])
def test_shift_matmul_widens_per_step_at_unit_strides_or_with_newer_kernels(
        monkeypatch: pytest.MonkeyPatch, strides: tuple, newer: bool, expected: bool) -> None:
    # Measured per row and jaxlib (item 27 of benchmarks/README.md): the strided forward was
    # slower per step with jaxlib 0.10.2 (1.13) and faster with 0.12.1 (0.91).
    monkeypatch.setattr(_formulations, "_newer_kernels", lambda: newer)
    config = make_config(jax.ShapeDtypeStruct((2, 8, 16, 16), jnp.bfloat16),
                         jax.ShapeDtypeStruct((8, 8, 3, 3), jnp.bfloat16), strides, "SAME")
    assert _formulations._widens_per_step(_formulations.shift_matmul, config) is expected
    assert _formulations._widens_per_step(_formulations.taps_matmul, config) is True
    assert _formulations._widens_per_step(_formulations.channels_last_matmul, config) is True
    # Its loop writes a block's result over the block's input only where both have one type.
    wide_result = ConvConfig(**{**config.as_lax_kwargs(),
                             "preferred_element_type": jnp.float32})
    assert _formulations._widens_per_step(_formulations.channels_last_matmul,
                                          wide_result) is False
    assert _formulations._widens_per_step(_formulations.columns_matmul, config) is False


# (lhs, rhs, keyword arguments): bfloat16 depthwise cases, in 2-D at stride 1 and 2, in 1-D and
# in 3-D without padding, whose formulations pad the input (``_formulations._padded_canonical``).
DEPTHWISE_CASES = [
    ((2, 16, 14, 14), (16, 1, 3, 3), {"feature_group_count": 16}),
    ((2, 24, 15, 15), (24, 1, 3, 3), {"feature_group_count": 24, "window_strides": (2, 2)}),
    ((2, 8, 50), (8, 1, 9), {"feature_group_count": 8}),
    ((1, 8, 4, 10, 10), (8, 1, 1, 3, 3), {"feature_group_count": 8, "padding": "VALID"}),
]


def _pad_dtypes(lhs_shape: tuple, rhs_shape: tuple, kwargs: dict) -> set[str]:
    """Element types of the pads of the op's lowered CPU step that have the input's rank."""
    text = _lowered_bfloat16_step(lhs_shape, rhs_shape, kwargs)
    rank = "x".join([r"\d+"] * len(lhs_shape))
    return set(re.findall(rf"stablehlo\.pad .*?: \(tensor<{rank}x(\w+)>", text))


@pytest.mark.parametrize("lhs_shape, rhs_shape, kwargs", DEPTHWISE_CASES, ids=str)
def test_depthwise_inputs_are_widened_before_their_padding(
        monkeypatch: pytest.MonkeyPatch, lhs_shape: tuple, rhs_shape: tuple, kwargs: dict) -> None:
    """Item 36 of benchmarks/README.md: where the host computes bfloat16 as such, a depthwise
    step pads its float32 input (``WIDEN_BEFORE_PAD``), not the bfloat16 one, and agrees with
    native."""
    monkeypatch.setenv(_host.BFLOAT16_OVERRIDE, "native")
    monkeypatch.setattr(_formulations, "WIDEN_BEFORE_PAD", False)
    assert "bf16" in _pad_dtypes(lhs_shape, rhs_shape, kwargs)
    monkeypatch.setattr(_formulations, "WIDEN_BEFORE_PAD", True)
    assert _pad_dtypes(lhs_shape, rhs_shape, kwargs) == {"f32"}
    _assert_bfloat16_matches_native(lhs_shape, rhs_shape, kwargs)


@pytest.mark.parametrize("setting, expected", [
    ("yes", ["native", "channels_last_matmul"]), ("no", ["shift_matmul", "channels_last_matmul"])])
def test_bfloat16_keeps_its_products_without_amx_with_jaxlib_0_12_1(
        monkeypatch: pytest.MonkeyPatch, setting: str, expected: list[str]) -> None:
    """Item 37 of benchmarks/README.md: as with jaxlib 0.12.1, a bfloat16 ResNet layer at stride 1
    takes float32's answer (native) where the host has AMX (``_slow_bfloat16_products``), and
    its own matrix products where it has not; a small plane with many features keeps channels
    last either way. Both agree with native."""
    monkeypatch.setenv(_host.AMX_OVERRIDE, setting)
    monkeypatch.setattr(_formulations, "_JAXLIB_VERSION", (0, 12, 1))
    assert _formulations._slow_bfloat16_products() is (setting == "yes")
    cases = [((2, 64, 28, 28), (64, 64, 3, 3)), ((2, 256, 7, 7), (256, 256, 3, 3))]
    chosen = []
    for lhs_shape, rhs_shape in cases:
        config = make_config(jax.ShapeDtypeStruct(lhs_shape, jnp.bfloat16),
                             jax.ShapeDtypeStruct(rhs_shape, jnp.bfloat16), (1, 1), "SAME")
        chosen.append(_formulations.cpu_formulation(lhs_shape, rhs_shape, config,
                                                    np.dtype(jnp.bfloat16)).__name__)
    assert chosen == expected
    _assert_bfloat16_matches_native(*cases[0], {})


@pytest.mark.parametrize("avx512, amx, least", [("yes", "yes", 48), ("yes", "no", 128),
                                                ("no", "no", 48)])
def test_float32_filter_gradient_products_need_128_features_with_avx512_without_amx(
        monkeypatch: pytest.MonkeyPatch, avx512: str, amx: str, least: int) -> None:
    """Item 37 of benchmarks/README.md: as with jaxlib 0.12.1, float32 ``taps_matmul`` serves 2-D
    filter gradients from 48 features on the Xeon with AMX (and AVX2 hosts, unmeasured), but
    from 128 on an x86 CPU with AVX-512 and no AMX; 1-D ones and bfloat16 keep theirs."""
    monkeypatch.setenv(_host.AVX512_OVERRIDE, avx512)
    monkeypatch.setenv(_host.AMX_OVERRIDE, amx)
    monkeypatch.setattr(_formulations, "_newer_kernels", lambda: True)
    pays, f32, bf16 = _formulations._taps_pay, np.dtype(np.float32), np.dtype(jnp.bfloat16)
    assert pays(28 * 28, 9, least, f32) and not pays(28 * 28, 9, least - 1, f32)
    assert pays(28 * 28, 9, 48, f32, 1) and not pays(28 * 28, 9, 47, f32, 1)
    assert pays(28 * 28, 9, 24, bf16) and not pays(28 * 28, 9, 23, bf16)
    monkeypatch.setattr(_formulations, "_newer_kernels", lambda: False)
    assert pays(28 * 28, 9, 16, f32)  # jaxlib 0.10's rule: every plane from 14x14


@pytest.mark.parametrize("avx512, amx, newer, expected", [
    ("yes", "yes", False, False), ("yes", "no", False, True), ("no", "no", False, True),
    ("no", "yes", False, True), ("yes", "no", True, False), ("no", "no", True, False)])
def test_small_float32_planes_take_channels_last_products_without_amx_with_jaxlib_0_10(
        monkeypatch: pytest.MonkeyPatch, avx512: str, amx: str, newer: bool,
        expected: bool) -> None:
    """Item 38 of benchmarks/README.md: with jaxlib 0.10, a float32 large batch's forward (32
    features on 16x16) is ``channels_last_matmul`` on x86 CPUs without AVX-512 (item 16) and on
    those with AVX-512 but no AMX, and not on the Xeon with AMX or with newer jaxlib; where it
    is, the step agrees with native."""
    monkeypatch.setenv(_host.AVX512_OVERRIDE, avx512)
    monkeypatch.setenv(_host.AMX_OVERRIDE, amx)
    monkeypatch.setattr(_formulations, "_newer_kernels", lambda: newer)
    lhs_shape, rhs_shape = AVX2_CASES[0]
    config = make_config(jax.ShapeDtypeStruct(lhs_shape, jnp.float32),
                         jax.ShapeDtypeStruct(rhs_shape, jnp.float32), (1, 1), "SAME")
    chosen = _formulations.cpu_formulation(lhs_shape, rhs_shape, config, np.dtype(np.float32))
    assert (chosen is _formulations.channels_last_matmul) is expected, chosen.__name__
    assert _formulations._small_plane_float32_products(np.dtype(jnp.bfloat16)) is False
    if expected:
        _assert_matches_native(*_operands(lhs_shape, rhs_shape, "float32", 3), {})
