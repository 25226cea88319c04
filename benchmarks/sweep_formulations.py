"""Where the CPU matrix-product formulations pay: whole steps with each one forced on and off.

    PYTHONPATH=. python benchmarks/sweep_formulations.py [--repeats N] [--runs R] [--rules R1,R2]
        [--only NAME1,NAME2] [--dtypes D1,D2] [--out FILE]

The op's CPU choice (``impl._formulations._matmul_formulation``) takes ``shift_matmul`` (forward
and input gradient) and ``taps_matmul`` (filter gradient) where ``_shift_pays`` and ``_taps_pay``
say they measured faster, ``channels_last_matmul`` instead of ``shift_matmul`` where
``_channels_last_pays`` does, ``winograd`` (forward and input gradient) where
``_winograd_pays`` does, and ``winograd_window`` (filter gradient) where
``_winograd_window_pays`` does. This script is the measurement behind those rules, to re-run when
XLA changes: for dense shapes beyond the benchmark suite (3-512 features, 7x7 to 112x112 planes,
3x3 and 5x5 windows) it times the benchmark's step (``convgrad.bench.grad_step``) with the rule's
answer forced to False and to True, interleaved in one process, and repeats that in ``--runs``
fresh processes (single processes on a shared 2-core VM have moved by up to 1.3x). A ratio
below 1 means the formulation made the step faster. Rows where the rule's own choice is the
slower one are flagged. ``--rules _newer_kernels`` instead forces which set of rules answers:
off, those fitted to jaxlib 0.10; on, those refitted for 0.11 and later (``_newer_kernels``).
"""

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import jax

import impl
from convgrad import bench
from impl import _formulations

RESULTS = Path(__file__).resolve().parent / "results"

SHAPES = [
    bench.Shape("resnet 3x3 s1", "suite", (16, 64, 56, 56), (64, 64, 3, 3), pad=1),
    bench.Shape("resnet 3x3 s2", "suite", (16, 128, 56, 56), (128, 128, 3, 3), stride=2, pad=1),
    bench.Shape("dilated 3x3 d2", "suite", (16, 64, 28, 28), (64, 64, 3, 3), pad=2, dilation=2),
    bench.Shape("large batch 3x3", "suite", (256, 32, 16, 16), (32, 32, 3, 3), pad=1),
    bench.Shape("16 features 64x64", "2-D", (16, 16, 64, 64), (16, 16, 3, 3), pad=1),
    bench.Shape("32 features 28x28", "2-D", (64, 32, 28, 28), (32, 32, 3, 3), pad=1),
    bench.Shape("64 features 28x28", "2-D", (34, 64, 28, 28), (64, 64, 3, 3), pad=1),
    bench.Shape("128 features 28x28", "2-D", (16, 128, 28, 28), (128, 128, 3, 3), pad=1),
    bench.Shape("128 features 14x14", "2-D", (64, 128, 14, 14), (128, 128, 3, 3), pad=1),
    bench.Shape("32 features 5x5", "2-D", (8, 32, 56, 56), (32, 32, 5, 5), pad=2),
    bench.Shape("64 features 5x5", "2-D", (12, 64, 28, 28), (64, 64, 5, 5), pad=2),
    bench.Shape("3 features s2 (stem)", "2-D", (16, 3, 112, 112), (32, 3, 3, 3), stride=2, pad=1),
    bench.Shape("32 features 8x8", "2-D", (256, 32, 8, 8), (32, 32, 3, 3), pad=1),
    bench.Shape("64 features 16x16", "2-D", (128, 64, 16, 16), (64, 64, 3, 3), pad=1),
    bench.Shape("256 features 14x14", "2-D", (16, 256, 14, 14), (256, 256, 3, 3), pad=1),
    bench.Shape("512 features 7x7", "2-D", (32, 512, 7, 7), (512, 512, 3, 3), pad=1),
    bench.Shape("256 features 14x14 s2", "2-D", (32, 256, 28, 28), (256, 256, 3, 3), stride=2,
                pad=1),
    # Few features on larger planes (fourteenth session: where the rule sets disagreed).
    bench.Shape("16 features 32x32", "2-D", (64, 16, 32, 32), (16, 16, 3, 3), pad=1),
    bench.Shape("24 features 56x56", "2-D", (16, 24, 56, 56), (24, 24, 3, 3), pad=1),
    bench.Shape("32 features 56x56", "2-D", (16, 32, 56, 56), (32, 32, 3, 3), pad=1),
    # Many features on small planes (thirtieth session: where bfloat16 products are slow).
    *bench.select_shapes(bench.many_features(), "256 features 7x7,512 features 14x14"),
    # Where Winograd stops paying (thirty-first session): few rows per product, a larger plane.
    bench.Shape("512 features 7x7, 9 images", "2-D", (9, 512, 7, 7), (512, 512, 3, 3), pad=1),
    bench.Shape("512 features 14x14, 2 images", "2-D", (2, 512, 14, 14), (512, 512, 3, 3), pad=1),
    bench.Shape("256 features 28x28", "2-D", (4, 256, 28, 28), (256, 256, 3, 3), pad=1),
    # Filter gradients by Winograd (thirty-second session): larger planes, more features.
    *bench.select_shapes(bench.many_features(),
                         "256 features 56x56,640 features 8x8,128 features 112x112"),
    bench.Shape("256 features 28x28, 16 images", "2-D", (16, 256, 28, 28), (256, 256, 3, 3),
                pad=1),
]
RULES = ("_shift_pays", "_taps_pay", "_channels_last_pays", "_winograd_pays",
         "_winograd_window_pays")
