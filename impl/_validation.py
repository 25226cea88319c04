"""Integer arguments as ``jax.lax`` reads them (``operator.index``), bools and floats refused."""

import operator
from collections.abc import Sequence

import jax
import numpy as np


def as_index(value: object) -> int | None:
    """``value`` as a Python int, or ``None`` if it is not an integer.

    Integers are what ``operator.index`` takes (as ``jax.lax`` reads padding pairs): Python and
    NumPy ints and 0-d integer arrays, NumPy's or concrete JAX ones. Bools are refused although
    ``operator.index(True)`` is 1, and so are floats however whole (``1.0``).

    >>> as_index(3), as_index(np.int32(3)), as_index(np.array(3)), as_index(True), as_index(1.0)
    (3, 3, 3, None, None)
    """
    dtype = getattr(value, "dtype", None)
    if isinstance(value, bool | np.bool_) or (isinstance(dtype, np.dtype) and dtype == np.bool_):
        return None
    try:
        return operator.index(value)
    except TypeError:  # also a tracer's TracerIntegerConversionError
        return None


def as_sequence(value: object) -> object:
    """NumPy (or concrete JAX) arrays as nested lists, as ``jax.lax`` accepts them; else as is."""
    return np.asarray(value).tolist() if isinstance(value, np.ndarray | jax.Array) else value


def int_pair(pair: object) -> tuple[int, int] | None:
    """A padding ``(low, high)`` pair of integers (``as_index``) as ints, or ``None``.

    >>> int_pair((1, np.int64(-2))), int_pair(np.array([0, 1])), int_pair((1.0, 2)), int_pair("ab")
    ((1, -2), (0, 1), None, None)
    """
    pair = as_sequence(pair)
    if not isinstance(pair, Sequence) or isinstance(pair, str) or len(pair) != 2:
        return None
    low, high = map(as_index, pair)
    return None if low is None or high is None else (low, high)
