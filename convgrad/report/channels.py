r"""The report of a case with a batch, channels or groups: a ``derive.ConvDerivation`` as a Document.

Layouts are those of ``jax.lax.conv_general_dilated`` by default: X, G and O are NCHW
(``X_{n,c,i,j}``: batch entry n, channel c, row i, column j) and F is OIHW (``F_{o,c,a,b}``:
output feature o, input channel c of its group, tap (a, b)). With ``feature_group_count`` groups,
output feature o belongs to group :math:`g = \lfloor o / (C_{out}/groups) \rfloor` and reads
only the input channels of that group.

The sections follow the single-channel report (``convgrad.report.case``), written per
(batch entry, channel) plane: the forward pass with channel and group indices; L and G; the
derivatives by differentiation; the rule for dL/dF (the valid correlation of each input channel
with G, summed over the batch); the rule for dL/dX (the grouped full convolution of the padded G
with the filter rotated and its in/out features swapped within each group); the exact verdict and
the numeric cross-check. Many planes show the first two and the last two; big planes their
corners (as in one channel).
"""

import dataclasses
import itertools
import math
from collections.abc import Sequence

import sympy as sp

from convgrad.report import figures
from convgrad.report import mathtext as mt
from convgrad.report.case import (
    ALL_UP_TO,
    TILDE_G,
    TILDE_X,
    L,
    cross_check_section,
    dilated_text,
    entry_rows,
    equality_blocks,
    g_spread_text,
    loss_section,
    matrix_blocks,
    padding_text,
    shape_text,
    shown_cells,
    shown_indices,
    spread_text,
    summary_paragraph,
    window_rows,
    window_terms,
)
from convgrad.report.mathtext import Math
from convgrad.report.model import (
    Block,
    DisplayMath,
    Document,
    Equation,
    Equations,
    Figure,
    Heading,
    Paragraph,
    Table,
)
from convgrad.report.numeric import CrossCheck
from derive import ConvDerivation

PLANES_ALL_UP_TO = 4

Plane = tuple[int, int]
R = mt.ident("R")
COLON = mt.op(":")


def shown_planes(counts: Sequence[int]) -> list[Plane]:
    """The (leading index, second index) planes written out: all up to 4, else the first two
    and the last two in row-major order.

    >>> shown_planes((2, 2)), shown_planes((6, 2))
    ([(0, 0), (0, 1), (1, 0), (1, 1)], [(0, 0), (0, 1), (5, 0), (5, 1)])
    """
    planes = list(itertools.product(range(counts[0]), range(counts[1])))
    return planes if len(planes) <= PLANES_ALL_UP_TO else planes[:2] + planes[-2:]


def plane(array: sp.NDimArray, index: Plane) -> sp.ImmutableMatrix:
    """The 2-D spatial plane ``array[index]`` of an NCHW / OIHW array, as a matrix."""
    return sp.ImmutableMatrix(array[index])


def plane_name(base: Math, index: tuple[int | str, int | str]) -> Math:
    """``X_{n,c,:,:}``: one plane of an array (NumPy's slice notation); ints are numbers,
    strings index variables.

    >>> plane_name(mt.ident("X"), (0, "c")).latex
    '{X}_{0,c,:,:}'
    """
    indices = [mt.number(i) if isinstance(i, int) else mt.ident(i) for i in index]
    return mt.indexed(base, [*indices, COLON, COLON])


@dataclasses.dataclass(frozen=True)
class Groups:
    """How ``count`` feature groups pair ``inputs`` input channels with ``outputs`` features."""

    count: int
    inputs: int
    outputs: int

    @property
    def in_per_group(self) -> int:
        """Input channels per group (the filter's I axis)."""
        return self.inputs // self.count

    @property
    def out_per_group(self) -> int:
        """Output features per group."""
        return self.outputs // self.count

    def input_channel(self, feature: int, channel: int) -> int:
        """The channel of X that filter input channel ``channel`` of output ``feature`` reads."""
        return feature // self.out_per_group * self.in_per_group + channel

    def group_text(self, group: int) -> str:
        """``"group 1: input channels 2–3, output features 3–5"``."""
        return (f"group {group}: input channels {_span(group, self.in_per_group)}, "
                f"output features {_span(group, self.out_per_group)}")


