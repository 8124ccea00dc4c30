"""Writing files safely (results, checkpoints, exports): under a temporary name beside the target,
fsynced, then renamed, so that a failure or a kill never leaves half a file; every failure is an
:class:`~cornernet_saccade.errors.OutputError` naming the path. Files get the permissions of a
normal create (the umask applies)."""
from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cornernet_saccade.errors import OutputError


def temp_file_glob(name: str) -> str:
    """The glob pattern of the temp files :func:`atomic_write` creates for a target named ``name``
    (``.<name>.<random>.tmp``, ``name`` itself may be a pattern). A process killed mid-write leaves
    one behind."""
    return f".{name}.*.tmp"


def _create_temp_file(path: Path) -> tuple[str, int]:
    """A new empty temp file beside ``path`` (named by :func:`temp_file_glob`) and its mode, which is
    that of any normally created file: 0666 minus the umask (``tempfile.mkstemp`` forces 0600)."""
    while True:
        tmp = path.parent / temp_file_glob(path.name).replace("*", secrets.token_hex(6))
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        try:
            return str(tmp), stat.S_IMODE(os.fstat(fd).st_mode)
        finally:
            os.close(fd)


def atomic_write(path: str | Path, write: Callable[[str], Any]) -> None:
    """Call ``write(tmp_path)`` for a temp file beside ``path`` (its folder created if needed), fsync
    it, then rename it over ``path``. OutputError naming ``path`` when any of it fails (the temp file
    is removed)."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp, mode = _create_temp_file(path)
        write(tmp)
        os.chmod(tmp, mode)  # a writer may have recreated the file 0600 (safetensors does)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_folder(path.parent)
    except (OSError, ValueError) as exc:
        _remove(tmp)
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise OutputError(f"{path}: cannot write ({reason})") from None
    except BaseException:
        _remove(tmp)
        raise


def _remove(tmp: str | None) -> None:
    if tmp is not None:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _fsync_folder(folder: Path) -> None:
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def make_folder(folder: Path) -> None:
    """Create ``folder`` and its parents; OutputError naming it when that is impossible."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{folder}: cannot create the output folder ({exc.strerror or exc})") from None


def resolved_path(path: str | Path) -> Path:
    """``path`` with links resolved (made absolute as written when it cannot be resolved)."""
    try:
        return Path(path).resolve()
    except OSError:
        return Path(path).absolute()


def same_file(first: str | Path, second: str | Path) -> bool:
    """Whether two paths name the same file (see :func:`resolved_path`)."""
    return resolved_path(first) == resolved_path(second)


def check_new_output(path: str | Path, overwrite: bool = False, inputs: tuple[str | Path, ...] = ()) -> None:
    """OutputError naming ``path`` when writing it would replace one of ``inputs`` (never allowed)
    or an existing file (allowed with ``overwrite``)."""
    for source in inputs:
        if same_file(path, source):
            raise OutputError(f"{path}: the output would replace the input {source}; choose another path")
    if Path(path).exists() and not overwrite:
        raise OutputError(f"{path}: already exists; choose another path or add --overwrite")

