"""Two environments' runs of the model suite, side by side: e.g. two jax versions on one machine.

    convgrad bench --no-torch --json a1.json        # environment A (e.g. jax 0.10.2)
    /other/venv/bin/convgrad bench --no-torch --json b1.json      # environment B, alternating
    PYTHONPATH=. python benchmarks/compare_runs.py a1.json,a2.json b1.json,b2.json \
        --labels "jax 0.10.2,jax 0.12.0.1" --out comparison.md

Different interpreters cannot share a process, so each environment's runs are separate processes;
alternate them (A, B, A, B) so that a slow spell of a shared VM does not fall on one side. Per row
it gives the median over each side's runs of the op's and native's step times, ours/native as
each run measured it side by side (median over runs), B's times over A's, and XLA's time for
the loss's own elementwise work (the cos in the gradient of sum(sin(conv))). Rows must match
(same suite, same order); each side's runs are combined as `convgrad bench --processes` does
(``bench.combine_runs``).
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from convgrad import bench
from convgrad.io import write_atomic


def _load(paths: str) -> list[dict[str, Any]]:
    return [json.loads(Path(path).read_text()) for path in paths.split(",")]


def markdown(a: list[dict[str, Any]], b: list[dict[str, Any]], labels: tuple[str, str]) -> str:
    side_a, side_b = bench.combine_runs(a), bench.combine_runs(b)  # medians over each side's runs
    if ([(row["name"], row["dtype"]) for row in side_a["rows"]]
            != [(row["name"], row["dtype"]) for row in side_b["rows"]]):
        raise ValueError("the runs hold different suites (rows differ in name, dtype or order)")
    la, lb = labels
    lines = []
    for label, runs in ((la, a), (lb, b)):
        versions = runs[0]["environment"]["versions"]
        speeds = "; ".join(", ".join(f"{name.removeprefix('xla_')} {value:.0f}" for name, value in run[
            "machine_speed"].items()) for run in runs)
        python = versions.get("python")  # older reports did not record it
        lines.append(f"- {label}: {f'Python {python}, ' if python else ''}jax {versions['jax']}, "
                     f"jaxlib {versions['jaxlib']}, numpy {versions['numpy']}; {len(runs)} "
                     f"processes; machine speed per process: {speeds}.")
    lines += ["", f"Medians over each side's processes. B = {lb}, A = {la}.", "",
              "| shape | dtype | ours ms A | native ms A | ours ms B | native ms B "
              "| ours/native A | ours/native B | ours B/A | native B/A | loss ms A | loss ms B |",
              "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row_a, row_b in zip(side_a["rows"], side_b["rows"], strict=True):
        (oa, na), (ob, nb) = ((row["seconds"]["ours"], row["seconds"]["native"])
                              for row in (row_a, row_b))
        lines.append(f"| {row_a['name']} | {row_a['dtype']} | {1e3 * oa:.1f} | {1e3 * na:.1f} | "
                     f"{1e3 * ob:.1f} | {1e3 * nb:.1f} | {row_a['ratio_vs_native']:.2f} | "
                     f"{row_b['ratio_vs_native']:.2f} | {ob / oa:.2f} | {nb / na:.2f} | "
                     f"{1e3 * row_a['loss_seconds']['xla']:.1f} | "
                     f"{1e3 * row_b['loss_seconds']['xla']:.1f} |")
    lines.append("")
    for label, side in ((la, side_a), (lb, side_b)):
        stats = side["summary"]["vs_native"]
        lines.append(f"ours/native with {label}: median {stats['median']:.2f}, "
                     f"worst {stats['worst']:.2f}.")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", help="comma-separated bench --json files of environment A")
    parser.add_argument("b", help="comma-separated bench --json files of environment B")
    parser.add_argument("--labels", default="A,B", help="two comma-separated names")
    parser.add_argument("--out", type=Path, help="write the Markdown here too")
    args = parser.parse_args()
    labels = tuple(args.labels.split(","))
    if len(labels) != 2:
        parser.error("--labels: give two names, comma-separated")
    table = markdown(_load(args.a), _load(args.b), labels)
    if args.out:
        write_atomic(args.out, table)
    print(table, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
