"""benchmarks/ab_host_rules.py: its two sides are the two choices, the environment is restored,
and its table's ratios."""

import os

import jax
import pytest

from convgrad import bench
from impl import _host
from tests.helpers import benchmark_script

# A small plane that the AVX-512 rules compute differently (channels last with jaxlib 0.10, the
# filter gradient in blocks of images with every jaxlib; 48 features, from which float32 takes
# the filter gradient's products with jaxlib 0.11 and later).
SMALL_PLANE = bench.Shape("small plane", "2-D", (4, 48, 16, 16), (48, 48, 3, 3), pad=1)


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the host rules are CPU-only")
def test_one_run_compares_the_two_choices_and_restores_the_setting(
        monkeypatch: pytest.MonkeyPatch) -> None:
    script = benchmark_script("ab_host_rules")
    monkeypatch.setattr(script, "SHAPES", [SMALL_PLANE])
    before = os.environ.get(_host.AVX512_OVERRIDE)
    (row,) = script.one_run("avx512", ["float32"], 1, "")
    assert os.environ.get(_host.AVX512_OVERRIDE) == before
    assert row["shape"] == "small plane" and row["dtype"] == "float32"
    # With jaxlib 0.10 the forward and input gradient move to channels last; with every jaxlib
    # the filter gradient's products take blocks of images (``_taps_blocks_pay``).
    assert row["same_program"] is False
    assert row["on_s"] > 0 and row["off_s"] > 0


def test_table_ratio_is_on_over_off_and_same_programs_have_no_times() -> None:
    runs = [[{"shape": "a", "dtype": "float32", "same_program": False, "off_s": 0.020,
              "on_s": 0.010},
             {"shape": "b", "dtype": "bfloat16", "same_program": True}],
            [{"shape": "a", "dtype": "float32", "same_program": False, "off_s": 0.020,
              "on_s": 0.030},
             {"shape": "b", "dtype": "bfloat16", "same_program": True}]]
    table = benchmark_script("ab_host_rules").markdown("avx512", runs, bench.environment())
    assert "CONVGRAD_CPU_AVX512=yes (off) and =no (on)" in table
    assert "| a | float32 | 20.0 | 20.0 | 0.50, 1.50 | 1.00 |" in table
    assert "| b | bfloat16 | | | same program | |" in table
    # The AMX rule applies with "yes" (item 37 of benchmarks/README.md).
    amx = benchmark_script("ab_host_rules").markdown("amx", runs, bench.environment())
    assert "CONVGRAD_CPU_AMX=no (off) and =yes (on)" in amx
