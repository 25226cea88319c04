"""Exact formulations of ``lax.conv_general_dilated``, chosen per backend and per case.

Every function here computes the same sums as the native convolution (only the order of additions
may differ; ``winograd`` and ``winograd_window`` an expression equal to them in exact
arithmetic, with fewer multiplications), so the op's forward and the rotated-filter rule's
convolutions can use whichever is fastest. Notation per spatial axis as in ``impl._padding``:
window size ``k``, output size ``m``, stride ``s``, lhs dilation ``a``, rhs dilation ``d``, padding
``(lo, hi)``; ``X̃`` is the input dilated by ``a`` and padded by ``(lo, hi)``, and the convolution
is

    O[b, o, p] = Σ_{c, t} X̃[b, c, s·p + d·t] F[o, c, t].

Why these exist (measured on CPU, see ``benchmarks/README.md``): XLA's CPU backend lowers a
grouped convolution by expanding it into a dense one (``groups`` times the work), and the filter
gradient of a grouped convolution is a *batch*-grouped convolution, which is slower still; and its
matrix kernel runs at about twice the speed of its convolution kernel in float32 and four times
in bfloat16, so large dense convolutions are faster as matrix products.
"""

import contextlib
import contextvars
import math
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np
from jax import lax
from jax.extend.core import Primitive
from jax.interpreters import mlir

from impl import _host, _vma
from impl._config import ConvConfig, spatial_shapes

Formulation = Callable[[jax.Array, jax.Array, ConvConfig], jax.Array]

# Above these sizes the unrolled loops below compile slowly and stop paying off.
MAX_UNROLLED_TAPS = 49
MAX_PER_GROUP_CONVS = 32
# ``grouped_taps`` for groups of several input features (I > 1): at most this many terms (I x
# taps) per output, from this many output positions per image, 1-D and 2-D (``_grouped_taps_pay``).
MAX_GROUPED_TAP_TERMS = 72
MIN_GROUPED_TAP_POSITIONS = 56 * 56
# Most output positions (operands) of ``batch_grouped_reduce``: 7x7x7 compiled in 2.6 s and ran
# 17 ms against 320 ms for the dense blocks and native alike.
MAX_REDUCED_OUTPUTS = 343
# Batch elements per dense block in ``batch_grouped_blocks`` (16 measured best, b = 4..64).
BATCH_GROUP_BLOCK = 16
# Input features from which XLA:CPU uses its fast dense convolution kernel (YNNPACK, measured).
DENSE_KERNEL_FEATURES = 32
# Most phases (product of lhs dilations) ``polyphase`` splits into.
MAX_PHASES = 16
# Dtypes whose XLA:CPU matrix products beat its convolutions (``shift_matmul``, ``taps_matmul``,
# ``columns_matmul``).
MATMUL_DTYPES = (np.dtype(np.float32), np.dtype(jnp.bfloat16))
# Dtypes for which they also serve as the sub-convolutions of ``polyphase`` and ``fold_first_axis``:
# in bfloat16 that measured 0.65 (3x3 stride 2) and 0.53 (3-D video) of a step without; in
# float32 1.12 and 1.16 (slower in the step, though faster alone).
NESTED_MATMUL_DTYPES = (np.dtype(jnp.bfloat16),)
# (On x86 CPUs without AVX-512 with jaxlib 0.10, float32 as well: ``_avx2_float32``.)
# Largest block one loop step of those writes (item 8 of benchmarks/README.md: larger buffers
# come from mmap and page-fault on every use).
MAX_MATMUL_BLOCK_BYTES = 16 * 2**20
# Most output positions (taps of a filter gradient) for ``taps_matmul``.
MAX_TAPS_MATMUL_OUTPUTS = 49
# Whether ``taps_matmul`` takes steps whose columns exceed ``MAX_MATMUL_BLOCK_BYTES`` in chunks of
# the lhs batch (a filter gradient's input features), each within it (item 30 of
# benchmarks/README.md), instead of leaving them to the native kernel.
TAPS_CHUNKS = True
# Largest block of columns one loop step of ``taps_matmul`` gathers where ``_taps_blocks_pay``:
# lhs features (the forward's images) share a product up to it, one per step where one alone is
# larger (elsewhere one per step).
TAPS_BLOCK_BYTES = 2**20
# Fewest output positions per batch element for the per-element formulations (``shift_matmul``,
# ``columns_matmul``): below it the loop costs more than the faster products save
# ((256, 32, 16, 16) measured 1.5x slower in float32).
MIN_PER_IMAGE_POSITIONS = 28 * 28
# In bfloat16, 2-D ``shift_matmul`` pays on far smaller planes, given enough work per image
# (output positions x input features x output features): steps 0.72-0.82 of the native kernel's
# on 7x7 to 16x16 outputs with 64-512 features (2^20 and more), 0.93-0.94 on the 16x16 large
# batch of 32 features (2^18), but 1.09-1.16 on 8x8 with 32 features (2^16).
MIN_BFLOAT16_SHIFT_POSITIONS = 7 * 7
MIN_BFLOAT16_SHIFT_WORK = 2**18
# At unit strides with jaxlib 0.10, bfloat16 ``shift_matmul`` needs this many contracted features
# (``_shift_pays``): on an Intel Xeon with AMX, 16 features on 32x32 and 64x64 planes measured
# 1.10-1.14 of the native kernel's step, 24 on 56x56 0.87 (item 29 of benchmarks/README.md).
MIN_BFLOAT16_SHIFT_FEATURES = 24
# The same bounds serve float32 ``channels_last_matmul`` on small planes where
# ``_small_plane_float32_products``, up to this many contracted features (on the Zen 1 EPYC of
# item 16: 64 on 16x16 0.84 of the step; 128 on 14x14 1.27).
MAX_AVX2_CHANNELS_LAST_FEATURES = 64
# Largest block of Y (images x taps x outputs) per step of ``channels_last_matmul``: steps against
# ``shift_matmul`` on three small-plane bfloat16 shapes (one process) 0.85-0.90 with 4 MiB,
# 0.92-1.37 with 1 MiB and 0.88-1.02 with 16 MiB.
CHANNELS_LAST_BLOCK_BYTES = 4 * 2**20
# Whether ``channels_last_matmul`` uses the flat layout where it applies (``_flat_gaps``);
# ``benchmarks/ab_constants.py --constant FLAT_LAYOUT --values 0,1`` times it.
FLAT_LAYOUT = True
# Whether, where every output axis fits its input axis, the flat layout lays the planes end to end
# without zeros and masks each tap's reads past a plane's edge (``_edge_masks``), instead of
# sharing zeros between the planes (item 25 of benchmarks/README.md: large batch steps 0.93-0.95).
MASKED_FLAT = True
# Whether its flat-layout loop writes each block's output over that block's own input rows, where
# they fit, instead of into ``lax.map``'s zeroed output buffer (item 19 of benchmarks/README.md).
OUTPUT_OVER_INPUT = True
# Whether it moves a result in the default layout to channels first as one (positions × features)
# transpose per image, not a transpose of all the result's axes (item 20 of benchmarks/README.md).
TRANSPOSE_AS_MATRIX = True
# Whether ``taps_matmul`` with one lhs feature per step scans its (C, B, *S) operands as they lie,
# adding the step's block axis inside the body, instead of scanning a (C, 1, B, *S) reshape (items
# 21 and 22 of benchmarks/README.md).
SCAN_UNBLOCKED = True
# Whether ``grouped_taps`` and ``batch_grouped_reduce`` pad the input in its own layout and only
# as far as their windows read (``_padded_canonical``), so that a depthwise forward and its filter
# gradient share one padded copy of the input.
SHARED_PADDING = True
# Whether the op's backward pass on CPU computes a depthwise convolution's filter gradient before
# its input gradient (``filter_gradient_first``).
FILTER_GRADIENT_FIRST = True
# Whether a bfloat16 case computed in float32 (``_widens_bfloat16``) whose formulation is
# ``taps_matmul`` hands that loop its bfloat16 operands, to widen each step's block where the
# products read it, instead of whole float32 copies made before the loop (item 27 of
# benchmarks/README.md).
TAPS_WIDEN_PER_STEP = True
# The same for ``shift_matmul``'s loop over images, at unit strides or with jaxlib's newer
# kernels (``_widens_per_step``, item 27).
SHIFT_WIDEN_PER_STEP = True
# The same for ``channels_last_matmul``'s loop over blocks of images: its channels-last copy of
# the input stays bfloat16, and each block is widened where its product reads it (item 28: a tie
# in time, a quarter less memory for the step's temporaries).
CHANNELS_LAST_WIDEN_PER_STEP = True
# ``channels_last_matmul`` serves windows from this many taps, and small planes (below
# ``MIN_PER_IMAGE_POSITIONS``) up to this many contracted features (``_channels_last_pays``; 512
# on 7x7 measured 0.81 of the step with jaxlib 0.10.2 and 0.70 with 0.12.1 on an Intel Xeon with
# AMX, item 29; more features were not measured).
MIN_CHANNELS_LAST_TAPS = 25
MAX_CHANNELS_LAST_FEATURES = 512
# In 1-D, XLA:CPU's float32 convolution kernel is as fast as its matrix kernel, and the matrix
# products gain only from this many features on (contracted, or output for ``columns_matmul``).
MIN_1D_MATMUL_FEATURES = 128
# From this jaxlib on, the matrix-product rules answer as refitted for its faster convolution
# kernels (``_newer_kernels``): there the per-image products need this many contracted features,
# and ``taps_matmul`` this many on the smaller side of its products (64 in bfloat16 with 5x5
# windows, float32 none).
NEWER_KERNELS_JAXLIB = (0, 11)
MIN_NEWER_MATMUL_FEATURES = 48
MIN_NEWER_TAPS_FEATURES = 24
# ... and in float32 this many (item 33 of benchmarks/README.md: 32 features lost on the Xeon with
# AMX, 64 won).
MIN_NEWER_FLOAT32_TAPS_FEATURES = 48
# ... but on an x86 CPU with AVX-512 and without AMX this many (item 37: on the Zen 4 EPYC with
# jaxlib 0.12.1, 64 features lost 1.13-1.20, 128 won or tied 0.93-0.98 on 28x28 planes and
# larger).
MIN_NEWER_FLOAT32_TAPS_FEATURES_WITHOUT_AMX = 128
# Whether float32 1-D input gradients of stride-2 convolutions (lhs dilation 2) take
# ``shift_matmul`` with those kernels too (0 or 1, for ``benchmarks/ab_constants.py``; item 33:
# they lost on 5 of 6 shapes, so off).
NEWER_FLOAT32_1D_SHIFT = False
# From this jaxlib on, XLA:CPU's bfloat16 products (float32 sums) ran no faster than its float32
# ones on an Intel Xeon with AMX, where jaxlib 0.10.2's ran 5.6x faster on the same machine
# (item 29 of benchmarks/README.md), and bfloat16 ``shift_matmul`` lost to the native kernel at
# unit strides (``_slow_bfloat16_products``); on an AMD EPYC with AVX-512 BF16 but no AMX they ran
# 2.2x as fast as float32's (item 37), so the rule asks for AMX too. ``SLOW_BFLOAT16_PRODUCTS``
# (0 or 1) switches that rule off and on for ``benchmarks/ab_constants.py``.
SLOW_BFLOAT16_PRODUCTS_JAXLIB = (0, 12, 1)
SLOW_BFLOAT16_PRODUCTS = True
# A small plane has many features from this many per unit of its side, √(positions)
# (``_many_features_on_small_plane``). With jaxlib 0.12.1 bfloat16 channels last still paid there
# (item 30 of benchmarks/README.md: 256 features on 7x7 0.83 of the step, 512 on 7x7 0.71 and on
# 14x14 0.86; 256 on 14x14 1.01, 128 1.13), and so did ``tap_products`` and ``position_products``.
MIN_FEATURES_PER_SIDE = 32
# From this jaxlib on, XLA:CPU's convolution kernel ran small planes with many features at half
# its jaxlib 0.10.2 speed or less on that Xeon (item 30): there ``tap_products`` serves float32
# forward and input gradients, and ``position_products`` filter gradients below ``taps_matmul``'s
# planes (``_flat_products_pay``). ``FLAT_PRODUCTS`` (0 or 1) switches them off and on for
# ``benchmarks/ab_constants.py``.
SLOW_SMALL_PLANE_KERNELS_JAXLIB = (0, 12, 1)
FLAT_PRODUCTS = True
# Winograd's F(2x2, 3x3) (``winograd``) serves float32 3x3 stride-1 convolutions (and bfloat16 ones
# where its products are slow) on planes of up to this many positions, from this many features on
# both sides of the filter (the second with jaxlib 0.10's convolution kernels, before
# ``_newer_kernels``) and this many rows per product (images x 2x2 output tiles), on x86 CPUs with
# AVX-512 (``_winograd_pays``, item 31 of benchmarks/README.md). ``WINOGRAD`` (0 or 1) switches it
# off and on for ``benchmarks/ab_constants.py``.
MAX_WINOGRAD_POSITIONS = 28 * 28
MIN_WINOGRAD_FEATURES = 128
MIN_OLDER_WINOGRAD_FEATURES = 64
MIN_WINOGRAD_ROWS = 256
WINOGRAD = True
# Winograd's F(3x3, 2x2) (``winograd_window``) serves the filter gradients of 3x3 stride-1
# convolutions (their convolutions with a 3x3 output) in float32 from this many input and output
# features (the second with jaxlib 0.10's kernels), and in bfloat16 where its products are slow
# with at most this many terms per product (images x the window's 2x2 tiles), on the same hosts
# (``_winograd_window_pays``, item 32 of benchmarks/README.md). ``WINOGRAD_WINDOW`` (0 or 1)
# switches it off and on for ``benchmarks/ab_constants.py``.
MIN_WINOGRAD_WINDOW_FEATURES = 256
MIN_OLDER_WINOGRAD_WINDOW_FEATURES = 128
MAX_BFLOAT16_WINOGRAD_WINDOW_TERMS = 1024
WINOGRAD_WINDOW = True
# Whether a folded 3-D convolution whose first window axis has one tap (a (2+1)-D network's 1xKxK
# convolution) takes the 2-D rules for its sub-convolution, which is then a plain 2-D
# convolution over (images x depth) without copies, instead of the rules for nested ones
# (``_folds_to_plain``; ``benchmarks/ab_constants.py --constant DEPTH_ONE_AS_2D`` times it).
DEPTH_ONE_AS_2D = True
# Whether a dense 2-D convolution without padding gets one more output from padding, sliced off,
# where XLA:CPU ran the unpadded one at half speed (``_unpadded_slow``).
UNPADDED_AS_PADDED = True
# Whether ``_padded_canonical`` converts a narrower input to the accumulation type before padding
# it, not after: bfloat16 depthwise steps 0.60-0.88 on an AMD EPYC Zen 4 with AVX-512 BF16, where
# the bfloat16 pad and its conversion in every read were slow, the others 0.97-1.00 (0.67-0.89 and
# 0.94-1.01 with jaxlib 0.12.1; item 36 of benchmarks/README.md; hosts that compute bfloat16 in
# float32 convert before anyway).
WIDEN_BEFORE_PAD = True


def lax_conv(lhs: jax.Array, rhs: jax.Array, config: ConvConfig) -> jax.Array:
    """``lax.conv_general_dilated`` itself: what other backends than CPU run."""
    return lax.conv_general_dilated(lhs, rhs, **config.as_lax_kwargs())


def native(lhs: jax.Array, rhs: jax.Array, config: ConvConfig) -> jax.Array:
    """The native ``lax.conv_general_dilated`` as XLA:CPU computes it right and fast: negative
    padding (a crop) of an undilated axis is taken off the input first, and the convolution gets
    the rest; a 2-D convolution left with no padding at all gets one more output column than
    asked for, from padding the high end of an axis, which is then sliced off (``_unpadded_slow``).

    XLA:CPU's Eigen convolution kernel (few features, float32 and narrower types) reads outside
    its input where a low padding is negative (openxla/xla#48713, seen with jaxlib 0.10.2 and
    0.11.2; fix openxla/xla#48748 open on 2026-12-07): strided input gradients computed by
    phases (``polyphase``) and folded 3-D convolutions carry such paddings, e.g. the causal 1-D
    convolution ``padding=((k-1, 0),)`` at stride 2, whose input gradient came out wrong by up
    to 1e31 in float32. Axes with lhs dilation take another path, which measured right (1-D,
    2-3x dilation, crops of 1-4; 2-D, 72 cases), and are left as they are: writing their holes
    out would put products with them where lax has none (an Inf tap times a hole is NaN).
    """
    if _crops(config):
        lhs, config = _without_negative_padding(lhs, config)
    if _unpadded_slow(config):
        return _one_more_output(lhs, rhs, config)
    return lax_conv(lhs, rhs, config)


def _unpadded_slow(config: ConvConfig) -> bool:
    """Whether XLA:CPU would take its slow path for a convolution without padding.

    With jaxlib 0.10 (not 0.11 or later: ``_newer_kernels``), a dense 2-D convolution whose
    padding is zero on every side ran at half the speed of the same one with any padding at all
    (``benchmarks/probe_unpadded.py``, forward alone; VALID 3x3 on (32, 64, 28, 28): 44 ms,
    padded by one column and sliced 19 ms, alike in float64, float16 and bfloat16, with rhs
    dilation and at stride 2). Not with lhs dilation (1.04), groups (1.07-1.09), or in 1-D
    (1.19-1.81) and 3-D (1.05). Whole steps: 0.72-1.02 (item 35 of benchmarks/README.md).
    ``UNPADDED_AS_PADDED`` switches it off and on for ``benchmarks/ab_constants.py``.
    """
    return (bool(UNPADDED_AS_PADDED) and len(config.padding) == 2 and not _newer_kernels()
            and all(pair == (0, 0) for pair in config.padding)
            and max(config.lhs_dilation) == 1
            and max(config.feature_group_count, config.batch_group_count) == 1)


