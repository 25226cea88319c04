"""``convgrad report``: the exact derivation of one case (or the general proofs) as a report.

With no arguments, the tutorial's case (3x3 input, 2x2 filter) as Markdown on stdout. Options
choose the case, the formats (``md``, ``tex``, ``html``, ``json``) and where they go: stdout for
one format, ``-o FILE`` for one, ``-o FOLDER`` for several (``report.<ext>`` each). Everything is
validated and rendered before anything is written, and files are written atomically, so bad input
or an interrupted run leaves no (partial) file.
"""

import argparse
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

from convgrad.cli import UsageError
from convgrad.io import check_output, write_folder_atomic

PADDING_KINDS = ("VALID", "SAME", "SAME_LOWER")
CASE_DEFAULTS = {"input": "3x3", "filter": "2x2", "stride": "1", "padding": "VALID", "dilation": "1",
                 "batch": "1", "channels": "1x1", "groups": "1"}
# Guards on the case's size: a report derives every entry exactly, so its time grows with the
# products of its forward pass (3x3 filter, SAME: 64x64 inputs 8.6 s on two cores, 128x128 19 s,
# 170x170, 260,100 products, 30 s); so does it with the cells of its arrays (padded input,
# dilated filter, spread and padded G, drawn in the figures), which a large stride, dilation or
# padding makes many at few products (a 1024x1024 input with stride 1024: one product, 44 s and
# 1.2 GB); each option's value is bounded too, which keeps the index arithmetic in range.
MAX_PRODUCTS = 2**18
MAX_CELLS = 2**16
MAX_VALUE = 4096
SUFFIXES = {".md": "md", ".markdown": "md", ".tex": "tex", ".html": "html", ".htm": "html",
            ".json": "json"}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``report`` subcommand."""
    parser = subparsers.add_parser(
        "report",
        help="write the exact derivation of a convolution's gradients as a report",
        description="Derive dL/dX and dL/dF of a 2-D convolution (single channel, or with a "
        "batch, channels and feature groups) exactly, show they equal the rotated-filter rule, "
        "cross-check them numerically, and write it all as Markdown (default, on stdout), LaTeX, "
        "HTML with MathML, or JSON.",
    )
    parser.add_argument("--input", default=CASE_DEFAULTS["input"], metavar="HxW",
                        help="input size (default 3x3)")
    parser.add_argument("--filter", default=CASE_DEFAULTS["filter"], metavar="KHxKW",
                        help="filter size (default 2x2)")
    parser.add_argument("--stride", default=CASE_DEFAULTS["stride"], metavar="S|SH,SW",
                        help="stride, one integer or one per axis (default 1)")
    parser.add_argument("--padding", default=CASE_DEFAULTS["padding"], metavar="P",
                        help="VALID (default), SAME, SAME_LOWER, one integer for every side, one per "
                        "axis (PH,PW) or low:high per axis (T:B,L:R)")
    parser.add_argument("--dilation", default=CASE_DEFAULTS["dilation"], metavar="D|DH,DW",
                        help="filter dilation, one integer or one per axis (default 1)")
    parser.add_argument("--batch", default=CASE_DEFAULTS["batch"], metavar="N",
                        help="batch size (default 1)")
    parser.add_argument("--channels", default=CASE_DEFAULTS["channels"], metavar="CIN[xCOUT]",
                        help="input and output channels, e.g. 4x6 (default 1x1; one number: "
                        "the same in and out)")
    parser.add_argument("--groups", default=CASE_DEFAULTS["groups"], metavar="G",
                        help="feature groups (feature_group_count); must divide both channel "
                        "counts (default 1)")
    parser.add_argument("--general", action="store_true",
                        help="the symbolic-size proofs of the rule instead of one case")
    parser.add_argument("--format", action="append", metavar="FMT",
                        help="md, tex, html or json; repeat or comma-separate for several "
                        "(default: from the -o suffix, else md)")
    parser.add_argument("-o", "--output", metavar="PATH",
                        help="a file (one format), or a folder (several formats, or a path "
                        "ending in /): report.<ext> for each format (a new folder is made); "
                        "default stdout")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed (a non-negative integer) of the random numbers of the numeric "
                        "cross-check (default 0)")
    parser.set_defaults(run=run)


def parse_size(option: str, text: str, form: str = "HxW", example: str = "3x3") -> tuple[int, int]:
    """``"HxW"`` (or ``"N"`` for NxN) as two positive ints; ``form`` and ``example`` word the error.

    >>> parse_size("--input", "5x4"), parse_size("--filter", "3")
    ((5, 4), (3, 3))
    """
    match = re.fullmatch(r"\s*(\d+)\s*(?:[x×X]\s*(\d+)\s*)?", text)
    if match is None:
        raise UsageError(f"{option} (={text!r}) must be {form} with positive integers, e.g. {example}")
    sizes = (int(match.group(1)), int(match.group(2) or match.group(1)))
    if min(sizes) < 1:
        raise UsageError(f"{option} (={text!r}) must have sizes of at least 1")
    return _bounded(option, text, sizes)


def _bounded(option: str, text: str, values: tuple[int, ...]) -> tuple[int, ...]:
    if max(values) > MAX_VALUE:
        raise UsageError(f"{option} (={text!r}) must have values of at most {MAX_VALUE}")
    return values


def parse_per_axis(option: str, text: str, minimum: int) -> tuple[int, int]:
    """One integer for both axes or two (``"2,1"`` or ``"2x1"``), each at least ``minimum``.

    >>> parse_per_axis("--stride", "2", 1), parse_per_axis("--dilation", "1,3", 1)
    ((2, 2), (1, 3))
    """
    match = re.fullmatch(r"\s*(-?\d+)\s*(?:[,x]\s*(-?\d+)\s*)?", text)
    if match is None:
        raise UsageError(f"{option} (={text!r}) must be one integer or two separated by a comma")
    values = (int(match.group(1)), int(match.group(2) or match.group(1)))
    if min(values) < minimum:
        raise UsageError(f"{option} (={text!r}) must have values of at least {minimum}")
    return _bounded(option, text, values)


def parse_count(option: str, text: str) -> int:
    """One positive integer.

    >>> parse_count("--batch", " 2 ")
    2
    """
    match = re.fullmatch(r"\s*(-?\d+)\s*", text)
    if match is None or int(match.group(1)) < 1:
        raise UsageError(f"{option} (={text!r}) must be a positive integer")
    return _bounded(option, text, (int(match.group(1)),))[0]


def parse_channels(args: argparse.Namespace) -> tuple[int, tuple[int, int], int]:
    """``(batch, (in, out), groups)`` from ``--batch``, ``--channels``, ``--groups``.

    >>> parse_channels(argparse.Namespace(batch="2", channels="4x6", groups="2"))
    (2, (4, 6), 2)
    """
    batch = parse_count("--batch", args.batch)
    channels = parse_size("--channels", args.channels, "CIN or CINxCOUT", "4x6")
    groups = parse_count("--groups", args.groups)
    if channels[0] % groups or channels[1] % groups:
        raise UsageError(f"--groups (={args.groups!r}) must divide both channel counts "
                         f"(--channels {channels[0]}x{channels[1]})")
    return batch, channels, groups


def parse_padding(text: str) -> str | tuple[tuple[int, int], tuple[int, int]]:
    """VALID/SAME/SAME_LOWER, ``"P"``, ``"PH,PW"`` or ``"T:B,L:R"`` as derive's padding.

    >>> parse_padding("same"), parse_padding("1"), parse_padding("1,2"), parse_padding("0:1,2:0")
    ('SAME', ((1, 1), (1, 1)), ((1, 1), (2, 2)), ((0, 1), (2, 0)))
    """
    if text.strip().upper() in PADDING_KINDS:
        return text.strip().upper()
    axes = text.split(",")
    if len(axes) == 1:
        axes = axes * 2
    pairs = []
    for axis in axes if len(axes) == 2 else ():
        match = re.fullmatch(r"\s*(-?\d+)\s*(?::\s*(-?\d+)\s*)?", axis)
        if match is None:
            break
        pairs.append((int(match.group(1)), int(match.group(2) or match.group(1))))
    if len(pairs) != 2:
        raise UsageError(f"--padding (={text!r}) must be VALID, SAME, SAME_LOWER, an integer, "
                         "two integers (PH,PW) or low:high pairs (T:B,L:R)")
    if min(min(pair) for pair in pairs) < 0:
        raise UsageError(f"--padding (={text!r}) must not be negative")
    _bounded("--padding", text, (*pairs[0], *pairs[1]))
    return (pairs[0], pairs[1])


def parse_formats(values: list[str] | None, output: str | None) -> list[str]:
    """The formats asked for, in order, without repeats; default from ``output``'s suffix, else md.

    >>> parse_formats(["md,html", "md"], None), parse_formats(None, "r.tex")
    (['md', 'html'], ['tex'])
    """
    from convgrad.report import FORMATS

    if not values:
        suffix = Path(output).suffix.lower() if output else ""
        return [SUFFIXES.get(suffix, "md")]
    formats: list[str] = []
    for value in values:
        for name in (part.strip().lower() for part in value.split(",")):
            if name not in FORMATS:
                raise UsageError(f"--format (={name!r}) must be one of {', '.join(FORMATS)}")
            if name not in formats:
                formats.append(name)
    return formats


def _targets(formats: list[str], output: str | None) -> dict[str, Path] | None:
    """Where each format goes (None: stdout); raises UsageError for a path that cannot work."""
    if output is None:
        if len(formats) > 1:
            raise UsageError(f"several formats (={', '.join(formats)}) need -o FOLDER")
        return None
    if not output.strip():
        raise UsageError("-o (='') must name a file or a folder")
    path = Path(output)
    from convgrad.report import FORMATS

    try:
        is_folder, exists = path.is_dir(), path.exists()
    except OSError as err:  # a name too long, say
        raise UsageError(f"-o (={output!r}) cannot be used: {err.strerror}") from None
    ends_as_folder = output.endswith(("/", os.sep))
    if len(formats) == 1 and not is_folder and not ends_as_folder:
        check_output(path, "-o")  # a file, a link to one, a device or a pipe
        return {formats[0]: path}
    if exists and not is_folder:
        raise UsageError(f"-o (={output!r}) must be a folder"
                         f"{'' if ends_as_folder else ' for several formats'}, not a file")
    _require_folder(path if is_folder else path.parent, output)
    targets = {name: path / f"report{FORMATS[name]}" for name in formats}
    for target in targets.values() if is_folder else ():  # nothing in the way of any file
        check_output(target, "-o")
    return targets


def _require_folder(folder: Path, output: str) -> None:
    if not folder.is_dir():
        raise UsageError(f"-o (={output!r}) must be in an existing folder (={str(folder)!r})")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"-o (={output!r}) is not writable")


def _progress() -> Callable[[str, int, int], None] | None:
    """A progress line on stderr when it is a terminal, else nothing."""
    if not sys.stderr.isatty():
        return None

    def report(stage: str, done: int, total: int) -> None:
        end = "\n" if done == total else ""
        print(f"\rconvgrad report: {stage} {done}/{total}", end=end, file=sys.stderr, flush=True)

    return report


def _derivation(args: argparse.Namespace) -> object:
    """``derive.derive_2d`` of the case, or ``derive.derive_conv`` (NCHW / OIHW) when it has a
    batch, channels or groups."""
    import derive

    spatial_input = parse_size("--input", args.input)
    spatial_filter = parse_size("--filter", args.filter)
    stride, dilation = (parse_per_axis(f"--{name}", getattr(args, name), 1)
                        for name in ("stride", "dilation"))
    padding = parse_padding(args.padding)
    batch, (inputs, outputs), groups = parse_channels(args)
    if (batch, inputs, outputs, groups) == (1, 1, 1, 1):
        return derive.derive_2d(spatial_input, spatial_filter, stride=stride, padding=padding,
                                dilation=dilation, progress=_progress())
    return derive.derive_conv(
        (batch, inputs, *spatial_input), (outputs, inputs // groups, *spatial_filter), stride,
        padding, rhs_dilation=dilation, feature_group_count=groups, progress=_progress())


def _case_texts(args: argparse.Namespace, formats: list[str], figures: bool) -> dict[str, str]:
    from convgrad.report import case_report

    return case_report(_derivation(args), formats, figures=figures, seed=args.seed)


def _general_texts(args: argparse.Namespace, formats: list[str]) -> dict[str, str]:
    import derive
    from convgrad.report import general_report

    case_options = [f"--{name}" for name, default in CASE_DEFAULTS.items()
                    if getattr(args, name).strip().upper() != default.upper()]
    case_options += ["--seed"] * (args.seed != 0)  # the proofs have no numeric cross-check
    if case_options:
        raise UsageError(f"--general proves every size at once; drop {', '.join(case_options)}")
    progress = _progress()
    proofs = []
    wanted = [(kind, ndim) for kind in derive.PROOF_KINDS for ndim in (1, 2)]
    for done, (kind, ndim) in enumerate(wanted, start=1):
        proofs.append(derive.general_proof(kind, ndim))
        if progress is not None:
            progress("proofs", done, len(wanted))
    return general_report(proofs, formats)


def run(args: argparse.Namespace) -> int:
    """Validate, derive, render every format, then print or write atomically."""
    formats = parse_formats(args.format, args.output)
    targets = _targets(formats, args.output)
    if args.seed < 0:
        raise UsageError(f"--seed (={args.seed}) must be a non-negative integer")
    if not args.general:
        _check_size(args)
    # Figures are bitmaps: left out of Markdown shown on a terminal, kept everywhere else.
    figures = targets is not None or not sys.stdout.isatty() or formats != ["md"]
    texts = (_general_texts(args, formats) if args.general
             else _case_texts(args, formats, figures))
    if targets is None:
        sys.stdout.write(texts[formats[0]])
        if not figures:
            print("\n(Figures are left out on a terminal: redirect the output, use -o report.md "
                  "or --format html -o report.html.)", file=sys.stderr)
        return 0
    _write(texts, targets)
    return 0


def _check_size(args: argparse.Namespace) -> None:
    """Every option parsed, at most ``MAX_PRODUCTS`` products in the forward pass and at most
    ``MAX_CELLS`` cells in each array the derivation builds."""
    import math

    from impl import conv_output_shape, dilate_shape, padtype_to_pads

    sizes, window = parse_size("--input", args.input), parse_size("--filter", args.filter)
    stride, dilation = (parse_per_axis(f"--{name}", getattr(args, name), 1)
                        for name in ("stride", "dilation"))
    padding = parse_padding(args.padding)
    if isinstance(padding, str):
        padding = padtype_to_pads(sizes, dilate_shape(window, dilation), stride, padding)
    batch, (inputs, outputs), groups = parse_channels(args)
    outs = conv_output_shape(sizes, window, stride, padding, (1, 1), dilation)
    products = math.prod(outs) * math.prod(window) * batch * outputs * (inputs // groups)
    if products > MAX_PRODUCTS:
        raise UsageError(f"the case has {products:,} products to derive entry by entry (at most "
                         f"{MAX_PRODUCTS:,}, half a minute on two cores); take smaller sizes, or "
                         "--general for the proofs at every size")
    # Each array (padded input, dilated filter, padded G) has at most this many cells: per axis
    # the padded input plus the dilated window, per plane the most planes any of them has.
    windows = dilate_shape(window, dilation)
    planes = max(batch * inputs, batch * outputs, outputs * (inputs // groups))
    cells = planes * math.prod(n + lo + hi + k for n, (lo, hi), k in zip(sizes, padding, windows,
                                                                           strict=True))
    if cells > MAX_CELLS:
        raise UsageError(f"the case's padded arrays have up to {cells:,} cells (at most "
                         f"{MAX_CELLS:,}); take a smaller input, filter, dilation or padding, or "
                         "--general for the proofs at every size")


def _write(texts: dict[str, str], targets: dict[str, Path]) -> None:
    """Write each text, all or none (one file, or every format into its folder, which appears
    complete if it is new)."""
    folder = next(iter(targets.values())).parent
    write_folder_atomic(folder, {path.name: texts[name] for name, path in targets.items()})