def _span(group: int, per_group: int) -> str:
    first = group * per_group
    return str(first) if per_group == 1 else f"{first}–{first + per_group - 1}"


def _groups(d: ConvDerivation) -> Groups:
    return Groups(d.feature_group_count, d.lhs_shape[1], d.rhs_shape[0])


def title(d: ConvDerivation) -> str:
    """A one-line description of the case."""
    groups = f" in {d.feature_group_count} groups" if d.feature_group_count > 1 else ""
    return (f"Backpropagation through a convolution: batch {d.lhs_shape[0]}, channels "
            f"{d.lhs_shape[1]}→{d.rhs_shape[0]}{groups}, input {shape_text(d.lhs_shape[2:])}, "
            f"filter {shape_text(d.rhs_shape[2:])}, stride {tuple(d.window_strides)}, "
            f"{padding_text(d.padding)}, dilation {tuple(d.rhs_dilation)}")


def check_supported(d: ConvDerivation) -> None:
    """The report writes 2-D feature-grouped cases without lhs dilation; else ``ValueError``."""
    if len(d.lhs_shape) != 4:
        raise ValueError(f"lhs_shape (={tuple(d.lhs_shape)}) must be NCHW: reports have 2 spatial axes")
    if d.batch_group_count != 1 or tuple(d.lhs_dilation) != (1, 1):
        raise ValueError(f"batch_group_count (={d.batch_group_count}) and lhs_dilation "
                         f"(={tuple(d.lhs_dilation)}) must be 1 in a report")


def channels_document(d: ConvDerivation, check: CrossCheck, with_figures: bool = True) -> Document:
    """The whole report of ``d`` (a ``derive.ConvDerivation``, NCHW / OIHW) and its cross-check."""
    check_supported(d)
    blocks: list[Block] = [
        *_setup_section(d),
        *_forward_section(d, with_figures),
        *loss_section("noij", f"{shape_text(d.out_shape)}, NCHW",
                      _plane_matrices(mt.ident("G"), d.G, "(batch, output feature)"),
                      sp.flatten(d.O), d.L),
        *_differentiation_section(d),
        *_rule_f_section(d),
        *_rule_x_section(d, with_figures),
        *equality_blocks(d.verified, math.prod(d.lhs_shape) + math.prod(d.rhs_shape)),
        *cross_check_section(check),
        Paragraph(("Both autodiff oracles ran on the whole arrays, input NCHW and filter OIHW, "
                   "with the same groups (lax's feature_group_count = "
                   f"{d.feature_group_count}).",)),
    ]
    return Document(title(d), blocks)


def _plane_summary(counts: Sequence[int], what: str) -> list[Block]:
    shown = shown_planes(counts)
    if len(shown) == counts[0] * counts[1]:
        return []
    planes = ", ".join(f"({a}, {b})" for a, b in shown)
    return [Paragraph((f"Showing {len(shown)} of the {counts[0] * counts[1]} {what} planes: "
                       f"{planes}.",))]


def _plane_matrices(base: Math, array: sp.NDimArray, what: str) -> list[Block]:
    """``base_{a,b,:,:} = [matrix]`` for the shown planes of ``array``."""
    blocks = _plane_summary(array.shape[:2], what)
    for index in shown_planes(array.shape[:2]):
        blocks += matrix_blocks(plane_name(base, index), plane(array, index))
    return blocks


