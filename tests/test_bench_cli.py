"""``convgrad bench --quick``: the report's structure (never its timings)."""

import json

import pytest

from convgrad import bench
from convgrad.cli import main


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    assert main(["bench", "--quick", "--no-torch", "--out", str(out)]) == 0
    return out


def test_quick_run_writes_every_output(quick_report):
    for name in ("bench.json", "bench.md", "bench.png", "reference.png"):
        assert (quick_report / name).stat().st_size > 0, name
    assert (quick_report / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (quick_report / "reference.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_quick_json_has_rows_ratios_and_environment(quick_report):
    report = json.loads((quick_report / "bench.json").read_text())
    assert report["environment"]["platform"] == "cpu"
    assert {"jax", "jaxlib"} <= set(report["environment"]["versions"])
    names = [shape.name for shape in bench.quick_suite()]
    assert [row["name"] for row in report["rows"]] == names
    for row in report["rows"]:
        assert set(row["seconds"]) == {"ours", "native"}
        assert row["ratio_vs_native"] == pytest.approx(row["seconds"]["ours"] / row["seconds"]["native"])
        assert row["ratio_vs_torch"] is None
        assert set(row["loss_seconds"]) == {"xla"} and row["loss_seconds"]["xla"] > 0
        assert row["ratio_vs_torch_loss_excluded"] is None
        assert row["peak_bytes"] is None  # the CPU backend reports no memory statistics
    # The depthwise case is reformulated on CPU (impl._formulations.depthwise_taps); every float32
    # CPU program also materialises the cotangent (impl._op._materialized), so none is native's.
    assert [row["same_program"] for row in report["rows"]] == [False, False]
    summary = report["summary"]
    assert set(summary["vs_native"]) == {"median", "worst", "best", "geomean"}
    ratios = sorted(row["ratio_vs_native"] for row in report["rows"])
    assert summary["vs_native_reformulated"]["median"] == pytest.approx(sum(ratios) / 2)
    assert set(summary["per_kind"]) == {"dense 2-D", "depthwise"}
    assert [row["size"] for row in report["reference_scaling"]] == [8, 16]


def test_quick_markdown_table_lists_each_shape(quick_report):
    table = (quick_report / "bench.md").read_text()
    assert "| shape | kind | dtype |" in table
    for shape in bench.quick_suite():
        assert f"| {shape.name} |" in table
    assert "| ours/native |" in table


@pytest.mark.parametrize("argv, message", [
    (["--repeats", "0"], "--repeats (=0) must be positive"),
    (["--only", "no such shape"], "matches no shape"),
    (["--dtypes", "int8"], "--dtypes entry (='int8')"),
])
def test_bad_arguments_are_usage_errors(argv, message, capsys):
    assert main(["bench", "--quick", *argv]) == 2
    assert message in capsys.readouterr().err


def test_torch_step_matches_the_shape_when_torch_is_installed():
    pytest.importorskip("torch")
    shape = bench.quick_suite()[1]
    grads = bench.torch_step(shape, "float32")()
    assert [tuple(g.shape) for g in grads] == [shape.lhs_shape, shape.rhs_shape]


def test_loss_excluded_ratio_takes_out_the_loss_cost_difference():
    pytest.importorskip("torch")
    row = bench.bench_shape(bench.quick_suite()[0], "float32", repeats=1, with_torch=True)
    seconds, loss = row["seconds"], row["loss_seconds"]
    assert set(loss) == {"xla", "torch"}
    assert row["ratio_vs_torch_loss_excluded"] == pytest.approx(
        (seconds["ours"] - loss["xla"] + loss["torch"]) / seconds["torch"])
