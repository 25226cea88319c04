"""Whether a host-dependent CPU rule pays on this machine: whole steps with it forced each way.

    PYTHONPATH=. python benchmarks/ab_host_rules.py [--rule avx512|bfloat16|amx] [--runs R]
        [--repeats N] [--only NAMES] [--dtypes D] [--out FILE]

Three of the op's CPU choices depend on the host's instruction sets (``impl._host``): without
AVX-512, float32 products also serve small planes and folded 3-D convolutions (``--rule avx512``,
item 16 of benchmarks/README.md); without bfloat16 dot products, bfloat16 convolutions are
computed in float32 (``--rule bfloat16``, item 15); with AMX and jaxlib 0.12.1 or later, bfloat16
takes float32's formulations at unit strides and float32's filter-gradient products need fewer
features, and with AMX and jaxlib 0.10 float32 products leave small planes to the convolution
kernel (``--rule amx``, items 37 and 38). Each is pinned by an environment variable,
read when the op is traced. This script lowers the benchmark's step (``convgrad.bench.grad_step``)
with the variable set each way, on the model suite and a few shapes beyond it, times the two
programs interleaved in one process, and repeats that in ``--runs`` fresh processes. A ratio below
1 means the host rule's choice made the step faster; rows whose two programs are the same are
listed without times.
"""

import os
import sys
from pathlib import Path
from typing import Any

import impl
from convgrad import bench
from impl import _host

RESULTS = Path(__file__).resolve().parent / "results"

# rule: (environment variable, value that applies the rule, value that does not)
RULES = {"avx512": (_host.AVX512_OVERRIDE, "no", "yes"),
         "bfloat16": (_host.BFLOAT16_OVERRIDE, "float32", "native"),
         "amx": (_host.AMX_OVERRIDE, "yes", "no")}
# The suite and the shapes beyond it: small planes and 3-D convolutions (where the AVX-512 rule
# chooses differently), depthwise ones (where bfloat16 computed in float32 gained on the Zen 4
# EPYC, item 36), and the rest that the AMX rule reaches (item 37).
SHAPES = bench.rule_shapes()


def one_run(rule: str, dtypes: list[str], repeats: int, only: str) -> list[dict[str, Any]]:
    """Each shape and dtype: step seconds with the rule applied and not (this process)."""
    variable, applied, not_applied = RULES[rule]
    saved = os.environ.get(variable)
    rows = []
    try:
        for shape in bench.select_shapes(SHAPES, only):
            for dtype in dtypes:
                args = bench.make_inputs(shape, dtype)
                lowered = {}
                for value in (not_applied, applied):
                    os.environ[variable] = value
                    lowered[value] = bench.grad_step(impl.conv_general_dilated, shape).lower(*args)
                rows.append({"shape": shape.name, "dtype": dtype, **bench.ab_times(
                    {"off": lowered[not_applied], "on": lowered[applied]}, args, repeats)})
    finally:
        if saved is None:
            os.environ.pop(variable, None)
        else:
            os.environ[variable] = saved
    return rows


def markdown(rule: str, runs: list[list[dict[str, Any]]], environment: dict[str, Any]) -> str:
    variable, applied, not_applied = RULES[rule]
    lines = [bench.device_line(environment),
             f"jit(grad) of sum(sin(conv)) (the benchmark's step) traced with {variable}="
             f"{not_applied} (off) and ={applied} (on), interleaved medians in each of {len(runs)} "
             f"processes. ratio = on / off (below 1: the host rule made the step faster).",
             "",
             "| shape | dtype | off ms | on ms | ratio per run | median ratio |",
             "| --- | --- | ---: | ---: | --- | ---: |"]
    return "\n".join([*lines, *bench.ab_dtype_rows(runs, "off_s", "on_s")]) + "\n"


def main() -> int:
    parser = bench.ab_arguments(__doc__.splitlines()[0], repeats=7, runs=2,
                                out=RESULTS / "host-rule-avx512-cpu.md")
    parser.add_argument("--rule", choices=sorted(RULES), default="avx512")
    bench.dtypes_option(parser)
    args = bench.parse_ab_arguments(parser, SHAPES)
    return bench.run_ab(args, __file__,
                        lambda: one_run(args.rule, args.dtypes, args.repeats, args.only),
                        lambda runs: markdown(args.rule, runs, bench.environment()),
                        forward=["--rule", args.rule, "--dtypes", ",".join(args.dtypes)])


if __name__ == "__main__":
    sys.exit(main())