def _setup_section(d: ConvDerivation) -> list[Block]:
    (batch, inputs, height, width), (outputs, per_group, kh, kw) = d.lhs_shape, d.rhs_shape
    (sh, sw), (dh, dw) = d.window_strides, d.rhs_dilation
    return [
        Heading(2, "The case"),
        Paragraph((
            f"A batch of {plural(batch, 'input')} ", mt.ident("X"),
            f" with {plural(inputs, 'channel')} of {height}×{width} (layout NCHW: ",
            _general_entry("X", "ncij"), " is batch entry n, channel c, row i, column j), a filter ",
            mt.ident("F"), f" of {outputs}×{per_group}×{kh}×{kw} (layout OIHW: ",
            _general_entry("F", "ocab"), " is output feature o, input channel c of its group, tap "
            f"(a, b)), stride ({sh}, {sw}), dilation ({dh}, {dw}), {padding_text(d.padding)}; the "
            "output ", mt.ident("O"), f" is {shape_text(d.out_shape)} (NCHW). Indices start at 0; "
            "each entry is its own symbol, so every formula below is exact.",
        )),
        *_groups_blocks(_groups(d)),
        Paragraph(("The input, one plane per (batch entry, channel):",)),
        *_plane_matrices(mt.ident("X"), d.X, "(batch, channel)"),
        Paragraph(("The filter, one plane per (output feature, input channel):",)),
        *_plane_matrices(mt.ident("F"), d.F, "(output feature, input channel)"),
    ]


def _general_entry(letter: str, variables: str) -> Math:
    """``X_{n,c,i,j}``: an entry with index variables."""
    return mt.indexed(mt.ident(letter), [mt.ident(v) for v in variables])


def _groups_blocks(groups: Groups) -> list[Block]:
    if groups.count == 1:
        return [Paragraph(("One group (feature_group_count = 1): every output feature reads every "
                           f"input channel ({plural(groups.inputs, 'channel')}).",))]
    shown = shown_indices(groups.count, ALL_UP_TO)
    rows = tuple((str(g), _span(g, groups.in_per_group), _span(g, groups.out_per_group))
                 for g in shown)
    omitted = [] if len(shown) == groups.count else [
        Paragraph((f"Showing {len(shown)} of the {groups.count} groups.",))]
    return [
        Paragraph((f"feature_group_count = {groups.count}: the channels split into "
                   f"{groups.count} groups. Output feature o belongs to group ",
                   _group_of("o", groups.out_per_group), " and reads only the "
                   f"{_channels_of_group(groups)}, so the filter's second axis has length "
                   f"{groups.in_per_group}, not {groups.inputs}:")),
        Table(("group g", "input channels of X", "output features of F, O and G"), rows),
        *omitted,
    ]


def _group_of(variable: str, per_group: int) -> Math:
    r"""``g = ⌊o/3⌋``: the group of a channel or feature."""
    return mt.join([mt.ident("g"), mt.op("="), Math(
        rf"\lfloor {variable}/{per_group} \rfloor",
        f"<mrow><mo>⌊</mo><mi>{variable}</mi><mo>/</mo><mn>{per_group}</mn><mo>⌋</mo></mrow>")])


def _with_group(formula: Math, groups: Groups, variable: str, per_group: int) -> Math:
    """``formula`` followed by ``, g = ⌊variable/per_group⌋`` when there are groups."""
    if groups.count == 1:
        return formula
    return mt.join([formula, mt.op(","), Math(r"\quad", '<mspace width="1em"/>'),
                    _group_of(variable, per_group)])


def _channel(groups: Groups, per_group: int, variable: str, sign: int = 1) -> Math:
    """The channel index ``2g+c`` (``c - 2g`` for sign -1), plain ``c`` with one group."""
    if groups.count == 1:
        return mt.ident(variable)
    return mt.linear([(1, variable), (sign * per_group, "g")] if sign < 0
                     else [(per_group, "g"), (1, variable)])


def _spatial_index(d: ConvDerivation, axis: int, first: str, second: str) -> Math:
    """``s i + d a`` along ``axis`` (``first`` takes the stride, ``second`` the dilation)."""
    return mt.linear([(d.window_strides[axis], first), (d.rhs_dilation[axis], second)])


def _source(d: ConvDerivation) -> Math:
    return TILDE_X if any(tuple(pair) != (0, 0) for pair in d.padding) else mt.ident("X")


