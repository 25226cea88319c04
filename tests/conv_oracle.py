"""Convolution test cases and the oracle every op test compares against: ``jax.vjp`` of native lax.

A case is built from named choices along each axis of ``lax.conv_general_dilated``'s interface
(spatial rank, padding kind, strides, dilations, groups, layout, batch size), so that a grid can be
the full cartesian product of the axes or a subset that still covers every pair of choices.
"""

import dataclasses
import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import impl
import impl._formulations as formulations
from convgrad.tolerances import tolerance
from impl import _rule
from impl._config import ConvConfig, make_config

# Per spatial rank: input sizes, window sizes, and the per-axis values of each option. Sizes are
# chosen so that every combination below fits (the dilated window never exceeds the padded input),
# and per axis stride, lhs dilation and rhs dilation are not all even, so that the windows do not
# all fall into the holes of the dilated input (which would make every result zero).
IN_SPATIAL = {1: (7,), 2: (7, 6), 3: (5, 6, 4)}
WINDOW = {1: (3,), 2: (3, 2), 3: (2, 3, 2)}
STRIDES = {"unit": (1, 1, 1), "mixed": (2, 3, 1)}
LHS_DILATION = (3, 2, 2)
RHS_DILATION = (2, 1, 2)
PADDINGS = {
    "VALID": "VALID",
    "SAME": "SAME",
    "SAME_LOWER": "SAME_LOWER",
    "explicit": ((1, 2), (0, 1), (2, 0)),
    "negative": ((-1, 2), (2, -1), (1, -1)),
}
# (batch, lhs features, rhs input features, rhs output features, feature groups, batch groups).
GROUPS = {
    "none": (2, 3, 3, 4, 1, 1),
    "feature": (2, 4, 2, 6, 2, 1),
    "depthwise": (2, 3, 1, 6, 3, 1),
    "batch": (4, 3, 3, 4, 1, 2),
}
LAYOUT_STRINGS = {
    "channels_last": {1: ("NWC", "WIO", "NWC"), 2: ("NHWC", "HWIO", "NHWC"),
                      3: ("NDHWC", "DHWIO", "NDHWC")},
    "odd": {1: ("WCN", "OWI", "CWN"), 2: ("NWCH", "WHOI", "NCHW"),
            3: ("DNWCH", "WHODI", "CHDNW")},
}

AXES: dict[str, tuple[Any, ...]] = {
    "rank": (1, 2, 3),
    "padding": tuple(PADDINGS),
    "strides": tuple(STRIDES),
    "lhs_dilation": (False, True),
    "rhs_dilation": (False, True),
    "groups": tuple(GROUPS),
    "layout": ("default", "channels_last", "odd", "object"),
    "batch": ("full", "empty"),
}


@dataclasses.dataclass(frozen=True)
class Case:
    """Shapes in the layout of ``kwargs['dimension_numbers']`` and the keyword arguments."""

    name: str
    lhs_shape: tuple[int, ...]
    rhs_shape: tuple[int, ...]
    kwargs: Mapping[str, Any]


def dimension_numbers(layout: str, rank: int) -> Any:
    """The ``dimension_numbers`` argument for a named layout at a spatial rank."""
    if layout == "default":
        return None
    if layout == "object":
        # Batch last and features first in lhs, rhs spatial axes reversed, output features last.
        total = rank + 2
        return lax.ConvDimensionNumbers(
            lhs_spec=(total - 1, 0, *range(1, total - 1)),
            rhs_spec=(1, 0, *reversed(range(2, total))),
            out_spec=(0, total - 1, *range(1, total - 1)),
        )
    return LAYOUT_STRINGS[layout][rank]


def _physical(logical: Sequence[int], spec: Sequence[int]) -> tuple[int, ...]:
    """Place logical (batch/out, feature/in, *spatial) sizes at the axes ``spec`` names."""
    shape = [0] * len(spec)
    for size, axis in zip(logical, spec, strict=True):
        shape[axis] = size
    return tuple(shape)


def feasible(choice: Mapping[str, Any]) -> bool:
    """lax allows lhs dilation only with explicit padding."""
    return not (choice["lhs_dilation"] and isinstance(PADDINGS[choice["padding"]], str))


