"""The convolution primitive under every JAX transformation, against the same on native lax.

Oracle: each transformation applied to ``jax.lax.conv_general_dilated`` (JAX's own JVP, transpose
and batching rules), in float64, compared under ``convgrad.tolerances``. Reverse mode is shown to
run through ``impl._rule`` (jaxpr and monkeypatch), and forward mode to not depend on it.
"""

import dataclasses
import functools
import itertools
import re
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.test_util import check_grads

import impl
from impl import _rule
from impl.primitive import conv_general_dilated, conv_general_dilated_p
from tests.helpers import assert_close, random_array


@dataclasses.dataclass(frozen=True)
class Case:
    """One convolution: operand shapes (in the layouts of ``dimension_numbers``) and options."""

    name: str
    lhs_shape: tuple[int, ...]
    rhs_shape: tuple[int, ...]
    options: tuple[tuple[str, Any], ...]

    def conv(self, op: Callable) -> Callable:
        return functools.partial(op, **dict(self.options))


def _case(name, lhs_shape, rhs_shape, **options):
    return pytest.param(Case(name, lhs_shape, rhs_shape, tuple(options.items())), id=name)


# Chosen to cover every option at least once: 1-D/2-D/3-D, strides, negative and string padding,
# both dilations, feature groups (incl. depthwise), batch groups, non-default layouts.
CASES = [
    _case("2d-valid", (2, 3, 5, 5), (4, 3, 2, 2), window_strides=(1, 1), padding="VALID"),
    _case("2d-strided-negpad-dilated-fgroups", (2, 4, 7, 6), (6, 2, 3, 2), window_strides=(2, 1),
          padding=((1, -1), (2, 1)), lhs_dilation=(1, 2), rhs_dilation=(2, 1),
          feature_group_count=2),
    _case("1d-same-bgroups", (4, 3, 9), (6, 3, 3), window_strides=(2,), padding="SAME",
          rhs_dilation=(2,), batch_group_count=2),
    _case("3d-ndhwc-dilated", (2, 5, 4, 3, 2), (2, 2, 2, 2, 3), window_strides=(1, 2, 1),
          padding=((0, 1), (1, 0), (1, -1)), lhs_dilation=(2, 1, 1),
          dimension_numbers=("NDHWC", "DHWIO", "NDHWC")),
    _case("2d-nhwc-depthwise-mixed-layout", (2, 5, 4, 3), (2, 3, 1, 6), window_strides=(1, 2),
          padding="SAME_LOWER", rhs_dilation=(1, 2), feature_group_count=3,
          dimension_numbers=("NHWC", "HWIO", "NCHW")),
]


def _inputs(case: Case, seed: int = 0) -> tuple[jax.Array, ...]:
    """lhs, rhs and a tangent for each, standard normal, float64."""
    rng = np.random.default_rng(seed)
    shapes = (case.lhs_shape, case.rhs_shape) * 2
    return tuple(random_array(rng, shape) for shape in shapes)


def _loss(conv: Callable) -> Callable:
    """A scalar, non-quadratic loss of the convolution, so every Hessian block is non-zero."""
    return lambda lhs, rhs: jnp.sum(jnp.sin(conv(lhs, rhs)))


def _hvp(conv: Callable, lhs, rhs, d_lhs, d_rhs):
    """Forward-over-reverse Hessian-vector product of ``_loss`` (the grad comes with it)."""
    grad = jax.grad(lambda operands: _loss(conv)(*operands))
    return jax.jvp(grad, ((lhs, rhs),), ((d_lhs, d_rhs),))


def _linearize(conv: Callable, lhs, rhs, d_lhs, d_rhs):
    out, linear = jax.linearize(conv, lhs, rhs)
    return out, linear(d_lhs, d_rhs)


