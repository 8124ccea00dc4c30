"""Hourglass backbones: a stem and stacked hourglasses that also return merge maps.

One implementation serves the three networks; they differ only in the building block, the
upsampling, the stem depth and the widths (docs/reference.md §1):

============  ==========  ==========================  ======  ==================================
network       block       upsampling (``up2``)        stem    levels (``dims``)
============  ==========  ==========================  ======  ==================================
Saccade       residual    nearest x2                  /4      256, 384, 384, 512 (3 levels)
Squeeze       fire        ConvTranspose2d(4, 2, 1)    /8      256, 256, 384, 384, 512 (4 levels)
CornerNet     residual    nearest x2                  /4      256, 256, 384, 384, 384, 512 (5)
============  ==========  ==========================  ======  ==================================

For a 255x255 input with the saccade widths the stem gives a ``[N,256,64,64]`` map; each
hourglass halves the resolution at every level with a stride-2 first block (no max-pool) and comes
back with ``up2``, returning its output and the merge maps of every level from coarse to fine:
``[N,384,16,16]``, ``[N,384,32,32]``, ``[N,256,64,64]``. The saccade attention heads read these
maps. Module names follow the official checkpoints (``hg.pre``, ``hg.hgs.i.up1/low1/low2/low3/up2``,
``hg.cnvs``, ``hg.inters``, ``hg.inters_``, ``hg.cnvs_``).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from torch import Tensor, nn

from cornernet_saccade.model.layers import Convolution, Fire, Residual

BlockKind = Literal["residual", "fire"]
UpsampleKind = Literal["nearest", "transposed"]

_BLOCKS: dict[str, type[nn.Module]] = {"residual": Residual, "fire": Fire}


def _block_stack(block: BlockKind, in_dim: int, out_dim: int, count: int, stride: int = 1) -> nn.Sequential:
    """``count`` blocks; the first changes width (and stride), the rest keep ``out_dim``."""
    make = _BLOCKS[block]
    layers = [make(in_dim, out_dim, stride=stride)]
    layers += [make(out_dim, out_dim) for _ in range(count - 1)]
    return nn.Sequential(*layers)


def _block_stack_reversed(block: BlockKind, in_dim: int, out_dim: int, count: int) -> nn.Sequential:
    """``count`` blocks keeping ``in_dim`` except the last, which maps to ``out_dim``."""
    make = _BLOCKS[block]
    layers = [make(in_dim, in_dim) for _ in range(count - 1)]
    layers.append(make(in_dim, out_dim))
    return nn.Sequential(*layers)


def _upsample(kind: UpsampleKind, dim: int) -> nn.Module:
    """Exact x2 upsampling ``[N,dim,h,w] -> [N,dim,2h,2w]``: nearest (no parameters) or a learned
    transposed convolution (kernel 4, stride 2, padding 1, with bias)."""
    if kind == "transposed":
        return nn.ConvTranspose2d(dim, dim, 4, stride=2, padding=1)
    return nn.Upsample(scale_factor=2.0, mode="nearest")


class HourglassLevel(nn.Module):
    """One hourglass level (recursive): ``[N,dims[0],H,W] -> ([N,dims[0],H,W], merge maps)``.

    ``up1`` keeps the resolution; ``low1`` halves it (stride-2 first block); ``low2`` is the next
    level (or ``modules[1]`` blocks at the bottom); ``low3`` maps back to ``dims[0]``; the result
    is ``up1 + up2(low3)``. Merge maps are listed coarse to fine, this level last. ``H`` and ``W``
    must be divisible by ``2**(len(dims)-1)``.
    """

    def __init__(
        self,
        dims: Sequence[int],
        modules: Sequence[int],
        block: BlockKind = "residual",
        upsample: UpsampleKind = "nearest",
    ):
        super().__init__()
        curr_dim, next_dim = dims[0], dims[1]
        curr_mod, next_mod = modules[0], modules[1]
        self.up1 = _block_stack(block, curr_dim, curr_dim, curr_mod)
        self.low1 = _block_stack(block, curr_dim, next_dim, curr_mod, stride=2)
        self.is_innermost = len(dims) == 2
        self.low2 = (
            _block_stack(block, next_dim, next_dim, next_mod)
            if self.is_innermost
            else HourglassLevel(dims[1:], modules[1:], block, upsample)
        )
        self.low3 = _block_stack_reversed(block, next_dim, curr_dim, curr_mod)
        self.up2 = _upsample(upsample, curr_dim)

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        up1 = self.up1(x)
        low1 = self.low1(x)
        if self.is_innermost:
            low2, merges = self.low2(low1), []
        else:
            low2, merges = self.low2(low1)
        merged = up1 + self.up2(self.low3(low2))
        return merged, [*merges, merged]


def _merge_projection(dim: int) -> nn.Sequential:
    """1x1 conv (no bias) + BatchNorm, used on both sides of an inter-stack merge."""
    return nn.Sequential(nn.Conv2d(dim, dim, 1, bias=False), nn.BatchNorm2d(dim))


def _stem(stem_dim: int, width: int, residuals: int) -> nn.Sequential:
    """7x7 stride-2 convolution then ``residuals`` stride-2 residual blocks: total stride
    ``2**(residuals+1)`` (4 for Saccade and CornerNet, 8 for Squeeze)."""
    layers: list[nn.Module] = [Convolution(7, 3, stem_dim, stride=2), Residual(stem_dim, width, stride=2)]
    layers += [Residual(width, width, stride=2) for _ in range(residuals - 1)]
    return nn.Sequential(*layers)


class HourglassBackbone(nn.Module):
    """Stem + ``num_stacks`` hourglasses with inter-stack merges.

    Input ``[N,3,H,W]`` (normalised BGR). Output: per stack the feature map
    ``[N,dims[0],H/s,W/s]`` (``s`` = the stem's stride, 4 with ``stem_residuals=1``) that feeds
    the corner heads, and per stack the merge maps (coarse to fine) that feed the attention heads.
    ``H/s`` must be divisible by ``2**(len(dims)-1)`` (255 -> 64 and 511 -> 128 are for 4 levels).
    ``block`` and ``upsample`` choose the hourglass levels' building block and ``up2`` (see the
    module docstring); the stem and the inter-stack merge always use residual blocks.
    """

    def __init__(
        self,
        dims: Sequence[int],
        modules: Sequence[int],
        num_stacks: int,
        stem_dim: int,
        *,
        block: BlockKind = "residual",
        upsample: UpsampleKind = "nearest",
        stem_residuals: int = 1,
    ):
        super().__init__()
        width = dims[0]
        self.pre = _stem(stem_dim, width, stem_residuals)
        self.hgs = nn.ModuleList([HourglassLevel(dims, modules, block, upsample) for _ in range(num_stacks)])
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
