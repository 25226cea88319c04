"""Sparse N-d arrays of SymPy expressions and the three operations the rule is built from.

A :class:`Grid` stores only its nonzero entries, so spreading by a stride, dilating a filter or
padding costs nothing for the zeros. The rule's side of every concrete check is written with these
operations (spread-and-pad, rot180, sliding-window correlation), independently of the forward
index formula that the derivative side differentiates.
"""

import dataclasses
import itertools
from collections.abc import Iterator, Sequence

import sympy

Index = tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class Grid:
    """An N-d array of ``shape`` whose nonzero entries are ``entries`` (index -> expression)."""

    shape: tuple[int, ...]
    entries: dict[Index, sympy.Expr]

    def to_array(self) -> sympy.ImmutableDenseNDimArray:
        """All entries, zeros written out, as a SymPy array of ``shape``."""
        flat = [self.entries.get(index, sympy.S.Zero) for index in indices(self.shape)]
        return sympy.ImmutableDenseNDimArray(flat, self.shape)


def indices(shape: Sequence[int]) -> Iterator[Index]:
    """Every index of ``shape`` in row-major order."""
    return itertools.product(*(range(size) for size in shape))


def product(first: sympy.Symbol, second: sympy.Symbol) -> sympy.Mul:
    """``first * second`` for two distinct Symbols, built without ``Mul``'s flattening.

    A product of two distinct commutative Symbols is, in canonical form, the Mul of the two in name
    order (tests check this against ``sympy.Mul``). Skipping the general flattening makes the
    64x64/5x5 check fit its time budget; it cannot create a false equality, because a wrongly
    ordered product would fail to cancel against its canonical twin, not cancel spuriously.
    """
    if first.name < second.name:
        return sympy.Mul._from_args((first, second), True)
    return sympy.Mul._from_args((second, first), True)


def term_key(term: sympy.Mul) -> tuple[str, str]:
    """The names of the two Symbols of a :func:`product`, in order."""
    return term.args[0].name, term.args[1].name


def canonical_sum(terms: list[sympy.Mul]) -> sympy.Expr:
    """``sympy.Add(*terms)`` for distinct products of two Symbols each (from :func:`product`).

    SymPy's canonical order of such products (``Basic.compare``: same class and length, then the
    Symbols' names) is the order of :func:`term_key`, so the sorted terms are already the
    canonical ``Add``. Anything else (repeated terms, fewer than two) goes through ``sympy.Add``.
    Tests check both paths against ``sympy.Add``.
    """
    ordered = sorted(terms, key=term_key)
    keys = [term_key(term) for term in ordered]
    if len(ordered) < 2 or any(first == second for first, second in itertools.pairwise(keys)):
        return sympy.Add(*ordered)
    return sympy.Add._from_args(ordered, True)


def spread_and_pad(grid: Grid, dilation: Sequence[int], pads: Sequence[tuple[int, int]]) -> Grid:
    """Insert ``dilation - 1`` zeros between neighbours, then pad by ``(lo, hi)`` (negative crops).

    Entry ``i`` moves to ``lo + dilation * i`` per axis; entries that land outside are cropped.
    """
    shape = tuple(
        dil * (size - 1) + 1 + lo + hi
        for size, dil, (lo, hi) in zip(grid.shape, dilation, pads, strict=True)
    )
    entries = {}
    for index, value in grid.entries.items():
        moved = tuple(lo + dil * i for i, dil, (lo, _) in zip(index, dilation, pads, strict=True))
        if all(0 <= i < size for i, size in zip(moved, shape, strict=True)):
            entries[moved] = value
    return Grid(shape, entries)


def rot180(grid: Grid) -> Grid:
    """Reverse every axis (the 2-D case is a rotation by 180 degrees)."""
    entries = {
        tuple(size - 1 - i for i, size in zip(index, grid.shape, strict=True)): value
        for index, value in grid.entries.items()
    }
    return Grid(grid.shape, entries)


def correlate(lhs: Grid, window: Grid, strides: Sequence[int]) -> dict[Index, list[sympy.Mul]]:
    """Terms of the valid correlation ``out[y] = sum_t lhs[strides*y + t] * window[t]``.

    Returns, for each output index of shape ``(lhs - window) // strides + 1``, the list of its
    nonzero products (every entry of lhs and window must be a Symbol). The work is the smaller of
    (outputs x window entries) lookups and (lhs entries x window entries) divisions: a sparse lhs
    with many outputs (G spread by a large stride, in the full convolution) is scattered from its
    entries rather than gathered at every output.
    """
    out_shape = tuple(
        (size - width) // stride + 1
        for size, width, stride in zip(lhs.shape, window.shape, strides, strict=True)
    )
    terms: dict[Index, list[sympy.Mul]] = {out_index: [] for out_index in indices(out_shape)}
    if len(lhs.entries) < len(terms):
        for position, value in lhs.entries.items():
            for tap, weight in window.entries.items():
                out_index = []
                for p, t, stride, size in zip(position, tap, strides, out_shape, strict=True):
                    y, remainder = divmod(p - t, stride)
                    if remainder or not 0 <= y < size:
                        break
                    out_index.append(y)
                else:
                    terms[tuple(out_index)].append(product(value, weight))
        return terms
    for out_index in terms:
        corner = tuple(stride * y for stride, y in zip(strides, out_index, strict=True))
        found = terms[out_index]
        for tap, weight in window.entries.items():
            value = lhs.entries.get(tuple(c + t for c, t in zip(corner, tap, strict=True)))
            if value is not None:
                found.append(product(value, weight))
    return terms
