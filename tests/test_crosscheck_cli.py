"""``convgrad crosscheck``: the command line on a small grid, with the real op and a broken one."""

import json

import jax
import pytest
from jax import lax

import impl
from convgrad import crosscheck
from convgrad.cli import main
from convgrad.tolerances import tolerance

SMALL_GRID = [
    crosscheck.Case((2, 4, 7, 6), (6, 2, 3, 2), {"window_strides": (2, 1),
                                                 "padding": ((1, -1), (0, 2)),
                                                 "rhs_dilation": (1, 2), "feature_group_count": 2}),
    crosscheck.Case((3, 2, 9), (4, 2, 3), {"window_strides": (3,), "padding": "SAME"}),
]


@pytest.fixture
def small_grid(monkeypatch):
    # The same module object the command imports (``from convgrad import crosscheck``).
    monkeypatch.setattr(crosscheck, "default_grid", lambda: iter(SMALL_GRID))


def _run(tmp_path, capsys):
    path = tmp_path / "crosscheck.json"
    code = main(["crosscheck", "--json", str(path)])
    return code, json.loads(path.read_text()), capsys.readouterr()


def test_crosscheck_passes_and_writes_json(small_grid, tmp_path, capsys):
    code, report, captured = _run(tmp_path, capsys)
    assert code == 0, captured.err
    device = jax.devices()[0]
    environment = report["environment"]
    assert environment["device"] == device.device_kind
    assert environment["platform"] == device.platform
    assert environment["jax"] == jax.__version__
    assert environment["jaxlib"] and environment["numpy"]
    assert [result["dtype"] for result in report["results"]] == list(crosscheck.DTYPES)
    for result in report["results"]:
        assert result["configurations"] == len(SMALL_GRID)
        assert result["failures"] == []
        assert 0.0 <= result["max_rel_error"] <= tolerance(result["dtype"])
        assert result["max_abs_error"] >= 0.0
    assert f"configurations per dtype: {len(SMALL_GRID)}" in captured.out
    assert device.device_kind in captured.out


def test_crosscheck_fails_on_a_broken_op(tmp_path, capsys, monkeypatch):
    # A rule whose filter is not rotated: the command must notice and exit non-zero. One case in
    # float64 is enough (and keeps the test fast).
    monkeypatch.setattr(crosscheck, "default_grid", lambda: iter(SMALL_GRID[:1]))
    namespace = impl.conv_general_dilated.__globals__  # see tests/test_rule_is_used.py
    right = namespace["lhs_cotangent"]

    def unrotated(conv, cotangent, rhs, config, *shape_and_dtype):
        spatial = tuple(config.dimension_numbers.rhs_spec[2:])
        return right(conv, cotangent, lax.rev(rhs, spatial), config, *shape_and_dtype)

    jax.clear_caches()
    monkeypatch.setitem(namespace, "lhs_cotangent", unrotated)
    path = tmp_path / "crosscheck.json"
    code = main(["crosscheck", "--dtypes", "float64", "--json", str(path)])
    captured = capsys.readouterr()
    jax.clear_caches()
    assert code == 1, captured.err
    (float64,) = json.loads(path.read_text())["results"]
    assert float64["dtype"] == "float64"
    assert len(float64["failures"]) == 1
    assert float64["max_rel_error"] > 0.1
    assert "MISMATCH" in captured.out
    assert "rel error" in captured.err