def _forward_section(d: ConvDerivation, with_figures: bool) -> list[Block]:
    groups = _groups(d)
    n, o = mt.ident("n"), mt.ident("o")
    window = mt.indexed(_source(d), [n, _channel(groups, groups.in_per_group, "c"),
                                     _spatial_index(d, 0, "i", "a"), _spatial_index(d, 1, "j", "b")])
    body = mt.product([window, mt.indexed(mt.ident("F"), [o, *map(mt.ident, "cab")])])
    formula = mt.join([mt.indexed(mt.ident("O"), [n, o, mt.ident("i"), mt.ident("j")]), mt.op("="),
                       mt.sigma("c,a,b", body)])
    kh, kw = d.rhs_shape[2:]
    blocks: list[Block] = [
        Heading(2, "Forward pass"),
        Paragraph(("Each output plane ", plane_name(mt.ident("O"), ("n", "o")), " is the sum, "
                   f"over the {_channels_of_group(groups)}, of the valid cross-correlation of "
                   "that channel of the (zero-padded) input with the filter plane ",
                   plane_name(mt.ident("F"), ("o", "c")), f", over {_range_text('a', 0, kh - 1)} "
                   f"and {_range_text('b', 0, kw - 1)}:")),
        DisplayMath(_with_group(formula, groups, "o", groups.out_per_group)),
        Paragraph(("Entry by entry, plane by plane:",)),
        *_plane_summary(d.out_shape[:2], "(batch, output feature)"),
    ]
    for batch, feature in shown_planes(d.out_shape[:2]):
        group = feature // groups.out_per_group
        values = plane(d.O, (batch, feature))
        blocks += [Paragraph((f"Batch entry {batch}, output feature {feature} "
                              f"({groups.group_text(group)}):",)),
                   *summary_paragraph(values.shape),
                   entry_rows("O", values, "XF", "F", derivative=False, plane=(batch, feature))]
    if with_figures:
        layout = figures.forward_panels(slice_view(d))
        blocks.append(Figure(
            figures.render_png(layout),
            "Forward pass of one slice: batch entry 0, output feature 0 and input channel 0 of "
            f"its group (channel {groups.input_channel(0, 0)} of X), cells labelled by their "
            "(row, column). Each output entry gets the sum of the input cells under the filter's "
            "taps (dark orange; light orange where a tap meets the zero padding, grey) times the "
            "filter's entries, and one such sum for every input channel of the group.",
            "Grids of one padded input channel with the filter window of several output entries "
            "highlighted, next to one filter plane and the output grid.",
            tuple(tuple(row) for row in layout)))
    return blocks


def _channels_of_group(groups: Groups) -> str:
    """``"2 input channels of its group (c = 0…1)"``."""
    return (f"{plural(groups.in_per_group, 'input channel')} of its group "
            f"({_range_text('c', 0, groups.in_per_group - 1)})")


def plural(count: int, noun: str) -> str:
    """``"1 input"``, ``"2 inputs"``.

    >>> plural(1, "channel"), plural(4, "input channel")
    ('1 channel', '4 input channels')
    """
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _range_text(variable: str, first: int | str, last: int | str) -> str:
    """``"c = 0…3"``, or ``"c = 0"`` for one value."""
    return f"{variable} = {first}" if first == last else f"{variable} = {first}…{last}"


def _differentiation_section(d: ConvDerivation) -> list[Block]:
    groups = _groups(d)
    blocks: list[Block] = [
        Heading(2, "Gradients by differentiation"),
        Paragraph(("Differentiating L with respect to every filter entry (each a sum over the "
                   "batch and the output positions):",)),
        *_plane_summary(d.rhs_shape[:2], "(output feature, input channel)"),
    ]
    for feature, channel in shown_planes(d.rhs_shape[:2]):
        values = plane(d.dL_dF, (feature, channel))
        blocks += [Paragraph((f"Output feature {feature}, input channel {channel} of its group "
                              f"(channel {groups.input_channel(feature, channel)} of X):",)),
                   *summary_paragraph(values.shape),
                   entry_rows("F", values, "GX", "G", derivative=True, plane=(feature, channel))]
    blocks += [Paragraph(("and with respect to every input entry (each a sum over the output "
                          "features of its group and the filter taps):",)),
               *_plane_summary(d.lhs_shape[:2], "(batch, channel)")]
    for batch, channel in shown_planes(d.lhs_shape[:2]):
        values = plane(d.dL_dX, (batch, channel))
        blocks += [Paragraph((f"Batch entry {batch}, channel {channel} "
                              f"({groups.group_text(channel // groups.in_per_group)}):",)),
                   *summary_paragraph(values.shape),
                   entry_rows("X", values, "GF", "G", derivative=True, plane=(batch, channel))]
    return blocks


