"""The JSON report parsed back as a tool would, and evaluated against two independent autodiffs.

Each case's ``O``, ``dL_dX`` and ``dL_dF`` strings are parsed with ``sympy.sympify``, evaluated
at random float64 numbers with ``sympy.lambdify``, and compared with the impl op (through
``jax.vjp``) and with ``jax.grad`` of ``sum(G * O)`` through the native ``jax.lax`` convolution.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sympy as sp
from jax import lax

import impl
from convgrad.cli import main
from tests.helpers import assert_close

CASES = [
    pytest.param([], id="seed"),
    pytest.param(["--input", "5x4", "--filter", "2x3", "--stride", "2,1", "--padding", "1:0,0:2",
                  "--dilation", "2,1"], id="5x4-2x3-stride-pad-dilation"),
    pytest.param(["--input", "6x7", "--filter", "3x2", "--stride", "1,2", "--padding", "SAME",
                  "--dilation", "1,2"], id="6x7-3x2-same"),
    pytest.param(["--input", "4x9", "--filter", "1x4", "--stride", "3", "--padding", "2,1"],
                 id="4x9-1x4-stride3"),
]


def _symbols(letter, shape):
    return [sp.Symbol(f"{letter}_{i}_{j}") for i in range(shape[0]) for j in range(shape[1])]


def _evaluate(strings, values):
    """The parsed expressions, evaluated at ``values`` (dict of letter -> array)."""
    symbols = [s for letter in "XFG" for s in _symbols(letter, values[letter].shape)]
    numbers = [v for letter in "XFG" for v in values[letter].ravel()]
    expressions = [sp.sympify(text) for row in strings for text in row]
    assert set().union(*(e.free_symbols for e in expressions)) <= set(symbols)
    function = sp.lambdify(symbols, expressions, modules="numpy")
    shape = (len(strings), len(strings[0]))
    return np.asarray(function(*numbers), dtype=np.float64).reshape(shape)


def _lax_kwargs(data):
    return dict(window_strides=tuple(data["stride"]),
                padding=tuple(tuple(pair) for pair in data["padding"]),
                rhs_dilation=tuple(data["dilation"]))


def _autodiffs(data, x, f, g):
    kwargs = _lax_kwargs(data)

    def by_impl(x, f):
        return impl.conv_general_dilated(x[None, None], f[None, None], **kwargs)[0, 0]

    def by_lax(x, f):
        return lax.conv_general_dilated(x[None, None], f[None, None], **kwargs)[0, 0]

    out, vjp = jax.vjp(by_impl, x, f)
    impl_grads = (out, *vjp(g))
    lax_grads = (by_lax(x, f), *jax.grad(lambda x, f: jnp.sum(g * by_lax(x, f)), (0, 1))(x, f))
    return impl_grads, lax_grads


@pytest.mark.parametrize("argv", CASES)
def test_json_evaluates_to_both_autodiffs(argv, tmp_path, capsys):
    target = tmp_path / "case.json"
    assert main(["report", *argv, "-o", str(target)]) == 0
    capsys.readouterr()
    data = json.loads(target.read_text())
    assert data["verified"] is True and data["cross_check"]["passed"] is True
    rng = np.random.default_rng(7)
    values = {"X": rng.standard_normal(data["input_shape"]),
              "F": rng.standard_normal(data["filter_shape"]),
              "G": rng.standard_normal(data["output_shape"])}
    exact = [_evaluate(data[key], values) for key in ("O", "dL_dX", "dL_dF")]
    impl_grads, lax_grads = _autodiffs(data, *(jnp.asarray(values[k]) for k in "XFG"))
    for name, value, by_impl, by_lax in zip(("O", "dL_dX", "dL_dF"), exact, impl_grads, lax_grads,
                                            strict=True):
        assert_close(value, by_lax, "float64", f"{name} vs jax.grad of lax")
        assert_close(value, by_impl, "float64", f"{name} vs impl op")


def test_json_keys_shapes_and_versions(tmp_path, capsys):
    target = tmp_path / "case.json"
    assert main(["report", "--input", "5x4", "--filter", "2x3", "--stride", "2,1",
                 "--padding", "1", "-o", str(target)]) == 0
    capsys.readouterr()
    data = json.loads(target.read_text())
    # Output size per axis: floor((n + lo + hi - k) / s) + 1 = (5+2-2)//2+1 = 3, (4+2-3)//1+1 = 4.
    assert data["output_shape"] == [3, 4] and data["padding"] == [[1, 1], [1, 1]]
    for key, shape in (("O", [3, 4]), ("dL_dX", [5, 4]), ("dL_dF", [2, 3])):
        assert [len(data[key]), len(data[key][0])] == shape
    errors = data["cross_check"]["errors"]
    assert set(errors) == {"exact_vs_impl", "exact_vs_lax_grad", "impl_vs_lax_grad"}
    assert max(max(e.values()) for e in errors.values()) < 1e-12
    assert {"python", "sympy", "jax", "jaxlib", "numpy", "convgrad"} <= set(data["versions"])
    # rot180 of the 2x3 filter, read off the definition rot180(F)[u, v] = F[1 - u, 2 - v].
    assert data["rotated_F"] == [["F_1_2", "F_1_1", "F_1_0"], ["F_0_2", "F_0_1", "F_0_0"]]
