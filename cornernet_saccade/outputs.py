"""Writing result files safely: under a temporary name beside the target, then renamed, so that a
failure never leaves half a file; every failure is an :class:`~cornernet_saccade.errors.OutputError`
naming the path. Files get the permissions of a normal create (the umask applies)."""
from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cornernet_saccade.errors import OutputError


def write_atomically(path: Path, save: Callable[[Path], Any]) -> None:
    """Call ``save(temporary path)`` and rename the result to ``path``."""
    partial = path.with_name(f".{path.name}.partial")
    try:
        save(partial)
        os.replace(partial, path)
    except (OSError, ValueError) as exc:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise OutputError(f"{path}: cannot write ({reason})") from None


def write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_atomically(path, lambda partial: partial.write_text(text, encoding="utf-8"))


def make_folder(folder: Path) -> None:
    """Create ``folder`` and its parents; OutputError naming it when that is impossible."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{folder}: cannot create the output folder ({exc.strerror or exc})") from None


def same_file(first: str | Path, second: str | Path) -> bool:
    """Whether two paths name the same file (resolving links; an unresolvable path is compared as
    written)."""
    def resolved(path: str | Path) -> Path:
        try:
            return Path(path).resolve()
        except OSError:
            return Path(path).absolute()

    return resolved(first) == resolved(second)
