"""``convgrad report``: derivation reports (filled in by the reports issue)."""

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``report`` subcommand."""
    parser = subparsers.add_parser("report", help="write a derivation report")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Print the report."""
    raise NotImplementedError
