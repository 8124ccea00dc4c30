"""Training checkpoints in a run folder: ``checkpoint_0005000.pt`` files and the ``last.pt`` link.

Each file is written atomically by :func:`cornernet_saccade.model.checkpoint.save_checkpoint` (temp file,
fsync, rename), then ``last.pt`` is re-pointed at it (a relative symlink replaced atomically), then
old files beyond ``keep_last`` are deleted. A run killed at any moment leaves ``last.pt`` pointing
at a complete checkpoint. Random-number-generator states are stored as tensors and plain data, so
the files load with ``weights_only=True``.
"""
from __future__ import annotations

import math
import os
import random
import shutil
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from cornernet_saccade.errors import CheckpointError
from cornernet_saccade.model.checkpoint import RUN_LAST_CHECKPOINT, StoredCheckpoint, save_checkpoint
from cornernet_saccade.outputs import atomic_write, temp_file_glob

LAST_NAME = RUN_LAST_CHECKPOINT
CHECKPOINT_GLOB = "checkpoint_*.pt"
#: Temp files a killed save leaves in a run folder: a checkpoint's or ``last.pt``'s copy being
#: written (:func:`~cornernet_saccade.model.checkpoint.temp_file_glob`), the ``last.pt`` link being made.
STALE_TEMP_GLOBS = (temp_file_glob(CHECKPOINT_GLOB), temp_file_glob(LAST_NAME), f".{LAST_NAME}.tmp")
#: Python types of the RNG entries of a training checkpoint (as written by :func:`capture_rng_state`).
RNG_STATE_TYPES: dict[str, Any] = {
    "torch": torch.Tensor,
    "cuda": torch.Tensor,
    "numpy": {"keys": torch.Tensor, "position": int, "has_gauss": int, "cached_gauss": float},
    "python": {"version": int, "state": torch.Tensor, "gauss": (float, type(None))},
}
#: Python types of the other entries :meth:`CheckpointManager.save` is given by the trainer.
TRAINING_STATE_TYPES: dict[str, Any] = {
    "iteration": int,
    "optimizer": {"state": dict, "param_groups": list},
    "scheduler": dict,
    "scaler": dict,
    "counters": {"skipped_samples": int, "skipped_steps": int},
    "rng": RNG_STATE_TYPES,
}


def checkpoint_name(iteration: int) -> str:
    return f"checkpoint_{iteration:07d}.pt"


def capture_rng_state() -> dict[str, Any]:
    """torch (CPU and the current CUDA device), numpy and Python RNG states as tensors and plain data."""
    legacy_state = cast("tuple[str, np.ndarray, int, int, float]", np.random.get_state())  # the default legacy=True form
    _, keys, position, has_gauss, cached_gauss = legacy_state
    version, python_state, python_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() else torch.empty(0, dtype=torch.uint8),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                  "has_gauss": int(has_gauss), "cached_gauss": float(cached_gauss)},
        "python": {"version": version, "state": torch.tensor(python_state, dtype=torch.int64), "gauss": python_gauss},
    }


def _type_problem(value: Any, expected: Any, where: str) -> str | None:
    """The first way ``value`` differs from ``expected`` (a type, a tuple of types, or a dict of key ->
    expected for a dict with at least those keys), as ``"<where> is ..."``; ``None`` when it matches.
    A bool is not an int here."""
    if isinstance(expected, dict):
        if not isinstance(value, dict):
            return f"{where} is {type(value).__name__}, expected a mapping"
        for key, item in expected.items():
            if key not in value:
                return f"{where} has no {key!r}"
            problem = _type_problem(value[key], item, f"{where}.{key}")
            if problem:
                return problem
        return None
    if isinstance(value, bool) and expected is int or not isinstance(value, expected):
        names = " or ".join(t.__name__ for t in (expected if isinstance(expected, tuple) else (expected,)))
        return f"{where} is {type(value).__name__} {_short(value)}, expected {names}"
    return None


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def check_training_state(stored: StoredCheckpoint) -> None:
    """CheckpointError naming the file when ``stored`` is not a training checkpoint, or when an entry
    ``--resume`` needs (iteration, optimizer, scheduler, scaler, counters, RNG states, the optional
    training config) has a wrong type or a negative iteration: checked before anything is built or
    restored."""
    state = stored.training_state
    if "iteration" not in state or "optimizer" not in state:
        raise CheckpointError(
            f"{stored.path}: not a training checkpoint (no optimizer state or iteration); to start from its "
            f"weights, set init_weights instead of resuming"
        )
    problem = _type_problem(state, TRAINING_STATE_TYPES, "training state")
    if problem is None and "config" in state:
        problem = _type_problem(state["config"], (dict, type(None)), "training state.config")
    if problem is None and state["iteration"] < 0:
        problem = f"training state.iteration is negative ({state['iteration']})"
    if problem:
        raise CheckpointError(f"{stored.path}: malformed training checkpoint: {problem}")


