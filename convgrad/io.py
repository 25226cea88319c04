"""Atomic output: a file is either absent or complete, never half-written.

Commands check their output paths before they start work (``check_output``), so a bad path costs
nothing, and write several files all or none (``write_files_atomic``). A regular file is written
beside its target and renamed over it (through a symbolic link: over the file it names, the link
kept); a device or a pipe (``/dev/stdout``, ``/dev/null``) is written in place.
"""

import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path

# A temporary file's name is ".<name>.<random>.tmp"; names are cut so that it stays a valid name
# wherever the target's is (255 bytes on common file systems).
_TEMP_NAME_CHARS = 48


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def _is_special(target: Path) -> bool:
    """Whether ``target`` exists (through links) as neither a regular file nor a folder: a
    device, a pipe or a socket, written in place."""
    try:
        mode = os.stat(target).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def _regular(target: Path) -> Path:
    """Where a regular file written to ``target`` lies: the file a link names, links resolved."""
    return Path(os.path.realpath(target)) if target.is_symlink() else target


def check_output(path: str | os.PathLike[str], option: str = "output path") -> Path:
    """``path`` as a ``Path`` if a file can be written there, else a ``ValueError`` naming
    ``option``: its folder must exist and be writable, and it must not be a folder itself (a
    device or a pipe must be writable)."""
    target = Path(path)
    shown = f"{option} (={str(path)!r})"
    if not str(path).strip():
        raise ValueError(f"{shown} must not be empty")
    try:
        if _is_special(target):
            if not os.access(target, os.W_OK):
                raise ValueError(f"{shown} is not writable")
            return target
        regular = _regular(target)
        folder = regular.parent if str(regular.parent) else Path(".")
        if not folder.is_dir():
            raise ValueError(f"{shown} must be in an existing folder")
        if regular.is_dir():
            raise ValueError(f"{shown} is a folder, not a file")
    except OSError as err:  # a name too long, a loop of links, say
        raise ValueError(f"{shown} cannot be used: {err.strerror}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{shown} is not writable")
    return target


def _temporary(target: Path, data: str | bytes) -> str:
    """``data`` in a new temporary file beside ``target``, with the usual mode; its name."""
    folder = target.parent if str(target.parent) else Path(".")
    try:
        handle, temp_name = tempfile.mkstemp(dir=folder, prefix=f".{target.name[:_TEMP_NAME_CHARS]}.",
                                             suffix=".tmp")
    except OSError as err:
        raise ValueError(f"output path (={str(target)!r}) is not writable: {err.strerror}") from None
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data.encode() if isinstance(data, str) else data)
        os.chmod(temp_name, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual mode
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        raise
    return temp_name


def write_atomic(path: str | os.PathLike[str], data: str | bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder, then rename.

    Raises ``ValueError`` naming the path if it cannot be a file there (``check_output``); on any
    error the temporary file is removed and ``path`` is untouched.
    """
    return write_files_atomic({path: data})[0]


def write_files_atomic(contents: Mapping[str | os.PathLike[str], str | bytes]) -> list[Path]:
    """Write several files all or none, as far as the file system allows: every path is checked
    (``check_output``) and every text written to a temporary file beside its target before the
    first target is replaced; on an error before that, no target is touched. Devices and pipes
    are written in place, after the temporary files and before any rename."""
    targets = [check_output(path) for path in contents]
    special = [_is_special(target) for target in targets]
    temporaries: list[tuple[str, Path]] = []
    try:
        for target, data, in_place in zip(targets, contents.values(), special, strict=True):
            if not in_place:
                regular = _regular(target)
                temporaries.append((_temporary(regular, data), regular))
        for target, data, in_place in zip(targets, contents.values(), special, strict=True):
            if in_place:
                with open(target, "wb") as stream:
                    stream.write(data.encode() if isinstance(data, str) else data)
        for temp_name, regular in temporaries:
            os.replace(temp_name, regular)
    finally:
        for temp_name, _ in temporaries:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp_name)
    return targets


def write_folder_atomic(folder: str | os.PathLike[str],
                        contents: Mapping[str, str | bytes]) -> list[Path]:
    """Write the files ``contents`` (names to data) into ``folder``, all or none.

    An existing folder gets them through ``write_files_atomic``; a new one is filled as a hidden
    temporary folder beside it and renamed into place, so it appears complete or not at all.
    """
    target = Path(folder)
    if target.exists():
        return write_files_atomic({target / name: data for name, data in contents.items()})
    parent = check_output(target, "output folder").parent
    try:
        staging = Path(tempfile.mkdtemp(dir=parent if str(parent) else ".",
                                        prefix=f".{target.name[:_TEMP_NAME_CHARS]}.",
                                        suffix=".tmp"))
    except OSError as err:
        raise ValueError(f"output folder (={str(folder)!r}) is not writable: "
                         f"{err.strerror}") from None
    try:
        write_files_atomic({staging / name: data for name, data in contents.items()})
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes 0700; give the usual mode
        os.rename(staging, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(staging)
    return [target / name for name in contents]
