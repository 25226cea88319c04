"""Where a block size or layout switch of the CPU formulations measures best: two values' steps.

    PYTHONPATH=. python benchmarks/ab_constants.py --constant TAPS_BLOCK_BYTES --values 0,1048576
        [--runs R] [--repeats N] [--only NAMES] [--dtypes D] [--out FILE]

The loops of the op's CPU matrix-product formulations size their steps by constants of
``impl._formulations`` (``CONSTANTS`` below; ``FLAT_LAYOUT``, ``OUTPUT_OVER_INPUT`` and
``TRANSPOSE_AS_MATRIX``, 0 or 1, switch the flat layout of ``channels_last_matmul``, its loop's
writing over its input and the transpose of its result, ``MASKED_FLAT`` that layout without zeros
between the planes, ``SCAN_UNBLOCKED`` how ``taps_matmul`` scans one feature per step,
``SHARED_PADDING`` one padded input for a depthwise forward and its filter gradient,
``FILTER_GRADIENT_FIRST`` the order of a depthwise backward pass, and ``TAPS_WIDEN_PER_STEP``,
``SHIFT_WIDEN_PER_STEP`` and ``CHANNELS_LAST_WIDEN_PER_STEP`` where those loops widen bfloat16
computed in float32, ``SLOW_BFLOAT16_PRODUCTS`` whether bfloat16 takes float32's answer in
``_shift_pays`` with jaxlib 0.12.1 and later, and ``FLAT_PRODUCTS`` whether ``tap_products`` and
``position_products`` serve small planes with many features there, ``TAPS_CHUNKS`` whether
``taps_matmul`` takes steps too large for one product in chunks, ``WINOGRAD`` whether Winograd's
F(2x2, 3x3) serves float32 3x3 convolutions with many features on small planes, and
``WINOGRAD_WINDOW`` whether F(3x3, 2x2) serves their filter gradients;
``MIN_NEWER_FLOAT32_TAPS_FEATURES`` is a feature count and ``NEWER_FLOAT32_1D_SHIFT`` a switch of
the rules for jaxlib 0.11 and later; ``DEPTH_ONE_AS_2D`` and ``UNPADDED_AS_PADDED`` switch
item 35's rules for 1xKxK 3-D and unpadded convolutions, ``WIDEN_BEFORE_PAD`` item 36's order of
conversion and padding). This script lowers
the benchmark's step (``convgrad.bench.grad_step``) with the constant set to each of the two
values, on the model suite and the shapes beyond it (``bench.small_planes``,
``bench.many_features``, ``bench.one_dimensional``, ``bench.three_dimensional``,
``bench.unpadded`` and ``bench.depthwise``), times the two programs interleaved in
one process, and repeats that in ``--runs`` fresh processes. A ratio below 1 means the second
value made the step faster; rows whose two programs are the same are listed without times.
"""

import sys
from pathlib import Path
from typing import Any

import jax

import impl
from convgrad import bench
from impl import _formulations

RESULTS = Path(__file__).resolve().parent / "results"
CONSTANTS = ("TAPS_BLOCK_BYTES", "CHANNELS_LAST_BLOCK_BYTES", "MAX_MATMUL_BLOCK_BYTES",
             "FLAT_LAYOUT", "OUTPUT_OVER_INPUT", "TRANSPOSE_AS_MATRIX", "SCAN_UNBLOCKED",
             "SHARED_PADDING", "FILTER_GRADIENT_FIRST", "MASKED_FLAT", "TAPS_WIDEN_PER_STEP",
             "SHIFT_WIDEN_PER_STEP", "CHANNELS_LAST_WIDEN_PER_STEP", "SLOW_BFLOAT16_PRODUCTS",
             "FLAT_PRODUCTS", "TAPS_CHUNKS", "WINOGRAD", "WINOGRAD_WINDOW",
             "MIN_NEWER_FLOAT32_TAPS_FEATURES", "NEWER_FLOAT32_1D_SHIFT", "DEPTH_ONE_AS_2D",
             "UNPADDED_AS_PADDED", "WIDEN_BEFORE_PAD")
SHAPES = bench.rule_shapes()


def lowered_steps(constant: str, values: list[int], shape: bench.Shape,
                  args: tuple[jax.Array, jax.Array]) -> list[jax.stages.Lowered]:
    """The op's step for ``shape`` lowered with ``constant`` set to each of ``values``."""
    saved = getattr(_formulations, constant)
    lowered = []
    try:
        for value in values:
            setattr(_formulations, constant, value)
            lowered.append(bench.grad_step(impl.conv_general_dilated, shape).lower(*args))
    finally:
        setattr(_formulations, constant, saved)
    return lowered


def one_run(constant: str, values: list[int], dtypes: list[str], repeats: int, only: str
            ) -> list[dict[str, Any]]:
    """Each shape and dtype: step seconds with the first value and the second (this process)."""
    rows = []
    for shape in bench.select_shapes(SHAPES, only):
        for dtype in dtypes:
            args = bench.make_inputs(shape, dtype)
            first, second = lowered_steps(constant, values, shape, args)
            rows.append({"shape": shape.name, "dtype": dtype, **bench.ab_times(
                {"first": first, "second": second}, args, repeats)})
    return rows


def markdown(constant: str, values: list[int], runs: list[list[dict[str, Any]]],
             environment: dict[str, Any]) -> str:
    first, second = values
    lines = [bench.device_line(environment),
             f"jit(grad) of sum(sin(conv)) (the benchmark's step) traced with "
             f"impl._formulations.{constant} = {first} and = {second}, interleaved medians in "
             f"each of {len(runs)} processes. ratio = {second} / {first} (below 1: {second} made "
             f"the step faster).",
             "",
             f"| shape | dtype | {first} ms | {second} ms | ratio per run | median ratio |",
             "| --- | --- | ---: | ---: | --- | ---: |"]
    return "\n".join([*lines, *bench.ab_dtype_rows(runs, "first_s", "second_s")]) + "\n"


def main() -> int:
    parser = bench.ab_arguments(__doc__.splitlines()[0], repeats=9, runs=2,
                                out=RESULTS / "block-sizes-cpu.md")
    parser.add_argument("--constant", choices=CONSTANTS, required=True)
    parser.add_argument("--values", required=True,
                        help="two comma-separated integers (byte counts; 0 or 1 for the "
                             "switches): before,after")
    bench.dtypes_option(parser)
    args = bench.parse_ab_arguments(parser, SHAPES)
    try:
        values = [int(value) for value in args.values.split(",")]
    except ValueError:
        values = []
    if len(values) != 2 or min(values) < 0:
        parser.error(f"--values (={args.values!r}) must be two comma-separated integers")
    return bench.run_ab(
        args, __file__, lambda: one_run(args.constant, values, args.dtypes, args.repeats,
                                        args.only),
        lambda runs: markdown(args.constant, values, runs, bench.environment()),
        forward=["--constant", args.constant, "--values", args.values, "--dtypes",
                 ",".join(args.dtypes)])


if __name__ == "__main__":
    sys.exit(main())