def _rule_f_section(d: ConvDerivation) -> list[Block]:
    groups = _groups(d)
    n, o = mt.ident("n"), mt.ident("o")
    correlation = mt.product([
        mt.indexed(_source(d), [n, _channel(groups, groups.in_per_group, "c"),
                                mt.linear([(d.rhs_dilation[0], "a"), (d.window_strides[0], "i")]),
                                mt.linear([(d.rhs_dilation[1], "b"), (d.window_strides[1], "j")])]),
        mt.indexed(mt.ident("G"), [n, o, mt.ident("i"), mt.ident("j")])])
    formula = mt.join([mt.partial(L, mt.indexed(mt.ident("F"), [o, *map(mt.ident, "cab")])),
                       mt.op("="), mt.sigma("n,i,j", correlation)])
    blocks: list[Block] = [
        Heading(2, "The rule: ∂L/∂F is a valid correlation, summed over the batch"),
        Paragraph(("For each output feature o and input channel c of its group, ",
                   mt.partial(L, plane_name(mt.ident("F"), ("o", "c"))), " is the valid "
                   "cross-correlation of the matching channel of the (padded) input with G's "
                   "feature o, summed over the batch entries n"
                   + spread_text(d.window_strides, d.rhs_dilation) + ":")),
        DisplayMath(_with_group(formula, groups, "o", groups.out_per_group)),
    ]
    if d.padded_X.shape[2:] != d.X.shape[2:]:
        blocks += [Paragraph(("The input padded as the correlation sees it (",
                              shape_text(d.padded_X.shape[2:]), " per plane; rows and columns "
                              "that no window reaches are cut off):")),
                   *_plane_matrices(TILDE_X, d.padded_X, "(batch, channel)")]
    blocks += [Paragraph(("Entry by entry, each the sum of the G windows over the batch, then "
                          "simplified:",)),
               *_plane_summary(d.rhs_shape[:2], "(output feature, input channel)")]
    for feature, channel in shown_planes(d.rhs_shape[:2]):
        blocks += [Paragraph((f"Output feature {feature}, input channel {channel} (channel "
                              f"{groups.input_channel(feature, channel)} of X):",)),
                   *summary_paragraph(d.rhs_shape[2:]),
                   Equations(tuple(_rule_f_rows(d, groups, feature, channel)))]
    return blocks


def _rule_f_rows(d: ConvDerivation, groups: Groups, feature: int, channel: int) -> list[Equation]:
    (dh, dw), source = d.rhs_dilation, groups.input_channel(feature, channel)
    rows = []
    for a, b in shown_cells(d.rhs_shape[2:]):
        in_window = [term for batch in range(d.lhs_shape[0]) for term in window_terms(
            plane(d.padded_X, (batch, source)), plane(d.spread_G, (batch, feature)), dh * a, dw * b)]
        rows += window_rows(mt.partial(L, mt.entry("F", feature, channel, a, b)), in_window,
                            d.rule_dL_dF[feature, channel, a, b], "XG", "G")
    return rows


def rotated_swapped(d: ConvDerivation, channel: int, local: int) -> sp.ImmutableMatrix:
    """``R[channel, local]``: the plane of the filter that input ``channel`` meets in dL/dX,
    rotated, for output feature ``local`` of the channel's group (in/out features swapped)."""
    groups = _groups(d)
    group = channel // groups.in_per_group
    return plane(d.rotated_F, (group * groups.out_per_group + local,
                               channel - group * groups.in_per_group))


