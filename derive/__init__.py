r"""convgrad's SymPy half: exact derivations of the gradient of a convolution.

Pure SymPy; never imports JAX, ``impl`` or ``convgrad``.

* :func:`seed_case`, :func:`derive_2d` (single channel, 2-D) and :func:`derive_conv` (batch,
  channels, groups, any number of spatial axes): every entry of dL/dX and dL/dF from
  differentiating :math:`L = \sum G \cdot O`, and an exact check that the rotated-filter rule
  gives the same;
* :func:`general_proof`: the rule as an identity for symbolic sizes (stride, dilation, padding).
"""

from derive._derivation import ConvDerivation, Derivation2D, derive_2d, derive_conv, seed_case
from derive._general import PROOF_KINDS, GeneralProof, ProofError, Sizes, general_proof
from derive._rule import ROTATED_FILTER_RULE, Rule

__all__ = [
    "PROOF_KINDS",
    "ROTATED_FILTER_RULE",
    "ConvDerivation",
    "Derivation2D",
    "GeneralProof",
    "ProofError",
    "Rule",
    "Sizes",
    "derive_2d",
    "derive_conv",
    "general_proof",
    "seed_case",
]
