"""Arguments that lax takes unchecked, or that reached the op's helpers unchecked, now checked.

Each refusal is a ValueError or TypeError whose message names the argument and its value, raised
by both ops (the ``custom_vjp`` op and the primitive, which share ``impl.make_config``) eagerly,
under ``jax.jit`` and ``jax.eval_shape``, and before any computation of a gradient. Each parity fix
is checked against lax: equal outputs and gradients. Oracle: ``jax.lax.conv_general_dilated`` and
``jax.lax.padtype_to_pads`` (float64; small integers, so equal to within the float64 tolerance).
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import convgrad
import impl
from impl import reference
from impl._validation import as_index
from tests.helpers import assert_close, random_array

OPS = {"op": impl.conv_general_dilated, "primitive": impl.primitive.conv_general_dilated}
BOTH_OPS = pytest.mark.parametrize("op", OPS.values(), ids=OPS.keys())
X, F = (1, 2, 5, 5), (2, 2, 3, 3)


def _raises(exception, *fragments):
    """``pytest.raises`` whose message must hold every fragment (in any order)."""
    return pytest.raises(exception, match="(?s)" + "".join(
        f"(?=.*{re.escape(fragment)})" for fragment in fragments))


def _operands(lhs_shape=X, rhs_shape=F, seed=0):
    rng = np.random.default_rng(seed)
    return random_array(rng, lhs_shape), random_array(rng, rhs_shape)


def _refused_everywhere(op, kwargs, exception, *fragments, lhs_shape=X, rhs_shape=F):
    """``op(lhs, rhs, **kwargs)`` raises eagerly, under jit, eval_shape and in a gradient's trace."""
    lhs, rhs = _operands(lhs_shape, rhs_shape)

    def conv(lhs, rhs):
        return op(lhs, rhs, **kwargs)

    for step in (conv, jax.jit(conv), lambda *args: jax.eval_shape(conv, *args),
                 lambda *args: jax.make_jaxpr(jax.grad(lambda a, b: conv(a, b).sum(),
                                                       argnums=(0, 1)))(*args)):
        with _raises(exception, *fragments):
            step(lhs, rhs)


def _as_in_lax(op, kwargs, lax_kwargs=None, lhs_shape=X, rhs_shape=F):
    """``op`` with ``kwargs`` gives lax's output and gradients with ``lax_kwargs`` (default the
    same), eagerly and inside ``jax.jit``; returns lax's output."""
    lhs, rhs = _operands(lhs_shape, rhs_shape)
    lax_kwargs = kwargs if lax_kwargs is None else lax_kwargs
    expected, vjp = jax.vjp(lambda a, b: lax.conv_general_dilated(a, b, **lax_kwargs), lhs, rhs)
    cotangent = random_array(np.random.default_rng(1), expected.shape)
    expected = (expected, *vjp(cotangent))

    def outputs(lhs, rhs, cotangent):
        out, vjp = jax.vjp(lambda a, b: op(a, b, **kwargs), lhs, rhs)
        return (out, *vjp(cotangent))

    for step in (outputs, jax.jit(outputs)):
        for what, actual, wanted in zip(("O", "dL/dlhs", "dL/drhs"), step(lhs, rhs, cotangent),
                                        expected, strict=True):
            assert actual.dtype == wanted.dtype, what
            assert_close(actual, wanted, "float64", what)
    return expected[0]


# --- 1. An explicit lax.ConvDimensionNumbers ------------------------------------------------------

def _dnums(lhs_spec, rhs_spec=(0, 1, 2, 3), out_spec=(0, 1, 2, 3)):
    return lax.ConvDimensionNumbers(lhs_spec, rhs_spec, out_spec)


BAD_DIMENSION_NUMBERS = {
    "axis out of range": (_dnums((0, 1, 2, 9)), "lhs_spec (=(0, 1, 2, 9))"),
    "spec too short": (_dnums((0, 1, 2)), "lhs_spec (=(0, 1, 2))"),
    "spec too long": (_dnums((0, 1, 2, 3), (0, 1, 2, 3, 4)), "rhs_spec (=(0, 1, 2, 3, 4))"),
    "repeated axis": (_dnums((0, 1, 2, 2)), "lhs_spec (=(0, 1, 2, 2))"),
    "negative axis": (_dnums((0, 1, 2, 3), (0, 1, 2, 3), (-4, 1, 2, 3)),
                      "out_spec (=(-4, 1, 2, 3))"),
    "float axes": (_dnums((0.0, 1, 2, 3)), "lhs_spec (=(0.0, 1, 2, 3))"),
    "bool axis": (_dnums((0, True, 2, 3)), "lhs_spec (=(0, True, 2, 3))"),
    "string spec": (_dnums("NCHW", "OIHW", "NCHW"), "lhs_spec (='NCHW')"),
    "scalar spec": (_dnums(0), "lhs_spec (=0)"),
}


