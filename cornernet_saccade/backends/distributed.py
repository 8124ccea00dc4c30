"""Process-group setup for ``torchrun`` and the few collectives the trainer and the batch commands need.

``torchrun --nproc_per_node=N -m cornernet_saccade train ...`` sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; :func:`setup` then joins the group (NCCL on CUDA, gloo on CPU) and gives each
process its device (``cuda:LOCAL_RANK``). Run as a plain process, everything here is a no-op.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from cornernet_saccade.backends.device import resolve_device

#: Collective timeout: generous, because rank 0 runs the COCO evaluation while the others wait.
PROCESS_GROUP_TIMEOUT = timedelta(hours=2)


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job: ``rank`` of ``world_size`` processes, on ``device``."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0 writes checkpoints, logs and evaluation results."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum of ``tensor`` over all processes (a new tensor; ``tensor`` itself when alone)."""
        if not self.distributed:
            return tensor
        total = tensor.clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def setup(device_name: str) -> DistContext:
    """Join the torchrun process group if there is one and pick this process's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return DistContext(0, 1, resolve_device(device_name))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    if not dist.is_initialized():
        if device.type == "cuda":  # binding the device lets NCCL set up its communicators eagerly
            dist.init_process_group(backend="nccl", timeout=PROCESS_GROUP_TIMEOUT, device_id=device)
        else:
            dist.init_process_group(backend="gloo", timeout=PROCESS_GROUP_TIMEOUT)
    return DistContext(dist.get_rank(), dist.get_world_size(), device)


def teardown(context: DistContext) -> None:
    """Leave the process group (after the last collective)."""
    if context.distributed and dist.is_initialized():
        dist.destroy_process_group()
