"""An exponential moving average of a network's weights, kept beside the trained network.

The averaged network is what a run validates, evaluates and saves as its checkpoints' weights
(detect, evaluate and export-weights use it); the trained network's own weights travel in the
checkpoint's training state so that ``--resume`` continues the run exactly.
"""
from __future__ import annotations

import copy
from typing import Generic, TypeVar

import torch
from torch import nn

ModuleT = TypeVar("ModuleT", bound=nn.Module)


class WeightAverage(Generic[ModuleT]):
    """``average = d * average + (1 - d) * weights`` over every floating-point tensor of the state dict
    (parameters and BatchNorm running statistics), integer ones (BatchNorm's batch counters) copied,
    after each optimizer step. At the ``t``-th update (``t = 1, 2, ...``) ``d = min(decay, (1 + t) /
    (10 + t))``: the first updates follow the trained weights closely (``d = 2/11`` at ``t = 1``), so the
    average does not keep the random initialisation for thousands of steps.

    ``network``: the averaged copy (eval mode, no gradients); ``updates``: ``t`` so far.
    """

    def __init__(self, model: ModuleT, decay: float) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"decay must lie in (0, 1), got {decay}")
        self.decay = decay
        self.network: ModuleT = copy.deepcopy(model).eval().requires_grad_(False)
        self.updates = 0

    def factor(self, update: int) -> float:
        """``d`` of the ``update``-th update (1-based)."""
        return min(self.decay, (1 + update) / (10 + update))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards ``model``'s current weights (same architecture as at construction)."""
        self.updates += 1
        keep = self.factor(self.updates)
        current = model.state_dict()
        for name, average in self.network.state_dict().items():
            if average.dtype.is_floating_point:
                average.lerp_(current[name].to(average.dtype), 1 - keep)
            else:
                average.copy_(current[name])
