"""Reading the text files a user names (annotations, class names, configs): only regular files, of
bounded size, so that a link to ``/dev/zero``, a FIFO or a link loop ends in the caller's error type
naming the file instead of filling memory, hanging or raising a traceback."""
from __future__ import annotations

import os
import stat
from pathlib import Path

from cornernet_saccade.bounds import check_bounds
from cornernet_saccade.errors import CornerNetSaccadeError

#: Largest input text file read (bytes; raised on purpose with ``CORNERNET_SACCADE_LIMITS``): COCO's
#: largest annotation file (instances_train2017.json) is 448 MB, LVIS's about 1.1 GB.
INPUT_BOUNDS: dict[str, float] = {"input_file_bytes": 4 << 30}


def read_input_bytes(path: str | Path, error: type[CornerNetSaccadeError], what: str) -> bytes:
    """The bytes of the regular file ``path`` (links followed); ``error`` naming ``path`` and
    ``what`` it should be when it is missing, not a regular file (a folder, a FIFO, a device), above
    :data:`INPUT_BOUNDS` or unreadable. Never blocks on a FIFO."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except OSError as exc:
        raise error(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
    with os.fdopen(fd, "rb") as handle:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise error(f"{path}: not a regular file (a folder, a device or a pipe); the {what} must be one")
        try:
            check_bounds({"input_file_bytes": status.st_size}, INPUT_BOUNDS)
        except ValueError as exc:
            raise error(f"{path}: {exc}") from None
        try:
            return handle.read()
        except OSError as exc:
            raise error(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None


def read_input_text(path: str | Path, error: type[CornerNetSaccadeError], what: str) -> str:
    """:func:`read_input_bytes` decoded as UTF-8 (a leading byte-order mark dropped); ``error`` when
    it is not UTF-8 text."""
    try:
        return read_input_bytes(path, error, what).decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: the {what} is not UTF-8 text ({exc})") from None
