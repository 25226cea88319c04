"""``convgrad crosscheck``: the op against native lax autodiff on the devices JAX offers."""

import argparse
import dataclasses
import json
import sys

from convgrad.io import write_atomic


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``crosscheck`` subcommand."""
    parser = subparsers.add_parser(
        "crosscheck",
        help="check the op's gradients against native lax autodiff on this machine's devices",
        description="Run a grid of convolution configurations in every dtype and compare the "
        "op's output and rotated-filter gradients with jax.vjp of jax.lax.conv_general_dilated.",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the grid on the default device; exit code 1 on any mismatch."""
    import jax

    jax.config.update("jax_enable_x64", True)
    from convgrad import crosscheck

    device = jax.devices()[0]
    env = crosscheck.environment(device)
    results = crosscheck.run_grid(device)
    print(f"device: {env['device']} ({env['platform']}), jax {env['jax']}, jaxlib {env['jaxlib']}")
    print(f"configurations per dtype: {results[0].configurations}")
    print(f"{'dtype':<10} {'configs':>7} {'max abs error':>14} {'max rel error':>14}  status")
    for result in results:
        status = "ok" if not result.failures else f"{len(result.failures)} MISMATCH"
        print(f"{result.dtype:<10} {result.configurations:>7} {result.max_abs_error:>14.3e} "
              f"{result.max_rel_error:>14.3e}  {status}")
        for failure in result.failures:
            print(f"  {failure}", file=sys.stderr)
    if args.json:
        payload = {"environment": env, "results": [dataclasses.asdict(r) for r in results]}
        write_atomic(args.json, json.dumps(payload, indent=2) + "\n")
    return 1 if any(result.failures for result in results) else 0
