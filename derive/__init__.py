r"""convgrad's SymPy half: exact derivations of the gradient of a convolution.

Pure SymPy; never imports JAX, ``impl`` or ``convgrad``.

* :func:`seed_case`, :func:`derive_2d` (single channel, 2-D) and :func:`derive_conv` (batch,
  channels, groups, any number of spatial axes): every entry of dL/dX and dL/dF from
  differentiating :math:`L = \sum G \cdot O`, and an exact check that the rotated-filter rule
  gives the same;
* :func:`general_proof`: the rule as an identity for symbolic sizes (stride, dilation, padding).

A concrete derivation refuses (``ValueError``, before any SymPy work) a case with more than
:data:`MAX_PRODUCTS` products in its forward pass or :data:`MAX_CELLS` cells in an array, and
:func:`general_proof` concrete sizes whose cross-check expands more than :data:`MAX_CHECK_TERMS`.
"""

from derive._concrete import MAX_CELLS, MAX_PRODUCTS
from derive._derivation import ConvDerivation, Derivation2D, derive_2d, derive_conv, seed_case
from derive._general import MAX_CHECK_TERMS, PROOF_KINDS, GeneralProof, ProofError, Sizes, general_proof
from derive._rule import ROTATED_FILTER_RULE, Rule

__all__ = [
    "MAX_CELLS",
    "MAX_CHECK_TERMS",
    "MAX_PRODUCTS",
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