def check_restored_optimizer(path: str, optimizer: torch.optim.Optimizer, scheduler: Any) -> None:
    """CheckpointError naming ``path`` when the optimizer and scheduler state just restored from it
    cannot drive this run (the types were checked before, but not what the values mean): a learning
    rate that is not a finite positive number, a per-parameter state tensor (``exp_avg``, ...) of
    another shape than its parameter, a scheduler ``last_epoch`` that is not an integer or
    ``base_lrs`` that are not one learning rate per parameter group. A checkpoint poisoned this
    way cannot be resumed; start from an earlier one."""
    problem = _scheduler_problem(scheduler, len(optimizer.param_groups))
    for index, group in enumerate(optimizer.param_groups):
        if problem is None and not _is_learning_rate(group.get("lr")):
            problem = f"optimizer param_groups[{index}].lr is {_short(group.get('lr'))}, not a finite positive number"
        for param in group["params"] if problem is None else ():
            for key, value in optimizer.state.get(param, {}).items():
                if isinstance(value, torch.Tensor) and value.dim() and value.shape != param.shape:
                    problem = (f"optimizer state {key!r} has shape {tuple(value.shape)}, its parameter "
                               f"{tuple(param.shape)}")
    if problem:
        raise CheckpointError(f"{path}: malformed training checkpoint: {problem}; resume from an earlier "
                              f"checkpoint of the run")


def _is_learning_rate(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _scheduler_problem(scheduler: Any, groups: int) -> str | None:
    if isinstance(scheduler.last_epoch, bool) or not isinstance(scheduler.last_epoch, int):
        return f"scheduler last_epoch is {_short(scheduler.last_epoch)}, not an integer"
    base_lrs = scheduler.base_lrs
    if not isinstance(base_lrs, list) or len(base_lrs) != groups or not all(map(_is_learning_rate, base_lrs)):
        return f"scheduler base_lrs is {_short(base_lrs)}, not {groups} finite positive learning rate(s)"
    return None


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state` (the CUDA state goes to the current CUDA device)."""
    torch.set_rng_state(state["torch"])
    if torch.cuda.is_available() and state["cuda"].numel():
        torch.cuda.set_rng_state(state["cuda"])
    numpy_state = state["numpy"]
    np.random.set_state(("MT19937", numpy_state["keys"].numpy().astype(np.uint32), numpy_state["position"],
                         numpy_state["has_gauss"], numpy_state["cached_gauss"]))
    python_state = state["python"]
    random.setstate((python_state["version"], tuple(python_state["state"].tolist()), python_state["gauss"]))


class CheckpointManager:
    """Writes training checkpoints into ``out_dir`` and keeps the newest ``keep_last`` (0: all)."""

    def __init__(self, out_dir: str | Path, keep_last: int = 0) -> None:
        self.out_dir = Path(out_dir)
        self.keep_last = keep_last

    @property
    def last_path(self) -> Path:
        return self.out_dir / LAST_NAME

    def earlier_run_files(self) -> list[Path]:
        """The checkpoints of a run already in ``out_dir``: ``last.pt`` (also a link to nowhere) and
        ``checkpoint_*.pt`` files, sorted. A new run there would overwrite and prune them."""
        checkpoints = sorted(self.out_dir.glob(CHECKPOINT_GLOB))
        return ([self.last_path] if os.path.lexists(self.last_path) else []) + checkpoints

    def remove_stale_temp_files(self) -> list[Path]:
        """Delete the temp files of saves that a killed run left (:data:`STALE_TEMP_GLOBS`, nothing
        else); returns them. Call before this run writes its first checkpoint."""
        stale = sorted({p for pattern in STALE_TEMP_GLOBS for p in self.out_dir.glob(pattern)
                        if p.is_file() or p.is_symlink()})
        for path in stale:
            path.unlink(missing_ok=True)
        return stale

    def save(self, iteration: int, model: nn.Module, **state: Any) -> Path:
        """Write ``checkpoint_<iteration>.pt`` (model + ``state``), point ``last.pt`` at it, prune."""
        path = self.out_dir / checkpoint_name(iteration)
        save_checkpoint(path, model, iteration=iteration, **state)
        self._point_last_at(path)
        self._prune()
        return path

    def _point_last_at(self, path: Path) -> None:
        link = self.out_dir / f".{LAST_NAME}.tmp"
        link.unlink(missing_ok=True)
        try:
            os.symlink(path.name, link)
        except OSError:  # no symlinks on this file system: a full copy, also atomic
            atomic_write(self.last_path, lambda tmp: shutil.copyfile(path, tmp))
            return
        os.replace(link, self.last_path)

    def _prune(self) -> None:
        if not self.keep_last:
            return
        keep = Path(os.path.realpath(self.last_path)).name
        for old in sorted(self.out_dir.glob(CHECKPOINT_GLOB))[: -self.keep_last]:
            if old.name != keep:
                old.unlink()


def resolve_resume_path(path: str | Path | None, out_dir: str | Path) -> Path:
    """The checkpoint to resume from: ``path`` (a file, or a run folder's ``last.pt``), by default
    ``out_dir/last.pt``. CheckpointError when there is none."""
    target = Path(path) if path is not None else Path(out_dir)
    if target.is_dir():
        target = target / LAST_NAME
    if not target.is_file():
        raise CheckpointError(f"{target}: no checkpoint to resume from")
    return target