# Each maps (conv, lhs, rhs, d_lhs, d_rhs) to a pytree of arrays.
TRANSFORMS: dict[str, Callable] = {
    "forward": lambda conv, lhs, rhs, *_: conv(lhs, rhs),
    "jvp": lambda conv, lhs, rhs, d_lhs, d_rhs: jax.jvp(conv, (lhs, rhs), (d_lhs, d_rhs)),
    "linearize": _linearize,
    "vjp": lambda conv, lhs, rhs, *_: jax.grad(_loss(conv), argnums=(0, 1))(lhs, rhs),
    "jacfwd": lambda conv, lhs, rhs, *_: jax.jacfwd(conv, argnums=(0, 1))(lhs, rhs),
    "jacrev": lambda conv, lhs, rhs, *_: jax.jacrev(conv, argnums=(0, 1))(lhs, rhs),
    "hessian": lambda conv, lhs, rhs, *_: jax.hessian(_loss(conv), argnums=(0, 1))(lhs, rhs),
    "hvp": _hvp,
}

# (lhs axis, rhs axis, out axis) of each vmap: the new axis never at 0, then at the end.
VMAPS = {"lhs": (2, None, -1), "rhs": (None, 1, 1), "both": (1, -1, 2)}


def _stack(array: jax.Array, axis: int | None, size: int, seed: int) -> jax.Array:
    """``size`` random arrays shaped like ``array`` stacked along ``axis`` (``array`` if None)."""
    if axis is None:
        return array
    rng = np.random.default_rng(seed)
    return jnp.stack([random_array(rng, array.shape) for _ in range(size)], axis=axis)


# XLA's CPU backend compiles about twice as fast unoptimised; both ops get the same options.
FAST_COMPILE = {"xla_backend_optimization_level": 0}


def _with_vmaps(
    transform: Callable, conv: Callable, operands: tuple, modes: tuple[str, ...], size: int = 2
) -> dict:
    """The transform itself and its vmap in each of ``modes`` (keys of ``VMAPS``), in one jit."""
    plain = functools.partial(transform, conv)
    batched_operands, runs = {}, {}
    for mode in modes:
        lhs_axis, rhs_axis, out_axis = VMAPS[mode]
        axes = (lhs_axis, rhs_axis, lhs_axis, rhs_axis)
        batched_operands[mode] = tuple(
            _stack(array, axis, size, seed) for seed, (array, axis) in enumerate(
                zip(operands, axes, strict=True)))
        runs[mode] = jax.vmap(plain, in_axes=axes, out_axes=out_axis)

    @functools.partial(jax.jit, compiler_options=FAST_COMPILE)
    def run_all(operands, batched_operands):
        results = {"plain": plain(*operands)}
        results.update({mode: runs[mode](*batched_operands[mode]) for mode in modes})
        return results

    return run_all(operands, batched_operands)


def _assert_trees_close(actual, expected, what: str) -> float:
    """Leaf by leaf under the float64 tolerance; returns the largest absolute error seen."""
    leaves, tree = jax.tree.flatten(expected)
    actual_leaves = tree.flatten_up_to(actual)
    for index, (got, want) in enumerate(zip(actual_leaves, leaves, strict=True)):
        assert_close(got, want, "float64", f"{what} (leaf {index})")
    return max((float(np.max(np.abs(np.asarray(got) - np.asarray(want)), initial=0.0))
                for got, want in zip(actual_leaves, leaves, strict=True)), default=0.0)


def _transform_params() -> list:
    """Every (case, transform), each with one vmap mode; the modes rotate so that every transform
    and every case meets all three."""
    params = []
    for case_index, case in enumerate(CASES):
        for transform_index, transform in enumerate(TRANSFORMS):
            mode = list(VMAPS)[(case_index + transform_index) % len(VMAPS)]
            case_value = case.values[0]
            params.append(pytest.param(case_value, transform, mode,
                                       id=f"{case_value.name}-{transform}-vmap_{mode}"))
    return params


@pytest.mark.parametrize("case, transform, mode", _transform_params())
def test_transform_and_its_vmap_match_lax(case, transform, mode):
    operands = _inputs(case)
    ours = _with_vmaps(TRANSFORMS[transform], case.conv(conv_general_dilated), operands, (mode,))
    native = _with_vmaps(TRANSFORMS[transform], case.conv(lax.conv_general_dilated), operands,
                         (mode,))
    for variant in ours:
        _assert_trees_close(ours[variant], native[variant], f"{case.name} {transform} {variant}")


