"""A benchmark step in pieces: forward, input gradient, filter gradient and the loss, each framework.

    PYTHONPATH=. python benchmarks/pieces.py SHAPE [--dtype D] [--repeats N] [--processes P]
        [--out FILE]

The suite's step (jit(grad) of ``sum(sin(conv))``) is a forward convolution, two gradient
convolutions and the loss's elementwise work. ``profile_ops.py`` splits ours and native into XLA
operations; this script times each piece on its own, for the op, native lax and PyTorch CPU side
by side (interleaved in one process), so that a gap to PyTorch can be told apart: which
convolution lags, and how much of the step is the loss (XLA's ``cos`` against PyTorch's ``sin`` +
``cos``), which is the same for ours and native and not a convolution's to change.

The gradients are each taken alone (``jax.vjp`` with respect to one operand, applied to a fixed
cotangent; PyTorch's ``convolution_backward`` with one output), so each includes its own
transposes and, for ours, the cotangent's materialisation, which the whole step shares. With
``--processes P`` the measurement runs in P fresh processes; the table gives the median over
processes of each time and of each process's ratios (this VM's speed moves between processes).
"""

import argparse
import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax

import impl
from convgrad import bench
from convgrad.io import write_atomic

CONVS: dict[str, Callable[..., jax.Array]] = {"ours": impl.conv_general_dilated,
                                              "native": jax.lax.conv_general_dilated}
PIECES = ("forward", "input gradient", "filter gradient")


def xla_pieces(conv: Callable[..., jax.Array], shape: bench.Shape, lhs: jax.Array,
               rhs: jax.Array, cotangent: jax.Array) -> dict[str, bench.Step]:
    """The three convolutions of one step for ``conv``, each compiled on its own."""
    call = functools.partial(conv, **shape.lax_kwargs())
    forward = jax.jit(call).lower(lhs, rhs).compile()
    input_gradient = jax.jit(lambda x, f, g: jax.vjp(lambda x: call(x, f), x)[1](g)[0]).lower(
        lhs, rhs, cotangent).compile()
    filter_gradient = jax.jit(lambda x, f, g: jax.vjp(lambda f: call(x, f), f)[1](g)[0]).lower(
        lhs, rhs, cotangent).compile()
    return {"forward": lambda: jax.block_until_ready(forward(lhs, rhs)),
            "input gradient": lambda: jax.block_until_ready(input_gradient(lhs, rhs, cotangent)),
            "filter gradient": lambda: jax.block_until_ready(filter_gradient(lhs, rhs, cotangent))}


def torch_pieces(shape: bench.Shape, lhs: jax.Array, rhs: jax.Array, cotangent: jax.Array
                 ) -> dict[str, bench.Step]:
    """PyTorch's three convolutions of the same step (empty without PyTorch)."""
    torch = bench._torch()
    if torch is None:
        return {}
    x, f, g = (bench.to_torch(torch, a) for a in (lhs, rhs, cotangent))
    spatial = len(shape.lhs_shape) - 2
    conv = bench.torch_conv(torch, shape)
    options = ([shape.stride] * spatial, [shape.pad] * spatial, [shape.dilation] * spatial, False,
               [0] * spatial, shape.groups)

    def backward(mask: list[bool]) -> Any:
        return torch.ops.aten.convolution_backward(g, x, f, None, *options, mask)

    return {"forward": lambda: conv(x, f, stride=shape.stride, padding=shape.pad,
                                    dilation=shape.dilation, groups=shape.groups),
            "input gradient": lambda: backward([True, False, False]),
            "filter gradient": lambda: backward([False, True, False])}


