"""``convgrad bench --quick``: the report's structure (never its timings)."""

import json

import pytest

from convgrad import bench
from convgrad.cli import main
from impl import _host


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
    assert report["environment"]["cpu_model"]
    assert set(report["environment"]["cpu_features"]) <= set(_host.CPU_FEATURES)
    assert isinstance(report["environment"]["bfloat16_in_float32"], bool)
    assert isinstance(report["environment"]["float32_rules_without_avx512"], bool)
    assert isinstance(report["environment"]["bfloat16_rules_as_float32"], bool)
    header, speed_line = (quick_report / "bench.md").read_text().splitlines()[:2]
    assert header.startswith(f"Device: cpu ({report['environment']['cpu_model']}")
    speed = report["machine_speed"]
    assert set(speed) == {"xla_matmul_float32_gflops", "xla_matmul_bfloat16_gflops",
                          "xla_elementwise_gbps"}                     # --no-torch
    assert all(0 < value < 1e6 for value in speed.values())
    assert speed_line.startswith("Machine speed") and "XLA matmul float32" in speed_line
    names = [shape.name for shape in bench.quick_suite()]
    assert [row["name"] for row in report["rows"]] == names
    for row in report["rows"]:
        assert set(row["seconds"]) == {"ours", "native"}
        assert row["ratio_vs_native"] == pytest.approx(row["seconds"]["ours"] / row["seconds"]["native"])
        assert row["ratio_vs_torch"] is None
        assert set(row["loss_seconds"]) == {"xla"} and row["loss_seconds"]["xla"] > 0
        assert row["ratio_vs_torch_loss_excluded"] is None
        assert row["peak_bytes"] is None  # the CPU backend reports no memory statistics
    # The depthwise case is reformulated on CPU (grouped_taps, batch_grouped_reduce); every float32
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
    (["--processes", "0"], "--processes (=0) must be positive"),
    (["--only", "no such shape"], "matches no shape"),
    (["--dtypes", "int8"], "--dtypes entry (='int8')"),
    (["--only", "tiny,"], "has an empty name between its commas"),  # "" would match every shape
    # An empty value is refused, not taken for the default (or, for --out, the current folder).
    (["--dtypes", ""], "--dtypes entry (='')"),
    (["--dtypes", "float32,float32"], "--dtypes (='float32,float32') names 'float32' twice"),
    (["--out", ""], "--out (='') must name a folder"),
    (["--torch-python", ""], "--torch-python (='') is not an executable"),
])
def test_bad_arguments_are_usage_errors(argv, message, capsys):
    assert main(["bench", "--quick", *argv]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("blocked, option", [("out/reference.png", "--out"),
                                             ("out/bench.json", "--out"),
                                             ("report.json", "--json")])
def test_an_output_in_the_way_stops_it_before_the_work_and_writes_nothing(
        blocked, option, tmp_path, capsys, monkeypatch):
    # A folder where a file is to go is found before the suite runs (which would then be thrown
    # away), and no other file is written.
    (tmp_path / "out").mkdir()
    (tmp_path / blocked).mkdir()
    monkeypatch.setattr(bench, "run_suite", lambda *args, **kwargs: pytest.fail("ran the suite"))
    assert main(["bench", "--quick", "--no-torch", "--out", str(tmp_path / "out"),
                 "--json", str(tmp_path / "report.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{option} (=" in err and "is a folder, not a file" in err
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == sorted(
        {"out", blocked})


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


def _row(name, ours, native, same=False):
    return {"name": name, "kind": "dense 2-D", "dtype": "float32",
            "seconds": {"ours": ours, "native": native},
            "loss_seconds": {"xla": 1.0}, "compile_seconds": {"ours": 2.0, "native": 1.0},
            "ratio_vs_native": ours / native, "ratio_vs_torch": None,
            "ratio_vs_torch_loss_excluded": None, "compile_ratio": 2.0, "same_program": same}


def test_combined_runs_take_the_median_of_each_run_s_ratio():
    runs = [{"environment": {}, "repeats": 3, "rows": [_row("a", ours, 10.0)]}
            for ours in (5.0, 13.0, 6.0)]
    combined = bench.combine_runs(runs)
    row = combined["rows"][0]
    assert combined["processes"] == 3
    assert row["runs"]["ratio_vs_native"] == [0.5, 1.3, 0.6]
    assert row["ratio_vs_native"] == pytest.approx(0.6)      # not the one-run outlier 1.3
    assert row["seconds"] == {"ours": 6.0, "native": 10.0}
    assert combined["summary"]["vs_native"]["median"] == pytest.approx(0.6)
    with pytest.raises(ValueError, match="different rows"):
        bench.combine_runs([runs[0], {"environment": {}, "repeats": 3,
                                      "rows": [_row("b", 1.0, 1.0)]}])


def test_combined_runs_keep_each_process_s_machine_speed_and_their_median():
    runs = [{"environment": {}, "machine_speed": {"xla_elementwise_gbps": gbps}, "repeats": 3,
             "rows": [_row("a", 1.0, 2.0)]} for gbps in (8.0, 20.0, 9.0)]
    combined = bench.combine_runs(runs)
    assert combined["machine_speed"] == {"xla_elementwise_gbps": 9.0}
    assert [run["xla_elementwise_gbps"] for run in combined["machine_speed_runs"]] == [8, 20, 9]
    # Reports written before machine_speed existed combine without one.
    older = [{key: value for key, value in run.items() if key != "machine_speed"} for run in runs]
    assert bench.combine_runs(older)["machine_speed"] == {}


def test_machine_speed_reads_as_one_line():
    line = bench.format_speed({"xla_matmul_float32_gflops": 139.4, "xla_elementwise_gbps": 17.2,
                               "torch_matmul_bfloat16_gflops": 301.0})
    assert line == ("XLA matmul float32 139 GFLOP/s, XLA elementwise 17 GB/s, "
                    "PyTorch matmul bfloat16 301 GFLOP/s")


def test_processes_runs_the_suite_in_fresh_processes(tmp_path):
    path = tmp_path / "suite.json"
    assert main(["bench", "--quick", "--no-torch", "--processes", "2", "--json", str(path)]) == 0
    report = json.loads(path.read_text())
    assert report["processes"] == 2
    for row in report["rows"]:
        assert len(row["runs"]["ratio_vs_native"]) == 2
        assert row["ratio_vs_native"] == pytest.approx(
            sum(row["runs"]["ratio_vs_native"]) / 2)    # the median of two


def _torch_row(name, kind, ours, torch, loss_excluded):
    return {**_row(name, ours, 2 * ours), "kind": kind, "ratio_vs_torch": ours / torch,
            "ratio_vs_torch_loss_excluded": loss_excluded}


def test_per_kind_table_gives_each_process_s_verdict_and_the_target():
    # Two processes: the depthwise kind's geometric mean is 1.2 in one and 2.0 in the other.
    runs = [{"environment": {"device": "cpu", "platform": "cpu", "cpu_count": 2,
                             "versions": {"jax": "0"}}, "repeats": 3,
             "rows": [_torch_row("a", "depthwise", 1.2 * scale, 1.0, 1.1),
                      _torch_row("b", "depthwise", 1.2 * scale, 1.0, 1.1),
                      _torch_row("c", "dense 2-D", 1.0, 1.0, 0.9)]}
            for scale in (1.0, 5 / 3)]
    for run in runs:
        for row in run["rows"]:
            row.update(lhs_shape=(1,), rhs_shape=(1,), temp_bytes={"ours": None},
                       peak_bytes=None, loss_seconds={"xla": 1.0, "torch": 0.5})
    combined = bench.combine_runs(runs)
    depthwise = combined["summary"]["per_kind"]["depthwise"]["float32"]
    assert depthwise["vs_torch_per_process"] == pytest.approx([1.2, 2.0])
    assert depthwise["vs_torch"]["geomean"] == pytest.approx(1.6)     # medians of 1.2 and 2.0
    assert depthwise["vs_torch_loss_excluded"]["geomean"] == pytest.approx(1.1)
    table = bench.markdown(combined)
    assert "| depthwise | float32 | 0.50 | 1.60 | 1.20-2.00 | 1.10 | no |" in table
    assert "| dense 2-D | float32 | 0.50 | 1.00 | 1.00-1.00 | 0.90 | yes |" in table


def test_per_kind_verdict_is_taken_per_dtype():
    # A kind far ahead of PyTorch in bfloat16 and behind it in float32 must not pass as a whole:
    # the geometric mean over both dtypes (sqrt(2.0 * 0.1) = 0.45) would say "yes".
    rows = [{**_torch_row("a", "large batch", 2.0, 1.0, 1.8), "dtype": "float32"},
            {**_torch_row("a", "large batch", 0.1, 1.0, 0.1), "dtype": "bfloat16"}]
    for row in rows:
        row.update(lhs_shape=(1,), rhs_shape=(1,), temp_bytes={"ours": None}, peak_bytes=None,
                   loss_seconds={"xla": 1.0, "torch": 0.5})
    report = {"environment": {"device": "cpu", "platform": "cpu", "cpu_count": 2,
                              "versions": {"jax": "0"}}, "repeats": 3, "rows": rows,
              "summary": bench.summarize(rows)}
    per_dtype = report["summary"]["per_kind"]["large batch"]
    assert per_dtype["float32"]["vs_torch"]["geomean"] == pytest.approx(2.0)
    assert per_dtype["bfloat16"]["vs_torch"]["geomean"] == pytest.approx(0.1)
    table = bench.markdown(report)
    assert "| large batch | float32 | 0.50 | 2.00 | n/a | 1.80 | no |" in table
    assert "| large batch | bfloat16 | 0.50 | 0.10 | n/a | 0.10 | yes |" in table


def test_machine_description_names_the_processor_and_reads_older_reports():
    # Reports from before the processor was recorded have neither cpu_model nor cpu_features.
    older = {"device": "cpu", "platform": "cpu", "processor": "x86_64", "cpu_count": 2}
    assert bench.describe_machine(older) == "cpu (x86_64; 2 cores)"
    newer = {**older, "cpu_model": "Intel(R) Xeon(R) Processor",
             "cpu_features": ["avx512f", "amx_bf16"]}
    assert bench.describe_machine(newer) == (
        "cpu (Intel(R) Xeon(R) Processor; avx512f, amx_bf16; 2 cores)")
    widened = {**older, "cpu_model": "AMD EPYC", "cpu_features": ["avx2"],
               "bfloat16_in_float32": True}
    assert bench.describe_machine(widened) == (
        "cpu (AMD EPYC; avx2; bfloat16 convolutions in float32; 2 cores)")
    avx2 = {**widened, "float32_rules_without_avx512": True}
    assert bench.describe_machine(avx2) == (
        "cpu (AMD EPYC; avx2; bfloat16 convolutions in float32; float32 formulations for CPUs "
        "without AVX-512; 2 cores)")
    amx = {**newer, "bfloat16_rules_as_float32": True}
    assert bench.describe_machine(amx) == (
        "cpu (Intel(R) Xeon(R) Processor; avx512f, amx_bf16; bfloat16 formulations as float32's "
        "at unit strides; 2 cores)")


def test_cpu_description_without_a_model_name_or_flags():
    assert _host.cpu_description("processor\t: 0\n") == (None, ())
