"""Per-dtype tolerances for comparing the op with an independent oracle.

Relative to the oracle's largest magnitude. float64 is where tight checks run; the others reflect
each type's machine epsilon times a few accumulations (bfloat16 has 8 mantissa bits, float16 11,
float32 24).
"""

import numpy as np

TOLERANCES: dict[str, float] = {
    "float64": 1e-12,
    "float32": 1e-5,
    "float16": 1e-2,
    "bfloat16": 5e-2,
    "complex128": 1e-12,
    "complex64": 1e-5,
}


def tolerance(dtype: object) -> float:
    """The relative tolerance for ``dtype`` (a NumPy/JAX dtype or its name)."""
    name = np.dtype(dtype).name
    if name not in TOLERANCES:
        raise ValueError(f"dtype (={name}) has no tolerance; known: {sorted(TOLERANCES)}")
    return TOLERANCES[name]
