"""Does XLA:CPU run a convolution without padding slower than one with padding? (item 35)

    PYTHONPATH=. python benchmarks/probe_unpadded.py [--repeats N] [--only NAMES] [--out FILE]

With jaxlib 0.10.2, a dense 2-D convolution whose padding is zero on every side (VALID) took
about twice as long as the same convolution padded at the high end of one axis by one stride,
which computes one more output column, sliced off after: the outputs asked for read the same
inputs and taps, so the two agree exactly. The op's ``native`` formulation therefore pads where
``impl._formulations._unpadded_slow`` says so. This script times, for each case below, the
forward alone as lax computes it (VALID) and padded-then-sliced, interleaved in one process,
checks that the two agree in float64 (up to rounding: the two may run different kernels), and
writes the ratios: the evidence behind that rule,
to re-run under another jaxlib or on another machine (jaxlib 0.12.1 showed no such slow path).
"""

import argparse
import dataclasses
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
from jax import lax

from convgrad import bench
from convgrad.io import write_atomic


@dataclasses.dataclass(frozen=True)
class Case:
    """One unpadded convolution in lax's default layouts (NCHW, OIHW)."""

    name: str
    lhs_shape: tuple[int, ...]
    rhs_shape: tuple[int, ...]
    dtype: str = "float32"
    stride: int = 1
    lhs_dilation: int = 1
    rhs_dilation: int = 1
    groups: int = 1

    def kwargs(self) -> dict[str, object]:
        """Keyword arguments of ``lax.conv_general_dilated`` beside the padding."""
        n = len(self.lhs_shape) - 2
        return dict(window_strides=(self.stride,) * n, lhs_dilation=(self.lhs_dilation,) * n,
                    rhs_dilation=(self.rhs_dilation,) * n, feature_group_count=self.groups)


CASES = [
    Case("3x3, 64 features, 28x28", (32, 64, 28, 28), (64, 64, 3, 3)),
    Case("3x3, 64 features, 28x28, float64", (32, 64, 28, 28), (64, 64, 3, 3), "float64"),
    Case("3x3, 64 features, 28x28, float16", (32, 64, 28, 28), (64, 64, 3, 3), "float16"),
    Case("3x3, 64 features, 56x56, bfloat16", (16, 64, 56, 56), (64, 64, 3, 3), "bfloat16"),
    Case("3x3, 64 features, 56x56", (16, 64, 56, 56), (64, 64, 3, 3)),
    Case("3x3, 128 features, 14x14", (16, 128, 14, 14), (128, 128, 3, 3)),
    Case("3x3, 16 features, 64x64", (16, 16, 64, 64), (16, 16, 3, 3)),
    Case("5x5, 3 features, 32x32", (64, 3, 32, 32), (32, 3, 5, 5)),
    Case("3x3 rhs dilation 2", (32, 64, 28, 28), (64, 64, 3, 3), rhs_dilation=2),
    Case("3x3 stride 2", (32, 64, 28, 28), (64, 64, 3, 3), stride=2),
    Case("7x7 stride 2, 3 features (a stem)", (16, 3, 224, 224), (64, 3, 7, 7), stride=2),
    Case("a filter gradient's shape: 26x26 window, 3x3 out", (64, 32, 28, 28), (64, 32, 26, 26)),
    Case("3x3 lhs dilation 2", (32, 64, 14, 14), (64, 64, 3, 3), lhs_dilation=2),
    Case("3x3, 8 groups", (32, 64, 28, 28), (64, 8, 3, 3), groups=8),
    Case("3x3 depthwise", (32, 64, 28, 28), (64, 1, 3, 3), groups=64),
    Case("1-D k5", (8, 64, 8000), (128, 64, 5)),
    Case("1-D k5 stride 2", (8, 64, 8000), (128, 64, 5), stride=2),
    Case("3-D 3x3x3", (2, 32, 8, 28, 28), (32, 32, 3, 3, 3)),
]