def measure(shape: bench.Shape, dtype: str, repeats: int) -> dict[str, dict[str, float]]:
    """{piece: {framework: median seconds}} for the three pieces, the loss and the whole step."""
    lhs, rhs = bench.make_inputs(shape, dtype)
    out = jax.lax.conv_general_dilated(lhs, rhs, **shape.lax_kwargs())
    cotangent = jax.random.normal(jax.random.key(1), out.shape).astype(dtype)
    steps: dict[tuple[str, str], bench.Step] = {}
    for name, conv in CONVS.items():
        steps.update({(piece, name): step
                      for piece, step in xla_pieces(conv, shape, lhs, rhs, cotangent).items()})
        whole = bench.grad_step(conv, shape).lower(lhs, rhs).compile()
        steps[("whole step", name)] = lambda whole=whole: jax.block_until_ready(whole(lhs, rhs))
    steps.update({(piece, "torch"): step
                  for piece, step in torch_pieces(shape, lhs, rhs, cotangent).items()})
    torch_step = bench.torch_step(shape, dtype)
    if torch_step is not None:
        steps[("whole step", "torch")] = torch_step
    loss = bench.loss_steps(out, with_torch=torch_step is not None)
    steps[("loss", "ours")] = steps[("loss", "native")] = loss["xla"]
    if "torch" in loss:
        steps[("loss", "torch")] = loss["torch"]
    keys = list(dict.fromkeys(steps))
    names = {key: " / ".join(key) for key in keys}
    medians = bench.interleaved_medians({names[key]: steps[key] for key in keys}, repeats)
    table: dict[str, dict[str, float]] = {}
    for key in keys:
        table.setdefault(key[0], {})[key[1]] = medians[names[key]]
    return table


def _ratios(tables: list[dict[str, dict[str, float]]], piece: str, other: str) -> list[float]:
    """Each process's ours/``other`` for ``piece`` (none where ``other`` was not measured)."""
    return [table[piece]["ours"] / table[piece][other] for table in tables
            if other in table[piece]]


def markdown(shape: bench.Shape, dtype: str, repeats: int,
             tables: list[dict[str, dict[str, float]]]) -> str:
    """The table: per piece, the median over processes of each time and of each ratio."""
    environment = bench.environment()
    versions = environment["versions"]
    lines = [f"Device: {bench.describe_machine(environment)}; jax {versions['jax']}, jaxlib "
             f"{versions['jaxlib']}, torch {versions.get('torch') or 'n/a'}.",
             f"{shape.name} {shape.lhs_shape} * {shape.rhs_shape}, {dtype}: medians of "
             f"{repeats} interleaved repeats in each of {len(tables)} processes, and the median "
             f"over processes. The loss row is XLA's cos (ours and native alike) and PyTorch's "
             f"sin + cos.",
             "",
             "| piece | ours ms | native ms | torch ms | ours/native | ours/torch | ours/torch "
             "per process |",
             "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for piece in (*PIECES, "loss", "whole step"):
        times = [bench._median_or_none([table[piece].get(name) for table in tables])
                 for name in ("ours", "native", "torch")]
        to_native, to_torch = _ratios(tables, piece, "native"), _ratios(tables, piece, "torch")
        cells = [*(bench._ms(time) for time in times),
                 bench._ratio(bench._median_or_none(to_native)),
                 bench._ratio(bench._median_or_none(to_torch)),
                 ", ".join(f"{ratio:.2f}" for ratio in to_torch) or "n/a"]
        lines.append(f"| {piece} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shape", help="a shape name of the model suite, e.g. 'large batch 3x3'")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--processes", type=int, default=1,
                        help="fresh processes to repeat the measurement in (default 1)")
    parser.add_argument("--out", type=Path, help="also write the Markdown table here")
    parser.add_argument("--one-run", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    shapes = {shape.name: shape for shape in bench.rule_shapes()}
    if args.shape not in shapes:
        parser.error(f"shape (={args.shape!r}) must be one of {sorted(shapes)}")
    if args.repeats < 1 or args.processes < 1:
        parser.error(f"--repeats (={args.repeats}) and --processes (={args.processes}) must be "
                     f"at least 1")
    shape = shapes[args.shape]
    if args.one_run:
        print(json.dumps(measure(shape, args.dtype, args.repeats)))
        return 0
    tables = []
    for process in range(args.processes):
        print(f"process {process + 1} of {args.processes}", file=sys.stderr, flush=True)
        tables.append(bench.json_from_fresh_process(
            [__file__, args.shape, "--one-run", "--dtype", args.dtype, "--repeats",
             str(args.repeats)], f"process {process + 1}"))
    text = markdown(shape, args.dtype, args.repeats, tables)
    print(text, end="")
    if args.out is not None:
        write_atomic(args.out, text)
        write_atomic(args.out.with_suffix(".json"), json.dumps(tables, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
