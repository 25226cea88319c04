"""convgrad: backpropagation through a convolution, derived exactly and implemented in JAX.

The one import for users: the JAX op and its reference loops (from ``impl``) and the exact
derivations (from ``derive``).
"""

from impl import conv2d, conv_general_dilated, reference

__all__ = ["conv2d", "conv_general_dilated", "reference"]
__version__ = "0.1.0"
