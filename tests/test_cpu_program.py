"""The compiled CPU program computes the cotangent once (impl._op._materialized), and a depthwise
backward pass's filter gradient before its input gradient (impl._op._after).

XLA fuses an elementwise producer into each consumer and recomputes it there; for the rule, whose
formulations read the cotangent several times, that recomputed the loss's ``cos(conv)`` up to six
times (benchmarks/README.md, item 9). These tests read the optimised HLO: every top-level fusion
that evaluates a cosine over more than one element is one evaluation of the cotangent.
"""

import math
import re

import jax
import jax.numpy as jnp
import pytest
from jax import lax

import impl
import impl._formulations
import impl._op

_COMPUTATION = re.compile(r"^%(\S+) .*\{$")
# A fusion's result is one array or, for a multi-output fusion (a variadic reduction), a tuple.
_FUSION = re.compile(r"^\s+%\S+ = (\(.*?\)|\w+\[[\d,]*\]\S*) fusion\(.*calls=%([\w.\-]+)")
_SHAPE = re.compile(r"\w+\[([\d,]*)\]")


def _elements(result_type: str) -> int:
    """Elements of a fusion's result: of its array, or of all the arrays of its tuple."""
    return sum(math.prod(int(size) for size in dims.split(",") if size)
               for dims in _SHAPE.findall(result_type))


def _full_cosine_fusions(hlo: str) -> int:
    """Top-level fusions of the entry computation that compute a cosine of more than one element."""
    with_cosine, current, entry = set(), None, False
    count = 0
    for line in hlo.splitlines():
        if line.startswith("ENTRY"):
            entry, current = True, None
            continue
        match = _COMPUTATION.match(line)
        if match:
            current, entry = match.group(1), False
        elif current and " cosine(" in line:
            with_cosine.add(current)
        elif entry:
            fusion = _FUSION.match(line)
            if fusion and fusion.group(2) in with_cosine:
                count += _elements(fusion.group(1)) > 1
    return count


def _grad_hlo(conv, dtype: str, **kwargs) -> str:
    lhs = jnp.ones((2, 8, 12, 12), dtype)
    rhs = jnp.ones((8, 8 // kwargs.get("feature_group_count", 1), 3, 3), dtype)

    def loss(lhs, rhs):
        return jnp.sum(jnp.sin(conv(lhs, rhs, (1, 1), "SAME", **kwargs)).astype(jnp.float32))

    return jax.jit(jax.grad(loss, argnums=(0, 1))).lower(lhs, rhs).compile().as_text()


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the materialisation is CPU-only")
@pytest.mark.parametrize("groups", [8, 2], ids=["depthwise", "grouped"])
def test_cotangent_is_computed_once(groups, monkeypatch):
    kwargs = {"feature_group_count": groups}
    assert _full_cosine_fusions(_grad_hlo(impl.conv_general_dilated, "float32", **kwargs)) == 1
    # Negative control: without the materialisation XLA recomputes it in several consumers.
    monkeypatch.setattr(impl._op, "_materialized", lambda cotangent: cotangent)
    assert _full_cosine_fusions(_grad_hlo(impl.conv_general_dilated, "float32", **kwargs)) > 1


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the materialisation is CPU-only")
def test_sixteen_bit_cotangents_are_left_to_xla():
    # Measured slower with the conditional in bfloat16 (impl._op._materialized): no conditional.
    assert " conditional(" not in _grad_hlo(impl.conv_general_dilated, "bfloat16")
    assert " conditional(" in _grad_hlo(impl.conv_general_dilated, "float32")
    assert " conditional(" not in _grad_hlo(lax.conv_general_dilated, "float32")


def _temp_bytes(lhs_shape, rhs_shape, stride: int, groups: int) -> int:
    lhs, rhs = jnp.ones(lhs_shape, jnp.float32), jnp.ones(rhs_shape, jnp.float32)

    def loss(lhs, rhs):
        return jnp.sum(jnp.sin(impl.conv_general_dilated(lhs, rhs, (stride, stride), ((1, 1),) * 2,
                                                         feature_group_count=groups)))

    compiled = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(lhs, rhs).compile()
    return compiled.memory_analysis().temp_size_in_bytes


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the ordering is CPU-only")
def test_a_depthwise_filter_gradient_goes_first_and_frees_its_padded_input(monkeypatch):
    """The suite's depthwise stride-2 step (item 23 of benchmarks/README.md): with the filter
    gradient first, the padded input it shares with the forward is free before the input gradient
    pads the cotangent, and the step's temporaries fit under glibc's 32 MiB mmap threshold."""
    shapes = ((16, 96, 56, 56), (96, 1, 3, 3), 2, 96)
    ordered = _temp_bytes(*shapes)
    monkeypatch.setattr(impl._formulations, "FILTER_GRADIENT_FIRST", False)
    unordered = _temp_bytes(*shapes)
    assert ordered < 32 * 2**20 < unordered, (ordered, unordered)


@pytest.mark.parametrize("groups, window, ordered", [
    (8, 3, True), (2, 3, False), (1, 3, False),
    # 81 taps: not shift-and-add (MAX_UNROLLED_TAPS), so no padded input is shared to free.
    (8, 9, False),
], ids=["depthwise", "grouped", "dense", "depthwise-9x9"])
def test_only_depthwise_backward_passes_are_ordered(groups: int, window: int, ordered: bool):
    lhs, rhs = jnp.ones((2, 8, 12, 12)), jnp.ones((8, 8 // groups, window, window))

    def loss(lhs, rhs):
        return jnp.sum(jnp.sin(impl.conv_general_dilated(lhs, rhs, (1, 1), "SAME",
                                                         feature_group_count=groups)))

    for platform, expected in (("cpu", ordered), ("cuda", False), ("tpu", False)):
        text = jax.jit(jax.grad(loss, argnums=(0, 1))).trace(lhs, rhs).lower(
            lowering_platforms=(platform,)).as_text()
        assert ("optimization_barrier" in text) == expected, platform
