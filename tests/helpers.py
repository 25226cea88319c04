"""Shared helpers for tests: random arrays and comparisons under the per-dtype tolerance table."""

import importlib.util
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
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


ROOT = Path(__file__).resolve().parents[1]


def run_on_eight_cpu_devices(script: str) -> str:
    """stdout of ``script`` run in a fresh Python with 8 host CPU devices (fixed at JAX's start)."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
               JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def benchmark_script(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` imported as a module (the folder is not a package)."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
