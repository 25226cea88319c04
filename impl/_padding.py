"""Shape and padding arithmetic of a dilated, strided, padded convolution.

Tiny pure functions on tuples of Python ints, one spatial axis per entry, so that each can be
tested alone and checked symbolically by ``derive``. Notation per spatial axis:

* ``n``: input size, ``k``: window (filter) size, ``m``: output size;
* ``s``: window stride, ``a``: lhs (input) dilation, ``d``: rhs (filter) dilation;
* ``(lo, hi)``: padding of the dilated input, either sign.

Each function first checks its arguments (``TypeError``/``ValueError`` naming the argument and its
value): integers as ``jax.lax`` reads them (Python or NumPy ints, 0-d integer arrays; no bools or
floats), sizes non-negative, strides and dilations positive, one entry per spatial axis in each.
"""

from collections.abc import Sequence

from impl._validation import as_index, as_sequence, int_pair

Pads = tuple[tuple[int, int], ...]

PADDING_STRINGS = ("VALID", "SAME", "SAME_LOWER")


def _ints(name: str, value: object, minimum: int) -> tuple[int, ...]:
    """``value``, a sequence of ints of at least ``minimum`` (0 or 1), as a tuple of ints."""
    value = as_sequence(value)
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise TypeError(f"{name} (={value!r}) must be a sequence of ints, one per spatial axis")
    ints = tuple(map(as_index, value))
    if None in ints:
        raise TypeError(f"{name} (={tuple(value)!r}) must contain ints, got "
                        f"{value[ints.index(None)]!r}")
    if any(entry < minimum for entry in ints):
        raise ValueError(f"{name} (={ints!r}) must be "
                         f"{'positive' if minimum > 0 else 'non-negative'}")
    return ints


def _pads(padding: object) -> Pads:
    """``padding``, a sequence of (low, high) int pairs, as a tuple of pairs of ints."""
    if isinstance(padding, str):
        raise TypeError(f"padding (={padding!r}) must be (low, high) int pairs here; "
                        "padtype_to_pads turns a padding string into them")
    padding = as_sequence(padding)
    if not isinstance(padding, Sequence):
        raise TypeError(f"padding (={padding!r}) must be a sequence of (low, high) int pairs")
    pairs = []
    for pair in padding:
        entries = int_pair(pair)
        if entries is None:
            raise TypeError(f"padding (={tuple(padding)!r}) must contain (low, high) int pairs, "
                            f"got {pair!r}")
        pairs.append(entries)
    return tuple(pairs)


def _one_per_axis(**axes: tuple) -> None:
    """Every argument has as many entries (one per spatial axis) as the first."""
    if len({len(value) for value in axes.values()}) > 1:
        listing = ", ".join(f"{name} (={value!r}) has {len(value)}"
                            for name, value in axes.items())
        raise ValueError(f"{', '.join(axes)} must have one entry per spatial axis each: {listing}")


def dilate_shape(shape: Sequence[int], dilation: Sequence[int]) -> tuple[int, ...]:
    """Size of each axis after inserting ``dilation - 1`` zeros between neighbours.

    >>> dilate_shape((3, 0, 1), (2, 2, 5))
    (5, 0, 1)
    """
    shape, dilation = _ints("shape", shape, 0), _ints("dilation", dilation, 1)
    _one_per_axis(shape=shape, dilation=dilation)
    return tuple(0 if n == 0 else 1 + dil * (n - 1) for n, dil in zip(shape, dilation, strict=True))


