"""convgrad.io.write_atomic: complete file or no file, usual permissions, clear errors."""

import errno
import os
import stat
import threading

import pytest

from convgrad.io import write_atomic, write_files_atomic, write_folder_atomic


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


def test_new_folder_appears_complete_with_umask_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        written = write_folder_atomic(tmp_path / "out", {"a.md": "a", "b.png": b"\x89PNG"})
    finally:
        os.umask(umask)
    folder = tmp_path / "out"
    assert written == [folder / "a.md", folder / "b.png"]
    assert (folder / "a.md").read_text() == "a" and (folder / "b.png").read_bytes() == b"\x89PNG"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_new_folder_is_absent_after_a_failed_write(tmp_path, monkeypatch):
    def broken_rename(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "rename", broken_rename)
    with pytest.raises(OSError, match="disk full"):
        write_folder_atomic(tmp_path / "out", {"a.md": "a", "b.md": "b"})
    assert list(tmp_path.iterdir()) == []  # neither the folder nor its staging copy


def test_existing_folder_keeps_its_other_files(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    (tmp_path / "a.md").write_text("old")
    write_folder_atomic(tmp_path, {"a.md": "new", "b.md": "b"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.md", "b.md", "keep.txt"]
    assert (tmp_path / "a.md").read_text() == "new"


def test_new_folder_needs_an_existing_parent(tmp_path):
    with pytest.raises(ValueError, match="existing folder"):
        write_folder_atomic(tmp_path / "missing" / "out", {"a.md": "a"})
    assert list(tmp_path.iterdir()) == []


def test_a_link_keeps_naming_the_file_it_names(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    real = tmp_path / "elsewhere" / "real.md"
    real.write_text("old")
    (tmp_path / "link.md").symlink_to(real)
    write_atomic(tmp_path / "link.md", "new")
    assert (tmp_path / "link.md").is_symlink() and real.read_text() == "new"
    assert sorted(p.name for p in (tmp_path / "elsewhere").iterdir()) == ["real.md"]


def test_a_pipe_is_written_in_place(tmp_path):
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    received = []
    reader = threading.Thread(target=lambda: received.append(pipe.read_text()))
    reader.start()
    write_files_atomic({pipe: "through the pipe", tmp_path / "b.md": "b"})
    reader.join(timeout=30)
    assert received == ["through the pipe"]
    assert stat.S_ISFIFO(os.stat(pipe).st_mode)  # still a pipe, not a file renamed over it
    assert (tmp_path / "b.md").read_text() == "b"


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0 or not os.path.exists(
    "/dev/full"), reason="making a device node needs root")
def test_a_full_device_is_an_error_and_no_file_is_replaced(tmp_path):
    full = tmp_path / "full"  # /dev/full's device: every write fails with ENOSPC
    os.mknod(full, stat.S_IFCHR | 0o666, os.makedev(1, 7))
    (tmp_path / "keep.md").write_text("old")
    with pytest.raises(OSError) as error:
        write_files_atomic({full: "x", tmp_path / "keep.md": "new"})
    assert error.value.errno == errno.ENOSPC
    assert stat.S_ISCHR(os.stat(full).st_mode) and (tmp_path / "keep.md").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full", "keep.md"]
