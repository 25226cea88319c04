"""Cross-check runner: the op's forward and rotated-filter backward against native lax autodiff.

Runs a grid of configurations on one JAX device for every dtype, and reports the largest absolute
and relative errors per dtype. Used by ``convgrad crosscheck``.
"""

import dataclasses
import importlib.metadata
import itertools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import impl
from convgrad.tolerances import tolerance

DTYPES = ("float64", "float32", "bfloat16", "float16")


@dataclasses.dataclass(frozen=True)
class Case:
    """One configuration: shapes in the layout of ``kwargs['dimension_numbers']``."""

    lhs_shape: tuple[int, ...]
    rhs_shape: tuple[int, ...]
    kwargs: dict[str, Any]

    def describe(self) -> str:
        """A short, human-readable name."""
        options = ", ".join(f"{key}={value}" for key, value in self.kwargs.items())
        return f"lhs{self.lhs_shape} rhs{self.rhs_shape} {options}"


def default_grid() -> Iterator[Case]:
    """Spatial ranks 1-3, every padding kind incl. negative, strides, dilations, groups, layouts."""
    paddings_2d = ("VALID", "SAME", "SAME_LOWER", ((1, 2), (0, 1)), ((-1, 2), (2, -1)))
    for padding, strides, rhs_dil in itertools.product(paddings_2d, ((1, 1), (2, 3)),
                                                       ((1, 1), (2, 1))):
        yield Case((2, 4, 9, 8), (6, 4, 3, 2), dict(window_strides=strides, padding=padding,
                                                    rhs_dilation=rhs_dil))
    yield Case((2, 4, 7, 6), (6, 4, 3, 2), dict(window_strides=(2, 1), padding=((1, 1), (2, 0)),
                                                lhs_dilation=(2, 3)))
    yield Case((2, 6, 8, 7), (9, 2, 3, 3), dict(window_strides=(2, 2), padding="SAME",
                                                feature_group_count=3))
    yield Case((4, 3, 8, 7), (6, 3, 2, 3), dict(window_strides=(1, 2), padding="VALID",
                                                batch_group_count=2))
    yield Case((2, 8, 7, 4), (3, 2, 2, 6), dict(window_strides=(1, 2), padding="SAME",
                                                dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                                feature_group_count=2))
    yield Case((2, 7, 4, 8), (2, 3, 6, 4), dict(window_strides=(2, 1), padding=((0, 1), (1, 0)),
                                                dimension_numbers=("NWCH", "WHOI", "NCHW")))
    yield Case((3, 2, 11), (4, 2, 3), dict(window_strides=(2,), padding=((2, -1),),
                                           rhs_dilation=(3,)))
    yield Case((2, 2, 5, 6, 4), (3, 2, 2, 3, 2), dict(window_strides=(1, 2, 1), padding="SAME",
                                                      rhs_dilation=(1, 1, 2)))
    yield Case((0, 3, 6, 5), (4, 3, 2, 2), dict(window_strides=(1, 1), padding="VALID"))


@dataclasses.dataclass
class DtypeResult:
    """Largest errors of one dtype over the grid (relative to the oracle's largest magnitude)."""

    dtype: str
    configurations: int = 0
    max_abs_error: float = 0.0
    max_rel_error: float = 0.0
    failures: list[str] = dataclasses.field(default_factory=list)


def _outputs(conv: Callable[..., jax.Array], lhs: jax.Array, rhs: jax.Array,
             cotangent_seed: int, kwargs: dict[str, Any]) -> list[np.ndarray]:
    def run(lhs: jax.Array, rhs: jax.Array) -> tuple[jax.Array, ...]:
        out, vjp = jax.vjp(lambda a, b: conv(a, b, **kwargs), lhs, rhs)
        cotangent = jax.random.normal(jax.random.key(cotangent_seed), out.shape).astype(out.dtype)
        return (out, *vjp(cotangent))
    return [np.asarray(x, dtype=np.float64) for x in jax.jit(run)(lhs, rhs)]


def _errors(ours: Sequence[np.ndarray], oracle: Sequence[np.ndarray]) -> tuple[float, float]:
    abs_error = max((float(np.max(np.abs(a - b))) for a, b in zip(ours, oracle, strict=True)
                     if a.size), default=0.0)
    scale = max((float(np.max(np.abs(b))) for b in oracle if b.size), default=0.0)
    return abs_error, abs_error / scale if scale else abs_error


def check_case(case: Case, dtype: str, device: jax.Device, seed: int = 0) -> tuple[float, float]:
    """(max abs, max rel) error of the op's output and both gradients against native autodiff."""
    keys = jax.random.split(jax.random.key(seed), 2)
    with jax.default_device(device):
        lhs = jax.random.normal(keys[0], case.lhs_shape).astype(dtype)
        rhs = jax.random.normal(keys[1], case.rhs_shape).astype(dtype)
        kwargs = dict(case.kwargs, precision=lax.Precision.HIGHEST)
        ours = _outputs(impl.conv_general_dilated, lhs, rhs, seed + 1, kwargs)
        oracle = _outputs(lax.conv_general_dilated, lhs, rhs, seed + 1, kwargs)
    return _errors(ours, oracle)


def run_grid(device: jax.Device, dtypes: Sequence[str] = DTYPES,
             cases: Sequence[Case] | None = None) -> list[DtypeResult]:
    """Check every case in every dtype on ``device``; float64 only where x64 is enabled."""
    cases = list(default_grid()) if cases is None else list(cases)
    results = []
    for dtype in dtypes:
        result = DtypeResult(dtype)
        for case in cases:
            abs_error, rel_error = check_case(case, dtype, device)
            result.configurations += 1
            result.max_abs_error = max(result.max_abs_error, abs_error)
            result.max_rel_error = max(result.max_rel_error, rel_error)
            if rel_error > tolerance(dtype):
                result.failures.append(f"{case.describe()}: rel error {rel_error:.3g}")
        results.append(result)
    return results


def environment(device: jax.Device) -> dict[str, str]:
    """Device and version facts for a report."""
    return {
        "platform": device.platform,
        "device": device.device_kind,
        "jax": jax.__version__,
        "jaxlib": importlib.metadata.version("jaxlib"),
        "numpy": np.__version__,
        "x64": str(jnp.zeros(0, dtype="float64").dtype == np.float64),
    }
