"""Validation of user arguments and the per-axis index arithmetic of a convolution.

Notation per spatial axis, as in ``jax.lax.conv_general_dilated``:

* ``n``: input size, ``k``: filter size, ``m``: output size;
* ``s``: window stride, ``a``: lhs (input) dilation, ``d``: rhs (filter) dilation;
* ``(lo, hi)``: padding of the dilated input, either sign.

Everything here is plain Python integers; ``derive`` re-derives this arithmetic itself (it never
imports ``impl``), and the tests compare the two.
"""

import dataclasses
import operator
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


def is_int(value: object) -> bool:
    """Whether ``value`` is an integer: a Python int or any type with ``__index__`` (NumPy's
    integer scalars, 0-d integer arrays, SymPy Integers), but not a bool."""
    if isinstance(value, bool) or type(value).__name__ in ("bool", "bool_"):
        return False
    try:
        operator.index(value)
    except TypeError:
        return False
    return True


def as_int(name: str, value: object, *, minimum: int | None = None) -> int:
    """``value`` as a Python int (see :func:`is_int`), at least ``minimum`` when given."""
    if not is_int(value):
        raise TypeError(f"{name} (={value!r}) must be an int, got {type(value).__name__}")
    result = operator.index(value)
    if minimum is not None and result < minimum:
        raise ValueError(f"{name} (={value!r}) must be >= {minimum}")
    return result


def as_sequence(name: str, value: object, what: str) -> tuple:
    """``value`` as a tuple: a sequence (not a string) or a 1-D array (anything with
    ``ndim == 1``, such as a NumPy array); ``what`` describes the expected contents."""
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return tuple(value)
    if getattr(value, "ndim", None) == 1:
        return tuple(value)
    raise TypeError(f"{name} (={value!r}) must be {what}")


def int_tuple(name: str, value: object, rank: int, *, minimum: int | None) -> tuple[int, ...]:
    """``value`` (a sequence or 1-D array) as a tuple of ``rank`` ints, each at least ``minimum``
    (when not None)."""
    entries = as_sequence(name, value, f"a sequence of {rank} ints")
    if len(entries) != rank:
        raise ValueError(f"{name} (={entries!r}) must have {rank} entries, got {len(entries)}")
    for entry in entries:
        if not is_int(entry):
            raise TypeError(f"{name} (={entries!r}) must contain ints, got {entry!r}")
        if minimum is not None and operator.index(entry) < minimum:
            raise ValueError(f"{name} (={entries!r}) must have entries >= {minimum}, got {entry}")
    return tuple(operator.index(entry) for entry in entries)


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
    what = "a string or a sequence of (lo, hi) int pairs"
    if isinstance(padding, Sequence) or getattr(padding, "ndim", None) == 2:
        pairs = tuple(padding)
    else:
        raise TypeError(f"padding (={padding!r}) must be {what}")
    if len(pairs) != rank:
        raise ValueError(
            f"padding (={pairs!r}) must have one (lo, hi) pair per spatial dimension (={rank})"
        )
    explicit = []
    for pair in pairs:
        try:
            lo, hi = int_tuple("padding", pair, 2, minimum=None)
        except (TypeError, ValueError):
            raise TypeError(
                f"padding (={pairs!r}) must contain (lo, hi) int pairs, got {pair!r}"
            ) from None
        explicit.append((lo, hi))
    return tuple(explicit)


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