# Not one rule but which set of them answers (those fitted to jaxlib 0.10 or to 0.11 and later):
# forced off and on, the two whole sets side by side under the installed jaxlib.
GENERATION = "_newer_kernels"
FORCIBLE = (*RULES, GENERATION)
DTYPES = bench.SUITE_DTYPES


@contextmanager
def _forced(rule: str, answer: bool) -> Iterator[None]:
    saved = getattr(_formulations, rule)
    setattr(_formulations, rule, lambda *args: answer)
    try:
        yield
    finally:
        setattr(_formulations, rule, saved)


def _rule_answers(shape: bench.Shape, dtype: str) -> dict[str, list[bool]]:
    """What each rule answered while tracing this shape's step (one entry per question)."""
    answers: dict[str, list[bool]] = {rule: [] for rule in FORCIBLE}
    saved = {rule: getattr(_formulations, rule) for rule in answers}

    def recorder(rule: str) -> Any:
        def ask(*args: Any) -> bool:
            answer = saved[rule](*args)
            answers[rule].append(bool(answer))
            return answer
        return ask

    for rule in answers:
        setattr(_formulations, rule, recorder(rule))
    try:
        jax.make_jaxpr(bench.grad_step(impl.conv_general_dilated, shape))(
            *bench.make_inputs(shape, dtype))
    finally:
        for rule, function in saved.items():
            setattr(_formulations, rule, function)
    return answers


def one_run(repeats: int, rules: list[str], only: str = "",
            dtypes: tuple[str, ...] = DTYPES) -> list[dict[str, Any]]:
    """Each shape, dtype and rule: step seconds with the rule forced off and on (this process)."""
    rows = []
    for shape in bench.select_shapes(SHAPES, only):
        for dtype in dtypes:
            args = bench.make_inputs(shape, dtype)
            answers = _rule_answers(shape, dtype)
            for rule in rules:
                if not answers[rule]:
                    continue  # the rule is never asked for this shape
                steps, programs = {}, []
                for answer in (False, True):
                    with _forced(rule, answer):
                        lowered = bench.grad_step(impl.conv_general_dilated, shape).lower(*args)
                    programs.append(lowered.as_text())
                    compiled = lowered.compile()
                    steps[str(answer)] = (lambda compiled=compiled, args=args:
                                          jax.block_until_ready(compiled(*args)))
                times = bench.interleaved_medians(steps, repeats)
                rows.append({"shape": shape.name, "dtype": dtype, "rule": rule,
                             "rule_says": answers[rule], "off_s": times["False"],
                             "on_s": times["True"], "same_program": programs[0] == programs[1]})
    return rows


def markdown(runs: list[list[dict[str, Any]]], environment: dict[str, Any]) -> str:
    lines = [bench.device_line(environment),
             f"jit(grad) of sum(sin(conv)) (the benchmark's step), each rule forced off and on, "
             f"interleaved medians in each of {len(runs)} processes. ratio = on / off (below 1: "
             f"the formulation made the step faster). rule: what the rule answers (per question "
             f"it is asked). !: the rule's answer is the slower one in the median of the runs. "
             f"same: both answers gave the same program (where a rule's answer changes nothing "
             f"else downstream), so the ratio shows only the noise of the measurement.",
             "",
             "| shape | dtype | rule | off ms | on ms | ratio per run | median ratio | rule | |",
             "| --- | --- | --- | ---: | ---: | --- | ---: | --- | --- |"]
    for index, first in enumerate(runs[0]):
        rows = [run[index] for run in runs]
        cells, median = bench.ab_cells(rows, "off_s", "on_s")
        says = first["rule_says"]
        same = first["same_program"]
        wrong = not same and ((all(says) and median > 1.0) or (not any(says) and median < 1.0))
        lines.append(
            f"| {first['shape']} | {first['dtype']} | `{first['rule']}` | {cells} | "
            f"{'/'.join('on' if a else 'off' for a in says)} | "
            f"{'same' if same else '!' if wrong else ''} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = bench.ab_arguments(__doc__.splitlines()[0], repeats=9, runs=2,
                                out=RESULTS / "formulation-sweep-cpu.md")
    parser.add_argument("--rules", default=",".join(RULES),
                        help=f"comma-separated, of {', '.join(FORCIBLE)} (default: "
                        f"{', '.join(RULES)})")
    bench.dtypes_option(parser)
    args = bench.parse_ab_arguments(parser, SHAPES)
    rules, dtypes = args.rules.split(","), tuple(args.dtypes)
    if not set(rules) <= set(FORCIBLE):
        parser.error(f"--rules: unknown {', '.join(sorted(set(rules) - set(FORCIBLE)))}")
    return bench.run_ab(args, __file__, lambda: one_run(args.repeats, rules, args.only, dtypes),
                        lambda runs: markdown(runs, bench.environment()),
                        forward=["--rules", args.rules, "--dtypes", ",".join(dtypes)])


if __name__ == "__main__":
    sys.exit(main())