@BOTH_OPS
@pytest.mark.parametrize("case", BAD_DIMENSION_NUMBERS)
def test_bad_explicit_dimension_numbers_are_named(case, op):
    dnums, spec = BAD_DIMENSION_NUMBERS[case]
    _refused_everywhere(op, {"window_strides": (1, 1), "padding": "VALID",
                             "dimension_numbers": dnums},
                        ValueError, f"dimension_numbers (={dnums!r})", spec, "permutations",
                        "(1, 2, 5, 5)")


# NHWC / HWIO / NHWC as lax spells it, and the same axes as lists, NumPy ints and NumPy arrays.
NHWC = lax.conv_dimension_numbers((1, 5, 5, 2), (3, 3, 2, 2), ("NHWC", "HWIO", "NHWC"))
SPELLINGS = {
    "lists": lax.ConvDimensionNumbers(*map(list, NHWC)),
    "NumPy ints": lax.ConvDimensionNumbers(*(tuple(map(np.int64, spec)) for spec in NHWC)),
    "NumPy arrays": lax.ConvDimensionNumbers(*map(np.array, NHWC)),
    "0-d arrays": lax.ConvDimensionNumbers(*(tuple(map(np.array, spec)) for spec in NHWC)),
}


@BOTH_OPS
@pytest.mark.parametrize("spelling", SPELLINGS)
def test_dimension_numbers_of_lists_and_numpy_ints_work_as_their_tuples(spelling, op):
    kwargs = {"window_strides": (2, 1), "padding": ((1, 0), (0, 1)), "rhs_dilation": (1, 2)}
    _as_in_lax(op, {**kwargs, "dimension_numbers": SPELLINGS[spelling]},
               {**kwargs, "dimension_numbers": NHWC}, lhs_shape=(1, 5, 5, 2),
               rhs_shape=(3, 2, 2, 2))


def test_explicit_dimension_numbers_become_hashable_int_tuples():
    lhs, rhs = jnp.ones((1, 5, 5, 2)), jnp.ones((3, 3, 2, 2))
    config = impl.make_config(lhs, rhs, (1, 1), "VALID", dimension_numbers=SPELLINGS["lists"])
    assert config.dimension_numbers == NHWC
    assert all(type(axis) is int for spec in config.dimension_numbers for axis in spec)
    hash(config)


# --- 2. impl.padtype_to_pads and the other exported padding helpers --------------------------------

@pytest.mark.parametrize(("args", "exception", "fragments"), [
    (((5,), (3,), (1,), "FULL"), ValueError, ["padding (='FULL')", "SAME_LOWER"]),
    (((5,), (3,), (1,), ""), ValueError, ["padding (='')", "VALID"]),
    (((5,), (3,), (1,), ((1, 1),)), TypeError, ["padding (=((1, 1),))", "VALID"]),
    (((5,), (3,), (1,), None), TypeError, ["padding (=None)"]),
    (((5,), (3,), (0,), "SAME"), ValueError, ["window_strides (=(0,))", "positive"]),
    (((5,), (3,), (-1,), "SAME_LOWER"), ValueError, ["window_strides (=(-1,))", "positive"]),
    (((5,), (3,), (1.0,), "SAME"), TypeError, ["window_strides (=(1.0,))", "ints"]),
    (((5,), (3,), 1, "SAME"), TypeError, ["window_strides (=1)", "sequence"]),
    (((-5,), (3,), (1,), "SAME"), ValueError, ["in_shape (=(-5,))", "non-negative"]),
    (((5,), (True,), (1,), "SAME"), TypeError, ["window_shape (=(True,))", "ints"]),
    (((5, 5), (3,), (1,), "SAME"), ValueError,
     ["in_shape (=(5, 5)) has 2", "window_shape (=(3,)) has 1", "window_strides (=(1,)) has 1"]),
    (((5,), (3,), (1, 1), "VALID"), ValueError, ["window_strides (=(1, 1)) has 2"]),
])
def test_padtype_to_pads_names_bad_arguments(args, exception, fragments):
    with _raises(exception, *fragments):
        impl.padtype_to_pads(*args)


