"""Where and how wide the network runs: the device by name, and the CPU thread count."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from cornernet_saccade.bounds import check_bounds
from cornernet_saccade.errors import ConfigError

#: Most CPU threads :func:`set_threads` starts (raised on purpose with ``CORNERNET_SACCADE_LIMITS``):
#: far more threads than cores only slow the work down, and a thread that cannot be created kills the
#: process.
THREAD_BOUNDS: dict[str, float] = {"threads": 256}


def resolve_device(name: str, local_rank: int | None = None) -> torch.device:
    """``auto`` -> CUDA if available else CPU. A CUDA device gets an explicit index (``cuda`` means
    the current device; under torchrun ``cuda:LOCAL_RANK``) and becomes the current device."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        requested = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device {name!r}: not a device name (auto, cpu, cuda, cuda:N)") from None
    if requested.type == "cpu":
        return requested
    if requested.type != "cuda":
        raise ConfigError(f"device {name!r}: not a device this program runs on (auto, cpu, cuda, cuda:N)")
    if not torch.cuda.is_available():
        raise ConfigError(f"device {name!r}: CUDA is not available on this machine; run on the CPU "
                          f"(--device cpu, or device: cpu in a training config)")
    index = requested.index if local_rank is None else local_rank
    device = torch.device("cuda", torch.cuda.current_device() if index is None else index)
    torch.cuda.set_device(device)
    return device


@dataclass(frozen=True)
class ThreadChoice:
    """How many intra-op CPU threads to use, ``why`` (for the start-up line) and a ``warning`` when
    the request is likely to be slow (more threads than cores)."""

    threads: int
    why: str
    warning: str | None = None


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def busy_cores() -> float:
    """The load average of the last minute (runnable processes, ours included); 0 where unknown."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0


def choose_threads(threads: int | None) -> ThreadChoice:
    """The thread count for ``threads`` (``None`` or 0: the default). The default is the cores other
    work leaves free (usable cores less the one-minute load average, rounded; at least 1: on a busy
    2-core machine two threads ran 3-10x slower than one), at most torch's current count (its
    default: the cores, or ``OMP_NUM_THREADS``; a lower count set before is kept). A count above the
    usable cores is kept, with a warning."""
    if threads is not None and threads < 0:
        raise ConfigError(f"threads: {threads} is not a thread count (0 or more; 0 = chosen from the free cores)")
    try:
        check_bounds({"threads": threads}, THREAD_BOUNDS)
    except ValueError as exc:
        raise ConfigError(f"threads: {exc}") from None
    cores = usable_cores()
    if threads:
        warning = (f"{threads} threads asked for on {cores} core{'s' * (cores != 1)}: threads beyond the cores wait "
                   f"for each other and usually run slower" if threads > cores else None)
        return ThreadChoice(threads, "as asked", warning)
    load = busy_cores()
    free = max(1, cores - round(load))
    chosen = min(torch.get_num_threads(), free)
    return ThreadChoice(chosen, f"default: {free} of {cores} cores free, load {load:.1f}; --threads N to choose")


def set_threads(threads: int | None) -> ThreadChoice:
    """Use the intra-op CPU threads :func:`choose_threads` picks for ``threads`` and return that
    choice (its warning, if any, is for the caller to show)."""
    choice = choose_threads(threads)
    torch.set_num_threads(choice.threads)
    return choice
