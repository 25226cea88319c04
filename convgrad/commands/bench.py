"""``convgrad bench``: jit(grad) of the op against native lax autodiff and PyTorch CPU autograd."""

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from convgrad.cli import comma_list
from convgrad.io import check_output, write_files_atomic

DEFAULT_REFERENCE_SIZES = (8, 16, 32, 64, 128)
OUT_FILES = ("bench.json", "bench.md", "bench.png", "reference.png")  # what --out DIR holds


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``bench`` subcommand."""
    parser = subparsers.add_parser(
        "bench",
        help="time jit(grad) of the op against native lax autodiff and PyTorch",
        description="Time forward+backward of sum(sin(conv)) on a shape suite like real models "
        "(interleaved repeats, medians, ratios per shape and overall), and the tutorial's NumPy "
        "loops against the jitted op across growing sizes.",
    )
    parser.add_argument("--quick", action="store_true",
                        help="tiny shapes, float32 only, 2 repeats: checks that it runs")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved repeats (default 9)")
    parser.add_argument("--dtypes", default=None,
                        help="comma-separated dtypes (default float32,bfloat16)")
    parser.add_argument("--only", default=None,
                        help="comma-separated substrings: keep shapes whose name contains one")
    parser.add_argument("--no-torch", action="store_true", help="skip PyTorch even if installed")
    parser.add_argument("--torch-python", metavar="PYTHON",
                        help="run PyTorch's steps in this Python interpreter (one with torch "
                        "installed), interleaved with this one's, for a Python with no PyTorch "
                        "build (sets CONVGRAD_TORCH_PYTHON)")
    parser.add_argument("--processes", type=int, default=1,
                        help="run the suite in this many fresh processes and report the median "
                        "of their times and ratios (default 1: this process)")
    parser.add_argument("--suite-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", metavar="DIR",
                        help="write bench.json, bench.md, bench.png and reference.png into DIR")
    parser.add_argument("--json", metavar="PATH", help="also write the suite's results as JSON")
    parser.set_defaults(run=run)


def _positive(name: str, value: int) -> int:
    if value <= 0:
        raise ValueError(f"{name} (={value}) must be positive")
    return value


def _suite_in_a_process(args: argparse.Namespace, run: int, processes: int) -> dict[str, Any]:
    """The suite's report from a fresh Python process with the same options."""
    from convgrad import bench

    print(f"process {run + 1} of {processes}", file=sys.stderr, flush=True)
    argv = ["bench", "--suite-only"]
    for flag, value in (("--repeats", args.repeats), ("--dtypes", args.dtypes),
                        ("--only", args.only)):
        if value is not None:
            argv += [flag, str(value)]
    argv += ["--quick"] * args.quick + ["--no-torch"] * args.no_torch
    return bench.json_from_fresh_process(["-m", "convgrad.cli", *argv],
                                         f"the benchmark process {run + 1} of {processes}")


def run(args: argparse.Namespace) -> int:
    """Run the suite (and the loops-vs-op scaling), print a table, write the requested files."""
    from convgrad import bench

    repeats = _positive("--repeats", args.repeats if args.repeats is not None else
                        (2 if args.quick else 9))
    dtypes = comma_list("--dtypes", args.dtypes if args.dtypes is not None else
                        "float32" if args.quick else "float32,bfloat16",
                        ("float32", "bfloat16", "float16", "float64"))
    shapes = bench.quick_suite() if args.quick else bench.model_suite()
    shapes = bench.select_shapes(shapes, args.only)
    if not shapes:
        raise ValueError(f"--only (={args.only!r}) matches no shape")
    if args.out is not None and not args.out.strip():
        raise ValueError(f"--out (={args.out!r}) must name a folder")
    out = Path(args.out) if args.out is not None else None
    if out is not None:
        if not out.is_dir():
            raise ValueError(f"--out (={args.out!r}) must be an existing folder")
        for name in OUT_FILES:
            check_output(out / name, "--out")
    if args.json is not None:
        check_output(args.json, "--json")
    processes = _positive("--processes", args.processes)
    if args.torch_python is not None:
        if args.no_torch:
            raise ValueError("--torch-python and --no-torch contradict each other")
        python = shutil.which(args.torch_python) if args.torch_python.strip() else None
        if python is None:
            raise ValueError(f"--torch-python (={args.torch_python!r}) is not an executable")
        bench.use_torch_python(str(Path(python).absolute()), "--torch-python")
    if processes == 1:
        report = bench.run_suite(shapes, dtypes, repeats, with_torch=not args.no_torch,
                                 progress=lambda line: print(line, file=sys.stderr, flush=True))
    else:
        report = bench.combine_runs([_suite_in_a_process(args, run, processes)
                                     for run in range(processes)])
    if args.suite_only:
        print(json.dumps(report))
        return 0
    table = bench.markdown(report)
    print(table)
    sizes = (8, 16) if args.quick else DEFAULT_REFERENCE_SIZES
    reference = bench.reference_scaling(sizes, repeats=repeats)
    for row in reference:
        print(f"loops vs jitted op, {row['size']}x{row['size']}: "
              f"{row['seconds']['loops'] * 1e3:.2f} ms vs {row['seconds']['jitted'] * 1e3:.3f} ms "
              f"(x{row['speedup']:.0f})")
    payload = json.dumps({**report, "reference_scaling": reference}, indent=2) + "\n"
    files: dict[Path, str | bytes] = {}
    if out is not None:
        contents = (payload, table, bench.plot_ratios(report), bench.plot_reference(reference))
        files.update(zip((out / name for name in OUT_FILES), contents, strict=True))
    if args.json is not None:
        files[Path(args.json)] = payload
    write_files_atomic(files)  # all or none
    return 0