def _one_more_output(lhs: jax.Array, rhs: jax.Array, config: ConvConfig) -> jax.Array:
    """The unpadded convolution with its widest output axis padded at the high end by one stride,
    so that axis gets one more output, which is sliced off: the outputs asked for read the same
    inputs and taps (the extra zeros reach only the extra output)."""
    out_spatial = spatial_shapes(config, lhs.shape, rhs.shape)[2]
    index = int(np.argmax(out_spatial))
    padding = list(config.padding)
    padding[index] = (0, config.window_strides[index])
    out = lax_conv(lhs, rhs, ConvConfig(**{**config.as_lax_kwargs(), "padding": tuple(padding)}))
    return lax.slice_in_dim(out, 0, out_spatial[index],
                            axis=config.dimension_numbers.out_spec[2 + index])


def _crops(config: ConvConfig) -> bool:
    """Whether an undilated axis has negative padding (``native`` takes it off first)."""
    return any(min(pair) < 0 and a == 1
               for pair, a in zip(config.padding, config.lhs_dilation, strict=True))


def _without_negative_padding(lhs: jax.Array, config: ConvConfig
                              ) -> tuple[jax.Array, ConvConfig]:
    """``lhs`` with each undilated axis's negative padding applied (a slice, or where the crops
    exceed the input, ``lax.pad``), and the configuration that pads it by the rest."""
    lhs_spec = config.dimension_numbers.lhs_spec
    padding = list(config.padding)
    for index, ((lo, hi), a) in enumerate(zip(config.padding, config.lhs_dilation, strict=True)):
        if min(lo, hi) >= 0 or a > 1:
            continue
        axis, crop = lhs_spec[2 + index], max(-lo, 0) + max(-hi, 0)
        if crop <= lhs.shape[axis]:
            lhs = lax.slice_in_dim(lhs, max(-lo, 0), lhs.shape[axis] - max(-hi, 0), axis=axis)
            padding[index] = (max(lo, 0), max(hi, 0))
        else:  # nothing of the input is left on this axis: its zeros written out
            pads = [(0, 0, 0)] * lhs.ndim
            pads[axis] = (lo, hi, 0)
            lhs = lax.pad(lhs, jnp.zeros((), lhs.dtype), pads)
            padding[index] = (0, 0)
    return lhs, ConvConfig(**{**config.as_lax_kwargs(), "padding": tuple(padding)})


def native_per_backend(lhs: jax.Array, rhs: jax.Array, config: ConvConfig) -> jax.Array:
    """``native`` on CPU, ``lax_conv`` elsewhere: other backends get lax's own program."""
    if not (_crops(config) or _unpadded_slow(config)):
        return lax_conv(lhs, rhs, config)
    return lax.platform_dependent(lhs, rhs, cpu=lambda a, b: native(a, b, config),
                                  default=lambda a, b: lax_conv(a, b, config))


# Grouped convolutions as one dense convolution per group.
#
# Feature groups: O[b, g·O_g + o] = Σ_{c < C_g, t} X̃[b, g·C_g + c, ·] F[g·O_g + o, c, t], so group g
# is the dense convolution of the g-th slice of lhs features with the g-th slice of rhs out
# features; the results are concatenated along the output features.
# Batch groups: O[b, g·O_g + o] = Σ_{c, t} X̃[g·B_g + b, c, ·] F[g·O_g + o, c, t], so group g is the
# dense convolution of the g-th slice of the lhs batch with the g-th slice of rhs out features.
def per_group(lhs: jax.Array, rhs: jax.Array, config: ConvConfig,
              dense_conv: Formulation | None = None) -> jax.Array:
    """``feature_group_count`` or ``batch_group_count`` groups as that many dense convolutions,
    each ``dense_conv`` (default ``native``; the primitive's lowering passes ``lax_conv`` off CPU,
    ``impl._partitioner``)."""
    lhs_spec, rhs_spec, out_spec = config.dimension_numbers
    feature_groups = config.feature_group_count > 1
    groups = config.feature_group_count if feature_groups else config.batch_group_count
    lhs_axis = lhs_spec[1] if feature_groups else lhs_spec[0]
    dense = ConvConfig(**{**config.as_lax_kwargs(), "feature_group_count": 1,
                          "batch_group_count": 1})
    parts = [(dense_conv or native)(lhs_part, rhs_part, dense) for lhs_part, rhs_part in zip(
        jnp.split(lhs, groups, axis=lhs_axis), jnp.split(rhs, groups, axis=rhs_spec[0]),
        strict=True)]
    return jnp.concatenate(parts, axis=out_spec[1])


def _compute_dtype(lhs: jax.Array, config: ConvConfig) -> np.dtype:
    """Accumulation type: the preferred type if given, else at least float32 (as XLA's CPU does)."""
    return _compute_dtype_of(lhs.dtype, config)


def _product_types(lhs: jax.Array, config: ConvConfig) -> tuple[np.dtype, np.dtype]:
    """(operand type, accumulation type) of the matrix products in a loop over images.

    Where this host computes bfloat16 in float32 (``_widens_bfloat16``) both are float32: the
    loop reads the bfloat16 bits and widens each step's block, exactly, where its products read
    it (item 27 of benchmarks/README.md).
    """
    if _widens_bfloat16(lhs.dtype, config):
        return np.dtype(np.float32), np.dtype(np.float32)
    return np.dtype(lhs.dtype), _compute_dtype(lhs, config)


def _compute_dtype_of(dtype: np.dtype, config: ConvConfig) -> np.dtype:
    if config.preferred_element_type is not None:
        return np.dtype(config.preferred_element_type)
    return np.dtype(jnp.promote_types(dtype, jnp.float32))


def _window(array: jax.Array, starts: Sequence[int], sizes: Sequence[int],
            steps: Sequence[int]) -> jax.Array:
    """``array[..., start + step·i]`` for i < size along each trailing axis (all in bounds)."""
    lead = array.ndim - len(starts)
    limits = [start + step * (size - 1) + 1 for start, size, step in zip(
        starts, sizes, steps, strict=True)]
    return lax.slice(array, [0] * lead + list(starts), [*array.shape[:lead], *limits],
                     [1] * lead + list(steps))


def _dilate_and_pad(lhs: jax.Array, config: ConvConfig) -> jax.Array:
    """X̃ in canonical layout (batch, features, *spatial): dilated by ``a``, padded by (lo, hi)."""
    spatial = [(lo, hi, dil - 1) for (lo, hi), dil in zip(config.padding, config.lhs_dilation,
                                                          strict=True)]
    return lax.pad(lhs, jnp.zeros((), lhs.dtype), [(0, 0, 0), (0, 0, 0), *spatial])


def _padded_canonical(lhs: jax.Array, config: ConvConfig, window: Sequence[int],
                      out_spatial: Sequence[int], dtype: np.dtype) -> jax.Array:
    """X̃ in canonical layout and ``dtype``, dilated and padded up to the last element the windows
    read (s·(M - 1) + d·(k - 1) + 1 per axis), not by the stated high padding.

    The pad comes before the move to canonical layout. A forward and its filter gradient then
    build the same padded array from the same input (their windows reach equally far, and the
    filter gradient's lhs is the forward's in another layout), and XLA keeps one copy of it
    (``SHARED_PADDING``). The conversion to ``dtype`` comes first (``WIDEN_BEFORE_PAD``).
    """
    lhs_spec = config.dimension_numbers.lhs_spec
    if not SHARED_PADDING or 0 in out_spatial:
        return _dilate_and_pad(jnp.transpose(lhs, lhs_spec).astype(dtype), config)
    pads = [(0, 0, 0)] * lhs.ndim
    for axis, (lo, _), a, s, d, k, m in zip(lhs_spec[2:], config.padding, config.lhs_dilation,
                                            config.window_strides, config.rhs_dilation, window,
                                            out_spatial, strict=True):
        reach = s * (m - 1) + d * (k - 1) + 1
        pads[axis] = (lo, reach - lo - ((lhs.shape[axis] - 1) * a + 1), a - 1)
    if WIDEN_BEFORE_PAD:
        lhs = lhs.astype(dtype)
    padded = lax.pad(lhs, jnp.zeros((), lhs.dtype), pads)
    return jnp.transpose(padded, lhs_spec).astype(dtype)


def _canonical(lhs: jax.Array, rhs: jax.Array, config: ConvConfig
               ) -> tuple[jax.Array, jax.Array, np.dtype]:
    """lhs as (B, C, *S) and rhs as (O, I, *K) in the accumulation type."""
    lhs_spec, rhs_spec, _ = config.dimension_numbers
    dtype = _compute_dtype(lhs, config)
    return (jnp.transpose(lhs, lhs_spec).astype(dtype), jnp.transpose(rhs, rhs_spec).astype(dtype),
            dtype)


def _from_canonical(out: jax.Array, lhs: jax.Array, config: ConvConfig) -> jax.Array:
    """(B, O, *M) back to the output layout and type of the native convolution."""
    out_dtype = config.preferred_element_type or lhs.dtype
    return jnp.transpose(out, np.argsort(config.dimension_numbers.out_spec)).astype(out_dtype)


