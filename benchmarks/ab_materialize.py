"""Whether the op's CPU cotangent materialisation still pays: whole steps with it and without.

    PYTHONPATH=. python benchmarks/ab_materialize.py [--runs R] [--repeats N] [--only NAMES]
        [--out FILE]

On CPU the op computes a 32- or 64-bit cotangent once into its own buffer before the rule's
convolutions read it (``impl._formulations.materialize``, item 9 of benchmarks/README.md), since
XLA otherwise fuses the loss's elementwise producer into every read and recomputes it there. This
script times the benchmark's step (``convgrad.bench.grad_step``, float32, the model suite) with
that function as it is and replaced by the identity, interleaved in one process, in ``--runs``
fresh processes. A ratio above 1 means the materialisation made the step faster.
"""

import sys
from pathlib import Path
from typing import Any

import jax

import impl
from convgrad import bench
from impl import _formulations

RESULTS = Path(__file__).resolve().parent / "results"


def lowered_steps(shape: bench.Shape, args: tuple[jax.Array, jax.Array]
                  ) -> dict[str, jax.stages.Lowered]:
    """The op's step for ``shape`` lowered with the materialisation and with the identity instead."""
    saved = _formulations.materialize
    lowered = {}
    for name, materialize in (("with", saved), ("without", lambda array: array)):
        _formulations.materialize = materialize
        try:
            lowered[name] = bench.grad_step(impl.conv_general_dilated, shape).lower(*args)
        finally:
            _formulations.materialize = saved
    return lowered


def one_run(repeats: int, only: str) -> list[dict[str, Any]]:
    """Each suite shape in float32: step seconds with and without the materialisation."""
    rows = []
    for shape in bench.select_shapes(bench.model_suite(), only):
        args = bench.make_inputs(shape, "float32")
        steps = {}
        for name, lowered in lowered_steps(shape, args).items():
            compiled = lowered.compile()
            steps[name] = (lambda compiled=compiled, args=args:
                           jax.block_until_ready(compiled(*args)))
        times = bench.interleaved_medians(steps, repeats)
        rows.append({"shape": shape.name, "with_s": times["with"], "without_s": times["without"]})
    return rows


def markdown(runs: list[list[dict[str, Any]]], environment: dict[str, Any]) -> str:
    lines = [bench.device_line(environment),
             f"jit(grad) of sum(sin(conv)) in float32 (the benchmark's step), the op with its CPU "
             f"cotangent materialisation and without it, interleaved medians in each of "
             f"{len(runs)} processes. ratio = without / with (above 1: materialising pays).",
             "",
             "| shape | with ms | without ms | ratio per run | median ratio |",
             "| --- | ---: | ---: | --- | ---: |"]
    for index, first in enumerate(runs[0]):
        rows = [run[index] for run in runs]
        cells, _ = bench.ab_cells(rows, "with_s", "without_s")
        lines.append(f"| {first['shape']} | {cells} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = bench.ab_arguments(__doc__.splitlines()[0], repeats=7, runs=3,
                                out=RESULTS / "materialize-cpu.md")
    args = bench.parse_ab_arguments(parser, bench.model_suite())
    return bench.run_ab(args, __file__, lambda: one_run(args.repeats, args.only),
                        lambda runs: markdown(runs, bench.environment()))


if __name__ == "__main__":
    sys.exit(main())
