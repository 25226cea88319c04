"""Where the time of one jit(grad) step goes: XLA's own per-operation times, ours and native.

    PYTHONPATH=. python benchmarks/profile_ops.py "depthwise 3x3" [--dtype bfloat16] [--top 12]

Runs the benchmark's step (``sum(sin(conv))``, gradient wrt both operands) for one shape of the
model suite under ``jax.profiler``, reads the Perfetto trace it writes, and prints the mean time
per step of each compiled operation (fusions, convolutions, copies) for the op and for native lax.
The operation names match ``jax.jit(step).lower(...).compile().as_text()``, so each line can be
read off the optimised HLO. XLA runs some operations (e.g. non-YNNPACK convolutions) on its own
thread pool: their time shows up under "ThunkExecutor::Execute (wait for completion)".

Since that loss is part of every benchmark step, it first times the loss's own elementwise work on
the convolution's output alone: the cosine that XLA's gradient computes, against PyTorch's sine
(forward) and cosine (backward), when PyTorch is installed.
"""

import argparse
import collections
import gzip
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
from jax import lax

import impl
from convgrad import bench

# Host-side frames of the trace (Python, dispatch), not operations of the compiled program.
_HOST_FRAMES = ("$", "PjitFunction", "CommonPjRt", "ThunkExecutor::Execute")


def operation_times(step: Callable[..., Any], args: tuple[Any, ...], repeats: int
                    ) -> tuple[float, dict[str, float]]:
    """(mean wall ms per step, {operation: mean ms per step}) of ``step(*args)`` under the profiler."""
    jax.block_until_ready(step(*args))
    with tempfile.TemporaryDirectory() as folder:
        with jax.profiler.trace(folder, create_perfetto_trace=True):
            for _ in range(repeats):
                jax.block_until_ready(step(*args))
        trace_path = next(Path(folder).rglob("*.trace.json.gz"))
        trace = json.loads(gzip.decompress(trace_path.read_bytes()))
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    totals: collections.Counter[str] = collections.Counter()
    wall = 0.0
    for event in events:
        if event.get("ph") != "X":
            continue
        name = event["name"]
        if name == "ThunkExecutor::Execute":
            wall += event.get("dur", 0)
        if name == "ThunkExecutor::Execute (wait for completion)" or not name.startswith(
                _HOST_FRAMES):
            totals[name] += event.get("dur", 0)
    return wall / repeats / 1e3, {name: us / repeats / 1e3 for name, us in totals.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shape", help="a shape name of the model suite, e.g. 'depthwise 3x3'")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--top", type=int, default=12, help="operations listed per program")
    args = parser.parse_args()
    shapes = {shape.name: shape for shape in bench.model_suite()}
    if args.shape not in shapes:
        parser.error(f"shape (={args.shape!r}) must be one of {sorted(shapes)}")
    shape = shapes[args.shape]
    operands = bench.make_inputs(shape, args.dtype)
    # First, while no profiler has run in this process (it slows PyTorch's threads afterwards).
    out = lax.conv_general_dilated(*operands, **shape.lax_kwargs())
    loss = bench.interleaved_medians(bench.loss_steps(out, with_torch=True), 2 * args.repeats + 1)
    torch_text = "n/a" if "torch" not in loss else f"{loss['torch'] * 1e3:.1f} ms"
    print(f"the loss alone on the output {out.shape}: XLA cos {loss['xla'] * 1e3:.1f} ms, "
          f"PyTorch sin + cos {torch_text}")
    for label, conv in (("ours", impl.conv_general_dilated), ("native", lax.conv_general_dilated)):
        wall, times = operation_times(bench.grad_step(conv, shape), operands, args.repeats)
        print(f"\n{label}: {shape.name} {args.dtype}, {wall:.1f} ms per step (under the profiler)")
        print("| operation | ms per step |\n| --- | ---: |")
        for name, ms in sorted(times.items(), key=lambda item: -item[1])[:args.top]:
            print(f"| {name} | {ms:.2f} |")


if __name__ == "__main__":
    main()
