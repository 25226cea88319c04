"""benchmarks/ab_constants.py: its two sides are the two values, the constant is restored, and
its table's ratios (``convgrad.bench.ab_cells``, shared by the A/B scripts)."""

import argparse

import jax
import pytest

from convgrad import bench
from impl import _formulations
from tests.helpers import benchmark_script

# A small plane: four images of 8 features on 14x14.
SMALL_PLANE = bench.Shape("small plane", "2-D", (4, 8, 14, 14), (8, 8, 3, 3), pad=1)


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the block sizes are CPU-only")
def test_one_run_traces_each_value_and_restores_the_constant(
        monkeypatch: pytest.MonkeyPatch) -> None:
    script = benchmark_script("ab_constants")
    monkeypatch.setattr(script, "SHAPES", [SMALL_PLANE])
    # The blocks of images apply where ``_taps_blocks_pay`` (the test suite pins AVX-512 present),
    # and the filter gradient is ``taps_matmul`` where ``_taps_pay`` (forced: every jaxlib).
    monkeypatch.setattr(_formulations, "_taps_blocks_pay", lambda dtype: True)
    monkeypatch.setattr(_formulations, "_taps_pay", lambda *args: True)
    before = _formulations.TAPS_BLOCK_BYTES
    (row,) = script.one_run("TAPS_BLOCK_BYTES", [0, 2**20], ["float32"], 1, "")
    assert before == _formulations.TAPS_BLOCK_BYTES
    assert row["shape"] == "small plane" and row["dtype"] == "float32"
    assert row["same_program"] is False
    assert row["first_s"] > 0 and row["second_s"] > 0

    (row,) = script.one_run("TAPS_BLOCK_BYTES", [2**20, 2**21], ["float32"], 1, "")
    assert row["same_program"] is True  # all four images in one step either way
    assert "first_s" not in row


def test_table_ratio_is_second_over_first_and_same_programs_have_no_times() -> None:
    runs = [[{"shape": "a", "dtype": "float32", "same_program": False, "first_s": 0.020,
              "second_s": 0.010},
             {"shape": "b", "dtype": "bfloat16", "same_program": True}],
            [{"shape": "a", "dtype": "float32", "same_program": False, "first_s": 0.020,
              "second_s": 0.030},
             {"shape": "b", "dtype": "bfloat16", "same_program": True}]]
    table = benchmark_script("ab_constants").markdown("TAPS_BLOCK_BYTES", [0, 1024], runs,
                                                      bench.environment())
    assert "impl._formulations.TAPS_BLOCK_BYTES = 0 and = 1024" in table
    assert "| shape | dtype | 0 ms | 1024 ms | ratio per run | median ratio |" in table
    assert "| a | float32 | 20.0 | 20.0 | 0.50, 1.50 | 1.00 |" in table
    assert "| b | bfloat16 | | | same program | |" in table


def test_ab_cells_give_median_times_each_run_s_ratio_and_their_median() -> None:
    rows = [{"off": 0.010, "on": 0.005}, {"off": 0.030, "on": 0.060},
            {"off": 0.020, "on": 0.030}]
    cells, median = bench.ab_cells(rows, "off", "on")
    assert cells == "20.0 | 30.0 | 0.50, 2.00, 1.50 | 1.50"
    assert median == pytest.approx(1.5)


def test_dtypes_option_gives_a_checked_list(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    bench.dtypes_option(parser)
    assert parser.parse_args([]).dtypes == ["float32", "bfloat16"]
    assert parser.parse_args(["--dtypes", "bfloat16"]).dtypes == ["bfloat16"]
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["--dtypes", "float32,int8"])
    assert exit_info.value.code == 2
    assert "unknown int8 (of float32, bfloat16)" in capsys.readouterr().err
