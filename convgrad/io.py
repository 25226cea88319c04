"""Atomic output: a file is either absent or complete, never half-written.

Commands check their output paths before they start work (``check_output``), so a bad path costs
nothing, and write several files all or none (``write_files_atomic``).
"""

import contextlib
import os
import shutil
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


def check_output(path: str | os.PathLike[str], option: str = "output path") -> Path:
    """``path`` as a ``Path`` if a file can be written there, else a ``ValueError`` naming
    ``option``: its folder must exist and be writable, and it must not be a folder itself."""
    target = Path(path)
    shown = f"{option} (={str(path)!r})"
    if not str(path).strip():
        raise ValueError(f"{shown} must not be empty")
    folder = target.parent if str(target.parent) else Path(".")
    try:
        if not folder.is_dir():
            raise ValueError(f"{shown} must be in an existing folder")
        if target.is_dir():
            raise ValueError(f"{shown} is a folder, not a file")
    except OSError as err:  # a name too long, say
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
    first target is replaced; on an error before that, no target is touched."""
    targets = [check_output(path) for path in contents]
    temporaries: list[str] = []
    try:
        for target, data in zip(targets, contents.values(), strict=True):
            temporaries.append(_temporary(target, data))
        for temp_name, target in zip(temporaries, targets, strict=True):
            os.replace(temp_name, target)
    finally:
        for temp_name in temporaries:
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
