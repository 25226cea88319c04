"""The report's pictures, drawn with Matplotlib's Agg canvas (no pyplot, no global backend).

* :func:`forward_figure`: the zero-padded input with the (dilated) filter window of chosen output
  entries ``O[i, j]`` marked, next to the filter and the output grid;
* :func:`rule_figure`: the stride-spread, zero-padded G with the rotated (dilated) filter at the
  window of chosen entries ``dL/dX[i, j]``, which is the full convolution that gives them.

Both return PNG bytes. Positions follow :func:`shown_positions` (all of a small grid, else the
first, middle and last row and column), so big cases draw a handful of panels.
"""

import dataclasses
import io
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import sympy as sp
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex, to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.transforms import ScaledTranslation
from PIL import Image

from convgrad.report.mathtext import entry_parts

BLUE, ORANGE, CONTRIBUTES, GREY = "#cfe3f7", "#fcd9b6", "#f59f00", "#eeeeee"
LABEL_LIMIT = 12


def shown_positions(size: int, most: int = 3, prefer: Iterable[int] = ()) -> list[int]:
    """Indices to draw along an axis of ``size``: all up to ``most``, else first, middle, last.

    The middle one is the index in ``prefer`` (e.g. rows with a nonzero gradient) nearest to the
    centre, if any.

    >>> shown_positions(2), shown_positions(9), shown_positions(5, prefer={1, 3})
    ([0, 1], [0, 4, 8], [0, 1, 4])
    """
    if size <= most:
        return list(range(size))
    inner = [i for i in prefer if 0 < i < size - 1] or [size // 2]
    middle = min(inner, key=lambda i: (abs(i - size // 2), i))
    return [0, middle, size - 1]


def _put_label(ax: Any, x: float, y: float, value: sp.Basic, size: float) -> None:
    """``X_{i,j}`` as an italic letter and a smaller subscript (plain text: mathtext is slow)."""
    parts = entry_parts(str(value))
    if parts is None:
        ax.text(x, y, str(value), ha="center", va="center", fontsize=size * 0.8, color="#999999")
        return
    letter, subscript = parts[0], ",".join(map(str, parts[1]))
    sub_size = size * 0.7
    width = 0.62 * size + 0.55 * sub_size * len(subscript)
    shift = ScaledTranslation(-width / 2 / 72, 0, ax.figure.dpi_scale_trans)
    at = ax.transData + shift
    ax.text(x, y, letter, ha="left", va="center", fontsize=size, style="italic", transform=at)
    below = at + ScaledTranslation(0.62 * size / 72, -0.25 * size / 72, ax.figure.dpi_scale_trans)
    ax.text(x, y, subscript, ha="left", va="center", fontsize=sub_size, transform=below)


View = tuple[range, range]


def _view(shape: Sequence[int], top: int = 0, left: int = 0, height: int = 0, width: int = 0) -> View:
    """All of a small grid; of a big one, the window at (top, left) with a margin of 2 cells, a
    window longer than ``LABEL_LIMIT`` cells seen from its start (the heading says which part)."""
    if max(shape) <= LABEL_LIMIT:
        return range(shape[0]), range(shape[1])
    return _span(top, height, shape[0]), _span(left, width, shape[1])


def _span(start: int, length: int, size: int) -> range:
    return range(max(start - 2, 0), min(start + min(length, LABEL_LIMIT) + 2, size))


@dataclasses.dataclass(frozen=True)
class Panel:
    """One grid of a figure: ``cells`` seen through ``view``, a colour per viewed cell (``fills``,
    rows of hex strings), an optional window ``outline`` (top, left, height, width) and a title
    (Matplotlib mathtext, which is also valid LaTeX)."""

    title: str
    cells: sp.Matrix
    view: View
    fills: tuple[tuple[str, ...], ...]
    outline: tuple[int, int, int, int] | None = None

    @property
    def heading(self) -> str:
        """The title, with where the view lies in a grid too big to draw whole."""
        rows, cols = self.view
        if len(rows) == self.cells.rows and len(cols) == self.cells.cols:
            return self.title
        return (f"{self.title}\nrows {rows.start}–{rows.stop - 1}, columns {cols.start}–"
                f"{cols.stop - 1} of {self.cells.rows}×{self.cells.cols}")


def _panel(title: str, cells: sp.Matrix, fill: Callable[[int, int], str], view: View | None = None,
           outline: tuple[int, int, int, int] | None = None) -> Panel:
    rows, cols = view or (range(cells.rows), range(cells.cols))
    fills = tuple(tuple(to_hex(fill(r, c)) for c in cols) for r in rows)
    return Panel(title, cells, (rows, cols), fills, outline)


def _draw(ax: Any, panel: Panel) -> None:
    """The panel as coloured squares with labels, its window outlined."""
    rows, cols = panel.view
    colours = np.array([[to_rgb(fill) for fill in row] for row in panel.fills])
    ax.imshow(colours, extent=(0, len(cols), len(rows), 0), interpolation="nearest")
    ax.hlines(range(len(rows) + 1), 0, len(cols), colors="#888888", lw=0.6)
    ax.vlines(range(len(cols) + 1), 0, len(rows), colors="#888888", lw=0.6)
    size = 11 if max(len(rows), len(cols)) <= 5 else 8
    for y, r in enumerate(rows):
        for x, c in enumerate(cols):
            _put_label(ax, x + 0.5, y + 0.5, panel.cells[r, c], size)
    if panel.outline is not None:
        top, left, height, width = panel.outline
        ax.add_patch(Rectangle((left - cols.start, top - rows.start), width, height, fill=False,
                               edgecolor="#d9480f", lw=2.4))
    ax.set_xlim(-0.1, len(cols) + 0.1)
    ax.set_ylim(len(rows) + 0.1, -0.1)
    ax.axis("off")
    ax.set_title(panel.heading, fontsize=10)


Layout = list[list[Panel | None]]


def render_png(layout: Layout) -> bytes:
    """The panels of ``layout`` (rows of panels; None leaves a gap) drawn as one PNG."""
    panels = [panel for row in layout for panel in row if panel is not None]
    figure, axes = _canvas(len(layout), max(len(row) for row in layout),
                           [panel.view for panel in panels])
    for row, panel_row in zip(axes, layout, strict=False):
        for ax, panel in zip(row, panel_row, strict=False):
            if panel is not None:
                _draw(ax, panel)
    return _png(figure)


def _canvas(nrows: int, ncols: int, views: Iterable[View]) -> tuple[Figure, list[list[Any]]]:
    """A grid of empty panels, each sized to the largest view's rows and columns."""
    views = list(views)
    cells_down = max(len(rows) for rows, _ in views)
    cells_across = max(len(cols) for _, cols in views)
    width = min(max(0.42 * cells_across + 0.8, 1.9), 4.0)
    height = min(max(0.42 * cells_down + 0.9, 1.5), 4.0)
    figure = Figure(figsize=(width * ncols, height * nrows + 0.3), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(nrows, ncols, squeeze=False)
    for row in axes:
        for ax in row:
            ax.axis("off")
    return figure, axes


def _png(figure: Figure) -> bytes:
    """The figure as a PNG of 64 colours (flat fills and text: a third of the full-colour size)."""
    rendered = io.BytesIO()
    figure.savefig(rendered, format="png", dpi=100, metadata={"Software": None})
    image = Image.open(rendered).convert("RGB").quantize(colors=64, method=Image.Quantize.MEDIANCUT)
    compact = io.BytesIO()
    image.save(compact, format="PNG", optimize=True)
    return compact.getvalue()


def padded_input(derivation: Any) -> sp.Matrix:
    """X surrounded by its zero padding: shape (H + lo_h + hi_h, W + lo_w + hi_w); a negative
    padding crops X instead."""
    (top, bottom), (left, right) = derivation.padding
    height, width = derivation.input_shape
    padded = sp.zeros(max(height + top + bottom, 0), max(width + left + right, 0))
    for r in range(max(top, 0), min(top + height, padded.rows)):
        for c in range(max(left, 0), min(left + width, padded.cols)):
            padded[r, c] = derivation.X[r - top, c - left]
    return padded


def forward_panels(derivation: Any) -> Layout:
    """The forward pass: windows of chosen ``O[i, j]`` over the zero-padded input, F and O."""
    (sh, sw), (dh, dw) = derivation.stride, derivation.dilation
    kh, kw = derivation.filter_shape
    height, width = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    padded = padded_input(derivation)
    rows, cols = (shown_positions(n) for n in derivation.output_shape)
    (top, _), (left, _) = derivation.padding

    def inside(r: int, c: int) -> bool:
        return top <= r < top + derivation.X.rows and left <= c < left + derivation.X.cols

    names = _names("O", derivation.output_shape)
    side = [_panel("filter $F$", derivation.F, lambda r, c: BLUE, _corner(derivation.F)),
            _panel("output $O$", names, lambda r, c: BLUE if r in rows and c in cols else "white",
                   _corner(names))]
    layout: Layout = [[side[a] if a < 2 else None] for a in range(max(len(rows), 2))]
    for a, i in enumerate(rows):
        for j in cols:
            taps = {cell for cell, _ in forward_taps(derivation, i, j)}
            view = _view(padded.shape, i * sh, j * sw, height, width)
            layout[a].append(_panel(
                f"$O_{{{i},{j}}}$: window at ({i * sh}, {j * sw})", padded,
                lambda r, c, taps=taps: _forward_fill(inside(r, c), (r, c) in taps), view,
                (i * sh, j * sw, height, width)))
    return layout


def forward_figure(derivation: Any) -> bytes:
    """:func:`forward_panels` as a PNG."""
    return render_png(forward_panels(derivation))


Tap = tuple[tuple[int, int], tuple[int, int]]


def forward_taps(derivation: Any, i: int, j: int) -> list[Tap]:
    """``((r, c), (a, b))``: output ``O[i, j]`` reads padded-input cell (r, c) times ``F[a, b]``.

    >>> import derive
    >>> forward_taps(derive.seed_case(), 1, 0)[:2]
    [((1, 0), (0, 0)), ((1, 1), (0, 1))]
    """
    (sh, sw), (dh, dw) = derivation.stride, derivation.dilation
    kh, kw = derivation.filter_shape
    return [((i * sh + a * dh, j * sw + b * dw), (a, b)) for a in range(kh) for b in range(kw)]


def rule_taps(derivation: Any, p: int, q: int) -> list[Tap]:
    """``((r, c), (u, v))``: ``dL/dX[p, q]`` reads padded-G cell (r, c) times ``rot180(F)[u, v]``.

    Only the rotated filter's real taps count (a dilated filter's holes are zeros).

    >>> import derive
    >>> rule_taps(derive.seed_case(), 0, 0)
    [((0, 0), (0, 0)), ((0, 1), (0, 1)), ((1, 0), (1, 0)), ((1, 1), (1, 1))]
    """
    rotated = derivation.rotated_F
    return [((p + u, q + v), (u, v)) for u in range(rotated.rows) for v in range(rotated.cols)
            if rotated[u, v] != 0]


def _corner(cells: sp.Matrix) -> View:
    """A side panel: all of a small grid, the top-left 8×8 of a big one."""
    return _view(cells.shape, 0, 0, 6, 6)


def _names(letter: str, shape: Sequence[int]) -> sp.Matrix:
    return sp.Matrix(shape[0], shape[1], lambda i, j: sp.Symbol(f"{letter}_{i}_{j}"))


def _nonzero_lines(values: sp.Matrix) -> tuple[set[int], set[int]]:
    entries = [(r, c) for r in range(values.rows) for c in range(values.cols) if values[r, c] != 0]
    return {r for r, _ in entries}, {c for _, c in entries}


def rule_panels(derivation: Any) -> Layout:
    """The full convolution: rot180(F) at the window of chosen ``dL/dX[i, j]`` over padded G."""
    padded_g, rotated_f = derivation.padded_G, derivation.rotated_F
    kh, kw = rotated_f.shape
    live_rows, live_cols = _nonzero_lines(derivation.rule_dL_dX)
    rows = shown_positions(derivation.input_shape[0], prefer=live_rows)
    cols = shown_positions(derivation.input_shape[1], prefer=live_cols)
    side = [_panel(r"rotated filter $\mathrm{rot180}(F)$", rotated_f,
                   lambda r, c: CONTRIBUTES if rotated_f[r, c] != 0 else "white", _corner(rotated_f)),
            _panel(r"$G = \partial L / \partial O$", derivation.G, lambda r, c: BLUE,
                   _corner(derivation.G))]
    layout: Layout = [[side[a] if a < 2 else None] for a in range(max(len(rows), 2))]
    for a, i in enumerate(rows):
        for j in cols:
            taps = {cell for cell, _ in rule_taps(derivation, i, j)}
            layout[a].append(_panel(
                rf"$\partial L / \partial X_{{{i},{j}}}$: window at ({i}, {j})", padded_g,
                lambda r, c, taps=taps: _rule_fill(padded_g[r, c] != 0, (r, c) in taps),
                _view(padded_g.shape, i, j, kh, kw), (i, j, kh, kw)))
    return layout


def rule_figure(derivation: Any) -> bytes:
    """:func:`rule_panels` as a PNG."""
    return render_png(rule_panels(derivation))


def _forward_fill(holds_x: bool, tap: bool) -> str:
    if tap:
        return CONTRIBUTES if holds_x else ORANGE
    return "white" if holds_x else GREY


def _rule_fill(holds_g: bool, tap: bool) -> str:
    if tap:
        return CONTRIBUTES if holds_g else ORANGE
    return BLUE if holds_g else "white"
