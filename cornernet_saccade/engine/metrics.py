"""Run metrics: one JSON object per line in ``out_dir/metrics.jsonl``, mirrored to TensorBoard when
``torch.utils.tensorboard`` imports (the ``tensorboard`` package is optional).

Each line has ``kind`` (``train``, ``val``, ``eval``, ``bad_sample``, ``skipped_step``, ...),
``iteration``, ``time`` (Unix seconds) and the values; numbers are logged to TensorBoard as
``<kind>/<name>``.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import IO, Any

METRICS_NAME = "metrics.jsonl"


def _tensorboard_writer(out_dir: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(log_dir=str(out_dir / "tensorboard"))


class MetricsLogger:
    """Appends metrics of a run (a resumed run continues the same file); inert when not ``enabled``
    (the processes other than rank 0)."""

    def __init__(self, out_dir: str | Path, enabled: bool = True) -> None:
        self.enabled = enabled
        self.path = Path(out_dir) / METRICS_NAME
        self._file: IO[str] | None = None
        self._writer = None
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8")
            self._writer = _tensorboard_writer(self.path.parent)

    def log(self, kind: str, iteration: int, **values: Any) -> None:
        if not self.enabled:
            return
        assert self._file is not None, "MetricsLogger.log after close"
        record = {"kind": kind, "iteration": iteration, "time": round(time.time(), 3), **values}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._writer is not None:
            for name, value in values.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    self._writer.add_scalar(f"{kind}/{name}", value, iteration)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` file (or of a run folder's)."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_NAME
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]
