"""The pure padding helpers of impl/_padding.py against independent oracles.

Oracles: ``jax.lax.padtype_to_pads``; the output shape lax itself gives (``jax.eval_shape``); and,
for the two cotangent paddings, a brute-force NumPy gradient taken straight from the index form
O[m] = sum_t Xpad[s*m + d*t] F[t] of a 1-D convolution. Arrays hold small integers, so every value
comparison is exact.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from impl import (
    conv_output_shape,
    dilate_shape,
    lhs_cotangent_padding,
    padtype_to_pads,
    rhs_cotangent_padding,
)

# Per axis: input size n, window k, stride s, lhs dilation a, rhs dilation d, padding (lo, hi).
SIZES, WINDOWS, STRIDES, DILATIONS, PADS = range(1, 6), range(1, 4), range(1, 4), (1, 2), range(-2, 3)


def _np_dilate(x: np.ndarray, dilation: int) -> np.ndarray:
    if x.size == 0:
        return x
    out = np.zeros(dilation * (x.size - 1) + 1, dtype=x.dtype)
    out[::dilation] = x
    return out


def _np_pad(x: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Zero-pad (positive) or crop (negative) each end."""
    padded = np.pad(x, (max(lo, 0), max(hi, 0)))
    return padded[max(-lo, 0):padded.size - max(-hi, 0)]