@pytest.mark.parametrize("case", CASES[1:3])
def test_vmap_of_vmap_and_empty_vmap_match_lax(case):
    lhs, rhs, _, _ = _inputs(case)
    lhs_stack, rhs_stack = _stack(lhs, 0, 3, 1), _stack(rhs, 0, 2, 2)

    def nested(op):
        conv = case.conv(op)
        return jax.vmap(jax.vmap(conv, in_axes=(None, 0)), in_axes=(0, None))(lhs_stack, rhs_stack)

    def empty(op):
        return jax.vmap(case.conv(op))(lhs_stack[:0], rhs_stack[:0])

    _assert_trees_close(nested(conv_general_dilated), nested(lax.conv_general_dilated), "nested")
    ours, native = empty(conv_general_dilated), empty(lax.conv_general_dilated)
    assert ours.shape == native.shape and ours.dtype == native.dtype


@pytest.mark.parametrize("case", CASES)
def test_abstract_eval_matches_lax_shape_and_dtype(case):
    lhs, rhs = (array.astype(jnp.float32) for array in _inputs(case)[:2])
    for preferred in (None, jnp.float64):
        options = {"preferred_element_type": preferred}
        ours = jax.eval_shape(functools.partial(case.conv(conv_general_dilated), **options),
                              lhs, rhs)
        native = jax.eval_shape(functools.partial(case.conv(lax.conv_general_dilated), **options),
                                lhs, rhs)
        assert (ours.shape, ours.dtype) == (native.shape, native.dtype)


def test_narrowing_preferred_element_type_is_refused_as_by_lax():
    case = CASES[0].values[0]
    lhs, rhs, _, _ = _inputs(case)
    for op in (lax.conv_general_dilated, conv_general_dilated):
        with pytest.raises(TypeError, match="must not be narrower"):
            jax.eval_shape(functools.partial(case.conv(op), preferred_element_type=jnp.float32),
                           lhs, rhs)


def test_complex128_jvp_and_vjp_match_lax():
    case = CASES[1].values[0]
    real, imaginary = _inputs(case), _inputs(case, seed=5)
    lhs, rhs, d_lhs, d_rhs = (a + 1j * b for a, b in zip(real, imaginary, strict=True))

    def jvp_and_vjp(op):
        conv = case.conv(op)
        out, vjp = jax.vjp(conv, lhs, rhs)
        return jax.jvp(conv, (lhs, rhs), (d_lhs, d_rhs)), vjp(jnp.conj(out))

    def parts(tree):  # tests.helpers.assert_close compares real arrays only
        return jax.tree.map(lambda array: jnp.stack([array.real, array.imag]), tree)

    _assert_trees_close(parts(jvp_and_vjp(conv_general_dilated)),
                        parts(jvp_and_vjp(lax.conv_general_dilated)), "complex128 jvp/vjp")


def test_preferred_element_type_gradients_keep_lax_dtypes():
    # float32 operands accumulated in float64: tangents come out float64, cotangents float32.
    case = CASES[2].values[0]
    lhs, rhs, d_lhs, d_rhs = (array.astype(jnp.float32) for array in _inputs(case))

    def jvp_and_grad(op):
        conv = functools.partial(case.conv(op), preferred_element_type=jnp.float64)
        return (jax.jvp(conv, (lhs, rhs), (d_lhs, d_rhs)),
                jax.grad(_loss(conv), argnums=(0, 1))(lhs, rhs))

    ours, native = jvp_and_grad(conv_general_dilated), jvp_and_grad(lax.conv_general_dilated)
    assert jax.tree.map(lambda a: a.dtype, ours) == jax.tree.map(lambda a: a.dtype, native)
    _assert_trees_close(ours, native, "preferred float64")


def test_finite_differences_to_second_order_in_both_modes():
    # An oracle independent of lax's rules: central differences, as in jax.test_util.
    case = CASES[1].values[0]
    lhs, rhs, _, _ = _inputs(case)
    check_grads(case.conv(conv_general_dilated), (lhs, rhs), order=2,
                              modes=("fwd", "rev"), atol=1e-5, rtol=1e-5)


def test_symbolic_zero_tangent_costs_no_convolution():
    # With rhs closed over, its tangent is a symbolic zero: the JVP binds the primitive twice
    # (primal and dX ⋆ F), never for X ⋆ dF.
    case = CASES[0].values[0]
    lhs, rhs, d_lhs, _ = _inputs(case)
    conv = case.conv(conv_general_dilated)
    jaxpr = jax.make_jaxpr(lambda x, dx: jax.jvp(lambda x: conv(x, rhs), (x,), (dx,)))(lhs, d_lhs)
    names = [eqn.primitive.name for eqn in jaxpr.jaxpr.eqns]
    assert names.count(conv_general_dilated_p.name) == 2
    assert "conv_general_dilated" not in names


