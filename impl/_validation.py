"""Integer arguments as ``jax.lax`` reads them (``operator.index``), bools and floats refused."""

import operator

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