def _rule_x_section(d: ConvDerivation, with_figures: bool) -> list[Block]:
    groups = _groups(d)
    n, c = mt.ident("n"), mt.ident("c")
    local = _channel(groups, groups.out_per_group, "o", sign=-1)
    body = mt.product([
        mt.indexed(TILDE_G, [n, mt.ident("o"), mt.linear([(1, "p"), (1, "u")]),
                             mt.linear([(1, "q"), (1, "v")])]),
        mt.indexed(R, [c, local, mt.ident("u"), mt.ident("v")])])
    formula = mt.join([mt.partial(L, mt.indexed(mt.ident("X"), [n, c, mt.ident("p"), mt.ident("q")])),
                       mt.op("="), mt.sigma("o,u,v", body)])
    r_definition = mt.join([mt.indexed(R, [c, local, COLON, COLON]), mt.op("="),
                            mt.function("rot180", mt.indexed(mt.ident("F"), [
                                mt.ident("o"), _channel(groups, groups.in_per_group, "c", sign=-1),
                                COLON, COLON]))])
    blocks: list[Block] = [
        Heading(2, "The rule: ∂L/∂X is a grouped full convolution with the rotated filter, "
                   "in/out features swapped"),
        Paragraph(("As with one channel, spread G by the stride and pad it with zeros: ", TILDE_G,
                   f" ({shape_text(d.padded_G.shape)}) is G {g_spread_text(d.window_strides)}"
                   "zero-padded. The filter becomes ", R, f" ({d.lhs_shape[1]}×"
                   f"{groups.out_per_group}×{shape_text(d.rotated_F.shape[2:])}): every plane"
                   f"{dilated_text(d.rhs_dilation)} rotated by 180°, and within each group its "
                   "input and output feature axes swapped: input channel c plays the role of "
                   "an output feature, and the output features o of its group that of its "
                   f"input channels ({_features_text(groups)}):")),
        DisplayMath(_with_group(r_definition, groups, "c", groups.in_per_group)),
        Paragraph(("The padded G, one plane per (batch entry, output feature):",)),
        *_plane_matrices(TILDE_G, d.padded_G, "(batch, output feature)"),
        Paragraph(("The filter R, one plane per (input channel c, output feature of its group):",)),
        *_r_matrices(d, groups),
        Paragraph(("Then ∂L/∂X is the forward's grouped convolution again, of ", TILDE_G,
                   " with ", R, ": channel c of the input gradient collects every output feature "
                   f"o of its group ({_features_text(groups)}), over u and v across R:")),
        DisplayMath(_with_group(formula, groups, "c", groups.in_per_group)),
        Paragraph(("Entry by entry, each the sum of the windows over the group's output features "
                   "(zeros from the padding included), then simplified:",)),
        *_plane_summary(d.lhs_shape[:2], "(batch, channel)"),
    ]
    for batch, channel in shown_planes(d.lhs_shape[:2]):
        blocks += [Paragraph((f"Batch entry {batch}, channel {channel} "
                              f"({groups.group_text(channel // groups.in_per_group)}):",)),
                   *summary_paragraph(d.lhs_shape[2:]),
                   Equations(tuple(_rule_x_rows(d, groups, batch, channel)))]
    if with_figures:
        blocks.append(_rule_figure(d, groups))
    return blocks


def _features_text(groups: Groups) -> str:
    """The output features of the group g of input channel c, in words."""
    if groups.count == 1:
        return _range_text("o", 0, groups.outputs - 1)
    per_group = groups.out_per_group
    first = "g" if per_group == 1 else f"{per_group}g"
    last = first if per_group == 1 else f"{first}+{per_group - 1}"
    return (f"{_range_text('o', first, last)} for c's group "
            f"g = ⌊c/{groups.in_per_group}⌋")


def _r_matrices(d: ConvDerivation, groups: Groups) -> list[Block]:
    counts = (d.lhs_shape[1], groups.out_per_group)
    blocks = _plane_summary(counts, "(input channel, output feature of its group)")
    for channel, local in shown_planes(counts):
        group = channel // groups.in_per_group
        source = (group * groups.out_per_group + local, channel - group * groups.in_per_group)
        blocks += matrix_blocks(plane_name(R, (channel, local)), rotated_swapped(d, channel, local),
                                mt.function("rot180", plane_name(mt.ident("F"), source)), mt.op("="))
    return blocks


