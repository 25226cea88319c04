"""Shape and padding arithmetic of a dilated, strided, padded convolution.

Tiny pure functions on tuples of Python ints, one spatial axis per entry, so that each can be
tested alone and checked symbolically by ``derive``. Notation per spatial axis:

* ``n``: input size, ``k``: window (filter) size, ``m``: output size;
* ``s``: window stride, ``a``: lhs (input) dilation, ``d``: rhs (filter) dilation;
* ``(lo, hi)``: padding of the dilated input, either sign.
"""

from collections.abc import Sequence

Pads = tuple[tuple[int, int], ...]

PADDING_STRINGS = ("VALID", "SAME", "SAME_LOWER")


def dilate_shape(shape: Sequence[int], dilation: Sequence[int]) -> tuple[int, ...]:
    """Size of each axis after inserting ``dilation - 1`` zeros between neighbours.

    >>> dilate_shape((3, 0, 1), (2, 2, 5))
    (5, 0, 1)
    """
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
    kind = padding.upper()
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
    dilated_in = dilate_shape(in_shape, lhs_dilation)
    dilated_window = dilate_shape(window_shape, rhs_dilation)
    dilated_out = dilate_shape(out_shape, window_strides)
    pads = []
    for n, k, m, (lo, _) in zip(dilated_in, dilated_window, dilated_out, padding, strict=True):
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
    dilated_in = dilate_shape(in_shape, lhs_dilation)
    dilated_window = dilate_shape(window_shape, rhs_dilation)
    dilated_out = dilate_shape(out_shape, window_strides)
    return tuple(
        (lo, m - n + k - lo - 1)
        for n, k, m, (lo, _) in zip(dilated_in, dilated_window, dilated_out, padding, strict=True)
    )
