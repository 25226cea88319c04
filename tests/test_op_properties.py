"""Property tests: on random valid configurations, the op equals native lax autodiff in float64.

Hypothesis draws the spatial rank, sizes, strides, both dilations, padding (strings, or explicit
pairs of either sign chosen so that the window fits), feature or batch groups, the batch size
(zero included) and an arbitrary layout (random permutations as ``ConvDimensionNumbers``).
"""

import hypothesis.strategies as st
from hypothesis import given, settings
from jax import lax

from convgrad.tolerances import tolerance
from tests.conv_oracle import Case, errors_against_lax

# Derandomized (the same examples on every run, so CI cannot flake); deadline off because each
# example compiles a few small XLA programs.
PROPERTY_SETTINGS = settings(max_examples=25, deadline=None, derandomize=True, database=None)


@st.composite
def _axis(draw, string_padding):
    """(n, k, s, a, d, padding pair or None) for one spatial axis; the dilated window fits."""
    n, k = draw(st.integers(1, 6)), draw(st.integers(1, 3))
    stride, rhs_dilation = draw(st.integers(1, 3)), draw(st.integers(1, 2))
    lhs_dilation = 1 if string_padding else draw(st.integers(1, 3))
    dilated_in, dilated_window = lhs_dilation * (n - 1) + 1, rhs_dilation * (k - 1) + 1
    if string_padding:
        if dilated_window > dilated_in and string_padding == "VALID":
            k, dilated_window = 1, 1  # keep 'VALID' valid: shrink the window
        return n, k, stride, lhs_dilation, rhs_dilation, None
    lo = draw(st.integers(max(-2, 1 - dilated_in), 3))
    hi = draw(st.integers(max(-2, 1 - dilated_in, dilated_window - dilated_in - lo),
                          max(3, dilated_window - dilated_in - lo)))
    return n, k, stride, lhs_dilation, rhs_dilation, (lo, hi)


def _physical(logical, spec):
    shape = [0] * len(spec)
    for size, axis in zip(logical, spec, strict=True):
        shape[axis] = size
    return tuple(shape)


@st.composite
def configurations(draw):
    """A valid ``Case`` (shapes in its own random layout and keyword arguments)."""
    rank = draw(st.integers(1, 3))
    string_padding = draw(st.sampled_from([None, "VALID", "SAME", "SAME_LOWER"]))
    axes = [draw(_axis(string_padding)) for _ in range(rank)]
    n, k, strides, lhs_dilation, rhs_dilation, pads = zip(*axes, strict=True)
    group_kind = draw(st.sampled_from(["none", "feature", "batch"]))
    groups = 1 if group_kind == "none" else draw(st.integers(2, 3))
    feature_groups = groups if group_kind == "feature" else 1
    batch_groups = groups if group_kind == "batch" else 1
    rhs_in = draw(st.integers(1, 2))
    rhs_out = draw(st.integers(1, 2)) * groups
    batch = draw(st.integers(0, 2)) * batch_groups
    specs = [tuple(draw(st.permutations(range(rank + 2)))) for _ in range(3)]
    kwargs = {
        "window_strides": strides,
        "padding": string_padding or pads,
        "lhs_dilation": lhs_dilation,
        "rhs_dilation": rhs_dilation,
        "dimension_numbers": lax.ConvDimensionNumbers(*specs),
        "feature_group_count": feature_groups,
        "batch_group_count": batch_groups,
    }
    lhs_shape = _physical((batch, rhs_in * feature_groups, *n), specs[0])
    rhs_shape = _physical((rhs_out, rhs_in, *k), specs[1])
    return Case(f"lhs{lhs_shape} rhs{rhs_shape} {kwargs}", lhs_shape, rhs_shape, kwargs)


@PROPERTY_SETTINGS
@given(case=configurations(), seed=st.integers(0, 2**16))
def test_op_equals_native_autodiff(case, seed):
    # Windows may all fall into dilation holes, so an all-zero result is allowed here.
    errors = errors_against_lax(case, "float64", seed, require_nonzero=False)
    assert all(error <= tolerance("float64") for error in errors.values()), (case.name, errors)