@pytest.mark.parametrize("padding", ["FULL", "same_upper", "CAUSAL"])
def test_padtype_to_pads_refuses_what_lax_refuses(padding):
    with pytest.raises(RuntimeError, match="Unrecognized padding type"):
        lax.padtype_to_pads((5,), (3,), (1,), padding)
    with _raises(ValueError, f"padding (={padding!r})"):
        impl.padtype_to_pads((5,), (3,), (1,), padding)


@pytest.mark.parametrize("padding", ["SAME", "same", "Same_Lower", "valid"])
def test_padtype_to_pads_takes_any_case_and_numpy_ints_as_lax(padding):
    in_shape, window, strides = (5, np.int64(8), np.array(3)), (3, 2, np.int32(4)), (2, 3, 1)
    expected = lax.padtype_to_pads((5, 8, 3), (3, 2, 4), (2, 3, 1), padding.upper())
    actual = impl.padtype_to_pads(in_shape, window, strides, padding)
    assert actual == tuple(map(tuple, expected))
    assert all(type(entry) is int for pair in actual for entry in pair)


OUTPUT_SHAPE_ARGS = {"in_shape": (5,), "window_shape": (3,), "window_strides": (1,),
                     "padding": ((0, 0),), "lhs_dilation": (1,), "rhs_dilation": (1,)}


@pytest.mark.parametrize(("changes", "exception", "fragments"), [
    ({"window_strides": (0,)}, ValueError, ["window_strides (=(0,))", "positive"]),
    ({"lhs_dilation": (0,)}, ValueError, ["lhs_dilation (=(0,))", "positive"]),
    ({"rhs_dilation": (-2,)}, ValueError, ["rhs_dilation (=(-2,))", "positive"]),
    ({"rhs_dilation": (2.0,)}, TypeError, ["rhs_dilation (=(2.0,))", "ints"]),
    ({"padding": "SAME"}, TypeError, ["padding (='SAME')", "padtype_to_pads"]),
    ({"padding": ((0, 0, 0),)}, TypeError, ["padding (=((0, 0, 0),))", "(low, high) int pairs"]),
    ({"padding": ((0.5, 0),)}, TypeError, ["padding (=((0.5, 0),))", "(low, high) int pairs"]),
    ({"padding": ((0, 0), (0, 0))}, ValueError, ["padding (=((0, 0), (0, 0))) has 2",
                                                 "in_shape (=(5,)) has 1"]),
    ({"in_shape": (5, 5)}, ValueError, ["in_shape (=(5, 5)) has 2", "window_shape (=(3,)) has 1"]),
])
def test_conv_output_shape_names_bad_arguments(changes, exception, fragments):
    with _raises(exception, *fragments):
        impl.conv_output_shape(**{**OUTPUT_SHAPE_ARGS, **changes})


def test_conv_output_shape_takes_numpy_ints():
    args = {**OUTPUT_SHAPE_ARGS, "in_shape": np.array([7]), "window_strides": (np.int64(2),),
            "padding": ((np.array(1), 0),), "rhs_dilation": (np.int32(2),)}
    assert impl.conv_output_shape(**args) == (2,)


def test_dilate_shape_names_bad_arguments():
    with _raises(ValueError, "dilation (=(0,))", "positive"):
        impl.dilate_shape((3,), (0,))
    with _raises(ValueError, "shape (=(3, 3)) has 2", "dilation (=(2,)) has 1"):
        impl.dilate_shape((3, 3), (2,))


@pytest.mark.parametrize("helper", [impl.lhs_cotangent_padding, impl.rhs_cotangent_padding])
def test_cotangent_paddings_name_bad_arguments(helper):
    args = ((3, 3), (2, 2), (1, 1), (2, 2), ((0, 0), (0, 0)), (1, 1), (1, 1))
    with _raises(ValueError, "out_shape (=(2,)) has 1", "in_shape (=(3, 3)) has 2"):
        helper(*args[:3], (2,), *args[4:])
    with _raises(ValueError, "window_strides (=(1, 0))", "positive"):
        helper(*args[:2], (1, 0), *args[3:])


# --- 3. The NumPy reference loops -----------------------------------------------------------------

@pytest.mark.parametrize("module", [reference, convgrad.reference], ids=["impl", "convgrad"])
def test_reference_backward_refuses_a_misshaped_upstream_gradient(module):
    x, f = np.arange(9.0).reshape(3, 3), np.eye(2)
    for upstream in (np.ones((1, 1)), np.ones((2, 3)), np.ones(4), np.ones((2, 2, 1))):
        with _raises(ValueError, f"dO (shape={upstream.shape})", "(2, 2)"):
            module.conv_backward(upstream, x, f)


