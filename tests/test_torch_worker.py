"""PyTorch's steps in another Python (``convgrad/torch_worker.py``, ``bench.TorchWorker``): the
protocol, its errors, and that the benchmark uses the worker's own times.

The protocol tests run a stand-in ``torch`` (a module on the worker's path), so they need no
PyTorch; the end-to-end test needs PyTorch in this Python and skips without it.
"""

import dataclasses
import gc
import json
import os
import platform
import stat
import sys
import types
from pathlib import Path

import pytest

from convgrad import bench, torch_worker
from convgrad.cli import main


def _python_with(tmp_path: Path, torch_source: str) -> str:
    """An executable that runs this Python with ``torch`` replaced by ``torch_source``."""
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "torch.py").write_text(torch_source)
    launcher = tmp_path / "python"
    launcher.write_text(f'#!/bin/sh\nPYTHONPATH="{fake}" exec "{sys.executable}" "$@"\n')
    launcher.chmod(launcher.stat().st_mode | stat.S_IXUSR)
    return str(launcher)


def test_a_python_without_torch_is_a_clear_value_error(tmp_path: Path) -> None:
    python = _python_with(tmp_path, "raise ImportError('not here')\n")
    with pytest.raises(ValueError, match=r"no PyTorch in .*not here"):
        bench.TorchWorker(python)


def test_a_python_that_cannot_start_is_a_clear_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot be started"):
        bench.TorchWorker(str(tmp_path / "missing-python"))


def test_worker_answers_versions_and_reports_failures_as_errors(tmp_path: Path) -> None:
    # A stand-in torch with a version and nothing else: every step request fails in the worker,
    # which answers with the error and goes on serving.
    worker = bench.TorchWorker(_python_with(tmp_path, "__version__ = '0.0-stand-in'\n"))
    try:
        assert worker.versions["torch"] == "0.0-stand-in"
        assert worker.versions["python"] and worker.versions["omp_wait_policy"] == "PASSIVE"
        with pytest.raises(RuntimeError, match="AttributeError"):
            worker.step("matmul", size=4, dtype="float32")
        with pytest.raises(RuntimeError, match="unknown request op"):
            worker.step("nonsense")
        assert worker._request({"op": "versions"})["torch"] == "0.0-stand-in"  # still serving
    finally:
        worker.close()


def test_worker_runs_steps_and_times_them_itself(tmp_path: Path) -> None:
    # A stand-in torch whose "matrix product" sleeps 20 ms: the worker's own count comes back.
    source = ("import time\n__version__ = 'stand-in'\nfloat32 = 'f32'\n"
              "class _Square:\n    def __matmul__(self, other):\n"
              "        time.sleep(0.02)\n        return self\n"
              "def ones(shape, dtype):\n    return _Square()\n")
    worker = bench.TorchWorker(_python_with(tmp_path, source))
    try:
        step = worker.step("matmul", size=2, dtype="float32")
        timed = step()
        assert isinstance(timed, bench.Timed) and 0.02 <= timed.seconds < 1.0
        assert 0.02 <= bench.call_seconds(step) < 1.0
        # Once the step is garbage here, the worker drops it with the next request.
        other = worker.step("matmul", size=2, dtype="float32")
        assert worker._request({"op": "versions"})["live_steps"] == 2
        del step
        gc.collect()
        assert worker._request({"op": "versions"})["live_steps"] == 1
        assert 0.02 <= bench.call_seconds(other) < 1.0
    finally:
        worker.close()


def test_a_drop_is_never_answered_even_for_ids_that_are_not_live(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The client reads no answer to a drop, so an answer (an error line) would be read as the
    # answer to its next request. Ids out of range, dropped twice, or not ids at all are skipped.
    monkeypatch.setattr(torch_worker, "load_torch",
                        lambda: types.SimpleNamespace(__version__="stand-in"))
    monkeypatch.setitem(torch_worker.STEPS, "probe", lambda torch: lambda: None)
    answers: list[str] = []
    requests = [{"op": "probe"}, {"op": "probe"}, {"op": "drop", "ids": [0, 0, 7, -1, "a"]},
                {"op": "drop"}, {"op": "drop", "ids": 3}, {"op": "versions"}]
    torch_worker.serve((json.dumps(request) for request in requests), answers.append)
    assert [json.loads(answer) for answer in answers] == [
        {"id": 0}, {"id": 1},
        {"python": platform.python_version(), "torch": "stand-in",
         "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "live_steps": 1}]


def test_call_seconds_times_a_plain_step_itself() -> None:
    assert 0 <= bench.call_seconds(lambda: None) < 1.0
    assert bench.call_seconds(lambda: bench.Timed(123.0)) == 123.0


def test_cli_starts_the_worker_and_stops_on_a_python_without_torch(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(bench.TORCH_PYTHON_VARIABLE, raising=False)
    python = _python_with(tmp_path, "raise ImportError('not here')\n")
    assert main(["bench", "--quick", "--torch-python", python]) == 2
    assert "no PyTorch in" in capsys.readouterr().err
    assert bench.TORCH_PYTHON_VARIABLE not in os.environ  # nothing half set


def test_benchmark_row_with_torch_in_another_python(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    monkeypatch.setenv(bench.TORCH_PYTHON_VARIABLE, sys.executable)
    shape = bench.quick_suite()[0]
    row = bench.bench_shape(shape, "float32", repeats=1, with_torch=True)
    assert row["seconds"]["torch"] > 0 and row["loss_seconds"]["torch"] > 0
    assert row["ratio_vs_torch"] == pytest.approx(row["seconds"]["ours"]
                                                  / row["seconds"]["torch"])
    env = bench.environment()
    assert env["versions"]["python (torch)"] and env["versions"]["torch"]
    assert bench._torch() is None  # PyTorch is not also loaded here


def test_conv_step_matches_the_shape_when_torch_is_installed() -> None:
    torch = pytest.importorskip("torch")
    shape = bench.quick_suite()[1]
    grads = torch_worker.conv_step(torch, dataclasses.asdict(shape), "bfloat16")()
    assert [tuple(g.shape) for g in grads] == [shape.lhs_shape, shape.rhs_shape]
    assert {g.dtype for g in grads} == {torch.bfloat16}
