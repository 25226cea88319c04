"""Time derive's exact derive-and-verify against per-entry ``sympy.diff`` of the expanded loss.

Both compute every entry of dL/dX and dL/dF of a single-channel 2-D convolution exactly and check
it against the rotated-filter rule:

* derive: ``derive.derive_2d`` (the loss differentiated monomial by monomial, the rule built by
  spread/pad/rotate/correlate, compared as canonical sums);
* per-entry diff: the textbook way, ``L = expand(sum G * O)`` and ``sympy.diff(L, v)`` for every
  input and filter entry v, each compared with derive's rule form by ``expand(a - b) == 0``.

The ratio is measured in one run at a size both can do; then the 64x64 input / 5x5 filter case
runs with derive alone (per-entry diff would take hours there).

    python benchmarks/bench_derive.py [--small 12] [--filter 3] [--large 64] [--large-filter 5]
                                      [--repeat 3] [--json PATH]
"""

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

import sympy
from sympy.core.cache import clear_cache

from convgrad.io import write_atomic
from derive import Derivation2D, derive_2d


def per_entry_diff(d: Derivation2D) -> bool:
    """Derive with ``sympy.diff`` on the expanded loss, entry by entry, and check the rule."""
    rows, cols = d.output_shape
    kh, kw = d.filter_shape
    output = [[sum(d.X[i + u, j + v] * d.F[u, v] for u in range(kh) for v in range(kw))
               for j in range(cols)] for i in range(rows)]
    loss = sympy.expand(sum(d.G[i, j] * output[i][j] for i in range(rows) for j in range(cols)))
    verified = True
    for symbols, rule in ((d.X, d.rule_dL_dX), (d.F, d.rule_dL_dF)):
        for index in range(len(symbols)):
            verified &= sympy.expand(sympy.diff(loss, symbols[index]) - rule[index]) == 0
    return bool(verified)


def _label(case: tuple[tuple[int, int], tuple[int, int]]) -> str:
    (h, w), (kh, kw) = case
    return f"{h}x{w}/{kh}x{kw}"


def best_of(repeat: int, function: Callable[[], object]) -> tuple[float, object]:
    """(fastest wall time in seconds, last result) over ``repeat`` runs, each from a cold cache.

    SymPy caches constructed expressions; without clearing it, a repeat would mostly look up the
    previous run's results.
    """
    times, result = [], None
    for _ in range(repeat):
        clear_cache()
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return min(times), result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=12, help="input size of the ratio case")
    parser.add_argument("--filter", type=int, default=3, help="filter size of the ratio case")
    parser.add_argument("--large", type=int, default=64, help="input size of the large case")
    parser.add_argument("--large-filter", type=int, default=5, help="filter size of the large case")
    parser.add_argument("--repeat", type=int, default=3, help="runs per timing (best is kept)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)

    small = ((args.small, args.small), (args.filter, args.filter))
    fast, small_case = best_of(args.repeat, lambda: derive_2d(*small))
    slow, slow_verified = best_of(1, lambda: per_entry_diff(small_case))
    large = ((args.large, args.large), (args.large_filter, args.large_filter))
    large_time, large_case = best_of(args.repeat, lambda: derive_2d(*large))

    rows = [
        ("derive_2d", _label(small), fast, small_case.verified),
        ("per-entry sympy.diff", _label(small), slow, slow_verified),
        ("derive_2d", _label(large), large_time, large_case.verified),
    ]
    print(f"{'method':<22} {'input/filter':<20} {'seconds':>9}  verified")
    for method, case, seconds, verified in rows:
        print(f"{method:<22} {case:<20} {seconds:>9.3f}  {verified}")
    print(f"ratio per-entry diff / derive at {_label(small)}: {slow / fast:.1f}x")
    if args.json:
        result = {
            "rows": [dict(method=m, case=c, seconds=s, verified=v) for m, c, s, v in rows],
            "ratio": slow / fast,
            "python": platform.python_version(),
            "sympy": sympy.__version__,
            "machine": platform.machine(),
        }
        write_atomic(args.json, json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
