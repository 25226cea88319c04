"""``convgrad crosscheck``: platform selection, lowering for absent platforms, error reporting."""

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import export, lax

import impl
from convgrad import bench, crosscheck
from convgrad.cli import main

SMALL_CASES = [
    crosscheck.Case((2, 4, 7, 6), (6, 2, 3, 2), dict(window_strides=(2, 1), padding="SAME",
                                                     feature_group_count=2)),
    crosscheck.Case((2, 4, 7, 6), (4, 1, 3, 3), dict(window_strides=(1, 2), padding=((1, -1), (2, 0)),
                                                     rhs_dilation=(2, 1), feature_group_count=4)),
]


def test_absent_platform_is_a_usage_error(capsys):
    absent = next(p for p in ("tpu", "gpu") if p not in {d.platform for d in jax.devices()})
    assert main(["crosscheck", "--platform", absent]) == 2
    err = capsys.readouterr().err
    assert f"--platform (={absent}) is not present" in err and "--lower-only" in err


def test_unknown_export_platform_is_a_usage_error(capsys):
    assert main(["crosscheck", "--lower-only", "cpu,metal"]) == 2
    assert "--lower-only entry (='metal')" in capsys.readouterr().err
    # An empty list is refused, not taken for no --lower-only (which runs the whole grid).
    assert main(["crosscheck", "--lower-only", ""]) == 2
    assert "--lower-only entry (='')" in capsys.readouterr().err
    assert main(["crosscheck", "--lower-only", "cpu,tpu,cpu"]) == 2
    assert "--lower-only (='cpu,tpu,cpu') names 'cpu' twice" in capsys.readouterr().err


@pytest.mark.parametrize("grid_option", [["--dtypes", "float32"], ["--precision", "default"],
                                         ["--verbose"], ["--platform", "cpu"]])
def test_lower_only_refuses_the_grids_options(grid_option, capsys):
    # It runs no grid: a grid option would be silently ignored.
    assert main(["crosscheck", "--lower-only", "cpu", *grid_option]) == 2
    assert f"{grid_option[0]} and --lower-only are exclusive" in capsys.readouterr().err


def test_a_json_path_that_cannot_be_written_stops_it_before_the_work(tmp_path, capsys,
                                                                      monkeypatch):
    from convgrad import crosscheck
    monkeypatch.setattr(crosscheck, "lowering_check", lambda *args: pytest.fail("ran the check"))
    for path, message in ((tmp_path, "is a folder, not a file"),
                          (tmp_path / "missing" / "x.json", "must be in an existing folder")):
        assert main(["crosscheck", "--lower-only", "cpu", "--json", str(path)]) == 2
        captured = capsys.readouterr()
        assert captured.out == "" and f"--json (={str(path)!r}) {message}" in captured.err
    assert list(tmp_path.iterdir()) == []


def test_lower_only_finds_the_rotated_filter_on_every_platform(tmp_path, capsys):
    path = tmp_path / "lowering.json"
    assert main(["crosscheck", "--lower-only", "cpu,cuda,rocm,tpu", "--json", str(path)]) == 0
    rows = json.loads(path.read_text())["lowering"]
    assert {row["platform"] for row in rows} == {"cpu", "cuda", "rocm", "tpu"}
    assert len(rows) == 4 * len(crosscheck.lowering_cases())
    for row in rows:
        assert row["ok"] and row["reverses"] >= 1 and row["convolutions"] >= 1, row
        assert row["rotated_filter_feeds"] == "convolution", row
        assert row["convolutions_as_native"] or row["platform"] == "cpu", row
        assert row["own_rule"] and row["native_needs_jax_rules"], row
    # On CPU the op's formulations replace native's convolutions: the comparison does tell.
    assert not all(row["convolutions_as_native"] for row in rows if row["platform"] == "cpu")
    assert "rotated filter feeds" in capsys.readouterr().out


def _by_jax_autodiff(lhs, rhs, **kwargs):
    """A custom_vjp op whose backward asks JAX for the derivative of the forward."""
    conv = functools.partial(lax.conv_general_dilated, **kwargs)

    @jax.custom_vjp
    def op(lhs, rhs):
        return conv(lhs, rhs)

    op.defvjp(lambda lhs, rhs: (conv(lhs, rhs), (lhs, rhs)),
              lambda operands, cotangent: jax.vjp(conv, *operands)[1](cotangent))
    return op(lhs, rhs)


