"""The tutorial's NumPy loops, corrected: the slow, obvious reference for the tutorial's op.

Single channel, valid cross-correlation, stride 1, any rectangular sizes. The tutorial's backward
wrote ``dH(h,w)`` where it meant ``dH[h,w]`` and only took square filters; both are fixed here.
These loops are an independent oracle for tests, not something to use for speed. Both functions
raise ``ValueError``, naming the argument and its shape, for an operand that is not 2-D, a filter
that is empty or larger than the input, and an upstream gradient not of the output's shape.
"""

import numpy as np


def _checked(X: object, F: object) -> tuple[np.ndarray, np.ndarray]:
    """``X`` and ``F`` as 2-D arrays, the filter non-empty and no larger than the input."""
    X, F = np.asarray(X), np.asarray(F)
    for name, array in (("X", X), ("F", F)):
        if array.ndim != 2:
            raise ValueError(f"{name} (shape={array.shape}) must be 2-D (single channel)")
    if not (1 <= F.shape[0] <= X.shape[0] and 1 <= F.shape[1] <= X.shape[1]):
        raise ValueError(f"F (shape={F.shape}) must be non-empty and fit in X (shape={X.shape}) "
                         "along both axes (valid correlation)")
    return X, F


def conv_forward(X: np.ndarray, F: np.ndarray) -> np.ndarray:
    """``O[h, w] = sum(X[h:h+kh, w:w+kw] * F)`` for ``X`` of shape (H, W), ``F`` of (kh, kw).

    >>> conv_forward(np.arange(9.0).reshape(3, 3), np.eye(2)).tolist()
    [[4.0, 6.0], [10.0, 12.0]]
    """
    X, F = _checked(X, F)
    kh, kw = F.shape
    out_h, out_w = X.shape[0] - kh + 1, X.shape[1] - kw + 1
    O = np.zeros((out_h, out_w), dtype=np.result_type(X, F))
    for h in range(out_h):
        for w in range(out_w):
            O[h, w] = np.sum(X[h:h + kh, w:w + kw] * F)
    return O


def conv_backward(dO: np.ndarray, X: np.ndarray, F: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(dX, dF)`` for upstream gradient ``dO`` of shape (H - kh + 1, W - kw + 1).

    Each output position (h, w) sends ``dO[h, w]`` back along the window it read:
    ``dF += X[h:h+kh, w:w+kw] * dO[h, w]`` and ``dX[h:h+kh, w:w+kw] += F * dO[h, w]``.

    >>> dX, dF = conv_backward(np.ones((2, 2)), np.arange(9.0).reshape(3, 3), np.eye(2))
    >>> dF.tolist(), dX.tolist()
    ([[8.0, 12.0], [20.0, 24.0]], [[1.0, 1.0, 0.0], [1.0, 2.0, 1.0], [0.0, 1.0, 1.0]])
    """
    X, F = _checked(X, F)
    dO = np.asarray(dO)
    kh, kw = F.shape
    out_shape = (X.shape[0] - kh + 1, X.shape[1] - kw + 1)
    if dO.shape != out_shape:
        raise ValueError(f"dO (shape={dO.shape}) must have the output's shape {out_shape}, "
                         f"(H - kh + 1, W - kw + 1) for X of shape {X.shape} and F of shape "
                         f"{F.shape}")
    dtype = np.result_type(dO, X, F)
    dX, dF = np.zeros(X.shape, dtype), np.zeros(F.shape, dtype)
    for h in range(dO.shape[0]):
        for w in range(dO.shape[1]):
            dF += X[h:h + kh, w:w + kw] * dO[h, w]
            dX[h:h + kh, w:w + kw] += F * dO[h, w]
    return dX, dF