# Feature groups as block-diagonal dense convolutions.
#
# A block of k consecutive groups (k·I input and k·μ output features, I and μ per group) is one
# dense convolution with the block-diagonal filter
# F_b[j·μ + m, i'·I + i, t] = F[j·μ + m, i, t] if i' = j else 0: k times the needed products, the
# extra ones with exact zeros. XLA's CPU backend has a fast dense kernel from 32 input features on
# and a slow one below, so small groups are packed into blocks of at least 32 features.
# Depthwise convolutions and small groups are faster still as a shift-and-add (``grouped_taps``).
def group_blocks(lhs: jax.Array, rhs: jax.Array, config: ConvConfig) -> jax.Array:
    """Feature-grouped convolution as one dense convolution per block of groups."""
    lhs_spec, rhs_spec, out_spec = config.dimension_numbers
    groups = config.feature_group_count
    rhs_c = jnp.transpose(rhs, rhs_spec)
    per_group_in, window = rhs_c.shape[1], rhs_c.shape[2:]
    per_group_out = rhs_c.shape[0] // groups
    block = min(groups, -(-DENSE_KERNEL_FEATURES // per_group_in))
    while groups % block:
        block += 1
    blocks = groups // block
    filters = rhs_c.reshape(blocks, block, per_group_out, 1, per_group_in, *window)
    eye = jnp.eye(block, dtype=rhs.dtype).reshape(1, block, 1, block, 1, *(1,) * len(window))
    dense = (filters * eye).reshape(blocks, block * per_group_out, block * per_group_in, *window)
    dense = jnp.transpose(dense, (0, *(1 + np.argsort(rhs_spec))))
    sub = ConvConfig(**{**config.as_lax_kwargs(), "feature_group_count": 1})
    parts = [native(lhs_part, dense[index], sub) for index, lhs_part in
             enumerate(jnp.split(lhs, blocks, axis=lhs_spec[1]))]
    return jnp.concatenate(parts, axis=out_spec[1])


def _largest_divisor_at_most(n: int, cap: int) -> int:
    """The largest divisor of ``n`` that is at most ``cap``, and at least 1."""
    block = max(1, min(n, cap))
    while n % block:
        block -= 1
    return block


# One lhs batch element per batch group, as block-diagonal dense convolutions.
#
# This is the filter gradient of a depthwise convolution: B = batch_group_count groups of one lhs
# batch element each, μ = O / B filters per group, so
# O[0, β·μ + j, p] = Σ_{c, t} X̃[β, c, s·p + d·t] F[β·μ + j, c, t]. A dense convolution of a block of
# b batch elements with the block's b·μ filters computes every pair (β, β'·μ + j) of the block;
# the wanted sums are its diagonal β = β'. That is b times the needed work, but in XLA's fast dense
# kernel and with no materialised shifted copies, which on CPU beats both the native batch-grouped
# convolution and an explicit shift-and-reduce (see benchmarks/README.md). ``batch_grouped_reduce``
# below is faster still; these blocks serve the cases with more output positions than it unrolls.
def batch_grouped_blocks(lhs: jax.Array, rhs: jax.Array, config: ConvConfig) -> jax.Array:
    """A convolution whose every batch group is one lhs batch element, as diagonals of dense blocks."""
    lhs_spec, rhs_spec, out_spec = config.dimension_numbers
    batch = lhs.shape[lhs_spec[0]]
    multiplier = rhs.shape[rhs_spec[0]] // batch
    block = _largest_divisor_at_most(batch, BATCH_GROUP_BLOCK)
    dense = ConvConfig(**{**config.as_lax_kwargs(), "batch_group_count": 1})
    diagonals = []
    for lhs_block, rhs_block in zip(jnp.split(lhs, batch // block, axis=lhs_spec[0]),
                                    jnp.split(rhs, batch // block, axis=rhs_spec[0]), strict=True):
        pairs = jnp.transpose(native(lhs_block, rhs_block, dense), out_spec)
        pairs = pairs.reshape(block, block, multiplier, *pairs.shape[2:])
        diagonals.append(jnp.moveaxis(jnp.diagonal(pairs, axis1=0, axis2=1), -1, 0))
    out = jnp.concatenate(diagonals, axis=0)
    out = out.reshape(1, batch * multiplier, *out.shape[2:])
    return jnp.transpose(out, np.argsort(out_spec))


# Batch groups as one variadic reduction: every output position an operand.
#
# With batch groups of L lhs batch elements each and few output positions q (the forward's taps,
# when this is the filter gradient of a grouped convolution; L = 1 for a depthwise one),
# O[l, g·μ + j, q] = Σ_{c, p} X̃[g·L + l, c, s·q + d·p] F[g·μ + j, c, p] is, for each q, a sum of
# elementwise products over (c, p). All Q sums are one ``lax.reduce`` with Q operands, and XLA
# fuses the Q strided reads of X̃ and the products into it: a single pass over the input and the
# cotangent, where Q separate reductions re-read both Q times, and block-diagonal dense
# convolutions compute b times the needed products in a kernel made for many output positions.
# XLA:CPU on an Intel Xeon, float32 (16, 64, 56, 56) 3x3 depthwise: 5.3-6.7 ms against 17-21 ms
# for the blocks and 35 ms for nine separate reductions (item 4 of benchmarks/README.md). Its
# work is L·μ products per input element and position, so many-element groups are left to the
# dense kernels (``per_group``).
def batch_grouped_reduce(lhs: jax.Array, rhs: jax.Array, config: ConvConfig) -> jax.Array:
    """A batch-grouped convolution with few output positions as one reduction."""
    _, window, out_spatial = spatial_shapes(config, lhs.shape, rhs.shape)
    _, rhs_c, dtype = _canonical(lhs, rhs, config)          # (G·μ, C, *K)
    padded = _padded_canonical(lhs, config, window, out_spatial, dtype)   # (G·L, C, *S̃)
    groups = config.batch_group_count
    per_group, features = padded.shape[0] // groups, padded.shape[1]
    multiplier = rhs_c.shape[0] // groups
    padded = padded.reshape(groups, per_group, 1, *padded.shape[1:])   # (G, L, 1, C, *S̃)
    weights = rhs_c.reshape(groups, 1, multiplier, features, *window)  # (G, 1, μ, C, *K)
    products = [_window(padded, [s * q for s, q in zip(config.window_strides, position,
                                                       strict=True)],
                        window, config.rhs_dilation) * weights
                for position in np.ndindex(*out_spatial)]
    sums = lax.reduce(products, [jnp.zeros((), dtype)] * len(products),
                      lambda totals, terms: [a + b for a, b in zip(totals, terms, strict=True)],
                      tuple(range(3, 4 + len(window))))
    out = jnp.moveaxis(jnp.stack(sums, axis=-1), 1, 0)             # (L, G, μ, Q)
    out = out.reshape(per_group, groups * multiplier, *out_spatial)
    return _from_canonical(out, lhs, config)


def _spatial_letters(count: int) -> str:
    return "".join(chr(ord("p") + axis) for axis in range(count))


# A window of one tap as a matrix product over features.
#
# With k = 1 the sum over taps disappears: O[b, o, p] = Σ_c X̃[b, c, s·p] F[o, c, 0]. Dilating,
# padding and strided reading of X̃ act on space only and the product with F acts on features
# only, so they commute: either read the strided positions first and multiply (when the output has
# fewer positions than the input, e.g. a strided forward), or multiply first and then dilate, pad
# and read (when it has more, e.g. the input gradient of a strided 1x1 convolution, whose
# cotangent is mostly inserted zeros).
def window_one_matmul(lhs: jax.Array, rhs: jax.Array, config: ConvConfig) -> jax.Array:
    """A convolution with a 1-tap window (no groups) as ``dot_general`` over features."""
    in_spatial, _, out_spatial = spatial_shapes(config, lhs.shape, rhs.shape)
    lhs_c, rhs_c, _ = _canonical(lhs, rhs, config)
    space = _spatial_letters(len(out_spatial))
    matrix = rhs_c.reshape(rhs_c.shape[:2])

    def read(array: jax.Array) -> jax.Array:
        return _window(_dilate_and_pad(array, config), (0,) * len(space), out_spatial,
                       config.window_strides)

    def multiply(array: jax.Array) -> jax.Array:
        return jnp.einsum(f"bc{space},oc->bo{space}", array, matrix)

    if 0 in out_spatial:
        out = jnp.zeros((lhs_c.shape[0], matrix.shape[0], *out_spatial), lhs_c.dtype)
    elif np.prod(out_spatial) <= np.prod(in_spatial):
        out = multiply(read(lhs_c))
    else:
        out = read(multiply(lhs_c))
    return _from_canonical(out, lhs, config)


# A single output position as a matrix product over features and taps.
#
# With m = 1 (the filter gradient of a 1x1 convolution: its window is the forward's whole output)
# O[b, o, 0] = Σ_{c, t} X̃[b, c, d·t] F[o, c, t]: read X̃ with step d over the window once, then
# contract features and taps together in one matrix product.
def single_output_matmul(lhs: jax.Array, rhs: jax.Array, config: ConvConfig) -> jax.Array:
    """A convolution with one output position (no groups) as ``dot_general`` over (c, t)."""
    _, window, out_spatial = spatial_shapes(config, lhs.shape, rhs.shape)
    lhs_c, rhs_c, _ = _canonical(lhs, rhs, config)
    padded = _dilate_and_pad(lhs_c, config)
    region = _window(padded, (0,) * len(window), window, config.rhs_dilation)
    space = _spatial_letters(len(window))
    out = jnp.einsum(f"bc{space},oc{space}->bo", region, rhs_c)
    return _from_canonical(out.reshape(*out.shape, *out_spatial), lhs, config)


# Input dilation by polyphase decomposition.
#
# With lhs dilation s (the input gradient of a convolution with stride s), window stride 1 and
# rhs dilation d, O[j] = Σ_t X̃[j + d·t] F[t] where X̃ is X with s - 1 zeros between entries, padded
# by (lo, hi): most products are with inserted zeros. Split the outputs by phase r = j mod s: only
# taps with d·t ≡ lo - r (mod s) meet real inputs, namely t = t_r + k·T with T = s / gcd(s, d), and
# then X̃[s·q + r + d·t] = X[q + c_r + k·d/gcd(s, d)] with c_r = (r + d·t_r - lo) / s. So phase r is
# an undilated convolution of X with the sub-filter F[t_r::T] (rhs dilation d / gcd(s, d), low
# padding -c_r, high padding whatever gives ceil((m - r) / s) outputs), and the phases interleave
# into O. Per spatial axis, so a 2-D stride-2 input gradient is four small convolutions, each
# dispatched to its own best formulation, instead of one on a 4x larger, mostly zero input.
def _axis_phases(n: int, k: int, m: int, s: int, d: int, lo: int) -> list[tuple[int, ...]]:
    """Per phase r < s: (sub-filter start t_r, taps K_r, step T, rhs dilation, low pad, outputs)."""
    step = s // math.gcd(s, d)
    phases = []
    for r in range(s):
        outputs = max(0, -(-(m - r) // s))
        taps = [t for t in range(k) if (r + d * t - lo) % s == 0]
        first = taps[0] if taps else 0
        phases.append((first, len(taps), step, d * step // s, -((r + d * first - lo) // s), outputs))
    return phases


def polyphase(lhs: jax.Array, rhs: jax.Array, config: ConvConfig) -> jax.Array:
    """A convolution with lhs dilation (and unit window strides) as one convolution per phase."""
    _, rhs_spec, out_spec = config.dimension_numbers
    in_spatial, window, out_spatial = spatial_shapes(config, lhs.shape, rhs.shape)
    axes = [_axis_phases(n, k, m, s, d, lo) for n, k, m, s, d, (lo, _) in zip(
        in_spatial, window, out_spatial, config.lhs_dilation, config.rhs_dilation,
        config.padding, strict=True)]
    out_shape = list(jax.eval_shape(lambda: native(lhs, rhs, config)).shape)

    def phase(choice: tuple[int, ...]) -> jax.Array:
        picked = [axis[r] for axis, r in zip(axes, choice, strict=True)]
        shape = list(out_shape)
        for position, (*_, outputs) in zip(out_spec[2:], picked, strict=True):
            shape[position] = outputs
        if any(taps == 0 for _, taps, *_ in picked) or 0 in shape:
            return jnp.zeros(shape, config.preferred_element_type or lhs.dtype)
        start, limit, strides = [0] * rhs.ndim, list(rhs.shape), [1] * rhs.ndim
        for position, (first, taps, step, *_) in zip(rhs_spec[2:], picked, strict=True):
            start[position], limit[position] = first, first + step * (taps - 1) + 1
            strides[position] = step
        sub_rhs = lax.slice(rhs, start, limit, strides)
        padding = tuple((low, outputs - n - low + dil * (taps - 1)) for n, (_, taps, _, dil, low,
                        outputs) in zip(in_spatial, picked, strict=True))
        sub = ConvConfig(**{**config.as_lax_kwargs(), "padding": padding,
                            "lhs_dilation": (1,) * len(window),
                            "rhs_dilation": tuple(p[3] for p in picked)})
        with _setting(_PLAIN_FOLDS, False):  # a phase's fold stays nested (``_folds_to_plain``)
            return cpu_formulation(lhs.shape, sub_rhs.shape, sub, lhs.dtype, nested=True)(
                lhs, sub_rhs, sub)

    def combine(prefix: tuple[int, ...]) -> jax.Array:
        axis = len(prefix)
        if axis == len(axes):
            return phase(prefix)
        position, s, m = out_spec[2 + axis], config.lhs_dilation[axis], out_spatial[axis]
        longest = -(-m // s)
        parts = []
        for r in range(s):
            part = combine((*prefix, r))
            pad = [(0, 0, 0)] * part.ndim
            pad[position] = (0, longest - part.shape[position], 0)
            parts.append(lax.pad(part, jnp.zeros((), part.dtype), pad))
        woven = jnp.stack(parts, axis=position + 1)
        shape = list(parts[0].shape)
        shape[position] = longest * s
        return lax.slice_in_dim(woven.reshape(shape), 0, m, axis=position)

    return combine(())


# Three or more spatial axes as a convolution of one rank less.
#
# Along the first spatial axis z, O[b, o, z, ·] = Σ_{c, t_z} Σ_rest X̃[b, c, s·z + d·t_z, ·]
# F[o, c, t_z, ·]: gather the k_z strided copies X̃[:, :, s·z + d·t_z] for every output z, fold z
# into the batch (b, z) and the taps t_z into the input features (c, t_z), and it is one
# convolution over the remaining axes with the filter reshaped to (O, I·k_z, ·). Channel-major
# feature order keeps feature groups intact; batch-major order keeps batch groups intact. XLA's CPU
# backend has fast 2-D convolution kernels but slow 3-D ones.
def fold_first_axis(lhs: jax.Array, rhs: jax.Array, config: ConvConfig) -> jax.Array:
    """A convolution with >= 3 spatial axes as one with the first spatial axis folded away."""
    _, window, out_spatial = spatial_shapes(config, lhs.shape, rhs.shape)
    lhs_spec, rhs_spec, out_spec = config.dimension_numbers
    lhs_c, rhs_c = jnp.transpose(lhs, lhs_spec), jnp.transpose(rhs, rhs_spec)
    batch, features, taps, outputs = *lhs_c.shape[:2], window[0], out_spatial[0]
    stride, dilation = config.window_strides[0], config.rhs_dilation[0]
    (low, high), rest = config.padding[0], lhs_c.ndim - 3
    padded = lax.pad(lhs_c, jnp.zeros((), lhs_c.dtype),
                     [(0, 0, 0), (0, 0, 0), (low, high, config.lhs_dilation[0] - 1),
                      *[(0, 0, 0)] * rest])
    copies = [lax.slice_in_dim(padded, dilation * t, dilation * t + stride * (outputs - 1) + 1,
                               stride, axis=2) for t in range(taps)]
    columns = jnp.moveaxis(jnp.stack(copies, axis=3), 2, 1)
    columns = columns.reshape(batch * outputs, features * taps, *columns.shape[4:])
    filters = rhs_c.reshape(rhs_c.shape[0], rhs_c.shape[1] * taps, *rhs_c.shape[3:])
    canonical = tuple(range(rest + 2))
    sub = ConvConfig(**{**config.as_lax_kwargs(), "window_strides": config.window_strides[1:],
                        "padding": config.padding[1:], "lhs_dilation": config.lhs_dilation[1:],
                        "rhs_dilation": config.rhs_dilation[1:],
                        "dimension_numbers": lax.ConvDimensionNumbers(canonical, canonical,
                                                                      canonical)})
    out = cpu_formulation(columns.shape, filters.shape, sub, columns.dtype,
                          nested=not _folds_to_plain(window, out_spatial))(columns, filters, sub)
    out = jnp.moveaxis(out.reshape(-1, outputs, *out.shape[1:]), 1, 2)
    return jnp.transpose(out, np.argsort(out_spec))


def _folds_to_plain(window: Sequence[int], out_spatial: Sequence[int]) -> bool:
    """Whether ``fold_first_axis``'s sub-convolution is a plain 2-D one (``DEPTH_ONE_AS_2D``).

    With one tap on the first axis the folded input is the input itself, its first axis moved
    into the batch (padded, dilated or strided as that axis asks); with one output there (the
    filter gradient of such a convolution), its first axis moved into the features. Either way
    the fold copies nothing twice, and the sub-convolution is a 2-D convolution like any other
    and takes the 2-D rules (the nested ones exclude float32 products and Winograd, measured on
    folds that stack several copies of each input). Not inside a strided input gradient's phases
    (``polyphase``), whose 1-tap folds measured slower that way (item 35: 3-D stride 2, 1.06).
    """
    return bool(DEPTH_ONE_AS_2D) and _PLAIN_FOLDS.get() and 1 in (window[0], out_spatial[0])


# Depthwise and small feature groups as shift-and-add.
#
# With I input features and μ outputs per group (G groups),
# O[b, g·μ + j, p] = Σ_{i, t} X̃[b, g·I + i, s·p + d·t] F[g·μ + j, i, t]: for each input feature i
# of a group and each tap t, one strided window read of X̃, scaled by one weight per (group,
# output). In the canonical (batch, features, *spatial) order each read is a shift of whole rows and
# the scale is constant over a plane, so the convolution is one fused elementwise pass of I·T terms
# per output with no transposes and no wasted products. XLA:CPU, (16, 64, 56, 56) with a 3x3
# window: depthwise (I = 1) ~2 ms, where its grouped convolution kernel takes ~70 ms and
# block-diagonal dense convolutions ~15 ms; 8 groups of 8 features 8 ms against 15 ms for the
# blocks (``group_blocks``, which compute 4x the products). A channels-last variant was slower: XLA
# fuses the transposes into the reads. The cotangent must be materialised first (``materialize``),
# or XLA recomputes its producer in each of the reads.
def grouped_taps(lhs: jax.Array, rhs: jax.Array, config: ConvConfig) -> jax.Array:
    """A feature-grouped convolution as a sum of scaled shifted reads (I·T terms per output)."""
    _, window, out_spatial = spatial_shapes(config, lhs.shape, rhs.shape)
    _, rhs_c, dtype = _canonical(lhs, rhs, config)
    groups = config.feature_group_count
    per_group, multiplier = rhs_c.shape[1], rhs_c.shape[0] // groups
    padded = _padded_canonical(lhs, config, window, out_spatial, dtype)
    padded = padded.reshape(padded.shape[0], groups, per_group, 1, *padded.shape[2:])
    # (G·μ, I, *K) -> (G, μ, I, *K): the weights of each group's input feature i for its outputs.
    weights = rhs_c.reshape(groups, multiplier, per_group, *window)
    spatial = (1,) * len(window)
    out = None
    for feature in range(per_group):
        for tap in np.ndindex(*window):
            read = _window(padded[:, :, feature],
                           [d * t for d, t in zip(config.rhs_dilation, tap, strict=True)],
                           out_spatial, config.window_strides)
            term = read * weights[(slice(None), slice(None), feature, *tap)].reshape(
                groups, multiplier, *spatial)
            out = term if out is None else out + term
    out = out.reshape(out.shape[0], groups * multiplier, *out_spatial)
    return _from_canonical(out, lhs, config)

# Dense convolutions as one matrix product per batch element, then a sum of shifted reads.
#
# O[b, o, p] = Σ_t Σ_c F[o, c, t] X̃[b, c, s·p + d·t], X̃ the input padded by (lo, hi), so the tap t
# reads X[s·p + d·t - lo]. Multiply first, for every input position and every tap at once:
# Y[t, o, q] = Σ_c F[o, c, t] X[b, c, q] is one (T·O × C) by (C × Q) matrix product, and then
# O[b, o, p] = Σ_t Y[t, o, s·p + d·t - lo] (zero outside), a fused sum of shifted reads (``_read``:
# one lax.pad per tap, no padded copies). With stride s only every s-th position of Y would be
# read, so the input is split into its s phases X[r::s] (per axis) first: phase r meets exactly the
# taps with d·t - lo ≡ r (mod s), at offset (d·t - lo - r) / s, and each phase is one product with
# its taps' filters. Every product computed is needed. With lhs dilation a and unit strides (an
# input gradient) the reads are of Y dilated by a, O[b, o, p] = Σ_t Ỹ[t, o, p + d·t - lo], so only
# the real inputs are multiplied (XLA:CPU measured this slower than ``polyphase`` in 2-D and faster
# in 1-D). In the canonical (features, *spatial) layout of one batch element both steps read and
# write whole contiguous planes, so there are no layout transposes, and XLA:CPU's matrix kernel
# runs at about twice the speed of its convolution kernel in float32 and four times in bfloat16
# (whose matrix products use the AVX-512 BF16 instructions). Batch elements go one at a time
# (``lax.map``) so that Y, T times the input in the accumulation type, stays in cache-sized buffers
# (item 8 of benchmarks/README.md).


def _read(array: jax.Array, starts: Sequence[int], sizes: Sequence[int],
          steps: Sequence[int] | None = None, dilation: Sequence[int] | None = None) -> jax.Array:
    """``Ã[start + step·i]`` for i < size along each trailing axis, zero outside.

    Ã is ``array`` dilated by ``dilation`` along those axes (a negative start reads into the zero
    padding before it). One lax.pad (negative where it crops) and one strided slice, which XLA
    fuses into their consumer: no padded copy of the array is made.
    """
    lead = array.ndim - len(sizes)
    steps = steps or (1,) * len(sizes)
    dilation = dilation or (1,) * len(sizes)
    pads, limits = [(0, 0, 0)] * lead, list(array.shape[:lead])
    for n, start, size, step, a in zip(array.shape[lead:], starts, sizes, steps, dilation,
                                       strict=True):
        span = step * (size - 1) + 1
        pads.append((-start, span + start - ((n - 1) * a + 1), a - 1))
        limits.append(span)
    padded = lax.pad(array, jnp.zeros((), array.dtype), pads)
    if max(steps) == 1:
        return padded
    return lax.slice(padded, [0] * array.ndim, limits, [1] * lead + list(steps))


def shift_matmul(lhs: jax.Array, rhs: jax.Array, config: ConvConfig) -> jax.Array:
    """A dense convolution as products for all taps, then shifted sums (lhs dilation: unit strides)."""
    if max(config.lhs_dilation) > 1 and max(config.window_strides) > 1:
        raise ValueError(f"shift_matmul takes lhs dilation {config.lhs_dilation} only with unit "
                         f"window strides (got {config.window_strides})")
    _, window, out_spatial = spatial_shapes(config, lhs.shape, rhs.shape)
    lhs_spec, rhs_spec, _ = config.dimension_numbers
    kind, dtype = _product_types(lhs, config)
    out_dtype = config.preferred_element_type or lhs.dtype
    filters = jnp.transpose(rhs, rhs_spec).astype(kind)                  # (O, C, *K)
    outs, features = filters.shape[:2]
    strides, lows = config.window_strides, [lo for lo, _ in config.padding]
    # Input phase r (per axis, r < s) meets the taps t with d·t - lo ≡ r (mod s), each at the
    # offset (d·t - lo - r) / s into X[r::s].
    phases = []
    for phase in np.ndindex(*strides):
        taps = [tap for tap in np.ndindex(*window) if all(
            (d * t - lo - r) % s == 0 for d, t, lo, r, s in zip(
                config.rhs_dilation, tap, lows, phase, strides, strict=True))]
        if taps:
            matrix = jnp.concatenate([filters[(slice(None), slice(None), *tap)] for tap in taps])
            offsets = [[(d * t - lo - r) // s for d, t, lo, r, s in zip(
                config.rhs_dilation, tap, lows, phase, strides, strict=True)] for tap in taps]
            phases.append((phase, matrix, offsets))

    def element(x: jax.Array) -> jax.Array:
        x = _from_bits(x, lhs.dtype)                                     # (C, *S)
        out = jnp.zeros((outs, *out_spatial), dtype)
        for phase, matrix, offsets in phases:
            # Widened (``_product_types``) per phase: the phases' products read it separately.
            part = lax.slice(x, [0, *phase], x.shape, [1, *strides]).astype(kind)
            if part.size == 0:
                continue
            y = lax.dot_general(matrix, part.reshape(features, -1), (((1,), (0,)), ((), ())),
                                precision=config.precision, preferred_element_type=dtype)
            y = y.reshape(len(offsets), outs, *part.shape[1:])
            for index, starts in enumerate(offsets):
                out = out + _read(y[index], starts, out_spatial,
                                  dilation=config.lhs_dilation)
        return _as_bits(out.astype(out_dtype))

    out = lax.map(element, _as_bits(jnp.transpose(lhs, lhs_spec)))
    return _from_canonical(_from_bits(out, out_dtype), lhs, config)


# Few output positions (a filter gradient) as one matrix product per lhs feature.
#
# The filter gradient of a dense convolution is a convolution whose window is the forward's whole
# output and whose few output positions are the forward's taps: O[b, o, q] = Σ_c Σ_p
# X̃[b, c, s·q + d·p] G[o, c, p], with c running over the forward's batch. For each c, the columns
# A[(q, b), p] = X̃[b, c, s·q + d·p] (the forward input read once per output position, read
# straight from the unpadded input by ``_read``) and one (Q·B × P) by (P × O) product,
# accumulated over c (``lax.scan``): XLA:CPU's matrix kernel instead of its filter-gradient
# convolution (see benchmarks/README.md). Where ``_taps_blocks_pay``, a block of k features
# shares one product, A[(q, b), (c, p)] by G[(c, p), o], contracting k·P.


def _as_bits(array: jax.Array) -> jax.Array:
    """16-bit floats as unsigned integers, for the loops of the matrix-product formulations.

    XLA:CPU computes 16-bit float elementwise work in float32, and around a loop that turned into
    a float32 copy of the whole loop input before the loop and, for ``lax.map``'s stacked output,
    a dynamic-update-slice that rewrote the whole output on every step (256 steps of (32, 16, 16):
    83 ms instead of 6). Slices, stacks and dynamic slices of unsigned integers are plain copies;
    the bits are reinterpreted as floats only where the matrix product reads them.
    """
    if array.dtype.itemsize == 2:
        return lax.bitcast_convert_type(array, jnp.uint16)
    return array


def _from_bits(array: jax.Array, dtype: np.dtype) -> jax.Array:
    """The inverse of ``_as_bits`` for an array of ``dtype``."""
    return lax.bitcast_convert_type(array, dtype) if array.dtype != dtype else array


def taps_matmul(lhs: jax.Array, rhs: jax.Array, config: ConvConfig) -> jax.Array:
    """A dense convolution with few output positions as products over blocks of lhs features."""
    _, window, out_spatial = spatial_shapes(config, lhs.shape, rhs.shape)
    lhs_spec, rhs_spec, _ = config.dimension_numbers
    kind, dtype = _product_types(lhs, config)
    # Loop over c, the lhs feature axis, in the order of the arrays in memory: for a filter
    # gradient that is the forward's batch, the major axis (transposing to (B, C) and back costs
    # two copies of the input).
    inputs = jnp.transpose(lhs, (lhs_spec[1], lhs_spec[0], *lhs_spec[2:]))       # (C, B, *S)
    cotangent = jnp.transpose(rhs, (rhs_spec[1], rhs_spec[0], *rhs_spec[2:]))  # (C, O, *K)
    features, batch, outs = inputs.shape[0], inputs.shape[1], cotangent.shape[1]
    stored = lhs.dtype                                        # the loop's operands, as bits
    block = 1
    # One lhs batch element's columns; a step's are ``batch`` of them, in chunks of lhs batch
    # elements up to ``MAX_MATMUL_BLOCK_BYTES`` (``TAPS_CHUNKS``).
    positions = math.prod(out_spatial)
    element_bytes = positions * math.prod(window) * kind.itemsize
    chunk = batch
    if TAPS_CHUNKS and batch * element_bytes > MAX_MATMUL_BLOCK_BYTES:
        chunk = _largest_divisor_at_most(batch, MAX_MATMUL_BLOCK_BYTES // element_bytes)
    elif _taps_blocks_pay(kind):  # a block of features shares one product (``TAPS_BLOCK_BYTES``)
        block = _largest_divisor_at_most(features,
                                         TAPS_BLOCK_BYTES // max(batch * element_bytes, 1))

    def features_block(total: jax.Array, pair: tuple[jax.Array, jax.Array]
                       ) -> tuple[jax.Array, None]:
        x, g = pair                                            # (block, B, *S), (block, O, *K)
        x = jnp.swapaxes(x, 0, 1)                                        # (B, block, *S)

        def columns_of(x: jax.Array) -> jax.Array:                 # (Q·chunk, block·K)
            columns = [_read(x, [s * q - lo for s, q, (lo, _) in zip(
                config.window_strides, position, config.padding, strict=True)], window,
                config.rhs_dilation, config.lhs_dilation)
                for position in np.ndindex(*out_spatial)]
            return _from_bits(jnp.stack(columns).reshape(positions * x.shape[0], -1),
                              stored).astype(kind)

        def widened(g: jax.Array) -> jax.Array:                     # (O, block·K)
            return _from_bits(jnp.swapaxes(g, 0, 1), stored).astype(kind).reshape(outs, -1)

        def product(columns: jax.Array, g: jax.Array) -> jax.Array:
            return lax.dot_general(columns, g, (((1,), (1,)), ((), ())),
                                   precision=config.precision, preferred_element_type=dtype)

        if chunk == batch:  # the columns first, then the cotangent (one program as before)
            columns = columns_of(x)
            return total + product(columns, widened(g)), None
        g = widened(g)
        total = total.reshape(positions, batch, outs)
        for start in range(0, batch, chunk):                 # rows (q, b) of this chunk of B
            part = product(columns_of(x[start:start + chunk]), g)
            total = total.at[:, start:start + chunk].add(part.reshape(positions, chunk, outs))
        return total.reshape(positions * batch, outs), None

    # A fresh zero varies over no mesh axis; the body's sums vary over the operands' (shard_map).
    total = jnp.zeros((positions * batch, outs), dtype)
    total = _vma.as_varying(total, _vma.varying_axes(lhs) | _vma.varying_axes(rhs))
    steps = features // block
    inputs, cotangent = _as_bits(inputs), _as_bits(cotangent.astype(stored))
    if block == 1 and SCAN_UNBLOCKED:
        # XLA:CPU lays a (C, 1, B, *S) reshape out differently from the loop's slices and copies
        # both whole operands into the loop's layout; the size-1 axis added per step costs nothing.
        total, _ = lax.scan(lambda total, pair: features_block(
            total, (pair[0][None], pair[1][None])), total, (inputs, cotangent))
    else:
        total, _ = lax.scan(features_block, total, (
            inputs.reshape(steps, block, *inputs.shape[1:]),
            cotangent.reshape(steps, block, *cotangent.shape[1:])))
    out = jnp.moveaxis(total.reshape(*out_spatial, batch, outs), (-2, -1), (0, 1))
    return _from_canonical(out, lhs, config)


# A dense convolution as one matrix product per batch element over gathered columns (im2col).
#
# O[b, o, p] = Σ_{t, c} F[o, c, t] X̃[b, c, s·p + d·t]: for each batch element, the columns
# A[(t, c), p] = X̃[c, s·p + d·t] (one strided read of the unpadded input per tap, ``_read``) and
# one (O × T·C) by (T·C × M) product. Where the window is short (1-D audio) the products of
# ``shift_matmul`` contract over C alone and write T times the input; these contract over T·C and
# write the output once, and measured faster (item 12 of benchmarks/README.md).
def columns_matmul(lhs: jax.Array, rhs: jax.Array, config: ConvConfig) -> jax.Array:
    """A dense convolution as one matrix product per batch element over its im2col columns."""
    _, window, out_spatial = spatial_shapes(config, lhs.shape, rhs.shape)
    lhs_spec, rhs_spec, _ = config.dimension_numbers
    dtype = _compute_dtype(lhs, config)
    out_dtype = config.preferred_element_type or lhs.dtype
    filters = jnp.transpose(rhs, rhs_spec).astype(lhs.dtype)             # (O, C, *K)
    outs = filters.shape[0]
    matrix = jnp.moveaxis(filters, 1, -1).reshape(outs, -1)              # (O, T·C), t-major
    lows = [lo for lo, _ in config.padding]

    def element(x: jax.Array) -> jax.Array:                              # (C, *S)
        columns = [_read(x, [d * t - lo for d, t, lo in zip(config.rhs_dilation, tap, lows,
                                                           strict=True)],
                         out_spatial, config.window_strides, config.lhs_dilation)
                   for tap in np.ndindex(*window)]
        columns = _from_bits(jnp.stack(columns), lhs.dtype).reshape(matrix.shape[1], -1)
        out = lax.dot_general(matrix, columns, (((1,), (0,)), ((), ())),
                              precision=config.precision, preferred_element_type=dtype)
        return _as_bits(out.reshape(outs, *out_spatial).astype(out_dtype))

    out = lax.map(element, _as_bits(jnp.transpose(lhs, lhs_spec)))
    return _from_canonical(_from_bits(out, out_dtype), lhs, config)


# The flat layout of ``channels_last_matmul`` at unit strides: one contiguous slice per tap.
#
# Padded planes laid end to end share their zeros: each spatial axis of extent n gets g = max(lo, hi)
# zeros after it (extent E = n + g), and the block's planes are flattened with strides
# st_a = Π_{a' > a} E_a'. An input position r_a = i_a - lo_a + d_a·t_a below 0 then lands in the
# trailing zeros of the previous row (or plane: -r_a ≤ lo ≤ g), one at n_a or above in its own
# (r_a - n_a < hi ≤ g). With ``front`` = Σ lo_a·st_a zeros before the first plane, output o
# (flattened with the same strides) reads tap t at ``o + off_t``, off_t = Σ d_a·t_a·st_a: each tap
# is a contiguous slice of Y. The outputs at i_a ≥ m_a (in the gaps) are computed and dropped:
# 17x17 positions for the 16x16 planes of the large batch, against 18x18 padded apart.
#
# Where every output axis fits its input axis (m_a ≤ n_a, e.g. SAME padding), the planes go end
# to end with no zeros at all (g = 0, ``MASKED_FLAT``): 16x16 products per image of the large
# batch, 11% fewer, and the reads that wrap into the next row, plane or image are masked to zero
# in the tap sums (``_edge_masks``), which XLA fuses into them.
def _flat_gaps(in_spatial: Sequence[int], out_spatial: Sequence[int], config: ConvConfig
               ) -> tuple[int, ...] | None:
    """The zeros after each axis of the flat layout, or None where it does not apply.

    It needs unit strides (checked by the caller), no lhs dilation, non-negative padding, and
    every output to fit its axis of the layout: m ≤ n + g, i.e. min(lo, hi) ≤ d·(k - 1).
    """
    if max(config.lhs_dilation) > 1 or 0 in in_spatial:
        return None
    gaps = []
    for n, m, (lo, hi) in zip(in_spatial, out_spatial, config.padding, strict=True):
        if min(lo, hi) < 0 or m > n + max(lo, hi):
            return None
        gaps.append(max(lo, hi))
    return tuple(gaps)


def _edge_masks(plane: Sequence[int], out_spatial: Sequence[int], window: Sequence[int],
                config: ConvConfig) -> list[np.ndarray | None]:
    """Per tap, which positions of a plane read inside it (flat, row-major); None where every
    output that is kept (i_a < m_a) does.

    In the flat layout without gaps, position i_a of a plane reads tap t at r_a = i_a - lo_a +
    d_a·t_a; where r_a < 0 or r_a ≥ n_a that read lands in the previous or next row, plane or
    image (or a block's margin), where the padded convolution reads a zero.
    """
    positions = np.indices(plane).reshape(len(plane), -1)
    kept = np.all(positions < np.reshape(out_spatial, (-1, 1)), axis=0)
    masks: list[np.ndarray | None] = []
    for tap in np.ndindex(*window):
        inside = np.ones(positions.shape[1], bool)
        for i, n, d, t, (lo, _) in zip(positions, plane, config.rhs_dilation, tap,
                                       config.padding, strict=True):
            inside &= (i - lo + d * t >= 0) & (i - lo + d * t < n)
        masks.append(None if inside[kept].all() else inside)
    return masks


def _flat_strides(extents: Sequence[int]) -> list[int]:
    """Row-major strides of a flattened array of these extents."""
    return [math.prod(extents[a + 1:]) for a in range(len(extents))]


# Small planes and long windows, channels last: blocks of images, the input padded once, slices.
#
# On planes below 28x28 the per-image steps of ``shift_matmul`` are dominated by its shifted reads,
# each a ``lax.pad`` of a small (O, H, W) plane that XLA:CPU runs as a loop with a bounds check per
# element ((256, 32, 16, 16) in bfloat16: 2.7 ms of the 6.8 ms loop, against 3.6 ms of products).
# Here the input is moved channels last and dilated and padded once, X̃ (B, *S̃, C), so that every
# output reads Y[b, s·p + d·t, t, :] with Y = X̃ · F (B·S̃ × C by C × T·O) in bounds: each tap is a
# strided slice whose minor axis is the O output features, and the sum of the T slices is one
# vectorised fusion (0.8 ms there). A block of images shares each product, sized by
# ``CHANNELS_LAST_BLOCK_BYTES``. With 5x5 windows the same paid on large planes too (25 pads per
# image). Y covers every position of X̃, so strides and lhs dilation waste products: the
# selection uses this only at stride 1 without lhs dilation (``_channels_last_pays``), and there
# the planes share their padding (the flat layout above; item 18 of benchmarks/README.md: the
# large batch's step 0.94-0.96 of the planes padded apart).
def channels_last_matmul(lhs: jax.Array, rhs: jax.Array, config: ConvConfig) -> jax.Array:
    """A dense convolution as products over blocks of channels-last images, then slices per tap."""
    in_spatial, window, out_spatial = spatial_shapes(config, lhs.shape, rhs.shape)
    lhs_spec, rhs_spec, out_spec = config.dimension_numbers
    kind, dtype = _product_types(lhs, config)
    out_dtype = config.preferred_element_type or lhs.dtype
    # (C, *K, O) -> (C, T·O): column t·O + o holds F[o, :, t].
    filters = jnp.transpose(rhs, (rhs_spec[1], *rhs_spec[2:], rhs_spec[0])).astype(kind)
    features, outs = filters.shape[0], filters.shape[-1]
    matrix = filters.reshape(features, -1)
    gaps = (_flat_gaps(in_spatial, out_spatial, config)
            if FLAT_LAYOUT and max(config.window_strides) == 1 else None)
    masked = (MASKED_FLAT and gaps is not None
              and all(m <= n for m, n in zip(out_spatial, in_spatial, strict=True)))
    if masked:  # planes end to end with no zeros between them: each tap masks its edges
        gaps = (0,) * len(in_spatial)
    # Padded after the move, not by ``_dilate_and_pad`` before it: the other order compiled to an
    # extra transpose and copy of the cotangent in the large batch's step.
    pads = ([(lo, hi, a - 1) for (lo, hi), a in zip(config.padding, config.lhs_dilation,
                                                    strict=True)]
            if gaps is None else [(0, g, 0) for g in gaps])
    images = lax.pad(jnp.transpose(lhs, (lhs_spec[0], *lhs_spec[2:], lhs_spec[1])),
                     jnp.zeros((), lhs.dtype), [(0, 0, 0), *pads, (0, 0, 0)])
    batch, plane = images.shape[0], images.shape[1:-1]        # (N, *S̃, C), or (N, *E, C) if flat
    per_image = math.prod(plane) * math.prod(window) * outs * np.dtype(dtype).itemsize
    block = _largest_divisor_at_most(batch, CHANNELS_LAST_BLOCK_BYTES // max(per_image, 1))

    def products(x: jax.Array) -> jax.Array:                            # (rows, C) -> (rows, T, O)
        x = _from_bits(x, lhs.dtype).astype(kind)  # widened per block (``_product_types``)
        y = lax.dot_general(x, matrix, (((1,), (0,)), ((), ())),
                            precision=config.precision, preferred_element_type=dtype)
        return y.reshape(x.shape[0], -1, outs)

    def windows_block(x: jax.Array) -> jax.Array:                       # (block, *S̃, C)
        y = products(x.reshape(-1, features)).reshape(block, *plane, -1, outs)
        spans = [s * (m - 1) + 1 for s, m in zip(config.window_strides, out_spatial, strict=True)]
        out = None
        for index, tap in enumerate(np.ndindex(*window)):
            starts = [d * t for d, t in zip(config.rhs_dilation, tap, strict=True)]
            part = lax.slice(y[..., index, :], [0, *starts, 0],
                             [block, *(a + n for a, n in zip(starts, spans, strict=True)), outs],
                             [1, *config.window_strides, 1])
            out = part if out is None else out + part
        return _as_bits(out.astype(out_dtype))

    if gaps is None:
        out = lax.map(windows_block, _as_bits(images).reshape(batch // block, block, *plane,
                                                               features))
    else:
        strides = _flat_strides(plane)
        offsets = [sum(d * t * st for d, t, st in zip(config.rhs_dilation, tap, strides,
                                                      strict=True))
                   for tap in np.ndindex(*window)]
        front = sum(lo * st for (lo, _), st in zip(config.padding, strides, strict=True))
        length = block * math.prod(plane)

        masks = (_edge_masks(plane, out_spatial, window, config) if masked
                 else [None] * len(offsets))

        def flat_block(x: jax.Array) -> jax.Array:            # (front + length + back, C)
            y = products(x)                                   # (front + length + back, T, O)
            out = None
            for index, offset in enumerate(offsets):
                part = y[offset:offset + length, index]
                if masks[index] is not None:  # one constant mask per tap, shared by the images
                    part = jnp.where(masks[index][None, :, None],
                                     part.reshape(block, -1, outs), 0).reshape(length, outs)
                out = part if out is None else out + part
            out = lax.slice(out.reshape(block, *plane, outs), [0] * (len(plane) + 2),
                            [block, *out_spatial, outs])
            return _as_bits(out.astype(out_dtype))

        # Each block's margins (front zeros before it, room for the last tap's slice after it)
        # padded in the same pass as the planes' gaps, rather than per block inside the loop:
        # one copy of the input less (item 19 of benchmarks/README.md).
        blocks = _as_bits(images).reshape(batch // block, length, features)
        blocks = lax.pad(blocks, jnp.zeros((), blocks.dtype),
                         [(0, 0, 0), (front, max(offsets) - front, 0), (0, 0, 0)])
        rows = _output_rows(blocks, block * math.prod(out_spatial) * outs, out_dtype)
        if rows is None:
            out = lax.map(flat_block, blocks)
        else:
            # Step i reads block i, then writes its output over the block's first rows: no
            # zeroed output buffer (8 MB for the large batch) and no new one. The loop's carry
            # varies over the mesh axes of both operands (shard_map), as its writes do.
            def step(index: jax.Array, carried: jax.Array) -> jax.Array:
                x = lax.dynamic_index_in_dim(carried, index, keepdims=False)
                out = flat_block(x).reshape(1, rows, features)
                return lax.dynamic_update_slice(carried, out, (index, 0, 0))

            blocks = _vma.as_varying(blocks, _vma.varying_axes(lhs) | _vma.varying_axes(rhs))
            out = lax.fori_loop(0, batch // block, step, blocks)[:, :rows]
    out = _from_bits(out, out_dtype)
    if TRANSPOSE_AS_MATRIX and tuple(out_spec) == tuple(range(len(out_spec))):
        # XLA:CPU lays out a transpose of all axes so that it is a bitcast and, where the result
        # is one of a program's outputs (jit(grad) wrt both operands), copies it twice: unchanged,
        # then transposed. As (positions × features) matrices it writes the result once, and a
        # loss term such as cos(conv(x, f)) fuses into that write.
        return jnp.swapaxes(out.reshape(batch, -1, outs), 1, 2).reshape(batch, outs, *out_spatial)
    out = out.reshape(batch, *out_spatial, outs)
    return jnp.transpose(jnp.moveaxis(out, -1, 1), np.argsort(out_spec))


# Small planes with many features, whole batch: one product per tap.
#
# With jaxlib 0.12.1 XLA:CPU's convolution kernel ran small planes with many features at a half
# or less of its jaxlib 0.10.2 speed (item 30 of benchmarks/README.md: 512 features on 7x7, float32
# forward 93 ms against 50). Laid out channels last with the planes end to end (the flat layout
# without gaps above), the input read at tap t is the rows shifted by off_t = Σ (d·t_a - lo_a)·st_a,
# masked where a read crosses a plane's edge (``_edge_masks``): one contiguous slice per tap, which
# XLA copies with the mask fused in. Then
#   forward (``tap_products``):             O = Σ_t X_t · F_t,    (B·n × C) · (C × O) per tap;
#   few outputs (``position_products``):    O[:, :, q] = X_qᵀ · G, (C × B·n) · (B·n × O) per q,
# the second the filter gradient of a stride-1 convolution (its outputs are the forward's taps, its
# window the forward's output plane, zero-padded to the input's). Every product spans the whole
# batch, so with 256-512 features it runs near XLA's matrix speed; with fewer, the slices cost
# more than the kernel (128 features on 7x7: 1.3-2.0x the native pieces).
def _shifted_rows(rows: jax.Array, batch: int, offsets: Sequence[int],
                  masks: Sequence[np.ndarray | None]) -> Iterator[jax.Array]:
    """``rows`` (batch·plane, C) read at each offset, zero where that tap's mask (per plane
    position) is False: one masked slice of a copy padded by the largest offsets."""
    low, high = max(0, -min(offsets)), max(0, max(offsets))
    padded = lax.pad(rows, jnp.zeros((), rows.dtype), [(low, high, 0), (0, 0, 0)])
    length, features = rows.shape
    for offset, mask in zip(offsets, masks, strict=True):
        part = lax.slice_in_dim(padded, low + offset, low + offset + length)
        if mask is not None:
            part = jnp.where(mask[None, :, None], part.reshape(batch, -1, features),
                             0).reshape(length, features)
        yield part


def _tap_offsets(extents: Sequence[int], taps: Sequence[int], config: ConvConfig) -> list[int]:
    """Per tap (row-major over ``taps``), its flat offset Σ (d·t_a - lo_a)·st_a in a plane of
    these extents."""
    strides = _flat_strides(extents)
    return [sum((d * t - lo) * st for d, t, (lo, _), st in zip(
        config.rhs_dilation, tap, config.padding, strides, strict=True))
        for tap in np.ndindex(*taps)]


def _flat_products_fit(in_spatial: Sequence[int], inner: Sequence[int], config: ConvConfig
                       ) -> bool:
    """Whether ``tap_products`` or ``position_products`` computes this dense case: unit strides,
    no lhs dilation, non-negative padding, and ``inner`` extents that fit the input's plane (the
    outputs for ``tap_products``, the window for ``position_products``, which also needs unit
    rhs dilation)."""
    return (max(config.window_strides) == 1 and max(config.lhs_dilation) == 1
            and max(config.feature_group_count, config.batch_group_count) == 1
            and min(min(pad) for pad in config.padding) >= 0 and 0 not in in_spatial
            and all(m <= n for m, n in zip(inner, in_spatial, strict=True)))


def tap_products(lhs: jax.Array, rhs: jax.Array, config: ConvConfig) -> jax.Array:
    """A dense stride-1 convolution as one product per tap over the whole batch, channels last."""
    in_spatial, window, out_spatial = spatial_shapes(config, lhs.shape, rhs.shape)
    lhs_spec, rhs_spec, out_spec = config.dimension_numbers
    kind, dtype = _product_types(lhs, config)
    batch, features = lhs.shape[lhs_spec[0]], lhs.shape[lhs_spec[1]]
    rows = jnp.transpose(lhs, (lhs_spec[0], *lhs_spec[2:], lhs_spec[1])).reshape(-1, features)
    filters = jnp.transpose(rhs, (*rhs_spec[2:], rhs_spec[1], rhs_spec[0])).astype(kind)
    filters = filters.reshape(-1, *filters.shape[-2:])                   # (T, C, O)
    offsets = _tap_offsets(in_spatial, window, config)
    masks = _edge_masks(in_spatial, out_spatial, window, config)
    out = None
    for tap, part in enumerate(_shifted_rows(rows, batch, offsets, masks)):
        product = lax.dot_general(part.astype(kind), filters[tap], (((1,), (0,)), ((), ())),
                                  precision=config.precision, preferred_element_type=dtype)
        out = product if out is None else out + product
    out = out.reshape(batch, *in_spatial, -1)
    out = lax.slice(out, [0] * out.ndim, [batch, *out_spatial, out.shape[-1]])
    out = out.astype(config.preferred_element_type or lhs.dtype)
    return jnp.transpose(jnp.moveaxis(out, -1, 1), np.argsort(out_spec))


def position_products(lhs: jax.Array, rhs: jax.Array, config: ConvConfig) -> jax.Array:
    """A dense stride-1 convolution with few output positions (a filter gradient) as one product
    per output position over the whole batch and window, channels last."""
    in_spatial, window, out_spatial = spatial_shapes(config, lhs.shape, rhs.shape)
    lhs_spec, rhs_spec, out_spec = config.dimension_numbers
    kind, dtype = _product_types(lhs, config)
    planes, columns = lhs.shape[lhs_spec[1]], lhs.shape[lhs_spec[0]]
    # lhs as (I·n, N): the contracted I (here the forward's images) with the plane, N last.
    rows = jnp.transpose(lhs, (lhs_spec[1], *lhs_spec[2:], lhs_spec[0])).reshape(-1, columns)
    # rhs as (I, *window, O), zero-padded to the input's plane: (I·n, O).
    window_rows = jnp.transpose(rhs, (rhs_spec[1], *rhs_spec[2:], rhs_spec[0]))
    window_rows = lax.pad(window_rows, jnp.zeros((), rhs.dtype),
                          [(0, 0, 0), *[(0, n - k, 0) for n, k in zip(in_spatial, window,
                                                                     strict=True)], (0, 0, 0)])
    window_rows = window_rows.reshape(rows.shape[0], -1).astype(kind)
    # Output q reads input position t - lo + q for window position t: the taps' offsets and
    # masks with the window and the outputs exchanged (unit rhs dilation, checked by the caller).
    offsets = _tap_offsets(in_spatial, out_spatial, config)
    masks = _edge_masks(in_spatial, window, out_spatial, config)
    out = jnp.stack([lax.dot_general(part.astype(kind), window_rows, (((0,), (0,)), ((), ())),
                                     precision=config.precision, preferred_element_type=dtype)
                     for part in _shifted_rows(rows, planes, offsets, masks)], axis=-1)
    out = out.reshape(columns, -1, *out_spatial)                         # (N, O, *out)
    out = out.astype(config.preferred_element_type or lhs.dtype)
    return jnp.transpose(out, np.argsort(out_spec))


# Winograd's minimal filtering F(2x2, 3x3) (Lavin and Gray, 2016) for 3x3 stride-1 convolutions.
#
# Each 2x2 block of outputs is computed from a 4x4 block d of the padded input as
#   Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A
# with the constant matrices below: per tile 16 products instead of 36, 2.25x fewer
# multiplications, for additions before (the input transform Bᵀ d B, the filter transform G g Gᵀ)
# and after (the output transform). It is an identity of exact arithmetic: in float64 it agrees
# with the native convolution up to rounding (tests/test_matmul_formulations.py), and in float32
# its error against a float64 reference measured within 2x of the native kernel's (item 31 of
# benchmarks/README.md). Channels last, the 16 Winograd points are 16 matrix products
# (images·tiles × C) · (C × O). Each transform is a sum of strided slices written as separate
# arrays (XLA:CPU's concatenations and stacks are slow, item 8), and the filter's is computed the
# same way (an einsum with G made 16 transposed copies of the transformed filter). With few
# features the transforms cost more than the products save (the large batch's 32 features: item
# 25), and with few rows per product XLA's matrix kernel runs slowly: hence ``_winograd_pays``.
WINOGRAD_B_T = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]])
WINOGRAD_G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
WINOGRAD_A_T = np.array([[1, 1, 1, 0], [0, 1, -1, -1]])


def _combination(parts: Sequence[jax.Array], coefficients: np.ndarray) -> jax.Array:
    """Σ c·part over the nonzero coefficients, as additions and subtractions where c is ±1."""
    total = None
    for part, c in zip(parts, coefficients, strict=True):
        if c == 0:
            continue
        term = part if c == 1 else -part if c == -1 else part * np.asarray(c, part.dtype)
        total = term if total is None else total + term
    assert total is not None, "every row of the Winograd matrices has a nonzero coefficient"
    return total


def _two_sided(parts: Sequence[Sequence[jax.Array]], left: np.ndarray,
               right: np.ndarray) -> list[list[jax.Array]]:
    """[i][j] = Σ_a,b left[i, a]·right[j, b]·parts[a][b], one axis at a time (``left parts
    rightᵀ`` for a grid of arrays): the Winograd transforms Bᵀ d B, G g Gᵀ and Aᵀ M A."""
    half = [[_combination([row[b] for row in parts], left_row) for b in range(len(parts[0]))]
            for left_row in left]
    return [[_combination(row, right_row) for right_row in right] for row in half]


def _unit_steps_dense(config: ConvConfig) -> bool:
    """Unit strides and dilations and no groups: what both Winograd formulations need."""
    return (max(config.window_strides) == 1 and max(config.lhs_dilation) == 1
            and max(config.rhs_dilation) == 1
            and max(config.feature_group_count, config.batch_group_count) == 1)


def _winograd_fits(window: Sequence[int], out_spatial: Sequence[int], config: ConvConfig) -> bool:
    """Whether ``winograd`` computes this case: 2-D, a dense 3x3 window, unit strides and
    dilations, and outputs."""
    return tuple(window) == (3, 3) and _unit_steps_dense(config) and 0 not in out_spatial


def winograd(lhs: jax.Array, rhs: jax.Array, config: ConvConfig) -> jax.Array:
    """A dense 3x3 stride-1 convolution by Winograd's F(2x2, 3x3), channels last."""
    in_spatial, window, out_spatial = spatial_shapes(config, lhs.shape, rhs.shape)
    if not _winograd_fits(window, out_spatial, config):
        raise ValueError("winograd computes dense 2-D convolutions with a 3x3 window, unit "
                         f"strides and dilations, got window {tuple(window)} and {config}")
    lhs_spec, rhs_spec, out_spec = config.dimension_numbers
    kind, dtype = _product_types(lhs, config)
    work = np.dtype(jnp.promote_types(kind, np.float32))  # the transforms' and products' type
    rows, cols = (-(-m // 2) for m in out_spatial)  # 2x2 output tiles per image
    # Padded so that the tiles' 4x4 input blocks, 2 apart, are in bounds (a negative high pad
    # crops what no output reads).
    pads = [(lo, 2 * tiles + 2 - n - lo, 0) for n, tiles, (lo, _) in zip(
        in_spatial, (rows, cols), config.padding, strict=True)]
    images = jnp.transpose(lhs, (lhs_spec[0], *lhs_spec[2:], lhs_spec[1])).astype(work)
    images = lax.pad(images, jnp.zeros((), work), [(0, 0, 0), *pads, (0, 0, 0)])
    filters = jnp.transpose(rhs, (*rhs_spec[2:], rhs_spec[1], rhs_spec[0])).astype(work)
    # Input transform Bᵀ d B, one axis at a time: d[a][b] is the input at (2·r + a, 2·s + b).
    blocks = [[images[:, a:a + 2 * rows:2, b:b + 2 * cols:2] for b in range(4)] for a in range(4)]
    data = _two_sided(blocks, WINOGRAD_B_T, WINOGRAD_B_T)
    # Filter transform G g Gᵀ: (C, O) per point.
    weights = _two_sided([[filters[a, b] for b in range(3)] for a in range(3)], WINOGRAD_G,
                         WINOGRAD_G)
    products = [[lax.dot_general(
        data[xi][nu], weights[xi][nu], (((3,), (0,)), ((), ())), precision=config.precision,
        preferred_element_type=jnp.promote_types(dtype, work)) for nu in range(4)]
        for xi in range(4)]
    # Output transform Aᵀ M A, then the 2x2 blocks interleaved into the plane.
    corners = _two_sided(products, WINOGRAD_A_T, WINOGRAD_A_T)
    out = jnp.stack([jnp.stack(row, axis=3) for row in corners],
                    axis=2)  # (N, rows, 2, cols, 2, O)
    batch, outs = out.shape[0], out.shape[-1]
    out = out.reshape(batch, 2 * rows, 2 * cols, outs)[:, :out_spatial[0], :out_spatial[1]]
    out = out.astype(config.preferred_element_type or lhs.dtype)
    return jnp.transpose(jnp.moveaxis(out, -1, 1), np.argsort(out_spec))


# Winograd's F(3x3, 2x2) for convolutions with a 3x3 output from a larger window: the filter
# gradients of 3x3 stride-1 convolutions (the rule's convolution of the input with the
# cotangent, whose window is the forward's output plane). The roles of F(2x2, 3x3) trade places:
# the window is cut into 2x2 tiles, each tile's 3x3 outputs come from a 4x4 block of the padded
# input as Aᵀ [ (G w Gᵀ) ⊙ (Bᵀ d B) ] A with the matrices below (Lavin and Gray's points 0, 1, -1
# and ∞, as for F(2x2, 3x3)), and the sum over tiles joins the contraction: per Winograd point
# one matrix product (batch × tiles·features) · (tiles·features × outputs). 16 products per tile
# instead of 36 (2.25x fewer; a window of odd size is padded with zeros to whole tiles).
WINOGRAD_3_B_T = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, -1, 0, 1]])
WINOGRAD_3_G = np.array([[1, 0], [0.5, 0.5], [0.5, -0.5], [0, 1]])
WINOGRAD_3_A_T = np.array([[1, 1, 1, 0], [0, 1, -1, 0], [0, 1, 1, 1]])


def _winograd_window_fits(window: Sequence[int], out_spatial: Sequence[int],
                          config: ConvConfig) -> bool:
    """Whether ``winograd_window`` computes this case: 2-D and dense, a 3x3 output, a window of
    at least 2x2, unit strides and dilations."""
    return (len(window) == 2 and tuple(out_spatial) == (3, 3) and min(window) >= 2
            and _unit_steps_dense(config))


def winograd_window(lhs: jax.Array, rhs: jax.Array, config: ConvConfig) -> jax.Array:
    """A dense stride-1 convolution with a 3x3 output by Winograd's F(3x3, 2x2) over 2x2 tiles
    of the window, channels last."""
    in_spatial, window, out_spatial = spatial_shapes(config, lhs.shape, rhs.shape)
    if not _winograd_window_fits(window, out_spatial, config):
        raise ValueError("winograd_window computes dense 2-D convolutions with a 3x3 output, "
                         f"unit strides and dilations, got window {tuple(window)}, output "
                         f"{tuple(out_spatial)} and {config}")
    lhs_spec, rhs_spec, out_spec = config.dimension_numbers
    kind, dtype = _product_types(lhs, config)
    work = np.dtype(jnp.promote_types(kind, np.float32))
    tiles = [-(-k // 2) for k in window]  # 2x2 tiles of the window per axis
    # Padded so that every tile's 4x4 input block, 2 apart, is in bounds: 2·tiles + 2 positions
    # (one more than the convolution reads where the window is odd: it meets a zero tap).
    pads = [(lo, 2 * t + 2 - n - lo, 0) for n, t, (lo, _) in zip(
        in_spatial, tiles, config.padding, strict=True)]
    # Each product is a plain (rows, depth) · (depth, columns) matrix product, depth (features,
    # tile rows, tile columns), whose result has batch and outputs in the order of the result's
    # layout (a filter gradient of an OIHW filter has outputs first), so that the 3x3 axes are
    # all that moves after. The operands' layouts follow: outputs first, (O, F, H, W) · (F, H, W,
    # B); else (B, F, H, W) · (F, H, W, O).
    outputs_first = out_spec[1] < out_spec[0]
    batch, features, outs = lhs.shape[lhs_spec[0]], lhs.shape[lhs_spec[1]], rhs.shape[rhs_spec[0]]
    window_pads = [(0, 2 * t - k, 0) for t, k in zip(tiles, window, strict=True)]
    keep = (0, 0, 0)
    if outputs_first:
        lhs_order, lhs_pads, first_in = (lhs_spec[1], *lhs_spec[2:], lhs_spec[0]), [
            keep, *pads, keep], 1
        rhs_order, rhs_pads, first_taps = rhs_spec, [keep, keep, *window_pads], 2
    else:
        lhs_order, lhs_pads, first_in = lhs_spec, [keep, keep, *pads], 2
        rhs_order, rhs_pads, first_taps = (rhs_spec[1], *rhs_spec[2:], rhs_spec[0]), [
            keep, *window_pads, keep], 1
    # Each laid out once into its own buffer (``materialize``): XLA fused the transposes into
    # the 16 transforms that read them, each then gathering across the plane (a whole step 1.1-1.4x
    # slower on 14x14 to 56x56 planes).
    images = materialize(lax.pad(jnp.transpose(lhs, lhs_order), jnp.zeros((), lhs.dtype),
                                 lhs_pads)).astype(work)
    filters = materialize(lax.pad(jnp.transpose(rhs, rhs_order), jnp.zeros((), rhs.dtype),
                                  rhs_pads)).astype(work)

    def every_other(array: jax.Array, first: int, rows: int, cols: int) -> jax.Array:
        """The tiles' entries at (rows, cols) of their blocks: spatial axes from ``first``."""
        return array[(slice(None),) * first + (slice(rows, rows + 2 * tiles[0], 2),
                                               slice(cols, cols + 2 * tiles[1], 2))]

    data = _two_sided([[every_other(images, first_in, a, b) for b in range(4)] for a in range(4)],
                      WINOGRAD_3_B_T, WINOGRAD_3_B_T)
    weights = _two_sided([[every_other(filters, first_taps, u, v) for v in range(2)]
                          for u in range(2)], WINOGRAD_3_G, WINOGRAD_3_G)
    depth = tiles[0] * tiles[1] * features

    def point(xi: int, nu: int) -> jax.Array:
        if outputs_first:
            pair = weights[xi][nu].reshape(outs, depth), data[xi][nu].reshape(depth, batch)
        else:
            pair = data[xi][nu].reshape(batch, depth), weights[xi][nu].reshape(depth, outs)
        return lax.dot_general(*pair, (((1,), (0,)), ((), ())), precision=config.precision,
                               preferred_element_type=jnp.promote_types(dtype, work))

    products = [[point(xi, nu) for nu in range(4)] for xi in range(4)]
    # Output transform Aᵀ M A. Where the result's 3x3 axes are its last (OIHW), each output is
    # written there as a sum over the 16 points of a product times a row of coefficients: XLA:CPU
    # fused nine separate sums and their stack into one loop 3x slower. Elsewhere (HWIO) the
    # nine outputs are stacked in front, whole planes at a time.
    out_type = config.preferred_element_type or lhs.dtype
    lead = (1, 0) if outputs_first else (0, 1)  # out's axis of batch and of outputs
    if min(out_spec[2:]) > max(out_spec[:2]):
        coefficients = np.kron(WINOGRAD_3_A_T, WINOGRAD_3_A_T).T.reshape(4, 4, 9)
        out = sum(products[xi][nu][..., None] * coefficients[xi, nu].astype(
            products[xi][nu].dtype) for xi in range(4) for nu in range(4))
        out = out.astype(out_type).reshape(*out.shape[:2], 3, 3)
        axes = (*lead, 2, 3)
    else:
        out = jnp.stack([jnp.stack(row) for row in _two_sided(
            products, WINOGRAD_3_A_T, WINOGRAD_3_A_T)]).astype(out_type)
        axes = (lead[0] + 2, lead[1] + 2, 0, 1)
    return jnp.transpose(out, [axes[c] for c in np.argsort(out_spec)])


def _output_rows(blocks: jax.Array, size: int, out_dtype: np.dtype) -> int | None:
    """Rows of ``blocks``' steps that hold a step's ``size`` outputs, or None if they do not fit.

    ``blocks`` is (steps, rows, features) in the loop's storage type (``_as_bits``); the outputs
    fit if they have that type, are a whole number of rows, and no more than a step holds.
    """
    stored = jax.eval_shape(_as_bits, jax.ShapeDtypeStruct((), out_dtype)).dtype
    if not OUTPUT_OVER_INPUT or stored != blocks.dtype:
        return None
    rows, features = blocks.shape[1:]
    if size % features or size > rows * features:
        return None
    return size // features


def materialize(array: jax.Array) -> jax.Array:
    """``array``, computed once into its own buffer before the formulations read it.

    XLA fuses an elementwise producer into each of its consumers and recomputes it there. The
    rule reads the cotangent several times (once per tap of a shift-and-add, once per transposed
    copy for each block of groups), so a loss term such as ``cos(conv(x, f))`` was recomputed up
    to six times: 30 ms of a 60 ms depthwise gradient on CPU. ``optimization_barrier`` does not
    stop this (it is removed before fusion); a conditional is a fusion boundary that XLA keeps when
    its predicate depends on the data and its branches differ (XLA inlines identical ones). Both
    branches return the array unchanged: the second negates it twice, which is exact for every
    value including NaN. The predicate reads the first element as a slice, not through a
    flattening reshape, which under sharding gathered the whole array where a minor axis was the
    sharded one (``winograd_window``'s operands with the images second).
    """
    if array.size == 0:
        return array
    first = lax.slice(array, (0,) * array.ndim, (1,) * array.ndim).reshape(())
    return lax.cond(first == first, lambda a: a, lambda a: jnp.negative(jnp.negative(a)), array)


# Whether formulations that loop over images (``shift_matmul``, ``taps_matmul``) may be chosen.
# XLA's SPMD partitioner does not split a loop's iterations: under jit over several devices with a
# batch-sharded input, those loops gathered the whole batch onto every device (and the input
# gradient came back replicated). ``conv`` therefore traces a loop-free choice as well and picks
# between the two when lowering, by the number of devices the program runs on.
_PER_IMAGE_LOOPS = contextvars.ContextVar("convgrad_per_image_loops", default=True)
# Whether ``fold_first_axis`` may count as a plain 2-D convolution (``_folds_to_plain``).
_PLAIN_FOLDS = contextvars.ContextVar("convgrad_plain_folds", default=True)


@contextlib.contextmanager
def _setting(variable: contextvars.ContextVar[bool], value: bool) -> Iterator[None]:
    """``variable`` set to ``value`` while tracing the block (``_PER_IMAGE_LOOPS``)."""
    token = variable.set(value)
    try:
        yield
    finally:
        variable.reset(token)


def _one_device_per_program(axis_context: Any) -> bool:
    """Whether the program being lowered runs as one program per device on local data: a jit on
    one device, or the body of a shard_map (or pmap) with every mesh axis manual."""
    devices = getattr(axis_context, "num_devices", None)
    if devices is not None:
        return devices == 1
    mesh, manual = getattr(axis_context, "mesh", None), getattr(axis_context, "manual_axes", None)
    if mesh is not None and manual is not None:
        return set(mesh.axis_names) <= set(manual)
    return hasattr(axis_context, "axis_env")  # pmap: each replica's program is per device


# 1 when lowered for one device per program (see above), else 0: a constant XLA folds away.
_one_device_p = Primitive("convgrad_one_device_per_program")
_one_device_p.def_impl(lambda: np.int32(1))
_one_device_p.def_abstract_eval(lambda: jax.core.ShapedArray((), np.int32))
mlir.register_lowering(_one_device_p, lambda ctx: [mlir.ir_constant(
    np.int32(_one_device_per_program(ctx.module_context.axis_context)))])


def _version_numbers(version: str) -> tuple[int, ...]:
    """A release's version as numbers, local suffix dropped.

    >>> _version_numbers("0.12.0.1"), _version_numbers("0.10.2+cuda12.cudnn9")
    ((0, 12, 0, 1), (0, 10, 2))
    """
    return tuple(int(part) for part in re.findall(r"\d+", version.split("+")[0]))


_JAXLIB_VERSION = _version_numbers(jaxlib.__version__)


def _newer_kernels() -> bool:
    """Whether XLA:CPU is jaxlib 0.11's or later, where the matrix-product rules were refitted.

    jaxlib 0.11 made XLA:CPU's own convolution kernels faster (the native step 0.51-0.70 of its
    0.10.2 time on dense stride-1 shapes) but not its matrix kernel, so the products pay on fewer
    shapes there: the full rule sweep on one Intel Xeon (twelfth session,
    ``benchmarks/results/jax-versions-cpu-xeon/formulation-sweep-full-jax*.md``) found the rules
    fitted to 0.10.2 choosing the slower formulation on 12 of 80 rows with 0.10.2 and 25 with
    0.12.0.1, by up to 1.44. The rules below answer for both. Their two sets, compared as whole
    steps side by side (``--rules _newer_kernels`` of ``benchmarks/sweep_formulations.py``, 4
    processes, ``benchmarks/results/jax-versions-cpu-xeon/rule-sets-jax*.md``), chose differently
    on 14 of 33 shapes and dtypes; there the newer set's steps took 0.62-0.97 (median 0.83) of the
    older's with jaxlib 0.12.0.1, and 0.81-1.29 (median 1.05, 9 slower) with 0.10.2.
    """
    return _JAXLIB_VERSION >= NEWER_KERNELS_JAXLIB


def _slow_bfloat16_products() -> bool:
    """Whether bfloat16 takes float32's answer in ``_shift_pays``: jaxlib 0.12.1 and later, on a
    host with AMX (``_host.without_amx``; hosts that list no x86 flags count as with).

    On the Intel Xeon with AMX of item 29 of benchmarks/README.md, XLA:CPU's 2048² product of
    bfloat16 operands with float32 sums ran at 243-255 GFLOP/s with jaxlib 0.12.1 (its float32
    one 272-282), and at 1421-1483 with jaxlib 0.10.2 on the same machine; no ``XLA_FLAGS``
    setting of 0.12.1 (oneDNN, XNNPACK, YNNPACK fusions) changed it. A Xeon of the same name had
    run jaxlib 0.12.0.1's at 706-782, where the rules for jaxlib 0.11 on were fitted. Whole steps
    with 0.12.1 there (``benchmarks/sweep_formulations.py --rules _shift_pays``, 2-3 processes):
    bfloat16 ``shift_matmul`` (and ``channels_last_matmul`` where it takes its place) took
    1.05-1.60 of the native kernel's step on 10 of 11 shapes at stride 1 (dilated 1.25, resnet
    3x3 1.14, small planes 1.13-1.23, 5x5 windows 1.37-1.60) and 1.01-1.08 strided; only 512 features
    on 7x7 gained (0.73). ``taps_matmul`` still gained (0.66-0.91). So bfloat16 answers as
    float32 there, whose products now run as fast: ``shift_matmul`` only strided, from 48
    features. Whole steps, this rule against the rules for 0.11 (``benchmarks/ab_constants.py
    --constant SLOW_BFLOAT16_PRODUCTS``, 3 processes): dilated 0.84, resnet 3x3 s1 0.86, the
    video 0.89, small planes 0.81-0.90, resnet 3x3 s2 1.00 (1.03 with ``shift_matmul`` left
    out strided too).

    Except on small planes with many features (``_many_features_on_small_plane``).

    On an AMD EPYC of the Zen 4 generation (AVX-512 BF16, no AMX; items 36 and 37) jaxlib
    0.12.1's bfloat16 products ran at 374 GFLOP/s against float32's 173, and the rule cost time.
    Whole steps with it against without (``benchmarks/ab_host_rules.py --rule amx``, 3
    processes, every bfloat16 shape it reaches): 1.04-1.45 on 20 of 23 (resnet 3x3 s1 1.30, s2
    1.25, dilated 1.16, the video 1.16, small planes 1.08-1.34), 0.99 and 1.02 on two, 0.91 on
    one (valid, 128 features on 14x14). So it holds only where AMX is.
    """
    return (bool(SLOW_BFLOAT16_PRODUCTS) and _JAXLIB_VERSION >= SLOW_BFLOAT16_PRODUCTS_JAXLIB
            and not _host.without_amx())


def _avx512_without_amx() -> bool:
    """Whether this host is an x86 CPU with AVX-512 but without AMX (``_host``; an AMD EPYC of the
    Zen 4 generation, item 37 of benchmarks/README.md), where float32 ``taps_matmul`` with
    jaxlib 0.12.1 needs more features than on the Xeon with AMX (``_taps_pay``)."""
    return _host.without_amx() and not _host.without_avx512()


def _many_features_on_small_plane(features: int, positions: int) -> bool:
    """Whether a plane of ``positions`` is small (below ``MIN_PER_IMAGE_POSITIONS``) and has at
    least ``MIN_FEATURES_PER_SIDE`` ``features`` per unit of its side, √``positions``.

    Where bfloat16 products are slow (``_slow_bfloat16_products``) bfloat16 keeps its own answer
    in ``_shift_pays`` there (``channels_last_matmul``, which serves up to
    ``MAX_CHANNELS_LAST_FEATURES``).

    Item 30 of benchmarks/README.md, jaxlib 0.12.1 on the Intel Xeon with AMX of item 29
    (``benchmarks/sweep_formulations.py --rules _shift_pays``, 3 processes), whole steps with
    channels last against the native kernel: 256 features on 7x7 0.83, 512 on 7x7 0.71, 512 on
    14x14 0.86; 256 on 14x14 1.01 and, in the twenty-ninth session's sweeps, 128 on 14x14 1.13
    and 64 on 16x16 1.23. XLA's kernel loses its speed on the smallest planes, and the products
    gain theirs with more features.
    """
    return (positions < MIN_PER_IMAGE_POSITIONS
            and features * features >= MIN_FEATURES_PER_SIDE ** 2 * positions)


def _flat_products_pay(positions: int, features: int) -> bool:
    """Whether ``tap_products`` (float32 forward and input gradients) or ``position_products``
    (filter gradients on planes below ``taps_matmul``'s) measured faster than XLA:CPU's kernel:
    from jaxlib 0.12.1 (``SLOW_SMALL_PLANE_KERNELS_JAXLIB``) on small planes with many features
    (``_many_features_on_small_plane``; ``positions``: the plane's, ``features``: contracted for
    a forward, the smaller of the filter's two for a filter gradient).

    Item 30 of benchmarks/README.md, each convolution alone with jaxlib 0.12.1 against the op as
    it was: float32 forward and input gradient 0.51-0.56 with 512 features on 7x7, 0.71-0.73 with
    256, 0.88-0.92 with 512 on 14x14, 0.98-1.08 with 256 on 14x14, 1.5-2.0 with 128 on 7x7;
    bfloat16 forwards lost to channels last. Filter gradients on 7x7: 0.50 and 0.78 (float32,
    512 and 256 features), 0.41 and 0.45 (bfloat16), 1.06-1.32 with 128.
    """
    return _slow_small_plane_kernels() and _many_features_on_small_plane(features, positions)


def _winograd_pays(dtype: np.dtype, batch: int, features: int, outs: int,
                   out_spatial: Sequence[int]) -> bool:
    """Whether ``winograd`` measured faster than the other formulations for a case it fits:
    float32, or bfloat16 where its products are slow (``_slow_bfloat16_products``; Winograd
    computes it in float32); planes of up to ``MAX_WINOGRAD_POSITIONS``, at least
    ``MIN_WINOGRAD_FEATURES`` contracted and output features (``MIN_OLDER_WINOGRAD_FEATURES``
    with jaxlib 0.10's kernels), at least ``MIN_WINOGRAD_ROWS`` rows per product (``batch`` x the
    plane's 2x2 output tiles), on an x86 CPU with AVX-512 (not measured elsewhere).

    Item 31 of benchmarks/README.md, the Intel Xeon with AMX of items 29 and 30, whole steps
    with the rule forced on against off (the forward and the input gradient by Winograd;
    ``benchmarks/sweep_formulations.py --rules _winograd_pays``, 2 processes), jaxlib 0.10.2 /
    0.12.1: 256 features on 7x7 0.86 / 0.79, on 14x14 0.77 / 0.71, on 28x28 (4 images) 0.74 /
    0.76; 512 on 7x7 0.88 / 0.87, on 14x14 0.78 / 0.71; 128 on 14x14 0.94 / 0.87, on 28x28 0.95
    (0.10.2); 64 features on 16x16 0.82 / 1.03, on 28x28 0.84 (0.10.2). Not paying or not
    measured: fewer rows (512 on 7x7 with 9 images, 144 rows: 0.91 / 1.20; on 14x14 with 2: 0.94
    / 1.00), 32 features (the large batch 0.98, 28x28 0.94, 8x8 0.90: 0.10.2), 16-32 features on
    32x32 to 64x64 and 24-64 on 56x56 (0.99-1.23), bfloat16 with jaxlib 0.10.2 (1.16-1.79, its
    products fast). bfloat16 with jaxlib 0.12.1: 256 features on 7x7 0.90, on 14x14 0.65, on
    28x28 0.70, 512 on 7x7 0.86, on 14x14 0.67, 128 on 14x14 0.93; not with fewer rows (1.02,
    1.10) or 64 features on 16x16 (1.10).
    """
    tiles = math.prod(-(-m // 2) for m in out_spatial)
    least = MIN_WINOGRAD_FEATURES if _newer_kernels() else MIN_OLDER_WINOGRAD_FEATURES
    dtype = np.dtype(dtype)
    return (_winograd_serves(WINOGRAD, dtype)
            and math.prod(out_spatial) <= MAX_WINOGRAD_POSITIONS
            and min(features, outs) >= least and batch * tiles >= MIN_WINOGRAD_ROWS)


def _winograd_window_pays(dtype: np.dtype, batch: int, features: int, outs: int,
                          window: Sequence[int]) -> bool:
    """Whether ``winograd_window`` measured faster than the other formulations for a case it
    fits, a filter gradient's convolution (``batch``: the forward's input features; ``features``:
    its images; ``window``: its output plane): at least ``MIN_WINOGRAD_WINDOW_FEATURES`` on both
    sides of the filter (``MIN_OLDER_WINOGRAD_WINDOW_FEATURES`` with jaxlib 0.10's kernels);
    float32, or bfloat16 where its products are slow (``_slow_bfloat16_products``, computed in
    float32) with at most ``MAX_BFLOAT16_WINOGRAD_WINDOW_TERMS`` terms per product (images x
    the window's 2x2 tiles); on an x86 CPU with AVX-512 (not measured elsewhere).

    Item 32 of benchmarks/README.md, the Intel Xeon with AMX of items 29-31, whole steps with the
    rule forced on against off (``benchmarks/sweep_formulations.py --rules
    _winograd_window_pays``, 2 processes), float32 with jaxlib 0.10.2 / 0.12.1: 256 features on
    7x7 1.00 / 0.76, on 14x14 0.77 / 0.88, on 28x28 0.87 / 0.85 (with 16 images 0.87 / 0.87), on
    56x56 0.94 / 0.96; 512 on 7x7 0.89 / 0.78 (with 9 images 0.97 / 0.93), on 14x14 0.75 / 0.78
    (with 2 images 0.75 / 0.77); 640 on 8x8 0.78 / 0.78; 128 on 14x14 0.87 / 1.04, on 28x28
    0.95 / 0.98; 64 features 1.00-1.26 (0.10.2), the resnet 3x3 s1 1.17 / 1.32. bfloat16 with
    jaxlib 0.12.1: 0.80-0.96 with up to 1024 terms per product (256 and 512 features, 7x7 to
    28x28 planes), 1.22 with 3136 (256 features on 28x28, 16 images), 1.28 and more with 128
    features.
    """
    dtype = np.dtype(dtype)
    terms = features * math.prod(-(-k // 2) for k in window)
    least = MIN_WINOGRAD_WINDOW_FEATURES if _newer_kernels() else MIN_OLDER_WINOGRAD_WINDOW_FEATURES
    return (_winograd_serves(WINOGRAD_WINDOW, dtype)
            and (dtype != jnp.bfloat16 or terms <= MAX_BFLOAT16_WINOGRAD_WINDOW_TERMS)
            and min(batch, outs) >= least)


def _winograd_serves(switch: bool | int, dtype: np.dtype) -> bool:
    """The part both Winograd rules share: switched on, an x86 CPU with AVX-512, and float32 or
    bfloat16 where its products are slow (``_slow_bfloat16_products``; computed in float32)."""
    return (bool(switch) and not _host.without_avx512()
            and (dtype == np.float32 or (dtype == jnp.bfloat16 and _slow_bfloat16_products())))


def _slow_small_plane_kernels() -> bool:
    """Whether XLA:CPU's convolution kernel is the slow one on small planes with many features:
    jaxlib 0.12.1 and later (``SLOW_SMALL_PLANE_KERNELS_JAXLIB``, ``_flat_products_pay``)."""
    return bool(FLAT_PRODUCTS) and _JAXLIB_VERSION >= SLOW_SMALL_PLANE_KERNELS_JAXLIB


def _avx2_float32(dtype: np.dtype) -> bool:
    """Whether float32 products also serve small planes and folded 3-D sub-convolutions.

    On an x86 CPU without AVX-512 (``_host.without_avx512``; an AMD EPYC of the first Zen
    generation, item 16 of benchmarks/README.md) with jaxlib 0.10, XLA's float32 convolution kernel
    ran at 25-30 GFLOP/s on the large batch where its matrix kernel ran at 56, and whole steps
    measured faster with the products in two places where the AVX-512 machines measured them
    slower (``benchmarks/ab_host_rules.py``, results in
    ``benchmarks/results/host-rule-avx512-cpu-epyc-zen1.md``; ratios for float32 and for bfloat16
    computed in float32):

    * ``channels_last_matmul`` on small planes with 3x3 windows at stride 1: the large batch
      (32 features on 16x16) 0.86 and 0.86, 64 features on 16x16 0.84 and 0.88 (the Xeon: 1.17
      on the large batch); 128 features on 14x14 lost (1.27 and 1.25), hence at most
      ``MAX_AVX2_CHANNELS_LAST_FEATURES``. This part also holds on x86 CPUs with AVX-512 but
      without AMX (``_small_plane_float32_products``);
    * the matrix-product formulations inside ``fold_first_axis`` (3-D): the video 0.70 and 0.59,
      stride 2 0.65 and 0.65, a 1x3x3 window 0.41 and 0.36, 16 features on 32x32 0.87 and 0.86;
      64 features on 14x14 1.15 and 0.86 (the EPYC of the first sessions and the Xeon:
      1.12-1.34). The strided 3x3 stride 2's phases tie (0.99 and 1.01).

    With jaxlib 0.12's faster convolution kernels the same machine measured ties and losses
    (video 1.00, large batch 1.13-1.20), so the rule is for jaxlib 0.10's kernels only
    (``_newer_kernels``).
    """
    return np.dtype(dtype) == np.float32 and not _newer_kernels() and _host.without_avx512()


def _small_plane_float32_products(dtype: np.dtype) -> bool:
    """Whether float32 ``channels_last_matmul`` serves small planes (``_matmul_formulation``):
    with jaxlib 0.10, on an x86 CPU without AVX-512 (``_host.without_avx512``, item 16 of
    benchmarks/README.md) or without AMX (``_host.without_amx``: with AVX-512, item 38).

    On the Zen 4 EPYC of item 38 (AVX-512, no AMX) with jaxlib 0.10.2 the rules of AVX2 hosts
    as a whole lost (``benchmarks/ab_host_rules.py --rule avx512``, 3 processes: 1.01-1.79 on 20
    of the 23 rows that differ, where they also leave out Winograd and take the folded 3-D
    products), but the large batch gained (0.83). Taken apart (three processes), its forward
    and input gradient as ``channels_last_matmul`` gave 0.76-0.83 of the step, and
    ``taps_matmul``'s blocks (``_taps_blocks_pay``) 0.97-1.08. With this rule, the rules of the
    Xeon with AMX took 1.23 of the step on the large batch and 1.07 on a valid 3x3 convolution
    with rhs dilation 2 (``--rule amx``, 3 processes, the only rows that differ). With jaxlib
    0.12.1 there the same products lost (1.21-1.32), as on the Zen 1 EPYC of item 16.
    """
    return (np.dtype(dtype) == np.float32 and not _newer_kernels()
            and (_host.without_avx512() or _host.without_amx()))


def _taps_blocks_pay(dtype: np.dtype) -> bool:
    """Whether blocks of lhs features share the products of ``taps_matmul`` (``TAPS_BLOCK_BYTES``).

    Float32 (and bfloat16 computed in float32) on x86 CPUs without AVX-512
    (``_host.without_avx512``), any jaxlib. On the Zen 1 EPYC of item 17 of benchmarks/README.md
    the large batch's filter gradient, 256 products (288 × 256) · (256 × 32), took 0.66 of its
    time alone in blocks of 2-4 images, and the whole step 0.83 (float32) and 0.87 (bfloat16)
    with jaxlib 0.10.2 (``benchmarks/ab_constants.py``, 3 processes,
    ``benchmarks/results/taps-blocks-cpu-epyc-zen1.md``), 0.88 and 0.87-0.89 with 0.12.0.1. On
    the Xeon with AVX-512 the same blocks measured no faster (float32 23-29 ms against 23 in the
    seventh session, 0.96-1.06 as batched products in the eighth; "Tried and dropped" there).
    """
    return np.dtype(dtype) == np.float32 and _host.without_avx512()


def _shift_pays(dtype: np.dtype, contracted: int, outs: int, strided: bool, positions: int
                ) -> bool:
    """Whether ``shift_matmul`` measured faster than XLA:CPU's 2-D convolution kernel.

    From whole steps with it forced on and off (``benchmarks/sweep_formulations.py``, results in
    ``benchmarks/results/formulation-sweep-cpu.md``: 16 dense 2-D shapes, 3-512 features, 7x7 to
    112x112 planes, 3x3 and 5x5 windows, 2 processes each). In bfloat16 the products won or tied
    (0.62-0.94 of the step; 1.00-1.03 with 16-32 features, and on 14x14 with 128). In float32
    they won for strided convolutions (0.84-0.89; XLA's strided kernel is slow) and at stride 1
    from 48 contracted features below 96 output features (0.78-1.00), and lost with 16-32
    contracted features (1.12-1.30) and at 128 output features (1.19), where XLA's kernel runs at
    300-400 GFLOP/s.

    With jaxlib 0.11 and later (``_newer_kernels``; sweep with 0.12.0.1) XLA's kernel caught up:
    in float32 at stride 1 the products lost or tied on every shape (1.06-1.29; dilated 0.98, 128
    features on 28x28 0.97), and with 3-32 contracted features they lost in both dtypes
    (1.06-1.38). They still won in bfloat16 from 64 features (0.54-0.89; 1.07 on 16x16 planes,
    where ``_channels_last_pays`` then serves) and in float32 strided with 128 (0.94).

    In bfloat16 at stride 1 with jaxlib 0.10, from ``MIN_BFLOAT16_SHIFT_FEATURES`` (item 29): on an
    Intel Xeon with AMX, where bfloat16 runs as such (``_widens_bfloat16``), 16 contracted
    features lost (1.10-1.14 on 32x32 and 64x64, 4 processes; 1.11 on 64x64 in the sixth
    session), 24 and 32 won (0.87, 0.86-0.87). Strided, 3 features (the stem) still won (0.91).

    With jaxlib 0.12.1 and later bfloat16 answers as float32 (``_slow_bfloat16_products``), but
    on small planes with many features (``_many_features_on_small_plane``; ``positions``: output
    positions per image).
    """
    if _newer_kernels():
        # Where bfloat16 products run no faster than float32 ones, bfloat16 takes float32's answer
        # but on small planes with many features.
        fast_bfloat16 = dtype == jnp.bfloat16 and (
            not _slow_bfloat16_products() or (contracted <= MAX_CHANNELS_LAST_FEATURES and
                                              _many_features_on_small_plane(contracted, positions)))
        return contracted >= MIN_NEWER_MATMUL_FEATURES and (fast_bfloat16 or strided)
    if strided:
        return True
    if dtype == jnp.bfloat16:
        return contracted >= MIN_BFLOAT16_SHIFT_FEATURES
    return contracted >= 48 and outs < 96


def _taps_pay(window: int, taps: int, features: int, dtype: np.dtype, rank: int = 2) -> bool:
    """Whether ``taps_matmul`` measured faster for a filter gradient (same sweep).

    ``window`` is the forward convolution's output positions, ``taps`` its filter's,
    ``features`` the smaller of its input and output features (the sides of each loop step's
    product), and ``rank`` its spatial axes. Below 14x14 the loop's steps are too small (8x8
    planes: 1.03-1.05 of the step). Above, 0.56-0.98 of the step in both dtypes, even where the
    filter gradient alone was slower than XLA's kernel (128 features on 28x28, up to 1.3x): in
    the step XLA runs it beside the input gradient, and its kernel needs the cotangent
    transposed. Exceptions, left to the rule: float32 with 16 features on 64x64 (1.11-1.17 in two
    sweeps, 1.08-1.13 in a third with 4 processes, while 16 features on 32x32 gained, 0.86) and
    5x5 windows on 32 features (1.02-1.04).

    With jaxlib 0.11 and later (``_newer_kernels``) those exceptions grew: 3-16 features
    1.00-1.36, 5x5 windows in float32 1.18-1.44 and with 32 features in bfloat16 1.08; 32
    features on 3x3 windows won or tied (0.78-1.05) and 64 and more won (0.39-0.97). A sweep of
    few features with 0.12.0.1 (fourteenth session, 4 processes,
    ``benchmarks/results/jax-versions-cpu-xeon/few-features-jax0.12.0.1.md``): 24 features on
    56x56 0.82 in bfloat16 and 0.98 in float32, 32 features 0.86 and 1.00-1.02, 16 features
    1.01-1.14 and 1.15-1.30; hence from 24. On the Xeon with AMX with jaxlib 0.12.1 (item 33,
    ``sweep_formulations.py --rules _taps_pay``, 3 processes) float32 with 32 features lost (the
    large batch 1.05, 32 features on 28x28 1.19, on 56x56 1.14) where 64 won (0.89 on 16x16, 0.95
    on 28x28) and 24 on 56x56 gained 0.95: float32 from ``MIN_NEWER_FLOAT32_TAPS_FEATURES``.

    On the Zen 4 EPYC (AVX-512 without AMX) with jaxlib 0.12.1 (item 37, ``--rules _taps_pay``,
    3 processes, ``benchmarks/results/zen4/taps-pay-float32-cpu-epyc-zen4-jax0.12.1.md``) float32
    with 64 features lost: dilated 1.15, 28x28 1.13, 16x16 1.20, resnet 3x3 s1 0.99; 128 won or
    tied (resnet 3x3 s2 0.93, 28x28 0.98, 112x112 0.97; 14x14 1.09, and 256 on 14x14 at stride
    2 1.05). With jaxlib 0.10.2 there the rule held (0.82-0.97 from 24 features). So float32 on
    such hosts from ``MIN_NEWER_FLOAT32_TAPS_FEATURES_WITHOUT_AMX`` (``_avx512_without_amx``),
    but not in 1-D, where 64 features at stride 2 gained there (0.73 of the step).
    """
    if window < 14 * 14:
        return False
    if not _newer_kernels():
        return True
    if np.dtype(dtype) == np.float32:
        least = (MIN_NEWER_FLOAT32_TAPS_FEATURES_WITHOUT_AMX if rank > 1 and _avx512_without_amx()
                 else MIN_NEWER_FLOAT32_TAPS_FEATURES)
    else:
        least = MIN_NEWER_TAPS_FEATURES
    return features >= least and (
        taps < MIN_CHANNELS_LAST_TAPS or (dtype == jnp.bfloat16 and features >= 64))


def _channels_last_pays(positions: int, taps: int, features: int, strided: bool) -> bool:
    """Whether ``channels_last_matmul`` measured faster than ``shift_matmul`` (2-D).

    Asked where ``shift_matmul`` would serve; ``positions`` is the output positions per image and
    ``features`` the contracted ones. From whole steps with it forced on and off
    (``benchmarks/sweep_formulations.py``, 2 processes each). On an AMD EPYC
    (``benchmarks/results/formulation-sweep-channels-last-cpu.md``): on the small bfloat16 planes
    (below 28x28) with 32-128 features 0.87-0.94 of the step, with 256-512 a tie or noise
    (0.94-1.02 over three sweeps); with 5x5 windows 0.72-0.90 in bfloat16 and 0.96 in float32.
    With 3x3 windows on larger planes it lost (1.05-1.25) but for float32 64 features on 28x28
    (0.88; 1.05 with rhs dilation 2 there and 1.15 on 56x56, not enough for a rule); strided
    (every input position multiplied) 1.05-1.66.

    On an Intel Xeon with AMX (``benchmarks/results/formulation-sweep-cpu-xeon.md``, sixth
    session) small planes went the other way, 1.11-1.14 (32 features on 16x16, 128 on 14x14;
    0.95-0.96 with 64 on 16x16), while 5x5 windows still gained (0.73, 0.95), and small planes
    kept ``shift_matmul`` where the CPU had AMX. Three later sweeps on that processor name, by
    then slower for XLA, measured them as on the EPYC: 0.84-0.98 with jaxlib 0.10.2, 0.11.2 and
    0.12.0.1 (twelfth session); 64 features on 16x16 0.83-0.86 and 128 on 14x14 0.94-1.02 as
    whole rule sets with 0.10.2 (thirteenth); and with this rule alone forced, 4 processes
    (fourteenth, ``benchmarks/results/jax-versions-cpu-xeon/small-planes-jax0.10.2.md``), 0.88
    on 64 features on 16x16, 0.98 on the suite's large batch, 1.02 on 128 on 14x14. Since then
    one answer serves every CPU and jaxlib.

    Up to 512 features since the twenty-ninth session (item 29), on a faster Xeon with AMX
    (``benchmarks/results/formulation-sweep-cpu-xeon-amx/``, 4 processes): 512 features on 7x7
    0.81 (jaxlib 0.10.2) and 0.70 (0.12.1), 256 on 14x14 0.95 and 0.99, 128 on 14x14 0.95 and
    0.86. Where bfloat16 runs as bfloat16 on an x86 CPU at all, it has bfloat16 dot-product
    instructions (``_widens_bfloat16``), so the EPYC's ties no longer apply.
    """
    if strided:
        return False
    small_plane = positions < MIN_PER_IMAGE_POSITIONS and features <= MAX_CHANNELS_LAST_FEATURES
    return taps >= MIN_CHANNELS_LAST_TAPS or small_plane


def _grouped_taps_pay(per_group: int, window: tuple[int, ...], out_spatial: tuple[int, ...],
                      config: ConvConfig, nested: bool) -> bool:
    """Whether ``grouped_taps`` measured faster than the other formulations of a grouped case.

    ``per_group`` is the input features per group (I). Depthwise (I = 1): always, up to
    ``MAX_UNROLLED_TAPS`` taps (item 3 of benchmarks/README.md). Groups of several features
    (eighth session, whole steps of ``sum(sin(conv))`` against ``group_blocks``, interleaved):
    from 56 x 56 output positions per image with at most 72 terms per output, 0.63-1.01 of the
    step in float32 and 0.68-1.02 in bfloat16 (I = 2-8, 3x3 and 5x5 windows, rhs dilation 2, a
    channel multiplier of 2, 1-D); with cheaper losses (``sum(conv²)``, ``sum(relu(conv)·conv)``)
    0.65-0.76, since XLA fuses the loss's ``cos`` into the pass and that loop runs slower. Slower:
    on smaller planes (28 x 28 with I = 4 and 8: 1.04-1.07 and 1.56; 14 x 14: 1.17), strided
    onto 28 x 28 (1.25), 16 features per group (144 terms: 1.36), 3-D (1.26), and as the phases
    of a strided input gradient (1.7-2.1).
    """
    taps = int(np.prod(window))
    if per_group == 1:
        return taps <= MAX_UNROLLED_TAPS
    return (per_group * taps <= MAX_GROUPED_TAP_TERMS and not nested and len(window) <= 2
            and max(config.lhs_dilation) == 1
            and int(np.prod(out_spatial)) >= MIN_GROUPED_TAP_POSITIONS)


def filter_gradient_first(lhs_shape: tuple[int, ...], rhs_shape: tuple[int, ...],
                          config: ConvConfig, dtype: np.dtype) -> bool:
    """Whether the op's backward pass on CPU computes the filter gradient before the input
    gradient (item 23 of benchmarks/README.md): for depthwise convolutions (one input feature per
    group) whose forward is ``grouped_taps``, so that it and the filter gradient
    (``batch_grouped_reduce``, for windows that small) share one padded copy of the input
    (``SHARED_PADDING``). In the other order XLA kept that copy alive beside the input gradient's
    padded cotangent, and its one buffer of temporaries for the step grew past glibc's 32 MiB
    ``mmap`` threshold (stride 2 on (16, 96, 56, 56): 38.8 MiB, every page faulting on each call;
    19.7 MiB in this order, 0.53-0.59 of the step). Elsewhere the order measured 0.93-1.13 (dense
    3x3 stride 2 1.13, in float32), so XLA keeps its own. The price: a gradient with respect to
    the input alone also computes the filter gradient, which XLA would otherwise leave out.
    """
    return (FILTER_GRADIENT_FIRST and config.feature_group_count > 1
            and rhs_shape[config.dimension_numbers.rhs_spec[1]] == 1
            and cpu_formulation(lhs_shape, rhs_shape, config, dtype) is grouped_taps)


def _matmul_formulation(lhs_shape: tuple[int, ...], rhs_shape: tuple[int, ...],
                        config: ConvConfig, dtype: np.dtype) -> Formulation | None:
    """A matrix-product formulation where one measured faster, else None (dense cases).

    ``taps_matmul`` for few output positions (filter gradients), where ``_taps_pay``. Per batch
    element, from 28 x 28 output positions on (below, the loop costs more than the faster
    products save; in 2-D bfloat16 from 7 x 7 given enough work per image): in 2-D
    ``shift_matmul`` where ``_shift_pays``, but not with lhs dilation (the input gradient of a
    strided convolution), where ``polyphase`` into stride-1 phases measured faster; and
    ``channels_last_matmul`` instead where ``_channels_last_pays`` (small bfloat16 planes, 5x5
    windows: items 13 and 14 of benchmarks/README.md; small float32 planes where
    ``_avx2_float32``, 3x3 windows as measured). In 1-D (item 12
    there, 10 shapes): ``shift_matmul`` for lhs dilation 2 with unit strides (the input gradient
    of a stride-2 convolution), in float32 (with jaxlib 0.10's kernels: with 0.12.1 they lost on
    5 of 6 shapes, item 33, ``NEWER_FLOAT32_1D_SHIFT``) and, from 128 contracted features, in
    bfloat16;
    ``columns_matmul`` in bfloat16 from 128 output features. Elsewhere in 1-D the native kernel
    measured as fast or faster (dilation 4, few features, windows of 9-25 taps). With jaxlib
    0.12.1, small planes with many features (``_flat_products_pay``, item 30): ``tap_products``
    for float32 forwards and input gradients, ``position_products`` for filter gradients below
    ``taps_matmul``'s planes, in both dtypes.
    """
    lhs_spec, rhs_spec, _ = config.dimension_numbers
    in_spatial, window, out_spatial = spatial_shapes(config, lhs_shape, rhs_shape)
    if (not _PER_IMAGE_LOOPS.get() or len(window) > 2 or 0 in lhs_shape or 0 in rhs_shape
            or 0 in out_spatial):
        return None
    taps, positions = int(np.prod(window)), int(np.prod(out_spatial))
    features, outs = lhs_shape[lhs_spec[1]], rhs_shape[rhs_spec[0]]
    batch = lhs_shape[lhs_spec[0]]
    if positions <= MAX_TAPS_MATMUL_OUTPUTS < taps and (
            (TAPS_CHUNKS or positions * batch * taps * dtype.itemsize <= MAX_MATMUL_BLOCK_BYTES)
            and positions * taps * dtype.itemsize <= MAX_MATMUL_BLOCK_BYTES
            and _taps_pay(taps, positions, min(batch, outs), dtype, len(window))):
        return taps_matmul
    # Fewer outputs than taps (a filter gradient's), also on 7x7 planes (49 taps).
    if (positions <= MAX_TAPS_MATMUL_OUTPUTS and positions < taps
            and max(config.rhs_dilation) == 1 and _flat_products_fit(in_spatial, window, config)
            and _flat_products_pay(taps, min(batch, outs))):
        return position_products
    if positions <= MAX_TAPS_MATMUL_OUTPUTS < taps:
        return None
    # A 2-D plane with enough positions and work per image for the per-image products.
    enough_work = (len(window) == 2 and positions >= MIN_BFLOAT16_SHIFT_POSITIONS
                   and positions * features * outs >= MIN_BFLOAT16_SHIFT_WORK)
    small_plane_pays = enough_work and dtype == jnp.bfloat16
    dilated, strided = max(config.lhs_dilation) > 1, max(config.window_strides) > 1
    if (enough_work and _small_plane_float32_products(dtype) and not dilated and not strided
            and taps < MIN_CHANNELS_LAST_TAPS and features <= MAX_AVX2_CHANNELS_LAST_FEATURES
            and positions < MIN_PER_IMAGE_POSITIONS):
        return channels_last_matmul  # small float32 planes (``_small_plane_float32_products``)
    if taps > MAX_UNROLLED_TAPS:
        return None
    if (dtype == np.float32 and len(window) == 2 and _flat_products_fit(in_spatial, out_spatial,
                                                                          config)
            and _flat_products_pay(positions, features)):
        return tap_products
    if positions < MIN_PER_IMAGE_POSITIONS and not small_plane_pays:
        return None
    # The largest buffer of one step: Y (taps x outputs x input phase) or the columns.
    shift_block = taps * outs * np.prod(
        [-(-n // s) for n, s in zip(in_spatial, config.window_strides, strict=True)]
    ) * _compute_dtype_of(dtype, config).itemsize
    columns_block = taps * features * positions * dtype.itemsize
    if (len(window) == 2 and not dilated and shift_block <= MAX_MATMUL_BLOCK_BYTES
            and _shift_pays(dtype, features, outs, strided, positions)):
        if _channels_last_pays(positions, taps, features, strided):
            return channels_last_matmul
        return shift_matmul
    if len(window) == 1 and max(config.lhs_dilation) == 2 and not strided and (
            (NEWER_FLOAT32_1D_SHIFT or not _newer_kernels()) if dtype == np.float32
            else features >= MIN_1D_MATMUL_FEATURES) and shift_block <= MAX_MATMUL_BLOCK_BYTES:
        return shift_matmul
    if (len(window) == 1 and not dilated and dtype == jnp.bfloat16
            and outs >= MIN_1D_MATMUL_FEATURES and columns_block <= MAX_MATMUL_BLOCK_BYTES):
        return columns_matmul
    return None


def cpu_formulation(lhs_shape: tuple[int, ...], rhs_shape: tuple[int, ...], config: ConvConfig,
                    dtype: np.dtype, nested: bool = False) -> Formulation:
    """The fastest exact formulation of this case on XLA's CPU backend (measured, see README).

    ``nested``: the case is a sub-convolution of another formulation (a polyphase phase, a folded
    3-D convolution); there the matrix-product formulations serve bfloat16 only.
    """
    if not jnp.issubdtype(dtype, jnp.inexact):
        return native
    dtype = np.dtype(dtype)
    lhs_spec, rhs_spec, _ = config.dimension_numbers
    _, window, out_spatial = spatial_shapes(config, lhs_shape, rhs_shape)
    groups = config.feature_group_count
    batch_groups = config.batch_group_count
    dense = max(groups, batch_groups) == 1
    if dense and np.prod(window) == 1:
        return window_one_matmul
    if (not nested and _winograd_fits(window, out_spatial, config)  # dense, as it checks
            and 0 not in lhs_shape and _winograd_pays(
                dtype, lhs_shape[lhs_spec[0]], lhs_shape[lhs_spec[1]], rhs_shape[rhs_spec[0]],
                out_spatial)):
        return winograd
    if (not nested and _winograd_window_fits(window, out_spatial, config)  # dense, as it checks
            and 0 not in lhs_shape and _winograd_window_pays(
                dtype, lhs_shape[lhs_spec[0]], lhs_shape[lhs_spec[1]], rhs_shape[rhs_spec[0]],
                window)):
        return winograd_window
    if dense and (dtype in (NESTED_MATMUL_DTYPES if nested else MATMUL_DTYPES)
                  or (nested and _avx2_float32(dtype))):
        matmul = _matmul_formulation(lhs_shape, rhs_shape, config, dtype)
        if matmul is not None:
            return matmul
    # Depthwise before polyphase: with lhs dilation (a strided depthwise input gradient) one pass
    # over the dilated input measured faster than the phases and their interleave.
    if (groups > 1 and batch_groups == 1 and 0 not in lhs_shape
            and _grouped_taps_pay(rhs_shape[rhs_spec[1]], window, out_spatial, config, nested)):
        return grouped_taps
    if (max(config.lhs_dilation) > 1 and max(config.window_strides) == 1 and batch_groups == 1
            and np.prod(config.lhs_dilation) <= MAX_PHASES and 0 not in lhs_shape):
        return polyphase
    # Before the 3-D fold: the filter gradient of a depthwise convolution of any rank is one
    # reduction, and so is that of any grouped one with more groups than ``per_group`` takes,
    # where XLA:CPU's batch-grouped kernel took seconds (2-D, 64 groups of 2 features: 26 s against
    # 22 ms; 48 groups of 4: 7.7 s against 9 ms). With a few groups of many features each the
    # dense kernels are faster (``per_group``: 8 groups of 8, 12.8 ms against 22.7).
    one_per_group = 1 < batch_groups == lhs_shape[lhs_spec[0]]
    if ((one_per_group or batch_groups > MAX_PER_GROUP_CONVS)
            and np.prod(out_spatial) <= MAX_REDUCED_OUTPUTS
            and 0 not in (*lhs_shape, *out_spatial)):
        return batch_grouped_reduce
    # Not with more batch groups than ``per_group`` takes: the folded 2-D convolution keeps them,
    # and XLA:CPU's 2-D batch-grouped kernel took 1-40 s where its 3-D one took 22-280 ms.
    if len(window) >= 3 and 0 not in lhs_shape and 0 not in out_spatial and (
            window[0] <= MAX_UNROLLED_TAPS and batch_groups <= MAX_PER_GROUP_CONVS):
        return fold_first_axis
    if groups > 1 and rhs_shape[rhs_spec[1]] < DENSE_KERNEL_FEATURES:
        return group_blocks
    if one_per_group:
        return batch_grouped_blocks
    if 1 < max(groups, batch_groups) <= MAX_PER_GROUP_CONVS:
        return per_group
    if dense and np.prod(out_spatial) == 1:
        return single_output_matmul
    return native


def _cpu_conv(lhs: jax.Array, rhs: jax.Array, config: ConvConfig, cpu: Formulation
              ) -> jax.Array:
    """``conv`` on CPU in ``cpu``, the formulation that measured fastest for this case.

    Where that formulation loops over images (or, ``tap_products`` and ``position_products``,
    merges them with the positions of one axis), a formulation that keeps the batch apart and
    loop-free is lowered instead for programs that span several devices (``_PER_IMAGE_LOOPS``).
    """
    may_loop = cpu in (shift_matmul, taps_matmul, columns_matmul, channels_last_matmul,
                       tap_products, position_products) or (
        cpu in (polyphase, fold_first_axis)
        and (np.dtype(lhs.dtype) in NESTED_MATMUL_DTYPES or _avx2_float32(lhs.dtype)
             or (cpu is fold_first_axis
                 and _folds_to_plain(*spatial_shapes(config, lhs.shape, rhs.shape)[1:]))))
    if not may_loop:
        return cpu(lhs, rhs, config)

    def spread(lhs: jax.Array, rhs: jax.Array) -> jax.Array:
        with _setting(_PER_IMAGE_LOOPS, False):
            if _widens_bfloat16(lhs.dtype, config):  # bfloat16 for a loop that widens per step
                wide = _float32_config(config)
                return _in_float32(lhs, rhs, config, cpu_formulation(
                    lhs.shape, rhs.shape, wide, np.dtype(np.float32)))
            return cpu_formulation(lhs.shape, rhs.shape, config, lhs.dtype)(lhs, rhs, config)

    return lax.switch(_one_device_p.bind(), [spread, lambda a, b: cpu(a, b, config)], lhs, rhs)


def _widens_bfloat16(dtype: np.dtype, config: ConvConfig) -> bool:
    """Whether this case is computed in float32 on this host's CPU (``_host``, item 15 of
    benchmarks/README.md): bfloat16 operands, a result of at most float32, and a CPU without
    bfloat16 dot-product instructions, where XLA's bfloat16 matrix kernel ran slower than its
    float32 one and the suite's bfloat16 steps in float32 took 0.70-1.01 of their time (dense 1-D
    convolutions keep XLA's bfloat16 kernel, ``conv``)."""
    wanted = config.preferred_element_type
    return (np.dtype(dtype) == jnp.bfloat16
            and (wanted is None or np.dtype(wanted) in (np.dtype(jnp.bfloat16), np.float32))
            and _host.bfloat16_in_float32())


def _widens_per_step(cpu: Formulation, config: ConvConfig) -> bool:
    """Whether ``cpu``, computing a bfloat16 case in float32 (``_widens_bfloat16``), is handed the
    bfloat16 operands and widens each step's block in its loop over images (``_product_types``)
    instead of whole float32 copies made before the loop, which cost time and memory.

    Item 27 of benchmarks/README.md, whole steps: ``taps_matmul`` (filter gradients) 0.51-0.56
    on resnet 1x1 s1 and 0.81-1.01 elsewhere with jaxlib 0.10.2 and 0.12.1; ``shift_matmul``
    0.83 on resnet 3x3 s1 (jaxlib 0.10.2) and 0.91 on its strided forward with 0.12.1, but 1.13
    on that strided forward with 0.10.2 (slower also in processes of its own). Item 28:
    ``channels_last_matmul`` a tie in time (large batch 1.00-1.07, 64 features on 16x16
    0.99-1.01) with a quarter less memory for the step's temporaries (17.6 → 13.3 MB).
    """
    if cpu is taps_matmul:
        return TAPS_WIDEN_PER_STEP
    if cpu is channels_last_matmul:
        # Not for a float32 result: its loop writes each block's result over the block's input
        # (``_output_rows``), which needs both in one type, else it stacks them in a new buffer.
        wanted = config.preferred_element_type
        return CHANNELS_LAST_WIDEN_PER_STEP and (wanted is None
                                                 or np.dtype(wanted) == jnp.bfloat16)
    if cpu is shift_matmul:
        return SHIFT_WIDEN_PER_STEP and (max(config.window_strides, default=1) == 1
                                         or _newer_kernels())
    return False


def _float32_config(config: ConvConfig) -> ConvConfig:
    """``config`` for the float32 computation of a bfloat16 case (``_widens_bfloat16``)."""
    return ConvConfig(**{**config.as_lax_kwargs(), "preferred_element_type": None})


def _in_float32(lhs: jax.Array, rhs: jax.Array, config: ConvConfig, cpu: Formulation
                ) -> jax.Array:
    """``cpu`` on bfloat16 operands widened whole, its float32 result narrowed to ``config``'s."""
    result = config.preferred_element_type or lhs.dtype
    return cpu(lhs.astype(np.float32), rhs.astype(np.float32), _float32_config(config)
               ).astype(result)


def conv(lhs: jax.Array, rhs: jax.Array, config: ConvConfig) -> jax.Array:
    """``lax.conv_general_dilated(lhs, rhs, **config)`` in the best formulation per backend.

    The choice is made when lowering (``lax.platform_dependent``): CPU gets the formulation that
    measured fastest for this case, other backends the native convolution. Where the host's CPU
    has no bfloat16 dot products (``_widens_bfloat16``), a bfloat16 case is computed as the
    float32 one (dense 1-D ones: native), on operands converted exactly (whole, or one step's
    block at a time inside a loop over images: ``_widens_per_step``), its result converted back:
    the sums it accumulates in float32 anyway, of the same products.
    """
    out_spatial = spatial_shapes(config, lhs.shape, rhs.shape)[2]
    if not out_spatial or 0 in (*lhs.shape, *rhs.shape, *out_spatial):
        # No spatial axes (a matrix product), or nothing to sum or nothing to write (an empty
        # output, or zeros): lax's own, which the formulations need not handle.
        return _lax_conv_partitioned(lhs, rhs, config)
    if _widens_bfloat16(lhs.dtype, config):
        if len(config.window_strides) == 1 and max(config.feature_group_count,
                                                     config.batch_group_count) == 1:
            # Dense 1-D: XLA's own bfloat16 kernel (the 1-D audio's step in float32 measured
            # 1.02-1.22 of it, where the bfloat16 products took 1.31).
            return native_per_backend(lhs, rhs, config)
        cpu = cpu_formulation(lhs.shape, rhs.shape, _float32_config(config),
                              np.dtype(np.float32))

        def on_cpu(lhs: jax.Array, rhs: jax.Array) -> jax.Array:
            if _widens_per_step(cpu, config):
                return _cpu_conv(lhs, rhs, config, cpu)
            return _in_float32(lhs, rhs, config, lambda a, b, wide: _cpu_conv(a, b, wide, cpu))
    else:
        cpu = cpu_formulation(lhs.shape, rhs.shape, config, lhs.dtype)
        if cpu is native:
            if _splits_batch_groups(config):
                return _lax_conv_partitioned(lhs, rhs, config)
            return native_per_backend(lhs, rhs, config)

        def on_cpu(lhs: jax.Array, rhs: jax.Array) -> jax.Array:
            return _cpu_conv(lhs, rhs, config, cpu)

    return lax.platform_dependent(lhs, rhs, cpu=on_cpu,
                                  default=lambda a, b: _lax_conv_partitioned(a, b, config))


def _splits_batch_groups(config: ConvConfig) -> bool:
    """Whether ``config`` has batch groups and jaxlib's SPMD partitioner gets them wrong
    (``impl._partitioner``; before ``FIXED_PARTITIONER_JAXLIB``)."""
    from impl import _partitioner  # it imports this module
    return (config.batch_group_count > 1
            and _JAXLIB_VERSION < _partitioner.FIXED_PARTITIONER_JAXLIB)


def _lax_conv_partitioned(lhs: jax.Array, rhs: jax.Array, config: ConvConfig) -> jax.Array:
    """``lax_conv`` where the op hands a convolution to lax (off CPU; on CPU with no spatial axes
    or where ``cpu_formulation`` keeps the native kernel), except for batch groups where
    ``_splits_batch_groups``: then ``impl.primitive``'s primitive, whose lowering computes them
    one group at a time in a program spanning several devices and natively on one device
    (the filter gradient of a grouped layer whose input batch is sharded; lax's was 2-4x the
    truth with those jaxlibs, ``tests/test_sharded_groups.py``)."""
    if not _splits_batch_groups(config):
        return lax_conv(lhs, rhs, config)
    from impl import primitive  # it imports this module
    return primitive._bind(lhs, rhs, config)
