"""benchmarks/compare_runs.py: two environments' bench runs side by side."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from convgrad import bench
from tests.helpers import benchmark_script

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "compare_runs.py"


def _run(jax_version, rows):
    """A bench --json report (no PyTorch) with the given step seconds per row."""
    rows = [{"name": name, "kind": "dense 2-D", "dtype": "float32",
             "seconds": {"ours": ours, "native": native}, "loss_seconds": {"xla": 0.001},
             "compile_seconds": {"ours": 1.0, "native": 1.0},
             "ratio_vs_native": ours / native, "ratio_vs_torch": None,
             "ratio_vs_torch_loss_excluded": None, "compile_ratio": 1.0,
             "same_program": False} for name, ours, native in rows]
    return {"environment": {"versions": {"python": "3.12.1", "jax": jax_version,
                                         "jaxlib": jax_version, "numpy": "2.0"}},
            "machine_speed": {"xla_matmul_float32_gflops": 150.0}, "repeats": 3,
            "rows": rows, "summary": bench.summarize(rows)}


def test_ratios_are_per_run_then_median():
    compare = benchmark_script("compare_runs")
    a = [_run("0.10", [("dense", 0.010, 0.020)]), _run("0.10", [("dense", 0.030, 0.040)])]
    b = [_run("0.12", [("dense", 0.010, 0.010)])] * 2
    table = compare.markdown(a, b, ("old", "new"))
    # A: per-run ratios 0.50 and 0.75, median 0.625; times are medians of each side's runs.
    assert "| dense | float32 | 20.0 | 30.0 | 10.0 | 10.0 | 0.62 | 1.00 | 0.50 | 0.33 | 1.0 | 1.0 |" \
        in table
    assert "ours/native with old: median 0.62, worst 0.62." in table
    assert "Python 3.12.1, jax 0.12" in table


def test_different_suites_are_refused():
    compare = benchmark_script("compare_runs")
    with pytest.raises(ValueError, match="different suites"):
        compare.markdown([_run("a", [("dense", 1, 1)])], [_run("b", [("other", 1, 1)])], ("a", "b"))


def test_command_line_writes_the_table(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(_run("0.10", [("dense", 0.02, 0.04)])))
    b.write_text(json.dumps(_run("0.12", [("dense", 0.02, 0.02)])))
    out = tmp_path / "comparison.md"
    root = SCRIPT.parents[1]
    done = subprocess.run([sys.executable, str(SCRIPT), str(a), str(b), "--labels", "x,y",
                           "--out", str(out)], capture_output=True, text=True, check=False,
                          cwd=root, env={**os.environ, "PYTHONPATH": str(root)})
    assert done.returncode == 0, done.stderr
    assert out.read_text() == done.stdout
    assert "| 0.50 | 1.00 |" in done.stdout
