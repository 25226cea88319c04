"""convgrad's JAX half: a convolution whose backward pass is the rotated-filter rule.

Pure JAX and NumPy; never imports SymPy or ``derive``.
"""

from impl import primitive, reference
from impl._config import ConvConfig, make_config
from impl._op import conv2d, conv_general_dilated
from impl._padding import (
    conv_output_shape,
    dilate_shape,
    lhs_cotangent_padding,
    padtype_to_pads,
    rhs_cotangent_padding,
)
from impl._rule import lhs_cotangent, rhs_cotangent

__all__ = [
    "ConvConfig",
    "conv2d",
    "conv_general_dilated",
    "conv_output_shape",
    "dilate_shape",
    "lhs_cotangent",
    "lhs_cotangent_padding",
    "make_config",
    "padtype_to_pads",
    "primitive",
    "reference",
    "rhs_cotangent",
    "rhs_cotangent_padding",
]
