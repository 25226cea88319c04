"""Shared helpers for tests: random arrays and comparisons under the per-dtype tolerance table."""

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from convgrad.tolerances import tolerance


def random_array(rng: np.random.Generator, shape: Sequence[int], dtype: Any = "float64") -> jax.Array:
    """Standard-normal entries of ``shape`` as a JAX array of ``dtype``."""
    return jax.numpy.asarray(rng.standard_normal(shape)).astype(dtype)


def assert_close(actual: Any, expected: Any, dtype: Any = "float64", what: str = "") -> None:
    """``actual`` equals ``expected`` within ``tolerance(dtype)`` relative to ``expected``'s scale."""
    # complex128 holds every dtype we test (bfloat16 and float16 widen exactly), complex included.
    actual = np.asarray(actual).astype(np.complex128)
    expected = np.asarray(expected).astype(np.complex128)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    if expected.size == 0:
        return
    scale = max(float(np.max(np.abs(expected))), 1.0)
    error = float(np.max(np.abs(actual - expected)))
    assert error <= tolerance(dtype) * scale, f"{what}: max abs error {error:.3e} (scale {scale:.3e})"
