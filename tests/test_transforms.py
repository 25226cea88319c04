"""Every transform a user reaches for, against the same transform of native lax, in float64.

jit, vmap (a batch of inputs, a batch of filters, both), grad, grad of grad,
jacrev(jacrev), jax.checkpoint, lax.scan, and the op as a drop-in wherever a function takes
``conv_general_dilated`` as an argument. (Sharding is tested elsewhere.)
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import impl
from tests.conv_oracle import Case, make_case, random_array, relative_error, vjp_outputs

CONVS = {"ours": impl.conv_general_dilated, "native": lax.conv_general_dilated}

# Strided, padded, dilated, grouped, in an odd layout; and a plain NHWC one.
GROUPED = make_case({"rank": 2, "padding": "negative", "strides": "mixed", "lhs_dilation": True,
                     "rhs_dilation": True, "groups": "feature", "layout": "odd", "batch": "full"})
NHWC = make_case({"rank": 2, "padding": "SAME", "strides": "mixed", "lhs_dilation": False,
                  "rhs_dilation": False, "groups": "none", "layout": "channels_last",
                  "batch": "full"})
CASES = {"grouped": GROUPED, "nhwc": NHWC}


def _operands(case, seed=0, lhs_batch=(), rhs_batch=()):
    rng = np.random.default_rng(seed)
    return (random_array(rng, (*lhs_batch, *case.lhs_shape), "float64"),
            random_array(rng, (*rhs_batch, *case.rhs_shape), "float64"))


def _loss(conv, case):
    """A nonlinear scalar loss, so that second derivatives are not trivially zero."""
    return lambda lhs, rhs: jnp.sum(jnp.sin(conv(lhs, rhs, **case.kwargs)) ** 2)


def _assert_trees_close(ours, native, tolerance=1e-12):
    leaves, native_leaves = jax.tree.leaves(ours), jax.tree.leaves(native)
    assert len(leaves) == len(native_leaves)
    for index, (leaf, native_leaf) in enumerate(zip(leaves, native_leaves, strict=True)):
        assert np.shape(leaf) == np.shape(native_leaf), index
        assert relative_error(leaf, native_leaf) <= tolerance, index


def _both(transform):
    """``transform(conv)`` for the op and for native lax."""
    return transform(CONVS["ours"]), transform(CONVS["native"])


@pytest.mark.parametrize("name", CASES)
def test_jit_of_vjp(name):
    case = CASES[name]
    lhs, rhs = _operands(case)
    cotangent = random_array(np.random.default_rng(1), jax.eval_shape(
        lambda lhs, rhs: lax.conv_general_dilated(lhs, rhs, **case.kwargs), lhs, rhs).shape,
        "float64")
    ours, native = _both(lambda conv: jax.jit(
        lambda lhs, rhs, cotangent: vjp_outputs(conv, lhs, rhs, cotangent, case.kwargs))(
            lhs, rhs, cotangent))
    _assert_trees_close(ours, native)


@pytest.mark.parametrize(("lhs_batch", "rhs_batch", "in_axes"), [
    ((3,), (), (0, None)), ((), (3,), (None, 0)), ((3,), (3,), (0, 0)),
], ids=["inputs", "filters", "both"])
@pytest.mark.parametrize("name", CASES)
def test_vmap_of_value_and_grad(name, lhs_batch, rhs_batch, in_axes):
    case = CASES[name]
    lhs, rhs = _operands(case, lhs_batch=lhs_batch, rhs_batch=rhs_batch)
    ours, native = _both(lambda conv: jax.vmap(
        jax.value_and_grad(_loss(conv, case), argnums=(0, 1)), in_axes=in_axes)(lhs, rhs))
    _assert_trees_close(ours, native)


def test_vmap_of_the_op_itself_and_vmap_over_a_non_leading_axis():
    case = GROUPED
    lhs, rhs = _operands(case, lhs_batch=(2,), rhs_batch=(2,))
    lhs, rhs = jnp.moveaxis(lhs, 0, 2), jnp.moveaxis(rhs, 0, -1)
    ours, native = _both(lambda conv: jax.vmap(
        lambda lhs, rhs: conv(lhs, rhs, **case.kwargs), in_axes=(2, -1), out_axes=1)(lhs, rhs))
    _assert_trees_close(ours, native)


@pytest.mark.parametrize("name", CASES)
def test_grad_and_grad_of_grad(name):
    case = CASES[name]
    lhs, rhs = _operands(case)

    def grad_and_second_order(conv):
        grad = jax.grad(_loss(conv, case), argnums=(0, 1))

        def grad_norm(lhs, rhs):
            return sum(jnp.sum(g ** 2) for g in grad(lhs, rhs))

        return grad(lhs, rhs), jax.grad(grad_norm, argnums=(0, 1))(lhs, rhs)

    ours, native = _both(grad_and_second_order)
    _assert_trees_close(ours, native)


def test_jacrev_of_jacrev_is_the_hessian():
    # A small case: the full Hessian of a scalar loss in both operands.
    case = make_case({"rank": 1, "padding": "SAME_LOWER", "strides": "mixed",
                      "lhs_dilation": False, "rhs_dilation": True, "groups": "depthwise",
                      "layout": "object", "batch": "full"})
    lhs, rhs = _operands(case)
    ours, native = _both(lambda conv: jax.jit(jax.jacrev(jax.jacrev(
        _loss(conv, case), argnums=(0, 1)), argnums=(0, 1)))(lhs, rhs))
    _assert_trees_close(ours, native)
    assert relative_error(ours[0][1], np.zeros_like(ours[0][1])) > 0.1  # lhs-rhs block not zero


def test_jacrev_of_jacrev_of_the_output():
    # Second derivatives of the (bilinear) output itself, on a tiny case (the result has
    # out.size * (lhs.size + rhs.size)**2 entries): batch groups and lhs dilation.
    case = Case("tiny", (4, 2, 3), (2, 2, 2), {"window_strides": (2,), "padding": ((1, 0),),
                                              "lhs_dilation": (2,), "batch_group_count": 2})
    lhs, rhs = _operands(case)
    ours, native = _both(lambda conv: jax.jit(jax.jacrev(jax.jacrev(
        lambda lhs, rhs: conv(lhs, rhs, **case.kwargs), argnums=(0, 1)), argnums=(0, 1)))(
            lhs, rhs))
    _assert_trees_close(ours, native)


@pytest.mark.parametrize("policy", [None, jax.checkpoint_policies.nothing_saveable])
def test_checkpoint(policy):
    case = GROUPED
    lhs, rhs = _operands(case)

    def two_layers(conv):
        layer = jax.checkpoint(lambda lhs, rhs: jnp.tanh(conv(lhs, rhs, **case.kwargs)),
                               policy=policy)
        return lambda lhs, rhs: jnp.sum(layer(lhs, rhs) ** 3)

    ours, native = _both(lambda conv: jax.jit(jax.grad(two_layers(conv), argnums=(0, 1)))(
        lhs, rhs))
    _assert_trees_close(ours, native)


def test_scan_over_a_recurrent_convolution():
    # h_{t+1} = tanh(conv(h_t, F) + x_t), 'SAME' padding keeps the state's shape; gradients of the
    # final state's energy with respect to the filter and the initial state, through lax.scan.
    rng = np.random.default_rng(2)
    state = random_array(rng, (2, 3, 6, 5), "float64")
    inputs = random_array(rng, (4, 2, 3, 6, 5), "float64")
    rhs = random_array(rng, (3, 3, 3, 2), "float64") * 0.5

    def final_energy(conv):
        def energy(state, rhs):
            def step(state, x):
                new = jnp.tanh(conv(state, rhs, (1, 1), "SAME", rhs_dilation=(2, 1)) + x)
                return new, jnp.sum(new)

            final, sums = lax.scan(step, state, inputs)
            return jnp.sum(final ** 2) + jnp.sum(sums)

        return energy

    ours, native = _both(lambda conv: jax.jit(jax.value_and_grad(
        final_energy(conv), argnums=(0, 1)))(state, rhs))
    _assert_trees_close(ours, native)


def _convnet(params, images, conv_general_dilated=lax.conv_general_dilated):
    """A small NHWC network in the style of libraries that take the convolution as an argument."""
    first, depthwise, last = params
    conv = functools.partial(conv_general_dilated, dimension_numbers=("NHWC", "HWIO", "NHWC"))
    hidden = jax.nn.relu(conv(images, first, (1, 1), "SAME"))
    hidden = jax.nn.gelu(conv(hidden, depthwise, (2, 2), ((1, 0), (0, 1)), rhs_dilation=(1, 2),
                              feature_group_count=hidden.shape[-1]))
    out = conv(hidden, last, [1, 1], [(0, 0), (0, 0)], None, None,
               precision=lax.Precision.HIGHEST)
    return jnp.mean(out ** 2)


def test_drop_in_where_conv_general_dilated_is_an_argument():
    rng = np.random.default_rng(3)
    images = random_array(rng, (2, 9, 8, 3), "float64")
    params = (random_array(rng, (3, 3, 3, 4), "float64"), random_array(rng, (3, 2, 1, 8), "float64"),
              random_array(rng, (1, 1, 8, 2), "float64"))
    ours, native = _both(lambda conv: jax.jit(jax.value_and_grad(
        functools.partial(_convnet, conv_general_dilated=conv)))(params, images))
    _assert_trees_close(ours, native)
