"""The report for tools: one JSON object per case (or for the general proofs).

Case keys: ``input_shape``, ``filter_shape``, ``output_shape``, ``stride``, ``padding``,
``dilation`` (lists of int); ``O``, ``dL_dX``, ``dL_dF`` and the rule's ingredients ``padded_G``
(G spread by the stride and zero-padded) and ``rotated_F`` (the dilated filter rotated by 180
degrees), each a list of lists of strings that ``sympy.sympify`` parses, in the symbols ``X_i_j``,
``F_i_j``, ``G_i_j`` (0-based); ``verified`` (true only when derive's exact check passed);
``cross_check`` (largest absolute errors); and ``versions`` (of Python and the libraries used).

Cases with a batch, channels or groups (a ``derive.ConvDerivation``) have the same keys, where
``input_shape``, ``filter_shape``, ``output_shape`` are the whole shapes, named by the layout keys
``input_layout`` ("NCHW"), ``filter_layout`` ("OIHW") and ``output_layout`` ("NCHW"), and ``O``,
``dL_dX``, ``dL_dF``, ``padded_G`` (NCHW) and ``rotated_F`` (OIHW) are nested lists of those
layouts, in the symbols ``X_b_c_i_j``, ``F_o_c_i_j``, ``G_b_o_i_j``; plus ``batch``, ``channels``
([in, out]) and ``feature_group_count``.
"""

import importlib.metadata
import json
import platform
from typing import Any

import sympy as sp

from convgrad.report.numeric import CrossCheck
from derive import ConvDerivation

PACKAGES = ("convgrad", "sympy", "jax", "jaxlib", "numpy", "matplotlib")


def versions() -> dict[str, str]:
    """Versions of Python and of the packages a report uses ("not installed" if absent)."""
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def plain(expr: sp.Expr) -> str:
    """``expr`` as text that ``sympy.sympify`` parses back; sums of products of symbols directly
    (SymPy's printer sorts terms, too slow for the megabytes of big cases).

    >>> a, b = sp.symbols("X_0_0 F_1_1")
    >>> plain(2 * a * b - b), plain(sp.S.Zero), plain(a / 3 + 1)
    ('-F_1_1 + 2*F_1_1*X_0_0', '0', '1 + (X_0_0/3)')
    """
    text = ""
    for term in sp.Add.make_args(expr):
        coefficient, factors = term.as_coeff_mul()
        if coefficient.is_Integer and factors and all(isinstance(f, sp.Symbol) for f in factors):
            sign = "-" if coefficient < 0 else "+"
            body = "*".join([*([str(abs(coefficient))] if abs(coefficient) != 1 else []),
                             *(f.name for f in factors)])
        else:
            sign, body = "+", f"({sp.sstr(term)})" if text else sp.sstr(term)
        text = (f"{text} {sign} {body}" if text else ("-" if sign == "-" else "") + body)
    return text


def _strings(matrix: sp.Matrix) -> list[list[str]]:
    return [[plain(matrix[r, c]) for c in range(matrix.cols)] for r in range(matrix.rows)]


def _nested(array: sp.NDimArray) -> list[Any]:
    """An N-d array of expressions as nested lists of :func:`plain` strings."""
    if array.rank() == 1:
        return [plain(array[i]) for i in range(array.shape[0])]
    return [_nested(array[i]) for i in range(array.shape[0])]


def case_data(derivation: Any, check: CrossCheck) -> dict[str, Any]:
    """The JSON object of one case (a ``derive.Derivation2D`` or ``derive.ConvDerivation``, and its
    cross-check)."""
    if isinstance(derivation, ConvDerivation):
        return conv_case_data(derivation, check)
    data: dict[str, Any] = {
        "input_shape": list(derivation.input_shape),
        "filter_shape": list(derivation.filter_shape),
        "output_shape": list(derivation.output_shape),
        "stride": list(derivation.stride),
        "padding": [list(pair) for pair in derivation.padding],
        "dilation": list(derivation.dilation),
    }
    for key in ("O", "dL_dX", "dL_dF", "padded_G", "rotated_F"):
        data[key] = _strings(getattr(derivation, key))
    data["verified"] = bool(derivation.verified)
    data["cross_check"] = check.as_json()
    data["versions"] = versions()
    return data


def conv_case_data(derivation: ConvDerivation, check: CrossCheck) -> dict[str, Any]:
    """The JSON object of a case with a batch, channels or groups (NCHW / OIHW nested lists)."""
    data: dict[str, Any] = {
        "input_shape": list(derivation.lhs_shape),
        "filter_shape": list(derivation.rhs_shape),
        "output_shape": list(derivation.out_shape),
        "input_layout": "NCHW",
        "filter_layout": "OIHW",
        "output_layout": "NCHW",
        "batch": derivation.lhs_shape[0],
        "channels": [derivation.lhs_shape[1], derivation.rhs_shape[0]],
        "feature_group_count": derivation.feature_group_count,
        "stride": list(derivation.window_strides),
        "padding": [list(pair) for pair in derivation.padding],
        "dilation": list(derivation.rhs_dilation),
    }
    for key in ("O", "dL_dX", "dL_dF", "padded_G", "rotated_F"):
        data[key] = _nested(getattr(derivation, key))
    data["verified"] = bool(derivation.verified)
    data["cross_check"] = check.as_json()
    data["versions"] = versions()
    return data


def render(data: dict[str, Any]) -> str:
    """``data`` as indented JSON text."""
    lines = [f"  {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}"
             for key, value in data.items()]
    return "{\n" + ",\n".join(lines) + "\n}\n"