def make_case(choice: Mapping[str, Any]) -> Case:
    """The case for one value of every axis in ``AXES``."""
    rank = choice["rank"]
    batch, lhs_features, rhs_in, rhs_out, feature_groups, batch_groups = GROUPS[choice["groups"]]
    batch = 0 if choice["batch"] == "empty" else batch
    padding = PADDINGS[choice["padding"]]
    kwargs = {
        "window_strides": STRIDES[choice["strides"]][:rank],
        "padding": padding if isinstance(padding, str) else padding[:rank],
        "lhs_dilation": LHS_DILATION[:rank] if choice["lhs_dilation"] else None,
        "rhs_dilation": RHS_DILATION[:rank] if choice["rhs_dilation"] else None,
        "dimension_numbers": dimension_numbers(choice["layout"], rank),
        "feature_group_count": feature_groups,
        "batch_group_count": batch_groups,
    }
    dnums = lax.conv_dimension_numbers((1,) * (rank + 2), (1,) * (rank + 2),
                                       kwargs["dimension_numbers"])
    lhs_shape = _physical((batch, lhs_features, *IN_SPATIAL[rank]), dnums.lhs_spec)
    rhs_shape = _physical((rhs_out, rhs_in, *WINDOW[rank]), dnums.rhs_spec)
    return Case(choice_name(choice), lhs_shape, rhs_shape, kwargs)


def all_choices(axes: Mapping[str, Sequence[Any]] = AXES) -> Iterator[dict[str, Any]]:
    """Every feasible combination of one value per axis (the full cartesian product)."""
    for values in itertools.product(*axes.values()):
        choice = dict(zip(axes, values, strict=True))
        if feasible(choice):
            yield choice


def _pairs(choice: Mapping[str, Any]) -> frozenset[tuple[tuple[str, Any], tuple[str, Any]]]:
    return frozenset(itertools.combinations(choice.items(), 2))


def pairwise_cover(axes: Mapping[str, Sequence[Any]] = AXES) -> list[dict[str, Any]]:
    """A small list of feasible combinations in which every feasible pair of values appears.

    Greedy: repeatedly take the combination that covers the most pairs not yet covered (the first
    such in product order, so the list is deterministic).
    """
    candidates = [(choice, _pairs(choice)) for choice in all_choices(axes)]
    uncovered = frozenset().union(*(pairs for _, pairs in candidates))
    chosen = []
    while uncovered:
        choice, pairs = max(candidates, key=lambda candidate: len(candidate[1] & uncovered))
        chosen.append(choice)
        uncovered -= pairs
    return chosen


def random_array(rng: np.random.Generator, shape: Sequence[int], dtype: Any) -> jax.Array:
    """Standard-normal entries (real and imaginary parts for complex dtypes) of ``dtype``."""
    values = rng.standard_normal(shape)
    if jnp.issubdtype(dtype, jnp.complexfloating):
        values = values + 1j * rng.standard_normal(shape)
    return jnp.asarray(values).astype(dtype)


def vjp_outputs(conv: Callable[..., jax.Array], lhs: jax.Array, rhs: jax.Array,
                cotangent: jax.Array, kwargs: Mapping[str, Any]) -> tuple[jax.Array, ...]:
    """(output, dL/d(lhs), dL/d(rhs)) of ``conv(lhs, rhs, **kwargs)`` for ``cotangent``."""
    out, vjp = jax.vjp(lambda lhs, rhs: conv(lhs, rhs, **kwargs), lhs, rhs)
    return (out, *vjp(cotangent))


def relative_error(actual: Any, expected: Any) -> float:
    """max |actual - expected| over max(max |expected|, 1), as in ``tests.helpers.assert_close``."""
    actual = np.asarray(actual, dtype=np.complex128)
    expected = np.asarray(expected, dtype=np.complex128)
    assert actual.shape == expected.shape, f"shape {actual.shape} != {expected.shape}"
    if expected.size == 0:
        return 0.0
    return float(np.max(np.abs(actual - expected)) / max(np.max(np.abs(expected)), 1.0))


def formulation_error(formulation: Callable[..., jax.Array], lhs: jax.Array, rhs: jax.Array,
                      config: Any, name: str = "the case") -> float:
    """Relative error of a CPU formulation (``impl._formulations``) against native lax.

    Also checks the result's shape and dtype, and that the native result is not all zero (a case
    that cannot fail).
    """
    ours, native = jax.jit(lambda lhs, rhs: (formulation(lhs, rhs, config),
                                             formulations.native(lhs, rhs, config)))(lhs, rhs)
    assert ours.shape == native.shape and ours.dtype == native.dtype
    assert np.any(np.asarray(native) != 0), f"{name}: the native result is all zero"
    return relative_error(ours, native)


def choice_name(choice: Mapping[str, Any]) -> str:
    """A test id for one combination of choices."""
    return "-".join(f"{key}={value}" for key, value in choice.items())


