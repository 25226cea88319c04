"""Cross-check runner: the op's forward and rotated-filter backward against independent oracles.

Three checks, used by ``convgrad crosscheck``:

* ``run_grid``: a grid of configurations on one device in every dtype, comparing the op's output
  and both gradients with ``jax.vjp`` of native ``jax.lax.conv_general_dilated`` on the same device
  and precision (like with like), and with a float64 CPU reference;
* ``sharding_check``: jit(grad) with the batch or the rows (and optionally output features)
  sharded over a device mesh against unsharded native autodiff;
* ``lowering_check``: ``jax.export`` of jit(grad) for platforms that need not be present, and a
  walk of the lowered StableHLO proving that the filter is spatially reversed and fed to a
  convolution (the rotated-filter rule), and, off CPU, that the program's convolutions are exactly
  those of native autodiff (so an accelerator runs the same kernels for both).
"""

import collections
import contextlib
import dataclasses
import importlib.metadata
import itertools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import impl
from convgrad.tolerances import tolerance

DTYPES = ("float64", "float32", "bfloat16", "float16")
PRECISIONS = {"highest": lax.Precision.HIGHEST, "default": None}
EXPORT_PLATFORMS = ("cpu", "cuda", "rocm", "tpu")


@dataclasses.dataclass(frozen=True)
class Case:
    """One configuration: shapes in the layout of ``kwargs['dimension_numbers']``."""

    lhs_shape: tuple[int, ...]
    rhs_shape: tuple[int, ...]
    kwargs: dict[str, Any]

    def describe(self) -> str:
        """A short, human-readable name."""
        options = ", ".join(f"{key}={value}" for key, value in self.kwargs.items())
        return f"lhs{self.lhs_shape} rhs{self.rhs_shape} {options}"


def default_grid() -> Iterator[Case]:
    """Spatial ranks 1-3, every padding kind incl. negative, strides, dilations, groups, layouts.

    Includes the cases that take the CPU formulations of ``impl._formulations`` (dense per group,
    depthwise blocks with a channel multiplier, one batch element per batch group, 1x1
    matrix products, polyphase input dilation, 3-D folded to 2-D).
    """
    paddings_2d = ("VALID", "SAME", "SAME_LOWER", ((1, 2), (0, 1)), ((-1, 2), (2, -1)))
    for padding, strides, rhs_dil in itertools.product(paddings_2d, ((1, 1), (2, 3)),
                                                       ((1, 1), (2, 1))):
        yield Case((2, 4, 9, 8), (6, 4, 3, 2), dict(window_strides=strides, padding=padding,
                                                    rhs_dilation=rhs_dil))
    yield Case((2, 4, 7, 6), (6, 4, 3, 2), dict(window_strides=(2, 1), padding=((1, 1), (2, 0)),
                                                lhs_dilation=(2, 3)))
    yield Case((2, 4, 9, 8), (5, 4, 1, 1), dict(window_strides=(2, 3), padding=((1, -1), (0, 2))))
    yield Case((2, 6, 8, 7), (9, 2, 3, 3), dict(window_strides=(2, 2), padding="SAME",
                                                feature_group_count=3))
    yield Case((2, 4, 9, 8), (8, 1, 3, 2), dict(window_strides=(2, 1), padding=((1, -1), (2, 0)),
                                                lhs_dilation=(1, 2), rhs_dilation=(2, 1),
                                                feature_group_count=4))
    yield Case((4, 3, 8, 7), (6, 3, 2, 3), dict(window_strides=(1, 2), padding="VALID",
                                                batch_group_count=2))
    yield Case((4, 3, 8, 7), (8, 3, 2, 3), dict(window_strides=(1, 2), padding="SAME",
                                                batch_group_count=4))
    yield Case((2, 8, 7, 4), (3, 2, 2, 6), dict(window_strides=(1, 2), padding="SAME",
                                                dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                                feature_group_count=2))
    yield Case((2, 7, 4, 8), (2, 3, 6, 4), dict(window_strides=(2, 1), padding=((0, 1), (1, 0)),
                                                dimension_numbers=("NWCH", "WHOI", "NCHW")))
    yield Case((3, 2, 11), (4, 2, 3), dict(window_strides=(2,), padding=((2, -1),),
                                           rhs_dilation=(3,)))
    yield Case((2, 2, 5, 6, 4), (3, 2, 2, 3, 2), dict(window_strides=(1, 2, 1), padding="SAME",
                                                      rhs_dilation=(1, 1, 2)))
    # Causal and strided: the phases of its input gradient crop (XLA:CPU's kernel read outside
    # its input there, openxla/xla#48713; tests/test_negative_padding.py).
    yield Case((2, 8, 31), (8, 8, 5), dict(window_strides=(2,), padding=((4, 0),)))
    yield Case((0, 3, 6, 5), (4, 3, 2, 2), dict(window_strides=(1, 1), padding="VALID"))