@pytest.mark.parametrize(("x_shape", "f_shape", "fragment"), [
    ((9,), (2, 2), "X (shape=(9,))"),
    ((3, 3, 1), (2, 2), "X (shape=(3, 3, 1))"),
    ((3, 3), (2, 2, 2), "F (shape=(2, 2, 2))"),
    ((3, 3), (2,), "F (shape=(2,))"),
    ((3, 3), (4, 2), "F (shape=(4, 2))"),
    ((3, 3), (2, 0), "F (shape=(2, 0))"),
])
def test_reference_loops_refuse_operands_that_are_not_2d_or_do_not_fit(x_shape, f_shape, fragment):
    x, f = np.ones(x_shape), np.ones(f_shape)
    with _raises(ValueError, fragment):
        reference.conv_forward(x, f)
    with _raises(ValueError, fragment):
        reference.conv_backward(np.ones((1, 1)), x, f)


def test_reference_backward_still_matches_the_op_for_a_right_upstream_gradient():
    rng = np.random.default_rng(0)
    x, f, upstream = rng.standard_normal((4, 5)), rng.standard_normal((2, 3)), rng.standard_normal(
        (3, 3))
    _, vjp = jax.vjp(impl.conv2d, x, f)
    for actual, expected in zip(reference.conv_backward(upstream, x, f), vjp(upstream), strict=True):
        assert_close(actual, expected)


# --- 4. A crop larger than the (lhs-dilated) input -------------------------------------------------

TOO_MUCH_CROP = {
    "low": ({"padding": ((-6, 0), (0, 0))}, "crops 6 entries off spatial axis 0"),
    "both sides": ({"padding": ((0, 0), (-3, -3))}, "crops 6 entries off spatial axis 1"),
    "after padding the other side": ({"padding": ((-9, 3), (0, 0))}, "crops 6 entries"),
    "lhs-dilated": ({"padding": ((-10, 0), (0, 0)), "lhs_dilation": (2, 1)},
                    "more than the 9 the input has there"),
}


@BOTH_OPS
@pytest.mark.parametrize("case", TOO_MUCH_CROP)
def test_a_crop_larger_than_the_input_is_one_named_error(case, op):
    options, fragment = TOO_MUCH_CROP[case]
    kwargs = {"window_strides": (1, 1), **options}
    lhs, rhs = _operands()
    with pytest.raises(ValueError, match="Negative padding is larger than the size"):
        lax.conv_general_dilated(lhs, rhs, **kwargs)  # lax refuses it too
    _refused_everywhere(op, kwargs, ValueError, f"padding (={options['padding']!r})", fragment)


# As far as lax goes and no further: cropping the whole input (an empty padded input), cropping
# past the low end with a high padding to make up for it, a window larger than what is left.
CROPS_LAX_TAKES = {
    "the whole input": {"padding": ((-5, 0), (0, 0))},
    "the whole input, both sides": {"padding": ((0, 0), (-2, -3))},
    "the whole lhs-dilated input": {"padding": ((-9, 0), (0, 0)), "lhs_dilation": (2, 1)},
    "past the low end, then padded": {"padding": ((-6, 4), (0, 0))},
    "leaving less than a window": {"padding": ((-2, -2), (1, 0))},
    "dilated, past the low end": {"padding": ((-10, 4), (1, 1)), "lhs_dilation": (2, 2)},
}


@BOTH_OPS
@pytest.mark.parametrize("case", CROPS_LAX_TAKES)
def test_crops_that_lax_takes_give_lax_results(case, op):
    _as_in_lax(op, {"window_strides": (1, 1), **CROPS_LAX_TAKES[case]})


# --- 5. Integers as lax reads them (operator.index); no bools or floats ----------------------------

@BOTH_OPS
def test_zero_dimensional_integer_arrays_in_padding_pairs_as_in_lax(op):
    kwargs = {"window_strides": (1, 1), "padding": ((np.array(1), 1), (0, np.int64(2)))}
    _as_in_lax(op, kwargs)  # lax takes these as they are
    _as_in_lax(op, {**kwargs, "padding": ((jnp.array(1), np.int32(1)), (np.array(0), 2))},
               {**kwargs, "padding": ((1, 1), (0, 2))})


