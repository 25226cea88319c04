"""The rotated-filter rule, per spatial axis, as the concrete check builds it.

For one axis with input size n, filter size k, output size m, stride s, lhs dilation a, rhs
dilation d and forward padding (lo, hi), write A = a(n-1)+1 (dilated input), K = d(k-1)+1 (dilated
filter) and M = s(m-1)+1 (output spread by the stride). Then

  dL/dX = correlate(pad(spread(G, s), (K-1-lo, A+K-1-M-(K-1-lo))), rot180(spread(F, d)), stride a)

  - G is spread by the stride s: output y was computed at position s*y of the padded input;
  - low pad K-1-lo: the full convolution needs K-1 zeros before G, minus the lo the forward added;
  - high pad: whatever makes the padded G exactly A+K-1 long, so that A outputs come out, and the
    window stride a keeps only the positions that hold real (not lhs-dilation) input entries;
  - the filter is dilated by d and rotated by 180 degrees (every spatial axis reversed).

  dL/dF = correlate(pad(spread(X, a), (lo, M+K-1-A-lo)), spread(G, s), stride d)

  - low pad lo: the forward's own, so tap 0 meets the same inputs;
  - high pad: whatever makes the padded X exactly M+K-1 long, so that exactly k taps come out
    (with window stride d), cropping the input rows the stride never reached.

Channels: dL/dX[b_in, c_in] sums these over every (b, o, c') that the forward pairs with
(b_in, c_in); dL/dF[o, c'] sums over the batch. :class:`Rule` keeps each choice as a field, so that
tests can build wrong variants (filter not rotated, stride in the wrong place) and see them fail.
"""

import dataclasses
from collections.abc import Callable

from derive._args import Axis
from derive._arrays import Grid, rot180


def lhs_cotangent_pads(axis: Axis) -> tuple[int, int]:
    """(low, high) padding of the stride-spread G in the full convolution giving dL/dX.

    >>> lhs_cotangent_pads(Axis(n=3, k=2, s=1, lo=0, hi=0, a=1, d=1))
    (1, 1)
    """
    low = axis.dilated_k - 1 - axis.lo
    return low, axis.dilated_n + axis.dilated_k - 1 - axis.dilated_m - low


def rhs_cotangent_pads(axis: Axis) -> tuple[int, int]:
    """(low, high) padding of the dilated X in the valid correlation giving dL/dF.

    >>> rhs_cotangent_pads(Axis(n=3, k=2, s=1, lo=0, hi=0, a=1, d=1))
    (0, 0)
    """
    return axis.lo, axis.dilated_m + axis.dilated_k - 1 - axis.dilated_n - axis.lo


def _stride(axis: Axis) -> int:
    return axis.s


def _lhs_dilation(axis: Axis) -> int:
    return axis.a


def _rhs_dilation(axis: Axis) -> int:
    return axis.d


@dataclasses.dataclass(frozen=True)
class Rule:
    """The choices that make up the rotated-filter rule (the defaults are the correct rule)."""

    rotate_filter: Callable[[Grid], Grid] = rot180
    cotangent_spread: Callable[[Axis], int] = _stride
    filter_spread: Callable[[Axis], int] = _rhs_dilation
    input_spread: Callable[[Axis], int] = _lhs_dilation
    lhs_window_stride: Callable[[Axis], int] = _lhs_dilation
    rhs_window_stride: Callable[[Axis], int] = _rhs_dilation
    lhs_cotangent_pads: Callable[[Axis], tuple[int, int]] = lhs_cotangent_pads
    rhs_cotangent_pads: Callable[[Axis], tuple[int, int]] = rhs_cotangent_pads


ROTATED_FILTER_RULE = Rule()
