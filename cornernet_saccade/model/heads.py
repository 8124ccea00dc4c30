"""Heads on top of the backbone: corner pooling modules, prediction heads and attention heads.

Names follow the official checkpoint (``tl_modules.i.p1_conv1`` ..., ``tl_heats.i.0.conv`` /
``tl_heats.i.1``, ``att_modules.i.j.0.conv`` / ``att_modules.i.j.1``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

from torch import Tensor, nn

from cornernet_saccade.model.layers import Convolution, CornerPool, PoolDirection

#: Initial bias of the heatmap and attention logits (sigmoid(-2.19) ~ 0.1), as in the original.
PRIOR_BIAS = -2.19


class CornerPoolModule(nn.Module):
    """Corner pooling module: two pooled branches summed, merged with a 1x1 projection of the input.

    ``[N,dim,H,W] -> [N,dim,H,W]``. Top-left corners use (top, left) pools, bottom-right corners
    (bottom, right).
    """

    def __init__(self, dim: int, pool_dim: int, first: PoolDirection, second: PoolDirection):
        super().__init__()
        self.p1_conv1 = Convolution(3, dim, pool_dim)
        self.p2_conv1 = Convolution(3, dim, pool_dim)
        self.p_conv1 = nn.Conv2d(pool_dim, dim, 3, padding=1, bias=False)
        self.p_bn1 = nn.BatchNorm2d(dim)
        self.conv1 = nn.Conv2d(dim, dim, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(dim)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = Convolution(3, dim, dim)
        self.pool1 = CornerPool(first)
        self.pool2 = CornerPool(second)

    def forward(self, x: Tensor) -> Tensor:
        pooled = self.pool1(self.p1_conv1(x)) + self.pool2(self.p2_conv1(x))
        merged = self.relu1(self.p_bn1(self.p_conv1(pooled)) + self.bn1(self.conv1(x)))
        return self.conv2(merged)


def prediction_head(
    in_dim: int, hidden_dim: int, out_dim: int, bias: float | None = None, kernel: int = 3
) -> nn.Sequential:
    """``kernel`` x ``kernel`` conv + ReLU (with bias, no BN) then a 1x1 conv to ``out_dim``
    channels of raw logits. ``[N,in_dim,H,W] -> [N,out_dim,H,W]``.

    ``kernel`` is 3 for CornerNet-Saccade and CornerNet, 1 for CornerNet-Squeeze. ``bias``
    initialises the last conv's bias (the -2.19 prior of heatmap and attention heads).
    """
    head = nn.Sequential(Convolution(kernel, in_dim, hidden_dim, with_bn=False), nn.Conv2d(hidden_dim, out_dim, 1))
    if bias is not None:
        nn.init.constant_(cast(Tensor, head[-1].bias), bias)
    return head


@dataclass
class HeadOutputs:
    """Raw logits of the heads; every field is a list over stacks (``[-1]`` is the last stack).

    For an input ``[N,3,H,W]`` with output map ``h, w = H/4, W/4`` (64x64 for 255x255):
    ``tl_heats``/``br_heats`` ``[N,C,h,w]``, ``tl_tags``/``br_tags`` ``[N,1,h,w]``,
    ``tl_offs``/``br_offs`` ``[N,2,h,w]`` (x, y offsets in output cells), and ``attentions``: per stack
    ``[coarse [N,1,h/4,w/4], middle [N,1,h/2,w/2], fine [N,1,h,w]]`` (for large, medium, small
    objects; 16x16, 32x32, 64x64 for a 255 input). Empty when attention was not requested.
    """

    tl_heats: list[Tensor] = field(default_factory=list)
    br_heats: list[Tensor] = field(default_factory=list)
    tl_tags: list[Tensor] = field(default_factory=list)
    br_tags: list[Tensor] = field(default_factory=list)
    tl_offs: list[Tensor] = field(default_factory=list)
    br_offs: list[Tensor] = field(default_factory=list)
    attentions: list[list[Tensor]] = field(default_factory=list)
