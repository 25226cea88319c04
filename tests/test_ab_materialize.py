"""benchmarks/ab_materialize.py: its two programs really differ, and its table's ratios."""

import jax
import pytest

import impl
from convgrad import bench
from impl import _formulations
from tests.helpers import benchmark_script


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the materialisation is CPU-only")
def test_without_the_materialisation_the_conditional_is_gone():
    # What the script's "without" side replaces is what the op calls, so the A/B measures it.
    materialize = _formulations.materialize
    shape = bench.quick_suite()[0]
    args = bench.make_inputs(shape, "float32")

    lowered = benchmark_script("ab_materialize").lowered_steps(shape, args)
    with_it, without = lowered["with"].as_text(), lowered["without"].as_text()
    assert "stablehlo.case" in with_it or "stablehlo.if" in with_it
    assert with_it != without
    # The op itself is left as it was.
    assert _formulations.materialize is materialize
    assert bench.grad_step(impl.conv_general_dilated, shape).lower(*args).as_text() == with_it


def test_table_ratio_is_without_over_with():
    runs = [[{"shape": "dense", "with_s": 0.010, "without_s": 0.020}],
            [{"shape": "dense", "with_s": 0.010, "without_s": 0.030}]]
    table = benchmark_script("ab_materialize").markdown(runs, bench.environment())
    assert "| dense | 10.0 | 25.0 | 2.00, 3.00 | 2.50 |" in table
