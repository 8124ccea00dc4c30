"""Run metrics: one JSON object per line in ``out_dir/metrics.jsonl``, mirrored to TensorBoard when
``torch.utils.tensorboard`` imports (the ``tensorboard`` package is optional).

Each line has ``kind`` (``train``, ``val``, ``eval``, ``bad_sample``, ``skipped_step``, ...),
``iteration``, ``time`` (Unix seconds) and the values; numbers are logged to TensorBoard as
``<kind>/<name>``.
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

from cornernet_saccade.outputs import atomic_write, make_folder, open_no_follow, write_whole

METRICS_NAME = "metrics.jsonl"


def _tensorboard_writer(out_dir: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(log_dir=str(out_dir / "tensorboard"))


class MetricsLogger:
    """Appends metrics of a run (a resumed run continues the same file); inert when not ``enabled``
    (the processes other than rank 0).

    ``resumed_at``: the iteration a resumed run continues from; the file's records of later
    iterations (from the run that went on past that checkpoint) are dropped first, since this run
    redoes those iterations (see :func:`drop_records_after`).
    """

    def __init__(self, out_dir: str | Path, enabled: bool = True, resumed_at: int | None = None) -> None:
        self.enabled = enabled
        self.path = Path(out_dir) / METRICS_NAME
        self._fd: int | None = None
        self._writer = None
        if enabled:
            make_folder(self.path.parent)
            if resumed_at is not None and self.path.is_file() and not self.path.is_symlink():
                drop_records_after(self.path, resumed_at)
            self._fd = open_no_follow(self.path, append=True)
            self._writer = _tensorboard_writer(self.path.parent)

    def log(self, kind: str, iteration: int, **values: Any) -> None:
        if not self.enabled:
            return
        assert self._fd is not None, "MetricsLogger.log after close"
        record = {"kind": kind, "iteration": iteration, "time": round(time.time(), 3), **values}
        write_whole(self._fd, self.path, (json.dumps(record) + "\n").encode())
        if self._writer is not None:
            for name, value in values.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    self._writer.add_scalar(f"{kind}/{name}", value, iteration)

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):  # every record was written whole
                os.close(self._fd)
            self._fd = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _iteration_of(line: str) -> int | None:
    """The ``iteration`` of a metrics line, ``None`` for a line that is not such a record."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    iteration = record.get("iteration") if isinstance(record, dict) else None
    return iteration if isinstance(iteration, int) else None


def drop_records_after(path: Path, iteration: int) -> None:
    """Rewrite ``path`` (atomically) without the records of iterations after ``iteration``; every other
    line, also one that is not a record, is kept as it was (a last line cut short by a kill gets its
    newline). Nothing is written when there is nothing to change."""
    with path.open(encoding="utf-8", newline="") as handle:
        lines = handle.readlines()
    kept = [line for line in lines if (_iteration_of(line) or 0) <= iteration]
    if len(kept) == len(lines) and (not lines or lines[-1].endswith("\n")):
        return
    if kept and not kept[-1].endswith("\n"):
        kept[-1] += "\n"

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8", newline="") as handle:
            handle.writelines(kept)

    atomic_write(path, write)


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` file (or of a run folder's)."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_NAME
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]
