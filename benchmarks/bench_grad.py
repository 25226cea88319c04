"""Issue 3's benchmark: jit(grad) of the op against native lax autodiff, ratios from one run.

    PYTHONPATH=. python benchmarks/bench_grad.py [--repeats N]

Writes benchmarks/results/grad-<platform>.json and .md (no PyTorch, float32 only).
"""

import argparse
import json
import sys
from pathlib import Path

import jax

from convgrad import bench
from convgrad.io import write_atomic

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    report = bench.run_suite(bench.model_suite(), ["float32"], args.repeats, with_torch=False,
                             progress=lambda line: print(line, file=sys.stderr, flush=True))
    platform = jax.devices()[0].platform
    write_atomic(RESULTS / f"grad-{platform}.json", json.dumps(report, indent=2) + "\n")
    table = bench.markdown(report)
    write_atomic(RESULTS / f"grad-{platform}.md", table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
