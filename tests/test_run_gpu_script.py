"""``benchmarks/run_gpu.sh``: the one command a lent GPU machine gets, run here on its cheap steps.

A GPU lease is short and the device tool brings back at most 8 files from ``$OUT``, so the script
must keep an archive of what it finished after every step, skip what the deadline leaves no time
for, and refuse unknown steps before it writes anything.
"""

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "run_gpu.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None,
                                reason="needs bash and coreutils' timeout")


def run_script(tmp_path: Path, *steps: str, deadline: int
               ) -> tuple[subprocess.CompletedProcess, Path, Path]:
    # A space in the paths: the steps' command lines must quote them.
    results, out = tmp_path / "gpu results" / "gpu-test", tmp_path / "out"
    env = dict(os.environ, PYTHON=sys.executable, RESULTS=str(results), OUT=str(out),
               DEADLINE_S=str(deadline), JAX_PLATFORMS="cpu")
    done = subprocess.run(["bash", str(SCRIPT), *steps], env=env, capture_output=True, text=True,
                          timeout=300)
    return done, results, out


def status_lines(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()]


def test_steps_leave_logs_status_and_an_archive_in_out(tmp_path):
    done, results, out = run_script(tmp_path, "environment", "lowering", deadline=240)
    assert done.returncode == 0, done.stdout + done.stderr
    assert status_lines(results / "status.txt") == [["environment", "0"], ["lowering", "0"]]
    assert "cpu" in (results / "environment.log").read_text()
    assert sorted(path.name for path in out.iterdir()) == ["gpu-results.tar.gz", "status.txt"]
    with tarfile.open(out / "gpu-results.tar.gz") as archive:
        names = set(archive.getnames())
    assert {"gpu-test/status.txt", "gpu-test/environment.log", "gpu-test/lowering.log",
            "gpu-test/lowering.json"} <= names


def test_an_absent_gpu_fails_its_step_and_the_run(tmp_path):
    done, results, _ = run_script(tmp_path, "crosscheck-gpu-highest", deadline=240)
    assert done.returncode == 1
    assert status_lines(results / "status.txt") == [["crosscheck-gpu-highest", "2"]]
    assert "not present" in (results / "crosscheck-gpu-highest.log").read_text()


def test_steps_past_the_deadline_are_skipped_and_recorded(tmp_path):
    done, results, out = run_script(tmp_path, "environment", "tests", deadline=0)
    assert done.returncode == 0, done.stdout + done.stderr
    assert status_lines(results / "status.txt") == [["environment", "skipped"], ["tests", "skipped"]]
    assert (out / "status.txt").read_text() == (results / "status.txt").read_text()


def test_an_unknown_step_is_refused_before_anything_is_written(tmp_path):
    done, results, out = run_script(tmp_path, "environment", "bogus", deadline=240)
    assert done.returncode == 2
    assert "unknown step (=bogus)" in done.stderr
    assert not results.exists() and not out.exists()
