"""convgrad.io.write_atomic: complete file or no file, usual permissions, clear errors."""

import os
import stat

import pytest

from convgrad.io import write_atomic


def test_writes_text_and_bytes_with_umask_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        text = write_atomic(tmp_path / "a.md", "é\n")
        raw = write_atomic(tmp_path / "b.png", b"\x89PNG")
    finally:
        os.umask(umask)
    assert text.read_text(encoding="utf-8") == "é\n"
    assert raw.read_bytes() == b"\x89PNG"
    assert stat.S_IMODE(text.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.md", "b.png"]


def test_failed_rename_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "report.md"
    target.write_text("old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]


def test_missing_folder_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="existing folder"):
        write_atomic(tmp_path / "missing" / "x.json", "{}")
    assert list(tmp_path.iterdir()) == []
