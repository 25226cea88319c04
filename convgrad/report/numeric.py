"""The numeric cross-check of a report: the exact forms at random numbers against two autodiffs.

The symbolic output and derivatives of a ``derive`` result are evaluated (:func:`evaluate`) at
random float64 values of X, F and G, and compared with

* the ``impl`` op (``impl.conv2d`` for the tutorial's op, else ``impl.conv_general_dilated``),
  whose backward pass is the rotated-filter rule, through ``jax.vjp`` with cotangent G, and
* ``jax.grad`` of ``L = sum(G * O)`` through the native ``jax.lax.conv_general_dilated``.

Errors are the largest absolute differences; a comparison passes when it is within
``convgrad.tolerances.tolerance("float64")`` times the oracle's largest magnitude (at least 1).
"""

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import sympy as sp
from jax import lax

import impl
from convgrad.tolerances import tolerance

QUANTITIES = ("O", "dL_dX", "dL_dF")
COMPARISONS = {
    "exact_vs_impl": "exact forms vs impl op",
    "exact_vs_lax_grad": "exact forms vs jax.grad of lax",
    "impl_vs_lax_grad": "impl op vs jax.grad of lax",
}


@dataclasses.dataclass(frozen=True)
class CrossCheck:
    """Largest absolute errors per comparison and quantity (see ``COMPARISONS``/``QUANTITIES``)."""

    seed: int
    dtype: str
    tolerance: float
    op: str
    errors: dict[str, dict[str, float]]
    passed: bool

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        return dataclasses.asdict(self)


def cross_check(derivation: Any, seed: int = 0) -> CrossCheck:
    """Evaluate ``derivation`` (a ``derive.Derivation2D``) at random numbers and compare.

    ``derivation.X``, ``.F``, ``.G`` are matrices of symbols of shapes (H, W), (KH, KW) and the
    output's (OH, OW); ``.O``, ``.dL_dX``, ``.dL_dF`` are matrices of the same shapes as O, X, F.
    """
    rng = np.random.default_rng(seed)
    values = {name: rng.standard_normal(getattr(derivation, name).shape) for name in "XFG"}
    exact = _evaluate(derivation, values)
    with jax.enable_x64(True):
        op_name, by_impl = _impl_values(derivation, values)
        by_lax = _lax_values(derivation, values)
    results = {"exact_vs_impl": (exact, by_impl), "exact_vs_lax_grad": (exact, by_lax),
               "impl_vs_lax_grad": (by_impl, by_lax)}
    errors: dict[str, dict[str, float]] = {}
    passed = True
    for comparison, (actual, oracle) in results.items():
        errors[comparison] = {}
        for name in QUANTITIES:
            error = float(np.max(np.abs(actual[name] - oracle[name]), initial=0.0))
            scale = max(float(np.max(np.abs(oracle[name]), initial=0.0)), 1.0)
            errors[comparison][name] = error
            passed = passed and error <= tolerance("float64") * scale
    return CrossCheck(seed, "float64", tolerance("float64"), op_name, errors, passed)


def _evaluate(derivation: Any, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    numbers = {symbol: float(value) for name in "XFG"
               for symbol, value in zip(getattr(derivation, name), values[name].ravel(), strict=True)}
    result = {}
    for name in QUANTITIES:
        matrix = getattr(derivation, name)
        flat = [evaluate(entry, numbers) for entry in matrix]
        result[name] = np.asarray(flat, dtype=np.float64).reshape(matrix.shape)
    return result


def evaluate(expr: sp.Expr, numbers: dict[sp.Symbol, float]) -> float:
    """``expr`` at the float64 ``numbers``, term by term (``lambdify`` overflows Python's compiler
    on the hundreds of terms of big cases); terms that are not products of powers of symbols go
    through ``sympy.Expr.evalf``.

    >>> a, b = sp.symbols("a b")
    >>> evaluate(2 * a * b + b**2 - sp.Rational(1, 2), {a: 1.5, b: 2.0})
    9.5
    """
    total = 0.0
    for term in sp.Add.make_args(expr):
        coefficient, factors = term.as_coeff_mul()
        value = float(coefficient)
        for factor in factors:
            base, exponent = factor.as_base_exp()
            if base in numbers and exponent.is_Integer:
                value *= numbers[base] ** int(exponent)
            else:
                value *= float(factor.evalf(subs=numbers))
        total += value
    return total


def _is_tutorial_op(derivation: Any) -> bool:
    return (tuple(derivation.stride) == (1, 1) and tuple(derivation.dilation) == (1, 1)
            and all(tuple(pair) == (0, 0) for pair in derivation.padding))


def _impl_values(derivation: Any, values: dict[str, np.ndarray]) -> tuple[str, dict[str, np.ndarray]]:
    x, f, g = (jnp.asarray(values[name]) for name in "XFG")
    if _is_tutorial_op(derivation):
        name, forward = "impl.conv2d", impl.conv2d
    else:
        name = "impl.conv_general_dilated"

        def forward(x: jax.Array, f: jax.Array) -> jax.Array:
            out = impl.conv_general_dilated(x[None, None], f[None, None], **_lax_kwargs(derivation))
            return out[0, 0]
    out, vjp = jax.vjp(forward, x, f)
    dx, df = vjp(g)
    return name, {"O": np.asarray(out), "dL_dX": np.asarray(dx), "dL_dF": np.asarray(df)}


def _lax_values(derivation: Any, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    x, f, g = (jnp.asarray(values[name]) for name in "XFG")

    def output(x: jax.Array, f: jax.Array) -> jax.Array:
        return lax.conv_general_dilated(x[None, None], f[None, None], **_lax_kwargs(derivation))[0, 0]

    def loss(x: jax.Array, f: jax.Array) -> jax.Array:
        return jnp.sum(g * output(x, f))

    dx, df = jax.grad(loss, argnums=(0, 1))(x, f)
    return {"O": np.asarray(output(x, f)), "dL_dX": np.asarray(dx), "dL_dF": np.asarray(df)}


def _lax_kwargs(derivation: Any) -> dict[str, Sequence[Any]]:
    return {"window_strides": tuple(derivation.stride),
            "padding": tuple(tuple(pair) for pair in derivation.padding),
            "rhs_dilation": tuple(derivation.dilation)}
