"""``convgrad crosscheck``: the op against native lax autodiff on a chosen backend, or lowered."""

import argparse
import dataclasses
import json
import sys
from typing import Any

from convgrad.cli import comma_list
from convgrad.io import check_output, write_atomic

PLATFORMS = ("cpu", "gpu", "tpu")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``crosscheck`` subcommand."""
    parser = subparsers.add_parser(
        "crosscheck",
        help="check the op's gradients against native lax autodiff on this machine's devices",
        description="Run a grid of convolution configurations in every dtype and compare the "
        "op's output and rotated-filter gradients with jax.vjp of jax.lax.conv_general_dilated "
        "on the same device and precision, and with a float64 CPU reference. With several "
        "devices, also check jit(grad) sharded over a mesh of them. With --lower-only, export "
        "jit(grad) for the named platforms instead (no hardware needed) and check that the "
        "lowered StableHLO feeds the spatially reversed filter to a convolution and, for "
        "platforms other than cpu, that its convolutions are exactly native autodiff's.",
    )
    parser.add_argument("--platform", choices=PLATFORMS,
                        help="backend to run on (default: JAX's default backend)")
    parser.add_argument("--lower-only", metavar="PLATFORMS",
                        help="comma-separated export platforms among cpu,cuda,rocm,tpu")
    parser.add_argument("--dtypes", help="comma-separated dtypes (default: "
                        "float64,float32,bfloat16,float16)")
    parser.add_argument("--precision", choices=("highest", "default"), default="highest",
                        help="lax precision of both the op and native (default highest: on GPU "
                        "float32 is then true float32, not TF32)")
    parser.add_argument("--verbose", action="store_true", help="print one line per configuration")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.set_defaults(run=run)


def _dtypes(text: str | None) -> list[str]:
    from convgrad import crosscheck

    if text is None:
        return list(crosscheck.DTYPES)
    return comma_list("--dtypes", text, crosscheck.DTYPES)


def _device(platform: str | None) -> Any:
    import jax

    if platform is None:
        return jax.devices()[0]
    try:
        return jax.devices(platform)[0]
    except RuntimeError:
        present = sorted({device.platform for device in jax.devices()})
        raise ValueError(f"--platform (={platform}) is not present on this machine; JAX offers "
                         f"{', '.join(present)} (use --lower-only to check lowering for an "
                         "absent platform)") from None


def _run_lowering(platforms_text: str) -> tuple[dict[str, Any], bool]:
    from convgrad import crosscheck

    platforms = comma_list("--lower-only", platforms_text, crosscheck.EXPORT_PLATFORMS)
    rows = [crosscheck.lowering_check(platform, case)
            for platform in platforms for case in crosscheck.lowering_cases()]
    print(f"{'platform':<8} {'own rule':<8} {'reverse':>7} {'convs':>5}  rotated filter feeds  "
          f"convs as native  status  case")
    for row in rows:
        own, as_native = ("yes" if row[key] else "no"
                          for key in ("own_rule", "convolutions_as_native"))
        print(f"{row['platform']:<8} {own:<8} {row['reverses']:>7} {row['convolutions']:>5}  "
              f"{row['rotated_filter_feeds']:<20}  {as_native:<15}  "
              f"{'ok' if row['ok'] else 'FAIL':<6}  {row['case']}")
    print("own rule: exported with JAX's own autodiff rules of the convolution replaced by ones "
          "that raise (native autodiff must then fail to export, and did"
          f"{'' if all(row['native_needs_jax_rules'] for row in rows) else ' NOT everywhere'})")
    print("convs as native: the program's convolutions are exactly native autodiff's (required "
          "off CPU; on CPU the op chooses its own formulations)")
    return {"lowering": rows}, all(row["ok"] for row in rows)


def _print_grid(results: list[Any]) -> None:
    print(f"{'dtype':<10} {'precision':<9} {'configs':>7} {'abs vs native':>14} "
          f"{'rel vs native':>14} {'abs vs f64 ref':>14} {'rel vs f64 ref':>14}  status")
    for result in results:
        status = "ok" if not result.failures else f"{len(result.failures)} MISMATCH"
        print(f"{result.dtype:<10} {result.precision:<9} {result.configurations:>7} "
              f"{result.max_abs_error:>14.3e} {result.max_rel_error:>14.3e} "
              f"{result.max_abs_vs_reference:>14.3e} {result.max_rel_vs_reference:>14.3e}  {status}")
        for failure in result.failures:
            print(f"  {failure}", file=sys.stderr)


def _print_row(row: Any) -> None:
    print(f"  {row.dtype:<9} rel vs native {row.rel_vs_native:.2e}, vs f64 ref "
          f"{row.rel_vs_reference:.2e} (native {row.native_rel_vs_reference:.2e})  "
          f"{'ok' if row.ok else 'MISMATCH'}  {row.case}", flush=True)


def _run_sharding(device: Any) -> list[dict[str, Any]]:
    import jax

    from convgrad import crosscheck

    devices = jax.devices(device.platform)
    if len(devices) < 2:
        return []
    dtype = "float64" if device.platform == "cpu" else "float32"
    meshes = [((len(devices),), False)]
    if len(devices) % 2 == 0:  # batch, then rows, over "data"; out features over "model"
        meshes += [((len(devices) // 2, 2), False), ((len(devices) // 2, 2), True)]
    checks = [crosscheck.sharding_check(devices, mesh, dtype, rows=rows) for mesh, rows in meshes]
    for check in checks:
        print(f"sharded over {check['mesh']}, lhs {check['lhs_spec']} ({check['dtype']}): max "
              f"rel error {check['max_rel_error']:.3e}  {'ok' if check['ok'] else 'MISMATCH'}")
    return checks


def run(args: argparse.Namespace) -> int:
    """Run the grid (or the lowering check); exit code 1 on any mismatch."""
    import jax

    jax.config.update("jax_enable_x64", True)
    from convgrad import crosscheck

    if args.json is not None:  # before the work, which a bad path would throw away
        check_output(args.json, "--json")
    if args.lower_only is not None:  # an empty list is refused below, not taken as absent
        for name, given in (("--platform", args.platform), ("--dtypes", args.dtypes),
                            ("--precision", args.precision != "highest"),
                            ("--verbose", args.verbose)):
            if given:  # the grid's options: --lower-only runs no grid
                raise ValueError(f"{name} and --lower-only are exclusive")
        payload, ok = _run_lowering(args.lower_only)
        payload["environment"] = crosscheck.environment(jax.devices()[0])
    else:
        dtypes = _dtypes(args.dtypes)
        device = _device(args.platform)
        env = crosscheck.environment(device)
        print(f"device: {env['device']} ({env['platform']}, {env['device_count']} device(s)), "
              f"jax {env['jax']}, jaxlib {env['jaxlib']}", flush=True)
        results, rows = crosscheck.run_grid(device, dtypes, precision=args.precision,
                                            progress=_print_row if args.verbose else
                                            lambda row: None)
        print(f"configurations per dtype: {results[0].configurations}")
        _print_grid(results)
        sharding = _run_sharding(device)
        payload = {"environment": env, "results": [dataclasses.asdict(r) for r in results],
                   "rows": [dataclasses.asdict(row) for row in rows], "sharding": sharding}
        ok = not any(result.failures for result in results) and all(
            check["ok"] for check in sharding)
    if args.json:
        write_atomic(args.json, json.dumps(payload, indent=2) + "\n")
    return 0 if ok else 1
