"""The ``convgrad`` command: one subcommand per module in ``convgrad.commands``.

Each command module provides ``register(subparsers)``, which adds its parser and sets ``run`` (a
function of the parsed arguments returning the exit code). Bad user input raises
``UsageError``/``ValueError``/``TypeError``, printed here as one line with exit code 2; a failure
of the system (a full disk, a closed standard output) is one line too, with exit code 1.
"""

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

COMMANDS = ("report", "crosscheck", "bench")


class UsageError(ValueError):
    """A user-facing error: printed as one line, exit code 2."""


def comma_list(option: str, text: str, choices: Sequence[str]) -> list[str]:
    """The comma-separated entries of ``text``, each one of ``choices`` and none named twice;
    else a ``UsageError`` naming ``option``.

    >>> comma_list("--dtypes", "float32,bfloat16", ("float32", "bfloat16"))
    ['float32', 'bfloat16']
    """
    entries = text.split(",")
    for entry in entries:
        if entry not in choices:
            raise UsageError(f"{option} entry (={entry!r}) must be one of {', '.join(choices)}")
    for entry in entries:
        if entries.count(entry) > 1:
            raise UsageError(f"{option} (={text!r}) names {entry!r} twice")
    return entries


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


def _quiet_stdout() -> None:
    """Point standard output at /dev/null, so that flushing it at exit raises nothing more."""
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), sys.stdout.fileno())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        code = int(args.run(args))
        sys.stdout.flush()  # a failure to write the output is this command's, not the exit's
        return code
    except (ValueError, TypeError) as err:  # UsageError is a ValueError
        print(f"convgrad {args.command}: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (`convgrad report | head -1`): nothing to say
        _quiet_stdout()
        return 1
    except OSError as err:
        where = f": {err.filename}" if err.filename else ""
        print(f"convgrad {args.command}: error: {err.strerror or err}{where}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    # As ``python -m convgrad.cli`` this file runs as ``__main__``, a second copy of the module;
    # run the imported module's ``main``, the one the commands' ``UsageError`` belongs to.
    from convgrad.cli import main as convgrad_main

    sys.exit(convgrad_main())