def unpadded(lhs: jax.Array, rhs: jax.Array, case: Case) -> jax.Array:
    """The convolution with no padding, as lax computes it."""
    return lax.conv_general_dilated(lhs, rhs, padding=[(0, 0)] * (lhs.ndim - 2), **case.kwargs())


def padded_and_sliced(lhs: jax.Array, rhs: jax.Array, case: Case) -> jax.Array:
    """The same outputs from padding the last axis's high end by one stride, and slicing off the
    one extra output that gives."""
    padding = [(0, 0)] * (lhs.ndim - 3) + [(0, case.stride)]
    out = lax.conv_general_dilated(lhs, rhs, padding=padding, **case.kwargs())
    return out[..., :-1]


def inputs(case: Case, dtype: str) -> tuple[jax.Array, jax.Array]:
    """Random operands for ``case`` in ``dtype``."""
    lhs_key, rhs_key = jax.random.split(jax.random.PRNGKey(0))
    return (jax.random.normal(lhs_key, case.lhs_shape).astype(dtype),
            jax.random.normal(rhs_key, case.rhs_shape).astype(dtype))


# The largest float64 difference between the two forms, relative to the largest output, that
# counts as rounding (the sums have at most a few thousand terms; 2**-52 is 2.2e-16).
FLOAT64_TOLERANCE = 1e-12


def measure(case: Case, repeats: int) -> dict[str, float]:
    """Both forms' median seconds, interleaved, and their largest float64 difference relative to
    the largest output."""
    wide = inputs(case, "float64")
    want = jax.jit(unpadded, static_argnums=2)(*wide, case)
    got = jax.jit(padded_and_sliced, static_argnums=2)(*wide, case)
    difference = float(jnp.max(jnp.abs(got - want)) / jnp.max(jnp.abs(want)))
    args = inputs(case, case.dtype)
    steps = {}
    for name, form in (("unpadded", unpadded), ("padded", padded_and_sliced)):
        compiled = jax.jit(form, static_argnums=2).lower(*args, case).compile()
        steps[name] = lambda compiled=compiled: jax.block_until_ready(compiled(*args))
    times = bench.interleaved_medians(steps, repeats)
    return {**times, "float64_difference": difference}


def markdown(rows: list[tuple[Case, dict[str, float]]], repeats: int) -> str:
    """The probe's report."""
    environment = bench.environment()
    lines = [bench.device_line(environment, python=False),
             f"The forward alone, medians of {repeats} interleaved repeats in one process: "
             "unpadded (VALID) as lax computes it, and padded at the last axis's high end by one "
             "stride with the extra output sliced off. ratio = padded / unpadded (below 1: "
             "padding is faster).", "",
             "| case | dtype | unpadded ms | padded ms | ratio | float64 difference |",
             "| --- | --- | ---: | ---: | ---: | --- |"]
    for case, row in rows:
        lines.append(f"| {case.name} | {case.dtype} | {row['unpadded'] * 1e3:.1f} | "
                     f"{row['padded'] * 1e3:.1f} | {row['padded'] / row['unpadded']:.2f} | "
                     f"{row['float64_difference']:.1e} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--only", help="comma-separated parts of case names to run")
    parser.add_argument("--out", type=Path, help="also write the Markdown report here")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats (={args.repeats}) must be at least 1")
    parts = [part for part in (args.only or "").split(",") if part]
    cases = [case for case in CASES if not parts or any(part in case.name for part in parts)]
    if not cases:
        parser.error(f"--only (={args.only!r}) matches no case")
    jax.config.update("jax_enable_x64", True)  # for the float64 check
    rows = [(case, measure(case, args.repeats)) for case in cases]
    text = markdown(rows, args.repeats)
    print(text, end="")
    if args.out:
        write_atomic(args.out, text)
    return 0 if all(row["float64_difference"] <= FLOAT64_TOLERANCE for _, row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
