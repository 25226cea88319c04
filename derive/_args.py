"""Validation of user arguments and the per-axis index arithmetic of a convolution.

Notation per spatial axis, as in ``jax.lax.conv_general_dilated``:

* ``n``: input size, ``k``: filter size, ``m``: output size;
* ``s``: window stride, ``a``: lhs (input) dilation, ``d``: rhs (filter) dilation;
* ``(lo, hi)``: padding of the dilated input, either sign.

Everything here is plain Python integers; ``derive`` re-derives this arithmetic itself (it never
imports ``impl``), and the tests compare the two.
"""

import dataclasses
import numbers
from collections.abc import Sequence

PADDING_STRINGS = ("VALID", "SAME", "SAME_LOWER")


@dataclasses.dataclass(frozen=True)
class Axis:
    """One spatial axis of a convolution, fully explicit."""

    n: int
    k: int
    s: int
    lo: int
    hi: int
    a: int
    d: int

    @property
    def dilated_n(self) -> int:
        """Length of the dilated input, ``a(n-1)+1``."""
        return self.a * (self.n - 1) + 1

    @property
    def dilated_k(self) -> int:
        """Length of the dilated filter, ``d(k-1)+1``."""
        return self.d * (self.k - 1) + 1

    @property
    def m(self) -> int:
        """Output size ``floor((a(n-1)+1 + lo + hi - (d(k-1)+1)) / s) + 1``."""
        return (self.dilated_n + self.lo + self.hi - self.dilated_k) // self.s + 1

    @property
    def dilated_m(self) -> int:
        """Length of the output spread by the stride, ``s(m-1)+1``."""
        return self.s * (self.m - 1) + 1

    def input_index(self, y: int, t: int) -> int | None:
        """The input entry that output ``y`` meets at filter tap ``t``, or None (a zero).

        Position ``s*y + d*t`` of the padded, dilated input is entry ``(s*y + d*t - lo) / a`` of
        the input when that is an integer in ``[0, n)``, and an inserted or padded zero otherwise.
        """
        position = self.s * y + self.d * t - self.lo
        if position % self.a or not 0 <= position // self.a < self.n:
            return None
        return position // self.a


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def int_tuple(name: str, value: object, rank: int, *, minimum: int) -> tuple[int, ...]:
    """``value`` as a tuple of ``rank`` ints, each at least ``minimum``."""
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise TypeError(f"{name} (={value!r}) must be a sequence of {rank} ints")
    if len(value) != rank:
        raise ValueError(f"{name} (={tuple(value)!r}) must have {rank} entries, got {len(value)}")
    for entry in value:
        if not _is_int(entry):
            raise TypeError(f"{name} (={tuple(value)!r}) must contain ints, got {entry!r}")
        if entry < minimum:
            raise ValueError(f"{name} (={tuple(value)!r}) must have entries >= {minimum}, got {entry}")
    return tuple(int(entry) for entry in value)


def optional_int_tuple(name: str, value: object, rank: int) -> tuple[int, ...]:
    """Like :func:`int_tuple` with ``minimum=1``; ``None`` means all ones."""
    if value is None:
        return (1,) * rank
    return int_tuple(name, value, rank, minimum=1)


def same_pads(
    in_shape: Sequence[int], window_shape: Sequence[int], strides: Sequence[int], kind: str
) -> tuple[tuple[int, int], ...]:
    """(lo, hi) pairs for 'SAME' / 'SAME_LOWER': ``ceil(n/s)`` outputs, odd pad high / low.

    ``window_shape`` is the dilated filter, as in ``jax.lax``.

    >>> same_pads((5, 4), (3, 2), (2, 1), "SAME")
    ((1, 1), (0, 1))
    """
    pads = []
    for n, k, s in zip(in_shape, window_shape, strides, strict=True):
        total = max((-(-n // s) - 1) * s + k - n, 0)
        small, large = total // 2, total - total // 2
        pads.append((small, large) if kind == "SAME" else (large, small))
    return tuple(pads)


def explicit_padding(
    padding: object,
    in_shape: Sequence[int],
    window_shape: Sequence[int],
    strides: Sequence[int],
    lhs_dilation: Sequence[int],
) -> tuple[tuple[int, int], ...]:
    """``padding`` as one (lo, hi) int pair per spatial axis ('VALID'/'SAME'/'SAME_LOWER' too)."""
    rank = len(in_shape)
    if isinstance(padding, str):
        kind = padding.upper()
        if kind not in PADDING_STRINGS:
            raise ValueError(
                f"padding (={padding!r}) must be one of {PADDING_STRINGS} or (lo, hi) pairs"
            )
        if kind != "VALID" and any(a > 1 for a in lhs_dilation):
            raise ValueError(
                f"padding (={padding!r}) must be explicit (lo, hi) pairs when lhs_dilation "
                f"(={tuple(lhs_dilation)}) exceeds 1"
            )
        if kind == "VALID":
            return ((0, 0),) * rank
        return same_pads(in_shape, window_shape, strides, kind)
    if not isinstance(padding, Sequence):
        raise TypeError(f"padding (={padding!r}) must be a string or a sequence of (lo, hi) pairs")
    if len(padding) != rank:
        raise ValueError(
            f"padding (={tuple(padding)!r}) must have one (lo, hi) pair per spatial dimension (={rank})"
        )
    for pair in padding:
        if not isinstance(pair, Sequence) or len(pair) != 2 or not all(map(_is_int, pair)):
            raise TypeError(
                f"padding (={tuple(padding)!r}) must contain (lo, hi) int pairs, got {pair!r}"
            )
    return tuple((int(lo), int(hi)) for lo, hi in padding)


def make_axes(
    in_shape: tuple[int, ...],
    window_shape: tuple[int, ...],
    strides: tuple[int, ...],
    padding: object,
    lhs_dilation: tuple[int, ...],
    rhs_dilation: tuple[int, ...],
) -> tuple[Axis, ...]:
    """One :class:`Axis` per spatial dimension; the dilated filter must fit the padded input."""
    window = tuple(d * (k - 1) + 1 for k, d in zip(window_shape, rhs_dilation, strict=True))
    pads = explicit_padding(padding, in_shape, window, strides, lhs_dilation)
    axes = tuple(
        Axis(n=n, k=k, s=s, lo=lo, hi=hi, a=a, d=d)
        for n, k, s, (lo, hi), a, d in zip(
            in_shape, window_shape, strides, pads, lhs_dilation, rhs_dilation, strict=True
        )
    )
    padded = tuple(axis.dilated_n + axis.lo + axis.hi for axis in axes)
    if any(w > p for w, p in zip(window, padded, strict=True)):
        raise ValueError(
            f"the dilated filter (={window}) must fit in the padded, dilated input (={padded}) "
            "along every spatial dimension"
        )
    return axes