def case_operands(choice: Mapping[str, Any], dtype: Any, seed: int, **extra: Any
                  ) -> tuple[jax.Array, jax.Array, ConvConfig]:
    """(lhs, rhs, config) of the oracle's case for ``choice``, random entries from ``seed``;
    ``extra`` keyword arguments (precision, preferred_element_type) are added to the case's."""
    case = make_case(choice)
    rng = np.random.default_rng(seed)
    lhs = random_array(rng, case.lhs_shape, dtype)
    rhs = random_array(rng, case.rhs_shape, dtype)
    return lhs, rhs, make_config(lhs, rhs, **{**case.kwargs, **extra})


def rule_convolution(side: str, choice: Mapping[str, Any], dtype: Any, seed: int
                     ) -> tuple[jax.Array, jax.Array, ConvConfig]:
    """(lhs, rhs, config) of the convolution the rule builds for ``side`` (``"lhs"``: the input
    gradient, ``"rhs"``: the filter gradient) of the oracle's case, with a random cotangent."""
    lhs, rhs, config = case_operands(choice, dtype, seed)
    out = jax.eval_shape(lambda a, b: formulations.native(a, b, config), lhs, rhs)
    cotangent = random_array(np.random.default_rng(seed + 1), out.shape, dtype)
    return rule_convolution_of(side, lhs, rhs, config, cotangent)


def rule_convolution_of(side: str, lhs: jax.Array, rhs: jax.Array, config: ConvConfig,
                        cotangent: jax.Array) -> tuple[jax.Array, jax.Array, ConvConfig]:
    """(lhs, rhs, config) of the convolution the rule builds for ``side`` of
    ``conv(lhs, rhs, config)`` given the cotangent of its output."""
    captured = []

    def capture(a: jax.Array, b: jax.Array, c: ConvConfig) -> jax.Array:
        captured.append((a, b, c))
        return formulations.native(a, b, c)

    if side == "lhs":
        _rule.lhs_cotangent(capture, cotangent, rhs, config, lhs.shape, lhs.dtype)
    else:
        _rule.rhs_cotangent(capture, cotangent, lhs, config, rhs.shape, rhs.dtype)
    (convolution,) = captured
    return convolution


def errors_against_lax(case: Case, dtype: Any = "float64", seed: int = 0,
                       conv: Callable[..., jax.Array] = impl.conv_general_dilated,
                       require_nonzero: bool = True, **extra: Any) -> dict[str, float]:
    """Relative errors of ``conv``'s output and cotangents against ``jax.vjp`` of native lax.

    Also checks that every result has the oracle's shape and dtype and, with ``require_nonzero``,
    that no oracle result of a case without empty arrays is all zero (a case that cannot fail).
    ``extra`` keyword arguments (precision, preferred_element_type) are added to the case's.
    """
    rng = np.random.default_rng(seed)
    kwargs = {**case.kwargs, **extra}
    lhs = random_array(rng, case.lhs_shape, dtype)
    rhs = random_array(rng, case.rhs_shape, dtype)
    out = jax.eval_shape(lambda lhs, rhs: lax.conv_general_dilated(lhs, rhs, **kwargs), lhs, rhs)
    cotangent = random_array(rng, out.shape, out.dtype)
    # One compilation for both (faster on CPU than op-by-op dispatch of either).
    ours, oracle = jax.jit(lambda *operands: (
        vjp_outputs(conv, *operands, kwargs),
        vjp_outputs(lax.conv_general_dilated, *operands, kwargs)))(lhs, rhs, cotangent)
    # With an empty operand or result every cotangent is zero, legitimately.
    require_nonzero = require_nonzero and 0 not in (lhs.size, rhs.size, cotangent.size)
    errors = {}
    for what, actual, expected in zip(("O", "dL/dlhs", "dL/drhs"), ours, oracle, strict=True):
        assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
        assert not require_nonzero or np.any(expected != 0), f"{case.name}: {what} is all zero"
        errors[what] = relative_error(actual, expected)
    return errors


def assert_matches_lax(case: Case, dtype: Any = "float64", seed: int = 0, **extra: Any) -> None:
    """The op agrees with native lax autodiff within the dtype's tolerance (output's dtype for O)."""
    errors = errors_against_lax(case, dtype, seed, **extra)
    result_dtype = extra.get("preferred_element_type") or dtype
    limits = {"O": tolerance(result_dtype), "dL/dlhs": tolerance(dtype),
              "dL/drhs": tolerance(dtype)}
    for what, error in errors.items():
        assert error <= limits[what], f"{case.name} {dtype}: {what} rel error {error:.3e}"
