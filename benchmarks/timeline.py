"""Slow spells: does one step slow down for seconds while the others it is interleaved with do not?

    PYTHONPATH=. python benchmarks/timeline.py "video 3-D" [--dtype float32] [--seconds 12]
        [--chunk 8] [--processes 3] [--no-torch] [--out FILE]

The suite's ratios move between processes far more than between the repeats of one process:
in the twenty-sixth session's run the float32 video step took 24.4, 32.8 and 36.0 ms in its three
processes while PyTorch's took 18.9-21.9. This script times one shape's steps (ours, native lax,
PyTorch) interleaved, in chunks of ``--chunk`` rounds, for ``--seconds`` in each of
``--processes`` fresh processes, and prints the median of each chunk over time. A chunk counts
as slow for a step when its median is at least ``SLOW_FACTOR`` times that step's fastest chunk.
The summary gives, per step, the share of slow chunks and, over the chunks where ours is slow,
how the other steps compare with their own medians: if they stay at about 1.0, the spell is
ours alone (item 26 of ``benchmarks/README.md``).
"""

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jax import lax

import impl
from convgrad import bench
from convgrad.io import write_atomic

SLOW_FACTOR = 1.3


def chunk_medians(steps: dict[str, bench.Step], seconds: float, chunk: int
                  ) -> dict[str, list[float]]:
    """Per step, the median seconds of each chunk of ``chunk`` interleaved rounds, for at least
    ``seconds`` (and at least one chunk)."""
    for step in steps.values():
        step()
    series: dict[str, list[float]] = {name: [] for name in steps}
    start = time.perf_counter()
    while not series[next(iter(steps))] or time.perf_counter() - start < seconds:
        samples: dict[str, list[float]] = {name: [] for name in steps}
        for _ in range(chunk):
            for name, step in steps.items():
                samples[name].append(bench.call_seconds(step))
        for name, values in samples.items():
            series[name].append(statistics.median(values))
    return series


def slow_chunks(values: Sequence[float], factor: float = SLOW_FACTOR) -> list[bool]:
    """Which chunks took at least ``factor`` times the fastest chunk."""
    fastest = min(values)
    return [value >= factor * fastest for value in values]


def summary(runs: Sequence[dict[str, list[float]]], focus: str = "ours",
            factor: float = SLOW_FACTOR) -> dict[str, dict[str, float | None]]:
    """Per step over all runs: its chunks' median (s), its share of slow chunks, and its median
    chunk time over the chunks where ``focus`` is slow, as a ratio to its own run's median
    (``None`` where ``focus`` is never slow)."""
    names = list(runs[0])
    result: dict[str, dict[str, float | None]] = {}
    for name in names:
        slow = [flag for run in runs for flag in slow_chunks(run[name], factor)]
        during = [value / statistics.median(run[name]) for run in runs
                  for value, focus_slow in zip(run[name], slow_chunks(run[focus], factor),
                                               strict=True)
                  if focus_slow]
        result[name] = {
            "median_s": statistics.median(value for run in runs for value in run[name]),
            "slow_share": sum(slow) / len(slow),
            f"during_{focus}_slow": statistics.median(during) if during else None,
        }
    return result


def one_run(shape_name: str, dtype: str, seconds: float, chunk: int, with_torch: bool
            ) -> dict[str, list[float]]:
    """One process's chunk medians for the shape's steps."""
    shape = next(s for s in bench.model_suite() if s.name == shape_name)
    args = bench.make_inputs(shape, dtype)
    steps = {"ours": bench._compiled(impl.conv_general_dilated, shape, args)[0],
             "native": bench._compiled(lax.conv_general_dilated, shape, args)[0]}
    torch = bench.torch_step(shape, dtype) if with_torch else None
    if torch is not None:
        steps["torch"] = torch
    return chunk_medians(steps, seconds, chunk)


def markdown(runs: Sequence[dict[str, list[float]]], shape: str, dtype: str, chunk: int,
             env: dict[str, Any]) -> str:
    """The chunks of every run, ms, and the summary."""
    lines = [f"Device: {bench.describe_machine(env)}.", "",
             f"`{shape}` {dtype}: jit(grad) of sum(sin(conv)), medians of chunks of {chunk} "
             f"interleaved rounds, ms, in {len(runs)} fresh processes. Slow: a chunk at least "
             f"{SLOW_FACTOR} times the step's fastest chunk.", ""]
    for index, run in enumerate(runs, 1):
        lines.append(f"Process {index}:")
        lines.append("")
        lines.extend(f"    {name:<7} " + " ".join(f"{1e3 * value:5.1f}" for value in values)
                     for name, values in run.items())
        lines.append("")
    rows = summary(runs)
    lines += ["| step | median ms | slow chunks | median during ours' slow chunks / own median |",
              "| --- | ---: | ---: | ---: |"]
    for name, row in rows.items():
        during = row["during_ours_slow"]
        lines.append(f"| {name} | {1e3 * row['median_s']:.1f} | {100 * row['slow_share']:.0f}% | "
                     f"{'n/a' if during is None else f'{during:.2f}'} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shape", help="a substring of one suite shape's name, e.g. 'video'")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--chunk", type=int, default=8)
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--out", type=Path, help="also write the Markdown report here")
    parser.add_argument("--one-run", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    matches = bench.select_shapes(bench.model_suite(), args.shape)
    if len(matches) != 1:
        parser.error(f"{args.shape!r} must name one suite shape; matches {len(matches)}")
    if args.seconds <= 0 or args.chunk < 1 or args.processes < 1:
        parser.error("--seconds must be positive, --chunk and --processes at least 1")
    name = matches[0].name
    if args.one_run:
        print(json.dumps(one_run(name, args.dtype, args.seconds, args.chunk, not args.no_torch)))
        return 0
    forward = [args.shape, "--one-run", "--dtype", args.dtype, "--seconds", str(args.seconds),
               "--chunk", str(args.chunk)] + (["--no-torch"] if args.no_torch else [])
    runs = []
    for index in range(args.processes):
        print(f"process {index + 1} of {args.processes}", file=sys.stderr, flush=True)
        runs.append(bench.json_from_fresh_process([__file__, *forward], f"process {index + 1}"))
    text = markdown(runs, name, args.dtype, args.chunk, bench.environment())
    print(text, end="")
    if args.out:
        write_atomic(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