def _producers(jaxpr: jax.extend.core.Jaxpr) -> dict:
    return {var: eqn for eqn in jaxpr.eqns for var in eqn.outvars}


def test_reverse_mode_jaxpr_shows_rotated_filter_feeding_the_primitive():
    case = CASES[0].values[0]
    lhs, rhs, _, _ = _inputs(case)
    jaxpr = jax.make_jaxpr(jax.grad(_loss(case.conv(conv_general_dilated))))(lhs, rhs).jaxpr
    producers = _producers(jaxpr)
    convs = [eqn for eqn in jaxpr.eqns if eqn.primitive is conv_general_dilated_p]
    assert len(convs) == 2  # the forward and dL/dX; dL/dF is not asked for
    backward = convs[1]
    rotated = producers[backward.invars[1]]
    assert rotated.primitive.name == "rev" and rotated.params["dimensions"] == (2, 3)
    assert rotated.invars[0] is jaxpr.invars[1]  # the filter itself, rotated by 180°
    assert backward.params["config"].dimension_numbers.rhs_spec == (1, 0, 2, 3)  # I and O swapped
    assert all(eqn.primitive.name != "conv_general_dilated" for eqn in jaxpr.eqns)


@pytest.mark.parametrize("argnum, rule", [(0, "lhs_cotangent"), (1, "rhs_cotangent")])
def test_reverse_mode_runs_through_the_rule_and_forward_mode_does_not(monkeypatch, argnum, rule):
    case = CASES[1].values[0]
    lhs, rhs, d_lhs, d_rhs = _inputs(case)
    original = getattr(_rule, rule)
    monkeypatch.setattr(_rule, rule, lambda *args: 2.0 * original(*args))
    ours, native = case.conv(conv_general_dilated), case.conv(lax.conv_general_dilated)

    grads = jax.grad(_loss(ours), argnums=(0, 1))(lhs, rhs)
    expected = jax.grad(_loss(native), argnums=(0, 1))(lhs, rhs)
    assert_close(grads[argnum], 2.0 * expected[argnum], what=f"doubled {rule}")
    assert_close(grads[1 - argnum], expected[1 - argnum], what="the other, untouched rule")
    tangent = jax.jvp(ours, (lhs, rhs), (d_lhs, d_rhs))[1]
    assert_close(tangent, jax.jvp(native, (lhs, rhs), (d_lhs, d_rhs))[1], what="jvp")


def test_custom_vjp_op_still_refuses_forward_mode():
    # Why the primitive exists: impl.conv_general_dilated is the design's custom_vjp op.
    case = CASES[0].values[0]
    lhs, rhs, d_lhs, d_rhs = _inputs(case)
    with pytest.raises(TypeError, match="custom_vjp"):
        jax.jvp(case.conv(impl.conv_general_dilated), (lhs, rhs), (d_lhs, d_rhs))


def test_validation_is_the_custom_vjp_ops():
    lhs, rhs = jnp.ones((1, 2, 4, 4)), jnp.ones((3, 2, 2, 2))
    for op in (impl.conv_general_dilated, conv_general_dilated):
        with pytest.raises(ValueError, match=r"padding \(=\(\(1, 1\),\)\) must have one"):
            op(lhs, rhs, (1, 1), ((1, 1),))


def _reverse_feeds_convolution(module_text: str) -> bool:
    """Whether, within one function, a ``stablehlo.reverse`` result is an operand of a
    ``stablehlo.convolution`` (SSA names are only unique per function)."""
    for function in module_text.split("func.func")[1:]:
        reversed_values = set(re.findall(r"(%[\w#]+) = stablehlo\.reverse", function))
        for operands in re.findall(r"stablehlo\.convolution\(([^)]*)\)", function):
            if reversed_values & {name.strip() for name in operands.split(",")}:
                return True
    return False


