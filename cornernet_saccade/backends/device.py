"""Where and how wide the network runs: the device by name, and the CPU thread count."""
from __future__ import annotations

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
        raise ConfigError(f"device {name!r}: CUDA is not available on this machine (use device: cpu)")
    index = requested.index if local_rank is None else local_rank
    device = torch.device("cuda", torch.cuda.current_device() if index is None else index)
    torch.cuda.set_device(device)
    return device


def set_threads(threads: int | None) -> int:
    """Use ``threads`` intra-op CPU threads (``None`` or 0: torch's default, all cores) and return the
    number in use. On a shared machine fewer threads than cores is often faster."""
    if threads is not None and threads < 0:
        raise ConfigError(f"threads: {threads} is not a thread count (0 or more; 0 = all cores)")
    try:
        check_bounds({"threads": threads}, THREAD_BOUNDS)
    except ValueError as exc:
        raise ConfigError(f"threads: {exc}") from None
    if threads:
        torch.set_num_threads(threads)
    return torch.get_num_threads()
