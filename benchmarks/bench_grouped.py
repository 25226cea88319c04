"""Grouped and depthwise convolutions beyond the model suite, against native lax and PyTorch CPU.

    PYTHONPATH=. python benchmarks/bench_grouped.py [--repeats N] [--dtypes D1,D2] [--out STEM]

The shapes where the filter gradient is a batch-grouped convolution that the suite does not
reach: many groups of few features (whose filter gradient XLA:CPU's batch-grouped kernel took
seconds for), wider depthwise windows, and 3-D depthwise and grouped convolutions (item 4 of
benchmarks/README.md). Writes STEM.json and STEM.md (default
``results/grouped-<platform>``), in the same form as ``convgrad bench``'s.
"""

import argparse
import json
from pathlib import Path

import jax

from convgrad import bench

RESULTS = Path(__file__).resolve().parent / "results"


def shapes() -> list[bench.Shape]:
    """Grouped and depthwise cases from real models that the suite leaves out."""
    shape = bench.Shape
    return [
        shape("grouped 64 x 2 features", "grouped", (16, 128, 56, 56), (128, 2, 3, 3), pad=1,
              groups=64),
        shape("RegNet-like 48 x 4 features", "grouped", (16, 192, 28, 28), (192, 4, 3, 3),
              pad=1, groups=48),
        shape("ConvNeXt depthwise 7x7", "depthwise", (16, 96, 56, 56), (96, 1, 7, 7), pad=3,
              groups=96),
        shape("MobileNet depthwise 5x5 s2", "depthwise", (16, 96, 56, 56), (96, 1, 5, 5),
              stride=2, pad=2, groups=96),
        shape("depthwise 3x3, multiplier 2", "depthwise", (16, 32, 56, 56), (64, 1, 3, 3),
              pad=1, groups=32),
        shape("3-D depthwise 3x3x3", "depthwise", (2, 64, 8, 28, 28), (64, 1, 3, 3, 3), pad=1,
              groups=64),
        shape("3-D depthwise 5x5x5", "depthwise", (2, 64, 8, 28, 28), (64, 1, 5, 5, 5), pad=2,
              groups=64),
        shape("3-D grouped 64 x 2 features", "grouped", (2, 128, 8, 14, 14), (128, 2, 3, 3, 3),
              pad=1, groups=64),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3,
                        help="interleaved repeats (default 3: native takes up to 30 s a step)")
    bench.dtypes_option(parser)
    parser.add_argument("--out", type=Path,
                        default=RESULTS / f"grouped-{jax.devices()[0].platform}")
    args = parser.parse_args()
    report = bench.run_suite(shapes(), args.dtypes, args.repeats, with_torch=True,
                             progress=print)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(bench.markdown(report))


if __name__ == "__main__":
    main()