@dataclasses.dataclass
class Row:
    """Errors of one configuration in one dtype, relative to each oracle's largest magnitude."""

    case: str
    dtype: str
    precision: str
    abs_vs_native: float
    rel_vs_native: float
    abs_vs_reference: float
    rel_vs_reference: float
    native_rel_vs_reference: float
    ok: bool


@dataclasses.dataclass
class DtypeResult:
    """Largest errors of one dtype over the grid."""

    dtype: str
    precision: str
    configurations: int = 0
    max_abs_error: float = 0.0
    max_rel_error: float = 0.0
    max_abs_vs_reference: float = 0.0
    max_rel_vs_reference: float = 0.0
    failures: list[str] = dataclasses.field(default_factory=list)


# Dtypes whose rows draw inputs at float32's full precision (``_exact_inputs``).
FULL_PRECISION_DTYPES = ("float32", "float64")


def _exact_inputs(case: Case, seed: int, dtype: str = "bfloat16"
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """lhs, rhs and the output cotangent in float64, each value exact in ``dtype``.

    For float32 and float64: standard normal draws rounded to float32, so that all 24 significant
    bits count and a convolution computed in fewer (a bfloat16 or TF32 pass where the row asks
    for ``HIGHEST``) is far from the float64 reference. For bfloat16 and float16: draws rounded to
    bfloat16 (8 significant bits) with magnitudes kept in [1/64, 8], which both hold exactly (and
    so do float32 and float64): their convolutions' products and sums still round in the narrow
    type, and one float64 reference serves both.
    """
    rng = np.random.default_rng(seed)

    def draw(shape: Sequence[int]) -> np.ndarray:
        values = rng.standard_normal(shape)
        if dtype in FULL_PRECISION_DTYPES:
            return values.astype(np.float32).astype(np.float64)
        values = np.sign(values) * np.clip(np.abs(values), 1 / 64, 8)
        return values.astype(jnp.bfloat16).astype(np.float64)

    out_shape = jax.eval_shape(
        lambda a, b: lax.conv_general_dilated(a, b, **case.kwargs),
        jax.ShapeDtypeStruct(case.lhs_shape, jnp.float32),
        jax.ShapeDtypeStruct(case.rhs_shape, jnp.float32)).shape
    return draw(case.lhs_shape), draw(case.rhs_shape), draw(out_shape)


def _vjp_outputs(conv: Callable[..., jax.Array], kwargs: dict[str, Any]
                 ) -> Callable[[jax.Array, jax.Array, jax.Array], tuple[jax.Array, ...]]:
    def outputs(lhs: jax.Array, rhs: jax.Array, cotangent: jax.Array) -> tuple[jax.Array, ...]:
        out, vjp = jax.vjp(lambda a, b: conv(a, b, **kwargs), lhs, rhs)
        return (out, *vjp(cotangent.astype(out.dtype)))
    return outputs


def _errors(ours: Sequence[np.ndarray], oracle: Sequence[np.ndarray]) -> tuple[float, float]:
    abs_error = max((float(np.max(np.abs(a - b))) for a, b in zip(ours, oracle, strict=True)
                     if a.size), default=0.0)
    scale = max((float(np.max(np.abs(b))) for b in oracle if b.size), default=0.0)
    return abs_error, abs_error / scale if scale else abs_error


def _as_float64(arrays: Sequence[jax.Array]) -> list[np.ndarray]:
    return [np.asarray(array).astype(np.float64) for array in arrays]


def reference(case: Case, seed: int = 0, dtype: str = "bfloat16") -> list[np.ndarray]:
    """Output and gradients of native lax autodiff in float64 on the CPU (x64 must be enabled),
    for the inputs of ``dtype``'s rows (``_exact_inputs``)."""
    lhs, rhs, cotangent = _exact_inputs(case, seed, dtype)
    cpu = jax.devices("cpu")[0]
    kwargs = dict(case.kwargs, precision=lax.Precision.HIGHEST)
    arrays = [jax.device_put(np.asarray(a, np.float64), cpu) for a in (lhs, rhs, cotangent)]
    return _as_float64(jax.jit(_vjp_outputs(lax.conv_general_dilated, kwargs))(*arrays))


def check_case(case: Case, dtype: str, device: jax.Device, expected: Sequence[np.ndarray],
               precision: str = "highest", seed: int = 0) -> Row:
    """The op against native autodiff on ``device`` (one compilation for both) and ``expected``
    (``reference(case, seed, dtype)``)."""
    lhs, rhs, cotangent = (jax.device_put(np.asarray(a).astype(dtype), device)
                           for a in _exact_inputs(case, seed, dtype))
    kwargs = dict(case.kwargs, precision=PRECISIONS[precision])
    ours_fn = _vjp_outputs(impl.conv_general_dilated, kwargs)
    native_fn = _vjp_outputs(lax.conv_general_dilated, kwargs)
    ours, native = jax.jit(lambda *args: (ours_fn(*args), native_fn(*args)))(lhs, rhs, cotangent)
    ours, native = _as_float64(ours), _as_float64(native)
    abs_native, rel_native = _errors(ours, native)
    abs_reference, rel_reference = _errors(ours, expected)
    _, native_rel_reference = _errors(native, expected)
    # Like with like: within the dtype's tolerance of native; and never much further from the
    # exact answer than native itself is (native may use TF32 or bf16 passes at default precision).
    ok = (rel_native <= tolerance(dtype)
          and rel_reference <= max(tolerance(dtype), 4 * native_rel_reference))
    return Row(case.describe(), dtype, precision, abs_native, rel_native, abs_reference,
               rel_reference, native_rel_reference, ok)


def run_grid(device: jax.Device, dtypes: Sequence[str] = DTYPES,
             cases: Sequence[Case] | None = None, precision: str = "highest",
             progress: Callable[[Row], None] = lambda row: None,
             ) -> tuple[list[DtypeResult], list[Row]]:
    """Check every case in every dtype on ``device``; returns per-dtype summaries and all rows."""
    cases = list(default_grid()) if cases is None else list(cases)
    references: dict[bool, list[list[np.ndarray]]] = {}
    results, rows = [], []
    for dtype in dtypes:
        full = dtype in FULL_PRECISION_DTYPES  # the two kinds of inputs, one reference each
        if full not in references:
            references[full] = [reference(case, dtype=dtype) for case in cases]
        result = DtypeResult(dtype, precision)
        for case, expected in zip(cases, references[full], strict=True):
            row = check_case(case, dtype, device, expected, precision)
            progress(row)
            rows.append(row)
            result.configurations += 1
            result.max_abs_error = max(result.max_abs_error, row.abs_vs_native)
            result.max_rel_error = max(result.max_rel_error, row.rel_vs_native)
            result.max_abs_vs_reference = max(result.max_abs_vs_reference, row.abs_vs_reference)
            result.max_rel_vs_reference = max(result.max_rel_vs_reference, row.rel_vs_reference)
            if not row.ok:
                result.failures.append(
                    f"{row.case}: rel error {row.rel_vs_native:.3g} vs native, "
                    f"{row.rel_vs_reference:.3g} vs float64 reference")
        results.append(result)
    return results, rows


def sharding_check(devices: Sequence[jax.Device], mesh_shape: tuple[int, ...], dtype: str,
                   seed: int = 0, rows: bool = False) -> dict[str, Any]:
    """jit(grad) with lhs batch-sharded (and rhs out features, on a 2-D mesh) vs unsharded native.

    ``mesh_shape`` is ``(data,)`` or ``(data, model)`` with a product of ``len(devices)``. With
    ``rows``, the lhs's rows are sharded over "data" instead of its batch (spatial partitioning,
    where jaxlib 0.10-0.12.0's partitioner sums lax's filter gradient over the "model" replicas;
    ``impl._partitioner.whole_axes``). The loss is ``sum(sin(conv))``; the oracle is ``jax.grad``
    of native lax on one device.
    """
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    names = ("data", "model")[:len(mesh_shape)]
    mesh = Mesh(np.asarray(devices).reshape(mesh_shape), names)
    data = mesh_shape[0]
    model = mesh_shape[1] if len(mesh_shape) > 1 else 1
    lhs_shape = (2, 4, 4 * data, 8) if rows else (2 * data, 4, 9, 8)
    case = Case(lhs_shape, (4 * model, 2, 3, 3),
                dict(window_strides=(2, 1), padding="SAME", rhs_dilation=(1, 2),
                     feature_group_count=2))
    lhs, rhs, _ = _exact_inputs(case, seed)
    lhs, rhs = jnp.asarray(lhs, dtype), jnp.asarray(rhs, dtype)

    def loss(conv: Callable[..., jax.Array]) -> Callable[..., jax.Array]:
        return lambda a, b: jnp.sum(jnp.sin(conv(a, b, **case.kwargs)))

    expected = jax.jit(jax.grad(loss(lax.conv_general_dilated), argnums=(0, 1)))(lhs, rhs)
    lhs_spec = PartitionSpec(None, None, "data") if rows else PartitionSpec("data")
    rhs_spec = PartitionSpec("model") if model > 1 else PartitionSpec()
    sharded = (jax.device_put(lhs, NamedSharding(mesh, lhs_spec)),
               jax.device_put(rhs, NamedSharding(mesh, rhs_spec)))
    actual = jax.jit(jax.grad(loss(impl.conv_general_dilated), argnums=(0, 1)))(*sharded)
    abs_error, rel_error = _errors(_as_float64(actual), _as_float64(expected))
    return {"mesh": dict(zip(names, mesh_shape, strict=True)), "dtype": dtype,
            "lhs_spec": tuple(lhs_spec), "rhs_spec": tuple(rhs_spec),
            "lhs_shards": len({str(shard.index) for shard in sharded[0].addressable_shards}),
            "rhs_shards": len({str(shard.index) for shard in sharded[1].addressable_shards}),
            "grad_devices": len(actual[0].sharding.device_set),
            "max_abs_error": abs_error, "max_rel_error": rel_error,
            "ok": rel_error <= tolerance(dtype)}


# Lowering check: walk the StableHLO of jit(grad) for each platform.

_SHAPE_OPS = frozenset({"stablehlo.reshape", "stablehlo.transpose", "stablehlo.convert",
                        "stablehlo.slice", "stablehlo.broadcast_in_dim", "stablehlo.copy"})
# Masking keeps a value's identity too: the CPU depthwise formulation multiplies the rotated filter
# by an identity pattern to build block-diagonal dense filters (impl._formulations).
_PASS_THROUGH_OPS = _SHAPE_OPS | {"stablehlo.multiply"}


def lowering_cases() -> list[Case]:
    """A few float32 cases covering the rule's shapes: strides, dilations, groups, layouts, ranks."""
    return [
        Case((2, 8, 9, 9), (8, 8, 3, 3), dict(window_strides=(2, 1), padding="SAME")),
        Case((2, 8, 9, 9), (8, 2, 3, 3), dict(window_strides=(1, 1), padding="SAME",
                                              feature_group_count=4)),
        Case((2, 8, 9, 9), (16, 1, 3, 3), dict(window_strides=(2, 2), padding="SAME",
                                               feature_group_count=8)),
        Case((4, 3, 8, 7), (8, 3, 2, 3), dict(window_strides=(1, 2), padding="VALID",
                                              batch_group_count=2)),
        Case((2, 9, 8, 4), (3, 3, 4, 6), dict(window_strides=(1, 2), padding=((1, -1), (2, 0)),
                                              dimension_numbers=("NHWC", "HWIO", "NHWC"))),
        Case((3, 2, 11), (4, 2, 3), dict(window_strides=(2,), padding=((2, -1),),
                                         lhs_dilation=(2,), rhs_dilation=(3,))),
        Case((2, 2, 5, 6, 4), (3, 2, 2, 3, 2), dict(window_strides=(1, 2, 1), padding="SAME")),
    ]


def _operations(operation: Any) -> Iterator[Any]:
    for region in operation.regions:
        for block in region.blocks:
            for child in block.operations:
                yield child.operation
                yield from _operations(child.operation)


@contextlib.contextmanager
def _parsed_operations(module_text: str) -> Iterator[list[Any]]:
    """Every operation of a StableHLO module, nested regions included, in textual order.

    The operations belong to a module and an MLIR context that live only as long as the ``with``
    block: the module is held here because its operations do not keep it alive (dropping it
    frees them, and touching one afterwards crashes the interpreter).
    """
    from jax.interpreters import mlir

    with mlir.make_ir_context():
        module = mlir.ir.Module.parse(module_text)
        yield list(_operations(module.operation))


def _sources(value: Any) -> Iterator[Any]:
    """The ops and block arguments a value comes from, looking through shape ops and masking."""
    from jax.interpreters import mlir

    pending, seen = [value], set()
    while pending:
        value = pending.pop()
        if isinstance(value, mlir.ir.BlockArgument):
            yield value
            continue
        owner = value.owner.operation
        if owner.name not in _PASS_THROUGH_OPS:
            yield owner
        elif owner not in seen:  # MLIR operations compare and hash by identity in the module
            seen.add(owner)
            pending.extend(owner.operands)


def _is_filter(value: Any, rhs_index: int) -> bool:
    from jax.interpreters import mlir

    return any(isinstance(source, mlir.ir.BlockArgument) and source.arg_number == rhs_index
               and source.owner.owner.operation.name == "func.func"
               for source in _sources(value))


def rotated_filter_uses(module_text: str, rhs_spatial: Sequence[int], rhs_index: int = 1
                        ) -> dict[str, int]:
    """Count, in a StableHLO module, the filter reversals and the convolutions they feed.

    Returns ``reverses`` (``stablehlo.reverse`` of argument ``rhs_index`` over exactly the
    spatial axes ``rhs_spatial``) and ``convolutions`` (convolutions whose filter operand comes
    from such a reversal through reshapes, transposes, slices, converts and masking products).
    """
    counts = {"reverses": 0, "convolutions": 0}
    with _parsed_operations(module_text) as operations:
        reverses = []
        for op in operations:
            if op.name == "stablehlo.reverse" and _is_filter(op.operands[0], rhs_index):
                dims = sorted(int(d) for d in op.attributes["dimensions"])
                if dims == sorted(rhs_spatial):
                    reverses.append(op)
        counts["reverses"] = len(reverses)
        counts["convolutions"] = sum(
            1 for op in operations if op.name == "stablehlo.convolution"
            and any(source in reverses for source in _sources(op.operands[1])))
    return counts


def convolution_signatures(module_text: str) -> collections.Counter[str]:
    """The convolutions of a StableHLO module, each as its operand and result types and attributes.

    Two programs with equal signatures run the same convolutions (same shapes, dtypes, layouts,
    windows, dilations, groups and precision), whatever their SSA names and order.
    """
    signatures: collections.Counter[str] = collections.Counter()
    with _parsed_operations(module_text) as operations:
        for op in operations:
            if op.name == "stablehlo.convolution":
                types = ", ".join(str(operand.type) for operand in op.operands)
                attributes = ", ".join(sorted(f"{name} = {op.attributes[name]}"
                                              for name in op.attributes))
                signatures[f"({types}) -> {op.results[0].type} {{{attributes}}}"] += 1
    return signatures


# What ``lax.platform_dependent`` may leave in a program exported for one platform: a conditional
# on a constant index (its branches' returns, the index constants), which XLA's compiler removes.
# jax 0.10 leaves it; jax 0.12 picks the branch while lowering and leaves none.
PLATFORM_SELECTION_OPS = frozenset({"stablehlo.case", "stablehlo.return", "stablehlo.constant"})


def operation_kinds(module_text: str) -> collections.Counter[str]:
    """How many operations of each kind a StableHLO module holds, nested regions included."""
    with _parsed_operations(module_text) as operations:
        return collections.Counter(op.name for op in operations)


def exported_grad(conv: Callable[..., jax.Array], platform: str, case: Case,
                  dtype: str = "float32") -> str:
    """StableHLO of jit(grad) of ``sum(sin(conv(lhs, rhs, **case.kwargs)))`` for ``platform``."""
    from jax import export

    def loss(lhs: jax.Array, rhs: jax.Array) -> jax.Array:
        return jnp.sum(jnp.sin(conv(lhs, rhs, **case.kwargs)).astype(jnp.float32))

    args = (jax.ShapeDtypeStruct(case.lhs_shape, dtype),
            jax.ShapeDtypeStruct(case.rhs_shape, dtype))
    return export.export(jax.jit(jax.grad(loss, argnums=(0, 1))), platforms=[platform])(
        *args).mlir_module()


class JaxConvAutodiffUsed(AssertionError):
    """JAX's own JVP or transpose rule of ``lax.conv_general_dilated`` was called."""


def _refuse(*args: Any, **kwargs: Any) -> Any:
    raise JaxConvAutodiffUsed("JAX's own autodiff rule of conv_general_dilated was used")


@contextlib.contextmanager
def without_jax_conv_autodiff() -> Iterator[None]:
    """JAX's own JVP and transpose rules of the convolution replaced by ones that raise.

    A program traced inside needs the op's rule for its gradient: the rotated filter alone does
    not show it, for JAX's own transpose rule reverses the filter and feeds it to a convolution
    too. Caches are cleared on entry and exit, so nothing traced with the real rules is reused.
    """
    from jax.interpreters import ad

    primitive = lax.conv_general_dilated_p
    saved = [(table, table[primitive]) for table in (ad.primitive_jvps, ad.primitive_transposes)]
    jax.clear_caches()
    try:
        for table, _ in saved:
            table[primitive] = _refuse
        yield
    finally:
        for table, rule in saved:
            table[primitive] = rule
        jax.clear_caches()


def _export_without_jax_conv_autodiff(conv: Callable[..., jax.Array], platform: str,
                                      case: Case) -> str | None:
    """``exported_grad`` traced ``without_jax_conv_autodiff``; None where that needed them."""
    with without_jax_conv_autodiff():
        try:
            return exported_grad(conv, platform, case)
        except JaxConvAutodiffUsed:
            return None


def lowering_check(platform: str, case: Case) -> dict[str, Any]:
    """Export jit(grad) of ``sum(sin(op))`` for ``platform`` and look for the rotated filter.

    Passes when the export needs none of JAX's own autodiff rules of the convolution (they are
    replaced by ones that raise; native autodiff, exported the same way, must raise: row key
    ``native_needs_jax_rules``), the filter is reversed over its spatial axes and the reversal
    feeds a convolution, and, on platforms other than CPU (where the op chooses its own
    formulations), its convolutions are exactly native autodiff's (row key
    ``convolutions_as_native``). Off CPU the op lowers the native convolution for its forward and
    for its rule's two convolutions (``impl._formulations.conv``); where the rule's are also those
    of JAX's own transpose rules, an accelerator's compiler gets the same convolutions for both
    programs and picks the same kernels.
    """
    config = impl.make_config(jax.ShapeDtypeStruct(case.lhs_shape, jnp.float32),
                              jax.ShapeDtypeStruct(case.rhs_shape, jnp.float32), **case.kwargs)
    native = exported_grad(lax.conv_general_dilated, platform, case)
    native_needs_rules = _export_without_jax_conv_autodiff(
        lax.conv_general_dilated, platform, case) is None
    ours = _export_without_jax_conv_autodiff(impl.conv_general_dilated, platform, case)
    if ours is None:
        counts, as_native = {"reverses": 0, "convolutions": 0}, False
    else:
        counts = rotated_filter_uses(ours, config.dimension_numbers.rhs_spec[2:])
        as_native = convolution_signatures(ours) == convolution_signatures(native)
    feeds = ("JAX's own rules" if ours is None
             else "convolution" if counts["convolutions"] else "nothing")
    return {"platform": platform, "case": case.describe(), **counts, "rotated_filter_feeds": feeds,
            "own_rule": ours is not None, "native_needs_jax_rules": native_needs_rules,
            "convolutions_as_native": as_native,
            "ok": ours is not None and native_needs_rules and counts["reverses"] > 0
            and counts["convolutions"] > 0 and (as_native or platform == "cpu")}


def environment(device: jax.Device) -> dict[str, str]:
    """Device and version facts for a report."""
    return {
        "platform": device.platform,
        "device": device.device_kind,
        "device_count": str(len(jax.devices(device.platform))),
        "jax": jax.__version__,
        "jaxlib": importlib.metadata.version("jaxlib"),
        "numpy": np.__version__,
        "x64": str(jnp.zeros(0, dtype="float64").dtype == np.float64),
    }
