"""Writing files safely (results, checkpoints, exports): under a temporary name beside the target,
fsynced, then renamed, so that a failure or a kill never leaves half a file; every failure is an
:class:`~cornernet_saccade.errors.OutputError` naming the path. Files get the permissions of a
normal create (the umask applies)."""
from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import stat
import sys
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
    is removed, ``path`` is left as it was)."""
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
    except (OSError, ValueError, RuntimeError) as exc:  # torch.save reports a full disk as a RuntimeError
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


def open_no_follow(path: Path, append: bool) -> int:
    """A write descriptor of ``path`` that never follows a link: appending to it (``append``) or
    truncating it; a link in its place is refused when appending and replaced by a new file
    otherwise (the link, never its target, goes). OutputError naming ``path`` when that fails."""
    try:
        if not append and path.is_symlink():
            path.unlink()
        flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_APPEND if append else os.O_TRUNC)
        return os.open(path, flags, 0o666)
    except OSError as exc:
        if path.is_symlink():
            raise OutputError(f"{path}: a link; refusing to read or write through it") from None
        raise OutputError(f"{path}: cannot write ({exc.strerror or exc})") from None


def write_whole(fd: int, path: Path, data: bytes) -> None:
    """Append ``data`` to ``fd`` (opened on ``path``) in one write, or not at all: a short or failed
    write (a full disk) is cut back off, so the file never ends in a torn piece; OutputError naming
    ``path``."""
    start = os.lseek(fd, 0, os.SEEK_END)
    try:
        written = os.write(fd, data)
        if written != len(data):
            raise OSError(28, f"only {written} of {len(data)} bytes written (disk full?)")
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, start)
        raise OutputError(f"{path}: cannot write ({exc.strerror or exc})") from None


class FolderLock:
    """An exclusive lock on an output of one run (``flock`` of the lock file ``path``, which holds
    the holder's process id and command while held and is removed on release): a second run
    writing the same output stops with an OutputError naming the holder, instead of interleaving
    lines or losing results."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = self._acquire()
        os.ftruncate(self._fd, 0)
        os.write(self._fd, f"process {os.getpid()}: {' '.join(sys.argv)}\n".encode())

    def _acquire(self) -> int:
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666)
            except OSError as exc:
                raise OutputError(f"{self.path}: cannot create the lock file ({exc.strerror or exc})") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.read(fd, 4096).decode(errors="replace").strip() or "another process"
                os.close(fd)
                raise OutputError(f"{self.path.parent}: in use by another run ({holder}); wait for it to finish "
                                  f"or choose another output folder") from None
            with contextlib.suppress(OSError):
                if os.stat(self.path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino:
                    return fd
            os.close(fd)  # the holder removed the file while this process waited: lock the new one

    def release(self) -> None:
        """Remove the lock file and unlock (again: nothing)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            os.close(self._fd)
            self._fd = None