def test_export_for_cpu_cuda_tpu_keeps_the_rule_and_forward_mode():
    case = CASES[0].values[0]
    lhs, rhs, d_lhs, d_rhs = _inputs(case)
    ours, native = case.conv(conv_general_dilated), case.conv(lax.conv_general_dilated)
    grad = jax.grad(_loss(ours), argnums=(0, 1))
    exported = jax.export.export(jax.jit(grad), platforms=["cpu", "cuda", "tpu"])(lhs, rhs)
    assert exported.platforms == ("cpu", "cuda", "tpu")
    assert _reverse_feeds_convolution(exported.mlir_module())
    forward = jax.export.export(jax.jit(ours), platforms=["cpu", "cuda", "tpu"])(lhs, rhs)
    assert not _reverse_feeds_convolution(forward.mlir_module())  # the check can fail
    _assert_trees_close(exported.call(lhs, rhs),
                        jax.grad(_loss(native), argnums=(0, 1))(lhs, rhs), "exported grad")

    hvp = jax.export.export(jax.jit(functools.partial(_hvp, ours)),
                            platforms=["cpu", "cuda", "tpu"])(lhs, rhs, d_lhs, d_rhs)
    _assert_trees_close(hvp.call(lhs, rhs, d_lhs, d_rhs), _hvp(native, lhs, rhs, d_lhs, d_rhs),
                        "exported hvp")


# The exhaustive grid, on small 2-D operands.
_STRIDES = [(1, 1), (2, 1)]
_PADDINGS = ["VALID", "SAME", ((1, -1), (0, 2))]
_LHS_DILATIONS = [(1, 1), (1, 2)]
_RHS_DILATIONS = [(1, 1), (2, 1)]
_GROUPS = [(1, 1), (2, 1), (1, 2)]
_LAYOUTS = [("NCHW", "OIHW", "NCHW"), ("NHWC", "HWIO", "NHWC"), ("CHWN", "IOHW", "NWHC")]


def _grid_case(strides, padding, lhs_dilation, rhs_dilation, groups, layout):
    feature_groups, batch_groups = groups
    sizes = {"N": 2 * batch_groups, "C": 2 * feature_groups, "H": 6, "W": 5}
    window = {"O": 2 * feature_groups * batch_groups, "I": 2, "H": 3, "W": 2}
    lhs_shape = tuple(sizes[axis] for axis in layout[0])
    rhs_shape = tuple(window[axis] for axis in layout[1])
    name = "-".join(map(str, (strides, padding, lhs_dilation, rhs_dilation, groups, layout[0])))
    return _case(name.replace(" ", ""), lhs_shape, rhs_shape, window_strides=strides,
                 padding=padding, lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
                 feature_group_count=feature_groups, batch_group_count=batch_groups,
                 dimension_numbers=layout)


def _grid() -> list:
    """Every combination of the options but layout, which rotates (each layout meets each option)."""
    combinations = [options for options in itertools.product(
        _STRIDES, _PADDINGS, _LHS_DILATIONS, _RHS_DILATIONS, _GROUPS)
        if not (isinstance(options[1], str) and options[2] != (1, 1))]  # lax: SAME needs no lhs dil.
    return [_grid_case(*options, _LAYOUTS[index % len(_LAYOUTS)])
            for index, options in enumerate(combinations)]


GRID = _grid()


def _jvp_and_hvp(conv: Callable, lhs, rhs, d_lhs, d_rhs) -> dict:
    return {"jvp": jax.jvp(conv, (lhs, rhs), (d_lhs, d_rhs)),
            "hvp": _hvp(conv, lhs, rhs, d_lhs, d_rhs)}


@pytest.mark.slow
@pytest.mark.parametrize("index, case", [pytest.param(index, param.values[0], id=param.id)
                                         for index, param in enumerate(GRID)])
def test_grid_jvp_grad_hvp_and_vmap_match_lax(index, case):
    operands = _inputs(case, seed=1)
    modes = (list(VMAPS)[index // len(_LAYOUTS) % len(VMAPS)],)  # layouts rotate with index
    ours = _with_vmaps(_jvp_and_hvp, case.conv(conv_general_dilated), operands, modes)
    native = _with_vmaps(_jvp_and_hvp, case.conv(lax.conv_general_dilated), operands, modes)
    for variant in ours:
        _assert_trees_close(ours[variant], native[variant], f"{case.name} {variant}")