@pytest.mark.parametrize("wrong", [lax.conv_general_dilated, _by_jax_autodiff],
                         ids=["native autodiff", "custom_vjp through jax.vjp"])
@pytest.mark.parametrize("platform", ["cpu", "tpu"])
def test_lower_only_fails_a_backward_by_jax_autodiff(monkeypatch, platform, wrong):
    # JAX's own transpose rule reverses the filter and feeds it to a convolution too: the filter
    # alone cannot tell (both wrong ops showed reverses=1, convolutions=1, ok, before the check
    # exported with JAX's rules refused).
    monkeypatch.setattr(crosscheck.impl, "conv_general_dilated", wrong)
    case = crosscheck.lowering_cases()[0]
    assert crosscheck.rotated_filter_uses(crosscheck.exported_grad(wrong, platform, case),
                                          (2, 3))["convolutions"] >= 1
    row = crosscheck.lowering_check(platform, case)
    assert not row["ok"] and not row["own_rule"] and row["native_needs_jax_rules"], row
    # JAX's own rules are back afterwards.
    jax.grad(lambda f: jnp.sum(lax.conv_general_dilated(jnp.ones((1, 1, 3, 3)), f, (1, 1),
                                                        "VALID")))(jnp.ones((1, 1, 2, 2)))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("platform", ["cuda", "tpu"])
def test_accelerators_get_natives_convolutions_on_the_benchmark_suite(platform, dtype):
    # Off CPU the op's jit(grad) must lower to the very convolutions of native autodiff (shapes,
    # layouts, windows, groups, precision), so an accelerator runs the same kernels for both.
    # Counted by kind, every other operation is native's too, but for the constant-index
    # conditionals that lax.platform_dependent leaves when one platform is exported.
    for shape in bench.model_suite():
        case = crosscheck.Case(shape.lhs_shape, shape.rhs_shape, shape.lax_kwargs())
        ours, native = (crosscheck.exported_grad(conv, platform, case, dtype)
                        for conv in (impl.conv_general_dilated, lax.conv_general_dilated))
        assert crosscheck.convolution_signatures(ours) == crosscheck.convolution_signatures(
            native), shape.name
        ours_kinds, native_kinds = map(crosscheck.operation_kinds, (ours, native))
        differ = {kind for kind in ours_kinds.keys() | native_kinds.keys()
                  if ours_kinds[kind] != native_kinds[kind]}
        assert differ <= crosscheck.PLATFORM_SELECTION_OPS, (shape.name, differ)
        assert ours_kinds["stablehlo.convolution"] == 3


def test_convolution_signatures_tell_convolutions_apart():
    def conv(padding, precision=None):
        return lambda x, f: lax.conv_general_dilated(x, f, (1, 1), padding, precision=precision)

    shapes = ((1, 2, 5, 5), (2, 2, 3, 3))
    same = crosscheck.convolution_signatures(_module(conv("SAME"), *shapes))
    assert sum(same.values()) == 1
    assert crosscheck.convolution_signatures(_module(conv("SAME"), *shapes)) == same
    for other in (conv("VALID"), conv("SAME", lax.Precision.HIGHEST)):
        assert crosscheck.convolution_signatures(_module(other, *shapes)) != same


def _module(fn, *shapes):
    args = [jax.ShapeDtypeStruct(shape, jnp.float32) for shape in shapes]
    return export.export(jax.jit(fn), platforms=["tpu"])(*args).mlir_module()


def test_lowering_walk_rejects_programs_without_a_rotated_filter():
    # Negative controls: the forward alone reverses nothing; reversing the wrong axes (in/out
    # features) or reversing the input instead of the filter is not the rotated filter.
    def forward(x, f):
        return lax.conv_general_dilated(x, f, (1, 1), "SAME")

    def wrong_axes(x, f):
        return lax.conv_general_dilated(x, lax.rev(f, (0, 1)), (1, 1), "SAME")

    def reversed_input(x, f):
        return lax.conv_general_dilated(lax.rev(x, (2, 3)), f, (1, 1), "SAME")

    def rotated(x, f):
        return lax.conv_general_dilated(x, lax.rev(f, (2, 3)), (1, 1), "SAME")

    shapes = ((1, 2, 5, 5), (2, 2, 3, 3))
    for fn in (forward, wrong_axes, reversed_input):
        counts = crosscheck.rotated_filter_uses(_module(fn, *shapes), (2, 3))
        assert counts["convolutions"] == 0, fn.__name__
    assert crosscheck.rotated_filter_uses(_module(rotated, *shapes), (2, 3))["convolutions"] == 1


