"""Manual-axis types under ``jax.shard_map`` (``check_vma``, the default there).

Inside a ``shard_map`` body JAX types every array with the mesh axes it varies over. lax's own ops
cast their operands to a common type (``pcast`` to varying) and their transposes sum over what the
cast added; a ``custom_vjp`` rule, a new primitive and a loop carry must do the same themselves.
Outside ``shard_map``, or under ``check_vma=False``, nothing varies and these are identities.
"""

import jax
from jax import lax


def varying_axes(array: jax.Array) -> frozenset[str]:
    """The manual mesh axes ``array`` varies over (empty outside a type-checked shard_map)."""
    typeof = getattr(jax, "typeof", None)  # older JAX releases track no such types
    if typeof is None:
        return frozenset()
    aval = typeof(array)
    # ``aval.mat.varying`` in JAX 0.10, ``aval.vma`` in earlier releases.
    return frozenset(getattr(getattr(aval, "mat", None), "varying", getattr(aval, "vma", ())))


def as_varying(array: jax.Array, axes: frozenset[str]) -> jax.Array:
    """``array`` typed as varying over ``axes`` as well (values unchanged)."""
    missing = axes - varying_axes(array)
    if not missing:
        return array
    if hasattr(lax, "pcast"):
        return lax.pcast(array, tuple(sorted(missing)), to="varying")
    return lax.pvary(array, tuple(sorted(missing)))  # its older name


def to_common_type(*arrays: jax.Array) -> tuple[jax.Array, ...]:
    """Every array typed as varying over the union of their axes, as lax's binary ops do."""
    axes = frozenset().union(*(varying_axes(array) for array in arrays))
    return tuple(as_varying(array, axes) for array in arrays)


def sum_to_type_of(cotangent: jax.Array, primal: jax.Array) -> jax.Array:
    """A cotangent summed over the axes it varies over and its primal does not.

    The transpose of the cast that made ``primal`` varying: e.g. the gradient of a filter that
    is replicated over a data-parallel axis is the sum of the per-device gradients.
    """
    extra = varying_axes(cotangent) - varying_axes(primal)
    if not extra:
        return cotangent
    return lax.psum(cotangent, tuple(sorted(extra)))
