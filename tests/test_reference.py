"""The tutorial's op (impl.conv2d and its rule) against the corrected NumPy loops."""

import jax
import numpy as np
import pytest

import impl
from impl import reference
from tests.helpers import assert_close


@pytest.mark.parametrize("seed", range(8))
def test_conv2d_matches_loops_on_random_sizes(seed):
    rng = np.random.default_rng(seed)
    height, width = rng.integers(1, 9, size=2)
    kh, kw = rng.integers(1, height + 1), rng.integers(1, width + 1)
    x, f = rng.standard_normal((height, width)), rng.standard_normal((kh, kw))
    upstream = rng.standard_normal((height - kh + 1, width - kw + 1))

    out, vjp = jax.vjp(impl.conv2d, x, f)
    dx, df = vjp(upstream)
    ref_dx, ref_df = reference.conv_backward(upstream, x, f)

    assert_close(out, reference.conv_forward(x, f), what="O")
    assert_close(dx, ref_dx, what="dL/dX")
    assert_close(df, ref_df, what="dL/dF")


def test_tutorial_case_by_hand():
    # Expected values worked out by hand from the tutorial's formulas with X = 1..9 (row-major),
    # F = [[1, 2], [3, 4]] and G = all ones: dF[i, j] = sum of the 2x2 block of X at (i, j);
    # dX = full convolution of the ones with rot180(F), i.e. each X entry collects the F entries
    # of every window covering it.
    x = np.arange(1.0, 10.0).reshape(3, 3)
    f = np.array([[1.0, 2.0], [3.0, 4.0]])
    dx, df = jax.grad(lambda x, f: impl.conv2d(x, f).sum(), argnums=(0, 1))(x, f)
    np.testing.assert_array_equal(df, [[12.0, 16.0], [24.0, 28.0]])
    np.testing.assert_array_equal(dx, [[1.0, 3.0, 2.0], [4.0, 10.0, 6.0], [3.0, 7.0, 4.0]])
