"""The saccade hourglass backbone: a stem and stacked hourglasses that also return merge maps.

For a 255x255 input with the official widths (256, 384, 384, 512) the stem gives a
``[N,256,64,64]`` map; each hourglass halves the resolution three times with stride-2 residual
blocks (no max-pool) and comes back with nearest x2 upsampling, returning its output and the merge
maps of every level from coarse to fine: ``[N,384,16,16]``, ``[N,384,32,32]``, ``[N,256,64,64]``.
The attention heads read these maps. Module names follow the official checkpoint (``hg.pre``,
``hg.hgs.i.up1/low1/low2/low3``, ``hg.cnvs``, ``hg.inters``, ``hg.inters_``, ``hg.cnvs_``).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from cornernet_saccade.model.layers import Convolution, Residual


def _residual_stack(in_dim: int, out_dim: int, count: int, stride: int = 1) -> nn.Sequential:
    """``count`` residual blocks; the first changes width (and stride), the rest keep ``out_dim``."""
    layers = [Residual(in_dim, out_dim, stride=stride)]
    layers += [Residual(out_dim, out_dim) for _ in range(count - 1)]
    return nn.Sequential(*layers)


def _residual_stack_reversed(in_dim: int, out_dim: int, count: int) -> nn.Sequential:
    """``count`` residual blocks keeping ``in_dim`` except the last, which maps to ``out_dim``."""
    layers = [Residual(in_dim, in_dim) for _ in range(count - 1)]
    layers.append(Residual(in_dim, out_dim))
    return nn.Sequential(*layers)


class SaccadeHourglass(nn.Module):
    """One hourglass level (recursive): ``[N,dims[0],H,W] -> ([N,dims[0],H,W], merge maps)``.

    ``up1`` keeps the resolution; ``low1`` halves it (stride-2 residual); ``low2`` is the next level
    (or residual blocks at the bottom); ``low3`` maps back to ``dims[0]``; the result is ``up1`` plus
    the nearest x2 upsampling of ``low3``. Merge maps are listed coarse to fine, this level last.
    """

    def __init__(self, dims: Sequence[int], modules: Sequence[int]):
        super().__init__()
        curr_dim, next_dim = dims[0], dims[1]
        curr_mod, next_mod = modules[0], modules[1]
        self.up1 = _residual_stack(curr_dim, curr_dim, curr_mod)
        self.low1 = _residual_stack(curr_dim, next_dim, curr_mod, stride=2)
        self.is_innermost = len(dims) == 2
        self.low2 = (
            _residual_stack(next_dim, next_dim, next_mod)
            if self.is_innermost
            else SaccadeHourglass(dims[1:], modules[1:])
        )
        self.low3 = _residual_stack_reversed(next_dim, curr_dim, curr_mod)

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        up1 = self.up1(x)
        low1 = self.low1(x)
        if self.is_innermost:
            low2, merges = self.low2(low1), []
        else:
            low2, merges = self.low2(low1)
        up2 = F.interpolate(self.low3(low2), scale_factor=2.0, mode="nearest")
        merged = up1 + up2
        return merged, [*merges, merged]


def _merge_projection(dim: int) -> nn.Sequential:
    """1x1 conv (no bias) + BatchNorm, used on both sides of an inter-stack merge."""
    return nn.Sequential(nn.Conv2d(dim, dim, 1, bias=False), nn.BatchNorm2d(dim))


class HourglassBackbone(nn.Module):
    """Stem + ``num_stacks`` hourglasses with inter-stack merges.

    Input ``[N,3,H,W]`` (normalised BGR). Output: per stack the feature map ``[N,dims[0],H/4,W/4]``
    that feeds the corner heads, and per stack the merge maps (coarse to fine) that feed the
    attention heads. ``H/4`` must be divisible by ``2**(len(dims)-1)`` (255 -> 64 and 511 -> 128 are).
    """

    def __init__(self, dims: Sequence[int], modules: Sequence[int], num_stacks: int, stem_dim: int):
        super().__init__()
        width = dims[0]
        self.pre = nn.Sequential(Convolution(7, 3, stem_dim, stride=2), Residual(stem_dim, width, stride=2))
        self.hgs = nn.ModuleList([SaccadeHourglass(dims, modules) for _ in range(num_stacks)])
        self.cnvs = nn.ModuleList([Convolution(3, width, width) for _ in range(num_stacks)])
        self.inters = nn.ModuleList([Residual(width, width) for _ in range(num_stacks - 1)])
        self.inters_ = nn.ModuleList([_merge_projection(width) for _ in range(num_stacks - 1)])
        self.cnvs_ = nn.ModuleList([_merge_projection(width) for _ in range(num_stacks - 1)])
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> tuple[list[Tensor], list[list[Tensor]]]:
        inter = self.pre(x)
        features: list[Tensor] = []
        merge_maps: list[list[Tensor]] = []
        last = len(self.hgs) - 1
        for index, (hourglass, cnv) in enumerate(zip(self.hgs, self.cnvs)):
            out, merges = hourglass(inter)
            feature = cnv(out)
            features.append(feature)
            merge_maps.append(merges)
            if index < last:
                inter = self.relu(self.inters_[index](inter) + self.cnvs_[index](feature))
                inter = self.inters[index](inter)
        return features, merge_maps