def _np_correlate(x: np.ndarray, f: np.ndarray, stride: int, lo: int, hi: int, lhs_dilation: int,
                  rhs_dilation: int) -> np.ndarray:
    """1-D strided, padded, dilated valid correlation, written out in NumPy."""
    padded = _np_pad(_np_dilate(x, lhs_dilation), lo, hi)
    window = _np_dilate(f, rhs_dilation)
    count = max((padded.size - window.size) // stride + 1, 0)
    return np.array([padded[j * stride:j * stride + window.size] @ window for j in range(count)])


def _brute_force_grads(x, f, cotangent, s, lo, a, d):
    """dL/dX and dL/dF of O[m] = sum_t Xpad[s*m + d*t] F[t], Xpad[a*i + lo] = X[i], zero elsewhere."""
    dx, df = np.zeros_like(x), np.zeros_like(f)
    for m, t in itertools.product(range(cotangent.size), range(f.size)):
        position = s * m + d * t - lo  # index into the dilated, unpadded input
        if position % a == 0 and 0 <= position // a < x.size:
            dx[position // a] += cotangent[m] * f[t]
            df[t] += cotangent[m] * x[position // a]
    return dx, df


def _fitting_configurations():
    """Every (n, k, s, a, d, lo, hi) of the grid whose dilated window fits the padded input."""
    for n, k, s, a, d, lo, hi in itertools.product(SIZES, WINDOWS, STRIDES, DILATIONS, DILATIONS,
                                                   PADS, PADS):
        if (k - 1) * d + 1 <= (n - 1) * a + 1 + lo + hi:
            yield n, k, s, a, d, lo, hi


def test_numpy_correlation_oracle_matches_lax():
    # The brute-force tool itself, on a sample of configurations, against lax's convolution.
    rng = np.random.default_rng(0)
    configurations = list(_fitting_configurations())
    for index in rng.choice(len(configurations), size=12, replace=False):
        n, k, s, a, d, lo, hi = configurations[index]
        x, f = rng.integers(-4, 5, n).astype(float), rng.integers(-4, 5, k).astype(float)
        native = lax.conv_general_dilated(x[None, None], f[None, None], (s,), ((lo, hi),), (a,),
                                          (d,))[0, 0]
        np.testing.assert_array_equal(_np_correlate(x, f, s, lo, hi, a, d), native)


def test_dilate_shape_against_lax_interior_padding():
    for n, dilation in itertools.product(range(6), range(1, 4)):
        padded = jax.eval_shape(
            lambda x, dilation=dilation: lax.pad(x, np.float32(0), [(0, 0, dilation - 1)]),
            jax.ShapeDtypeStruct((n,), jnp.float32))
        assert dilate_shape((n,), (dilation,)) == padded.shape, (n, dilation)


def test_padtype_to_pads_against_lax():
    for n, k, s, kind in itertools.product(range(10), range(1, 6), range(1, 5),
                                           ("VALID", "SAME", "SAME_LOWER")):
        expected = tuple(tuple(pair) for pair in lax.padtype_to_pads((n,), (k,), (s,), kind))
        assert padtype_to_pads((n,), (k,), (s,), kind) == expected, (n, k, s, kind)


def test_padtype_to_pads_on_several_axes_is_per_axis():
    expected = tuple(tuple(pair) for pair in lax.padtype_to_pads((5, 8, 3), (3, 2, 4), (2, 3, 1),
                                                                 "SAME_LOWER"))
    assert padtype_to_pads((5, 8, 3), (3, 2, 4), (2, 3, 1), "same_lower") == expected


def test_conv_output_shape_against_lax():
    checked = 0
    for n, k, s, a, d, lo, hi in itertools.product(range(6), WINDOWS, STRIDES, DILATIONS, DILATIONS,
                                                   PADS, PADS):
        try:
            native = jax.eval_shape(
                lambda x, f, s=s, lo=lo, hi=hi, a=a, d=d: lax.conv_general_dilated(
                    x, f, (s,), ((lo, hi),), (a,), (d,)),
                jax.ShapeDtypeStruct((1, 1, n), jnp.float32),
                jax.ShapeDtypeStruct((1, 1, k), jnp.float32))
        except ValueError:  # lax refuses a crop larger than the (dilated) input
            continue
        assert conv_output_shape((n,), (k,), (s,), ((lo, hi),), (a,), (d,)) == native.shape[2:], (
            n, k, s, a, d, lo, hi)
        checked += 1
    assert checked > 1000  # the guard above must not have skipped the grid


@pytest.mark.parametrize("which", ["lhs", "rhs"])
def test_cotangent_padding_gives_the_brute_force_gradient(which):
    # With the helper's padding, the rule's 1-D convolution (written in NumPy) must reproduce the
    # brute-force gradient exactly, which also pins its length to n (lhs) or k (rhs).
    rng = np.random.default_rng(1)
    for n, k, s, a, d, lo, hi in _fitting_configurations():
        x, f = rng.integers(-4, 5, n).astype(float), rng.integers(-4, 5, k).astype(float)
        (m,) = conv_output_shape((n,), (k,), (s,), ((lo, hi),), (a,), (d,))
        cotangent = rng.integers(-4, 5, m).astype(float)
        dx, df = _brute_force_grads(x, f, cotangent, s, lo, a, d)
        if which == "lhs":
            ((low, high),) = lhs_cotangent_padding((n,), (k,), (s,), (m,), ((lo, hi),), (a,), (d,))
            rule = _np_correlate(cotangent, f[::-1], a, low, high, s, d)
            np.testing.assert_array_equal(rule, dx, err_msg=str((n, k, s, a, d, lo, hi)))
        else:
            ((low, high),) = rhs_cotangent_padding((n,), (k,), (s,), (m,), ((lo, hi),), (a,), (d,))
            rule = _np_correlate(x, cotangent, d, low, high, a, s)
            np.testing.assert_array_equal(rule, df, err_msg=str((n, k, s, a, d, lo, hi)))


@pytest.mark.parametrize("helper", [lhs_cotangent_padding, rhs_cotangent_padding])
def test_cotangent_padding_on_several_axes_is_per_axis(helper):
    axes = [(5, 3, 2, 2, 1, (1, -1)), (4, 2, 1, 1, 2, (0, 2)), (6, 1, 3, 2, 2, (-2, 1))]
    n, k, s, a, d, pads = zip(*axes, strict=True)
    m = conv_output_shape(n, k, s, pads, a, d)
    per_axis = tuple(helper((n_,), (k_,), (s_,), (m_,), (p_,), (a_,), (d_,))[0]
                     for n_, k_, s_, m_, p_, a_, d_ in zip(n, k, s, m, pads, a, d, strict=True))
    assert helper(n, k, s, m, pads, a, d) == per_axis
