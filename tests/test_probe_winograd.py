"""benchmarks/probe_winograd.py: its Winograd forward is the convolution it is timed against."""

import jax
import numpy as np
import pytest
from jax import lax

from tests.helpers import benchmark_script


@pytest.mark.parametrize("lhs_shape, rhs_shape, block", [((1, 1, 2, 2), (1, 1, 3, 3), None),
                                                         ((2, 3, 4, 6), (5, 3, 3, 3), None),
                                                         ((4, 3, 4, 6), (5, 3, 3, 3), 2),
                                                         ((3, 4, 8, 2), (2, 4, 3, 3), 1)])
def test_winograd_forward_equals_native_in_float64(lhs_shape, rhs_shape, block):
    probe = benchmark_script("probe_winograd")
    keys = jax.random.split(jax.random.key(3), 2)
    lhs = jax.random.normal(keys[0], lhs_shape, np.float64)
    rhs = jax.random.normal(keys[1], rhs_shape, np.float64)
    want = lax.conv_general_dilated(lhs, rhs, (1, 1), ((1, 1), (1, 1)),
                                    precision=lax.Precision.HIGHEST)
    got = probe.winograd_forward(lhs, rhs, block)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("lhs_shape, rhs_shape, message", [
    ((1, 1, 3, 4), (1, 1, 3, 3), "even planes"),
    ((1, 1, 4, 4), (1, 1, 2, 2), "3, 3"),
    ((1, 2, 4, 4), (1, 1, 3, 3), "3, 3"),
    ((3, 1, 4, 4), (1, 1, 3, 3), "divide the batch")])
def test_winograd_forward_refuses_other_cases(lhs_shape, rhs_shape, message):
    probe = benchmark_script("probe_winograd")
    with pytest.raises(ValueError, match=message):
        probe.winograd_forward(np.zeros(lhs_shape), np.zeros(rhs_shape), 2)
