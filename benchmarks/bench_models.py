"""Issue 6's benchmark: the model-like suite against native lax and PyTorch CPU, plus the
tutorial's NumPy loops against the jitted op, with plots.

    PYTHONPATH=. python benchmarks/bench_models.py [extra convgrad bench options]

Writes bench.json, bench.md, bench.png, reference.png into benchmarks/results/models-<platform>/.
"""

import sys
from pathlib import Path

import jax

from convgrad.cli import main

RESULTS = Path(__file__).resolve().parent / "results"

if __name__ == "__main__":
    out = RESULTS / f"models-{jax.devices()[0].platform}"
    out.mkdir(parents=True, exist_ok=True)
    sys.exit(main(["bench", "--out", str(out), *sys.argv[1:]]))
