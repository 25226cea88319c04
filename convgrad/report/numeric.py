"""The numeric cross-check of a report: the exact forms at random numbers against two autodiffs.

The symbolic output and derivatives of a ``derive`` result are evaluated (:func:`evaluate`) at
random float64 values of X, F and G, and compared with

* the ``impl`` op (``impl.conv2d`` for the tutorial's op, else ``impl.conv_general_dilated``),
  whose backward pass is the rotated-filter rule, through ``jax.vjp`` with cotangent G, and
* ``jax.grad`` of ``L = sum(G * O)`` through the native ``jax.lax.conv_general_dilated``.

A ``derive.ConvDerivation`` (batch, channels, groups) runs both on its whole NCHW / OIHW arrays
with its own groups and dilations; a ``derive.Derivation2D`` on one batch entry and channel.

Errors are the largest absolute differences; a comparison passes when it is within
``convgrad.tolerances.tolerance("float64")`` times the oracle's largest magnitude (at least 1).
"""

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import sympy as sp
from jax import lax

import impl
from convgrad.tolerances import tolerance
from derive import ConvDerivation

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
    """Evaluate ``derivation`` at random numbers and compare.

    ``derivation`` is a ``derive.Derivation2D`` (``.X``, ``.F``, ``.G`` matrices of symbols of
    shapes (H, W), (KH, KW) and the output's (OH, OW)) or a ``derive.ConvDerivation`` (arrays of
    layouts NCHW, OIHW and NCHW; its groups go to both convolutions); ``.O``, ``.dL_dX``,
    ``.dL_dF`` have the shapes of O, X and F.
    """
    rng = np.random.default_rng(seed)
    values = {name: rng.standard_normal(_shape(getattr(derivation, name))) for name in "XFG"}
    exact = _evaluate(derivation, values)
    op_name, by_impl, by_lax = _convolutions(derivation)
    with jax.enable_x64(True):
        impl_values = _vjp_values(by_impl, values)
        lax_values = _grad_values(by_lax, values)
    results = {"exact_vs_impl": (exact, impl_values), "exact_vs_lax_grad": (exact, lax_values),
               "impl_vs_lax_grad": (impl_values, lax_values)}
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


def _shape(array: Any) -> tuple[int, ...]:
    return tuple(int(size) for size in array.shape)


def _entries(array: Any) -> list[sp.Expr]:
    """Every entry of a SymPy matrix or N-d array, in row-major order."""
    return [array[index] for index in np.ndindex(_shape(array))]


def _evaluate(derivation: Any, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    numbers = {symbol: float(value) for name in "XFG"
               for symbol, value in zip(_entries(getattr(derivation, name)), values[name].ravel(),
                                        strict=True)}
    result = {}
    for name in QUANTITIES:
        array = getattr(derivation, name)
        flat = [evaluate(entry, numbers) for entry in _entries(array)]
        result[name] = np.asarray(flat, dtype=np.float64).reshape(_shape(array))
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


Convolution = Callable[[jax.Array, jax.Array], jax.Array]


def _convolutions(derivation: Any) -> tuple[str, Convolution, Convolution]:
    """The name of the impl op, and the impl and native lax convolutions on the case's arrays."""
    if isinstance(derivation, ConvDerivation):
        kwargs = _conv_kwargs(derivation)
        return ("impl.conv_general_dilated",
                functools.partial(impl.conv_general_dilated, **kwargs),
                functools.partial(lax.conv_general_dilated, **kwargs))
    by_lax = _on_one_plane(lax.conv_general_dilated, _lax_kwargs(derivation))
    if _is_tutorial_op(derivation):
        return "impl.conv2d", impl.conv2d, by_lax
    return ("impl.conv_general_dilated",
            _on_one_plane(impl.conv_general_dilated, _lax_kwargs(derivation)), by_lax)


def _on_one_plane(conv: Callable[..., jax.Array], kwargs: dict[str, Any]) -> Convolution:
    """``conv`` on (H, W) arrays: one batch entry, one channel."""

    def forward(x: jax.Array, f: jax.Array) -> jax.Array:
        return conv(x[None, None], f[None, None], **kwargs)[0, 0]

    return forward


def _vjp_values(forward: Convolution, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """O and (dL/dX, dL/dF) through ``jax.vjp`` of ``forward`` with cotangent G."""
    x, f, g = (jnp.asarray(values[name]) for name in "XFG")
    out, vjp = jax.vjp(forward, x, f)
    dx, df = vjp(g)
    return {"O": np.asarray(out), "dL_dX": np.asarray(dx), "dL_dF": np.asarray(df)}


def _grad_values(forward: Convolution, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """O and the gradients of ``L = sum(G * O)`` through ``jax.grad``."""
    x, f, g = (jnp.asarray(values[name]) for name in "XFG")

    def loss(x: jax.Array, f: jax.Array) -> jax.Array:
        return jnp.sum(g * forward(x, f))

    dx, df = jax.grad(loss, argnums=(0, 1))(x, f)
    return {"O": np.asarray(forward(x, f)), "dL_dX": np.asarray(dx), "dL_dF": np.asarray(df)}


def _lax_kwargs(derivation: Any) -> dict[str, Sequence[Any]]:
    return {"window_strides": tuple(derivation.stride),
            "padding": tuple(tuple(pair) for pair in derivation.padding),
            "rhs_dilation": tuple(derivation.dilation)}


def _conv_kwargs(derivation: ConvDerivation) -> dict[str, Any]:
    """Every option of a ``derive.ConvDerivation`` (default NCHW / OIHW dimension numbers)."""
    return {"window_strides": derivation.window_strides, "padding": derivation.padding,
            "lhs_dilation": derivation.lhs_dilation, "rhs_dilation": derivation.rhs_dilation,
            "feature_group_count": derivation.feature_group_count,
            "batch_group_count": derivation.batch_group_count}