def test_grid_rows_report_errors_against_native_and_float64_reference():
    device = jax.devices("cpu")[0]
    results, rows = crosscheck.run_grid(device, ["float64", "float32"], SMALL_CASES)
    assert [r.configurations for r in results] == [2, 2]
    assert all(row.ok and row.precision == "highest" for row in rows)
    float64_rows = [row for row in rows if row.dtype == "float64"]
    assert max(row.rel_vs_native for row in float64_rows) <= 1e-12
    assert max(row.rel_vs_reference for row in float64_rows) <= 1e-12


def test_a_wrong_op_is_a_mismatch(monkeypatch):
    # An op 1% off native must fail against native and against the float64 reference.
    def wrong(lhs, rhs, *args, **kwargs):
        return 1.01 * lax.conv_general_dilated(lhs, rhs, *args, **kwargs)

    monkeypatch.setattr(crosscheck.impl, "conv_general_dilated", wrong)
    device = jax.devices("cpu")[0]
    expected = crosscheck.reference(SMALL_CASES[0])
    row = crosscheck.check_case(SMALL_CASES[0], "float64", device, expected)
    assert not row.ok
    assert row.rel_vs_native > 1e-3 and row.rel_vs_reference > 1e-3


def test_inputs_are_exact_in_every_checked_dtype():
    for row_dtype, exact_in in [("bfloat16", ("bfloat16", "float16", "float32")),
                                ("float16", ("bfloat16", "float16", "float32")),
                                ("float32", ("float32",)), ("float64", ("float32",))]:
        lhs, rhs, cotangent = crosscheck._exact_inputs(SMALL_CASES[0], 3, row_dtype)
        for array in (lhs, rhs, cotangent):
            for dtype in exact_in:
                np.testing.assert_array_equal(np.asarray(jnp.asarray(array, dtype), np.float64),
                                              array)
        if row_dtype in crosscheck.FULL_PRECISION_DTYPES:  # all of float32's bits in use
            narrowed = np.asarray(jnp.asarray(lhs, "bfloat16"), np.float64)
            assert np.mean(narrowed != lhs) > 0.9


def test_a_convolution_in_bfloat16_passes_is_a_mismatch_in_float32(monkeypatch):
    # An op whose products drop to bfloat16 precision (as one bfloat16 pass on a TPU or TF32 on
    # a GPU would where the row asks for HIGHEST) must fail the float32 row: its inputs use all
    # 24 bits (with inputs exact in bfloat16 it passed, rel 1.2e-7).
    def one_pass(lhs, rhs, *args, **kwargs):
        lhs, rhs = (a.astype(jnp.bfloat16).astype(a.dtype) for a in (lhs, rhs))
        return lax.conv_general_dilated(lhs, rhs, *args, **kwargs)

    monkeypatch.setattr(crosscheck.impl, "conv_general_dilated", one_pass)
    device = jax.devices("cpu")[0]
    expected = crosscheck.reference(SMALL_CASES[0], dtype="float32")
    row = crosscheck.check_case(SMALL_CASES[0], "float32", device, expected)
    assert not row.ok
    assert row.rel_vs_reference > 1e-4 > 1e-6 > row.native_rel_vs_reference


def test_no_platform_selection_conditional_is_left_in_a_one_platform_program():
    # The basis of "the same convolutions, the same program": lowered for one platform, the choice
    # lax.platform_dependent makes leaves no conditional in the compiled program. jax 0.10 lowers it
    # to a stablehlo.case on a constant platform index that XLA's compiler folds away; jax 0.12
    # picks the branch while lowering. Either way the CPU branch is the one that runs.
    def f(x):
        return lax.platform_dependent(x, cpu=lambda x: 2 * x, default=lambda x: x + 1)

    compiled = jax.jit(f).lower(jnp.arange(3.0)).compile()
    assert " conditional(" not in compiled.as_text()  # the HLO instruction
    np.testing.assert_array_equal(np.asarray(compiled(jnp.arange(3.0))), [0.0, 2.0, 4.0])

    # A data-dependent choice stays, so the check above can see a conditional.
    def data_dependent(x):
        return lax.cond(x[0] > 0, lambda x: 2 * x, lambda x: x + 1, x)

    assert " conditional(" in jax.jit(data_dependent).lower(jnp.ones(3)).compile().as_text()
