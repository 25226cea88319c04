"""convgrad: backpropagation through a convolution, derived exactly and implemented in JAX.

The one import for users: the JAX op, its forward-mode primitive and the reference loops (from
``impl``) and the exact derivations (from ``derive``).
"""

from derive import (
    ConvDerivation,
    Derivation2D,
    GeneralProof,
    derive_2d,
    derive_conv,
    general_proof,
    seed_case,
)
from impl import conv2d, conv_general_dilated, primitive, reference

__all__ = [
    "ConvDerivation",
    "Derivation2D",
    "GeneralProof",
    "conv2d",
    "conv_general_dilated",
    "derive_2d",
    "derive_conv",
    "general_proof",
    "primitive",
    "reference",
    "seed_case",
]
__version__ = "0.1.0"
