"""The ``convgrad`` command: one subcommand per module in ``convgrad.commands``.

Each command module provides ``register(subparsers)``, which adds its parser and sets ``run`` (a
function of the parsed arguments returning the exit code). Bad user input raises
``UsageError``/``ValueError``/``TypeError``, printed here as one line with exit code 2.
"""

import argparse
import importlib
import sys
from collections.abc import Sequence

COMMANDS = ("report", "crosscheck", "bench")


class UsageError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="convgrad",
        description="Backpropagation through a convolution: exact derivations and a JAX op.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"convgrad.commands.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except (UsageError, ValueError, TypeError) as err:
        print(f"convgrad {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