def _rule_x_rows(d: ConvDerivation, groups: Groups, batch: int, channel: int) -> list[Equation]:
    group = channel // groups.in_per_group
    features = range(group * groups.out_per_group, (group + 1) * groups.out_per_group)
    rows = []
    for p, q in shown_cells(d.lhs_shape[2:]):
        in_window = [term for feature in features for term in window_terms(
            plane(d.padded_G, (batch, feature)),
            rotated_swapped(d, channel, feature - features.start), p, q)]
        rows += window_rows(mt.partial(L, mt.entry("X", batch, channel, p, q)), in_window,
                            d.rule_dL_dX[batch, channel, p, q], "GF", "G")
    return rows


def _rule_figure(d: ConvDerivation, groups: Groups) -> Figure:
    layout = figures.rule_panels(slice_view(d))
    return Figure(
        figures.render_png(layout),
        "One slice of the full convolution: rot180 of the filter plane F[0, 0] (orange) slides "
        "over the zero-padded G of batch entry 0, output feature 0; cells labelled by their "
        "(row, column). Each window position gives output feature 0's share of one entry of "
        f"∂L/∂X for channel {groups.input_channel(0, 0)} of batch entry 0: the products where a "
        "filter tap meets an entry of G (dark orange). The whole entry adds the shares of every "
        "output feature of the group.",
        "Grids of one zero-padded plane of G with one rotated filter plane's window at several "
        "positions, each titled with the entry of dL/dX it contributes to.",
        tuple(tuple(row) for row in layout))


@dataclasses.dataclass(frozen=True)
class SliceView:
    """One (batch entry 0, output feature 0, input channel 0) slice of a ``ConvDerivation``,
    with the attributes of a ``derive.Derivation2D`` that :mod:`convgrad.report.figures` draws;
    entry symbols renamed by their spatial indices (``X_0_0_1_2`` -> ``X_1_2``)."""

    input_shape: tuple[int, int]
    filter_shape: tuple[int, int]
    output_shape: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[tuple[int, int], ...]
    dilation: tuple[int, int]
    X: sp.ImmutableMatrix
    F: sp.ImmutableMatrix
    G: sp.ImmutableMatrix
    padded_G: sp.ImmutableMatrix
    rotated_F: sp.ImmutableMatrix
    rule_dL_dX: sp.ImmutableMatrix


def _spatial(values: sp.ImmutableMatrix) -> sp.ImmutableMatrix:
    def rename(value: sp.Basic) -> sp.Basic:
        parts = mt.entry_parts(value.name) if isinstance(value, sp.Symbol) else None
        return value if parts is None else sp.Symbol("_".join([parts[0], *map(str, parts[1][-2:])]))

    return values.applyfunc(rename)


def slice_view(d: ConvDerivation) -> SliceView:
    """The slice the figures draw: X channel read by filter plane (0, 0), G and O feature 0.

    >>> import derive
    >>> view = slice_view(derive.derive_conv((1, 2, 3, 3), (2, 1, 2, 2), feature_group_count=2))
    >>> view.X[0, 1], view.rotated_F[0, 0], view.output_shape
    (X_0_1, F_1_1, (2, 2))
    """
    source = _groups(d).input_channel(0, 0)
    return SliceView(
        input_shape=tuple(d.lhs_shape[2:]), filter_shape=tuple(d.rhs_shape[2:]),
        output_shape=tuple(d.out_shape[2:]), stride=tuple(d.window_strides),
        padding=tuple(d.padding), dilation=tuple(d.rhs_dilation),
        X=_spatial(plane(d.X, (0, source))), F=_spatial(plane(d.F, (0, 0))),
        G=_spatial(plane(d.G, (0, 0))), padded_G=_spatial(plane(d.padded_G, (0, 0))),
        rotated_F=_spatial(plane(d.rotated_F, (0, 0))),
        rule_dL_dX=plane(d.rule_dL_dX, (0, source)))
