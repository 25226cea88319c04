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
(same suite, same order).
"""

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from convgrad.io import write_atomic


def _load(paths: str) -> list[dict[str, Any]]:
    return [json.loads(Path(path).read_text()) for path in paths.split(",")]


def _median(runs: list[dict[str, Any]], index: int, field: str) -> float:
    return statistics.median(run["rows"][index]["seconds"][field] for run in runs)


def _loss(runs: list[dict[str, Any]], index: int) -> float:
    """XLA's time for the loss's own elementwise work (its cos) on the row's output."""
    return statistics.median(run["rows"][index]["loss_seconds"]["xla"] for run in runs)


def _ratio(runs: list[dict[str, Any]], index: int) -> float:
    return statistics.median(run["rows"][index]["seconds"]["ours"]
                             / run["rows"][index]["seconds"]["native"] for run in runs)


def markdown(a: list[dict[str, Any]], b: list[dict[str, Any]], labels: tuple[str, str]) -> str:
    keys = [[(row["name"], row["dtype"]) for row in run["rows"]] for run in (*a, *b)]
    if any(key != keys[0] for key in keys):
        raise ValueError("the runs hold different suites (rows differ in name, dtype or order)")
    la, lb = labels
    lines = []
    for label, runs in ((la, a), (lb, b)):
        env = runs[0]["environment"]
        speeds = "; ".join(", ".join(f"{name.removeprefix('xla_')} {value:.0f}" for name, value in run[
            "machine_speed"].items()) for run in runs)
        python = env["versions"].get("python")  # older reports did not record it
        lines.append(f"- {label}: {f'Python {python}, ' if python else ''}"
                     f"jax {env['versions']['jax']}, "
                     f"jaxlib {env['versions']['jaxlib']}, "
                     f"numpy {env['versions']['numpy']}; {len(runs)} processes; machine speed "
                     f"per process: {speeds}.")
    lines += ["", f"Medians over each side's processes. B = {lb}, A = {la}.", "",
              "| shape | dtype | ours ms A | native ms A | ours ms B | native ms B "
              "| ours/native A | ours/native B | ours B/A | native B/A | loss ms A | loss ms B |",
              "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    ratios: dict[str, list[float]] = {"A": [], "B": []}
    for index, (name, dtype) in enumerate(keys[0]):
        oa, na, ob, nb = (_median(a, index, "ours"), _median(a, index, "native"),
                          _median(b, index, "ours"), _median(b, index, "native"))
        ra, rb = _ratio(a, index), _ratio(b, index)
        ratios["A"].append(ra)
        ratios["B"].append(rb)
        lines.append(f"| {name} | {dtype} | {1e3 * oa:.1f} | {1e3 * na:.1f} | {1e3 * ob:.1f} | "
                     f"{1e3 * nb:.1f} | {ra:.2f} | {rb:.2f} | {ob / oa:.2f} | {nb / na:.2f} | "
                     f"{1e3 * _loss(a, index):.1f} | {1e3 * _loss(b, index):.1f} |")
    lines.append("")
    for side, label in (("A", la), ("B", lb)):
        lines.append(f"ours/native with {label}: median {statistics.median(ratios[side]):.2f}, "
                     f"worst {max(ratios[side]):.2f}.")
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