@BOTH_OPS
def test_numpy_integer_scalars_everywhere_as_in_lax(op):
    kwargs = {"window_strides": (np.int64(2), np.int32(1)), "padding": ((np.int16(1), 0), (0, 1)),
              "lhs_dilation": (np.uint8(1), np.int64(2)), "rhs_dilation": (np.int64(2), 1),
              "feature_group_count": np.int64(2)}
    _as_in_lax(op, kwargs, lhs_shape=(1, 4, 6, 6), rhs_shape=(4, 2, 2, 2))


@BOTH_OPS
def test_zero_dimensional_integer_arrays_as_strides_dilations_and_groups(op):
    # lax itself refuses these (it hashes them); the op takes them as the ints they hold.
    kwargs = {"window_strides": (np.array(2), 1), "padding": "SAME",
              "rhs_dilation": (1, jnp.array(2)), "batch_group_count": np.array(2)}
    ints = {"window_strides": (2, 1), "padding": "SAME", "rhs_dilation": (1, 2),
            "batch_group_count": 2}
    _as_in_lax(op, kwargs, ints, lhs_shape=(2, 2, 6, 6), rhs_shape=(4, 2, 2, 2))
    config = impl.make_config(jnp.ones((2, 2, 6, 6)), jnp.ones((4, 2, 2, 2)), **kwargs)
    assert config == impl.make_config(jnp.ones((2, 2, 6, 6)), jnp.ones((4, 2, 2, 2)), **ints)
    assert type(config.batch_group_count) is int
    assert all(type(entry) is int for entry in config.window_strides + config.rhs_dilation)


# Refused by the op although lax takes some of them (floats as strides and dilations, bools
# anywhere): a deliberate difference, so that no 2.5 or True is silently read as an int.
NOT_INTS = [
    ("float stride", {"window_strides": (1.0, 1)}, ["window_strides (=(1.0, 1))", "ints"]),
    ("NumPy float stride", {"window_strides": (np.float64(1), 1)}, ["window_strides", "ints"]),
    ("0-d float array stride", {"window_strides": (np.array(1.0), 1)}, ["window_strides", "ints"]),
    ("bool stride", {"window_strides": (np.True_, 1)}, ["window_strides", "ints"]),
    ("float rhs dilation", {"rhs_dilation": (2.0, 1)}, ["rhs_dilation (=(2.0, 1))", "ints"]),
    ("bool lhs dilation", {"padding": ((0, 0), (0, 0)), "lhs_dilation": (True, 1)},
     ["lhs_dilation (=(True, 1))", "ints"]),
    ("0-d float array padding", {"padding": ((np.array(1.0), 1), (0, 0))},
     ["padding (=((array(1.), 1), (0, 0)))", "(low, high) int pairs"]),
    ("0-d bool array padding", {"padding": ((np.array(True), 1), (0, 0))},
     ["padding (=((array(True), 1), (0, 0)))", "(low, high) int pairs"]),
    ("bool padding", {"padding": ((False, 1), (0, 0))}, ["padding (=((False, 1), (0, 0)))"]),
    ("NumPy float padding", {"padding": ((np.float32(1), 1), (0, 0))}, ["padding", "int pairs"]),
    ("bool feature groups", {"feature_group_count": True}, ["feature_group_count (=True)", "int"]),
    ("float batch groups", {"batch_group_count": 1.0}, ["batch_group_count (=1.0)", "int"]),
    ("0-d bool array groups", {"feature_group_count": np.array(True)},
     ["feature_group_count (=array(True))", "int"]),
    ("1-element array groups", {"feature_group_count": np.array([1])},
     ["feature_group_count (=array([1]))", "int"]),
]


@BOTH_OPS
@pytest.mark.parametrize(("options", "fragments"), [case[1:] for case in NOT_INTS],
                         ids=[case[0] for case in NOT_INTS])
def test_floats_and_bools_are_refused_as_integer_arguments(options, fragments, op):
    kwargs = {"window_strides": (1, 1), "padding": "VALID", **options}
    _refused_everywhere(op, kwargs, TypeError, *fragments)


def test_as_index_reads_integers_as_operator_index_does_bools_and_floats_refused():
    for value in (3, np.int8(3), np.uint64(3), np.array(3), jnp.array(3), np.array(3, np.int16)):
        assert as_index(value) == 3 and type(as_index(value)) is int
    for value in (True, np.True_, np.array(False), jnp.array(True), 3.0, np.float64(3),
                  np.array(3.0), np.array([3]), "3", None, 3 + 0j):
        assert as_index(value) is None, value