def padtype_to_pads(
    in_shape: Sequence[int],
    window_shape: Sequence[int],
    window_strides: Sequence[int],
    padding: str,
) -> Pads:
    """Explicit ``(lo, hi)`` pairs for ``'VALID'``, ``'SAME'`` or ``'SAME_LOWER'``.

    As in ``jax.lax``: ``window_shape`` is the *dilated* window, ``in_shape`` the undilated input;
    'SAME' gives ``ceil(n / s)`` outputs and puts an odd extra pad on the high side,
    'SAME_LOWER' on the low side.

    >>> padtype_to_pads((5, 4), (3, 2), (2, 1), "SAME")
    ((1, 1), (0, 1))
    >>> padtype_to_pads((4,), (2,), (1,), "SAME_LOWER")
    ((1, 0),)
    """
    if not isinstance(padding, str):
        raise TypeError(f"padding (={padding!r}) must be one of {PADDING_STRINGS} (any case), as "
                        "(low, high) pairs need no conversion")
    kind = padding.upper()
    if kind not in PADDING_STRINGS:
        raise ValueError(f"padding (={padding!r}) must be one of {PADDING_STRINGS} (any case)")
    in_shape, window_shape = _ints("in_shape", in_shape, 0), _ints("window_shape", window_shape, 0)
    window_strides = _ints("window_strides", window_strides, 1)
    _one_per_axis(in_shape=in_shape, window_shape=window_shape, window_strides=window_strides)
    if kind == "VALID":
        return tuple((0, 0) for _ in in_shape)
    pads = []
    for n, k, s in zip(in_shape, window_shape, window_strides, strict=True):
        out = -(-n // s)
        total = max((out - 1) * s + k - n, 0)
        small, large = total // 2, total - total // 2
        pads.append((small, large) if kind == "SAME" else (large, small))
    return tuple(pads)


def conv_output_shape(
    in_shape: Sequence[int],
    window_shape: Sequence[int],
    window_strides: Sequence[int],
    padding: Pads,
    lhs_dilation: Sequence[int],
    rhs_dilation: Sequence[int],
) -> tuple[int, ...]:
    """Spatial output size ``m = floor((a(n-1)+1 + lo + hi - (d(k-1)+1)) / s) + 1`` per axis.

    >>> conv_output_shape((3, 3), (2, 2), (1, 1), ((0, 0), (0, 0)), (1, 1), (1, 1))
    (2, 2)
    >>> conv_output_shape((7,), (3,), (2,), ((1, 0),), (1,), (2,))
    (2,)
    """
    in_shape, window_shape = _ints("in_shape", in_shape, 0), _ints("window_shape", window_shape, 0)
    window_strides, padding = _ints("window_strides", window_strides, 1), _pads(padding)
    lhs_dilation = _ints("lhs_dilation", lhs_dilation, 1)
    rhs_dilation = _ints("rhs_dilation", rhs_dilation, 1)
    _one_per_axis(in_shape=in_shape, window_shape=window_shape, window_strides=window_strides,
                  padding=padding, lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation)
    padded = [
        n + lo + hi
        for n, (lo, hi) in zip(dilate_shape(in_shape, lhs_dilation), padding, strict=True)
    ]
    windows = dilate_shape(window_shape, rhs_dilation)
    return tuple(
        max(0, (p - w) // s + 1) for p, w, s in zip(padded, windows, window_strides, strict=True)
    )


def lhs_cotangent_padding(
    in_shape: Sequence[int],
    window_shape: Sequence[int],
    window_strides: Sequence[int],
    out_shape: Sequence[int],
    padding: Pads,
    lhs_dilation: Sequence[int],
    rhs_dilation: Sequence[int],
) -> Pads:
    """Padding of the stride-dilated cotangent in the full convolution that gives dL/d(lhs).

    low  = d(k-1) - lo: the window's reach before the first output, minus what the forward
           padding already supplied ("full" convolution: every overlap, however partial);
    high = (a(n-1)+1) + (d(k-1)+1) - 1 - (s(m-1)+1) - low: whatever makes the result exactly as long
           as the dilated input, which also re-covers the input rows that a stride left unused.

    >>> lhs_cotangent_padding((3, 3), (2, 2), (1, 1), (2, 2), ((0, 0), (0, 0)), (1, 1), (1, 1))
    ((1, 1), (1, 1))
    """
    pads = []
    for n, k, m, lo in _dilated_axes(in_shape, window_shape, window_strides, out_shape, padding,
                                     lhs_dilation, rhs_dilation):
        before = k - lo - 1
        pads.append((before, n + k - 1 - m - before))
    return tuple(pads)


def rhs_cotangent_padding(
    in_shape: Sequence[int],
    window_shape: Sequence[int],
    window_strides: Sequence[int],
    out_shape: Sequence[int],
    padding: Pads,
    lhs_dilation: Sequence[int],
    rhs_dilation: Sequence[int],
) -> Pads:
    """Padding of the (dilated) input in the valid correlation with the cotangent that gives dL/d(rhs).

    low  = lo: the forward's own low padding, so tap 0 of the filter meets the same inputs;
    high = (s(m-1)+1) - (a(n-1)+1) + (d(k-1)+1) - lo - 1: just enough that exactly k taps come out
           (with window stride d), whatever the forward's high padding and leftover rows were.

    >>> rhs_cotangent_padding((3, 3), (2, 2), (1, 1), (2, 2), ((0, 0), (0, 0)), (1, 1), (1, 1))
    ((0, 0), (0, 0))
    """
    return tuple((lo, m - n + k - lo - 1) for n, k, m, lo in _dilated_axes(
        in_shape, window_shape, window_strides, out_shape, padding, lhs_dilation, rhs_dilation))


def _dilated_axes(
    in_shape: Sequence[int],
    window_shape: Sequence[int],
    window_strides: Sequence[int],
    out_shape: Sequence[int],
    padding: Pads,
    lhs_dilation: Sequence[int],
    rhs_dilation: Sequence[int],
) -> list[tuple[int, int, int, int]]:
    """The two cotangent paddings' arguments checked, then per spatial axis ``(n, k, m, lo)``:
    the lhs-dilated input, the dilated window, the stride-dilated output and the low padding."""
    checked = {
        "in_shape": _ints("in_shape", in_shape, 0),
        "window_shape": _ints("window_shape", window_shape, 0),
        "window_strides": _ints("window_strides", window_strides, 1),
        "out_shape": _ints("out_shape", out_shape, 0),
        "padding": _pads(padding),
        "lhs_dilation": _ints("lhs_dilation", lhs_dilation, 1),
        "rhs_dilation": _ints("rhs_dilation", rhs_dilation, 1),
    }
    _one_per_axis(**checked)
    return list(zip(dilate_shape(checked["in_shape"], checked["lhs_dilation"]),
                    dilate_shape(checked["window_shape"], checked["rhs_dilation"]),
                    dilate_shape(checked["out_shape"], checked["window_strides"]),
                    (lo for lo, _ in checked["padding"]), strict=True))
