"""Building blocks of the networks: ``Convolution``, ``Residual``, ``Fire`` and corner pooling.

Parameter names follow the official checkpoints (``conv``/``bn`` in :class:`Convolution`;
``conv1``/``bn1``/``conv2``/``bn2``/``skip`` in :class:`Residual`; ``conv1``/``bn1``/``conv_1x1``/
``conv_3x3``/``bn2`` in :class:`Fire`) so that their state_dicts load unchanged.

Corner pooling (docs/reference.md §1) takes, at every position, the maximum over a ray towards one border:

=========  ==================================  ===========================
pool       output at row i / column j          scan starts at
=========  ==================================  ===========================
top        ``max(x[..., i:, :])`` along H       the bottom row
bottom     ``max(x[..., :i+1, :])`` along H     the top row
left       ``max(x[..., :, j:])`` along W       the right column
right      ``max(x[..., :, :j+1])`` along W     the left column
=========  ==================================  ===========================

Two implementations give bit-identical forward outputs:

* the training form (:class:`_RunningMax`, an autograd function) computes the values with
  ``torch.cummax`` and routes each output gradient to the **first** input position that reached the
  running maximum, in scan order: exactly what the original C++ extension does (its scan updates
  the arg-max only on a strict ``>``). ``torch.cummax``'s own backward would send tied maxima (common
  on ReLU zeros) to the last position instead; we keep the original's behaviour so that gradients,
  and so training, match it.
* the export form (:func:`running_max_doubling`) uses ``log2(n)`` shifted ``torch.maximum`` steps and
  no ``cummax`` (which ONNX lacks). Meant for inference and export; its gradient splits ties.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

PoolDirection = Literal["top", "bottom", "left", "right"]

# direction -> (tensor dim, whether the scan runs from the high-index end)
_POOL_AXES: dict[str, tuple[int, bool]] = {
    "top": (2, True),
    "bottom": (2, False),
    "left": (3, True),
    "right": (3, False),
}


class Convolution(nn.Module):
    """``k x k`` conv (padding ``(k-1)//2``) -> BatchNorm (optional) -> ReLU. ``[N,Cin,H,W] -> [N,Cout,H/s,W/s]``.

    Without BatchNorm the convolution has a bias, as in the original.
    """

    def __init__(self, kernel: int, in_dim: int, out_dim: int, stride: int = 1, with_bn: bool = True):
        super().__init__()
        pad = (kernel - 1) // 2
        self.conv = nn.Conv2d(in_dim, out_dim, kernel, padding=pad, stride=stride, bias=not with_bn)
        self.bn = nn.BatchNorm2d(out_dim) if with_bn else nn.Identity()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.bn(self.conv(x)))


class Residual(nn.Module):
    """Residual block: conv3x3(stride)-BN-ReLU-conv3x3-BN plus a skip, then ReLU.

    The skip is a strided 1x1 conv + BN when the stride or the width changes, else the identity.
    ``[N,Cin,H,W] -> [N,Cout,ceil(H/s),ceil(W/s)]``.
    """

    def __init__(self, in_dim: int, out_dim: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_dim, out_dim, 3, padding=1, stride=stride, bias=False)
        self.bn1 = nn.BatchNorm2d(out_dim)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_dim, out_dim, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_dim)
        needs_projection = stride != 1 or in_dim != out_dim
        self.skip = (
            nn.Sequential(nn.Conv2d(in_dim, out_dim, 1, stride=stride, bias=False), nn.BatchNorm2d(out_dim))
            if needs_projection
            else nn.Sequential()
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        branch = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu(branch + self.skip(x))


class Fire(nn.Module):
    """Fire module of CornerNet-Squeeze. ``[N,Cin,H,W] -> [N,Cout,ceil(H/s),ceil(W/s)]``.

    A 1x1 squeeze conv to ``Cout/2`` + BN (no ReLU), then in parallel a 1x1 conv and a depthwise
    3x3 conv (both ``Cout/2`` wide, stride ``s``, no bias), concatenated (1x1 part first) -> BN.
    The input is added before the final ReLU only when the block keeps width and resolution; there
    is no projection shortcut otherwise (as in the original).
    """

    def __init__(self, in_dim: int, out_dim: int, stride: int = 1):
        super().__init__()
        if out_dim % 2:
            raise ValueError(f"a fire module needs an even output width, got {out_dim}")
        half = out_dim // 2
        self.conv1 = nn.Conv2d(in_dim, half, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(half)
        self.conv_1x1 = nn.Conv2d(half, half, 1, stride=stride, bias=False)
        self.conv_3x3 = nn.Conv2d(half, half, 3, padding=1, stride=stride, groups=half, bias=False)
        self.bn2 = nn.BatchNorm2d(out_dim)
        self.has_skip = stride == 1 and in_dim == out_dim
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        squeezed = self.bn1(self.conv1(x))
        out = self.bn2(torch.cat((self.conv_1x1(squeezed), self.conv_3x3(squeezed)), 1))
        return self.relu(out + x) if self.has_skip else self.relu(out)


def _first_arg_of_running_max(running: Tensor, dim: int) -> Tensor:
    """Index (along ``dim``, scan order) of the first element that reached each running maximum.

    ``running`` is a running maximum along ``dim`` (non-decreasing). A new maximum starts where the
    value changes; the arg-max of every position is the start of its run.
    """
    n = running.shape[dim]
    positions = torch.arange(n, device=running.device).view([-1 if d == dim else 1 for d in range(running.dim())])
    changed = torch.ones_like(running, dtype=torch.bool)
    changed.narrow(dim, 1, n - 1).copy_(running.narrow(dim, 1, n - 1) != running.narrow(dim, 0, n - 1))
    run_starts = torch.where(changed, positions, torch.zeros_like(positions))
    return run_starts.cummax(dim).values


class _RunningMax(torch.autograd.Function):
    """Running maximum along ``dim`` from index 0; ties route the gradient to the first element."""

    @staticmethod
    def forward(ctx, x: Tensor, dim: int) -> Tensor:
        running = x.cummax(dim).values
        ctx.dim = dim
        ctx.save_for_backward(running)
        return running

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor, None]:
        (running,) = ctx.saved_tensors
        arg = _first_arg_of_running_max(running, ctx.dim)
        grad_in = torch.zeros_like(grad_out).scatter_add_(ctx.dim, arg, grad_out)
        return grad_in, None


def running_max_cummax(x: Tensor, dim: int, reverse: bool) -> Tensor:
    """Running max along ``dim`` (from the high end if ``reverse``), training form. Same shape as ``x``."""
    if reverse:
        return _RunningMax.apply(x.flip(dim), dim).flip(dim)
    return _RunningMax.apply(x, dim)


def running_max_doubling(x: Tensor, dim: int, reverse: bool) -> Tensor:
    """Running max along ``dim`` by log-step doubling (no ``cummax``; ONNX-exportable). Same shape as ``x``.

    After the step with shift ``s``, every position holds the max over a window of ``2s`` elements
    towards the scan start; ``ceil(log2(n))`` steps cover the whole ray.
    """
    n = x.shape[dim]
    shift = 1
    while shift < n:
        pad = [0, 0] * (x.dim() - 1 - dim) + ([0, shift] if reverse else [shift, 0])
        padded = F.pad(x, pad, value=float("-inf"))
        start = shift if reverse else 0
        x = torch.maximum(x, padded.narrow(dim, start, n))
        shift *= 2
    return x


class CornerPool(nn.Module):
    """Directional max pooling over ``[N,C,H,W]`` maps (no parameters); see the module docstring.

    ``export_friendly`` selects the cummax-free implementation (identical forward values).
    """

    def __init__(self, direction: PoolDirection, export_friendly: bool = False):
        super().__init__()
        if direction not in _POOL_AXES:
            raise ValueError(f"unknown corner pool direction {direction!r}")
        self.direction = direction
        self.export_friendly = export_friendly

    def forward(self, x: Tensor) -> Tensor:
        dim, reverse = _POOL_AXES[self.direction]
        if self.export_friendly:
            return running_max_doubling(x, dim, reverse)
        return running_max_cummax(x, dim, reverse)

    def extra_repr(self) -> str:
        return f"direction={self.direction!r}, export_friendly={self.export_friendly}"
