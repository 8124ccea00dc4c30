"""Winograd F(4x4, 3x3) convolution: the fast path's 3x3 convolutions with 4x fewer multiplications.

A 3x3 convolution (stride 1, padding 1) computes each 4x4 block of outputs from a 6x6 block of
inputs. Winograd's minimal filtering algorithm (Lavin & Gray, "Fast Algorithms for Convolutional
Neural Networks", 2016) does this with 36 multiplications per (input channel, output channel) pair
instead of 144: with the interpolation points 0, 1, -1, 2, -2 and infinity,

    Y = A^T [ (G w G^T) * (B^T d B) ] A        (``*``: elementwise over the 6x6 transformed tile)

for a 6x6 input tile ``d``, a 3x3 filter ``w`` and a 4x4 output tile ``Y``. Summed over input
channels, the elementwise products become 36 independent matrix multiplications
``[tiles, Cin] @ [Cin, Cout]``, so the bulk of the work stays in large GEMMs (about two thirds of
a layer's time, at the CPU's matrix-multiply peak), while the transforms are small matrix products:
``B^T`` (6x6) over the tile rows and then the columns, and ``kron(A^T, A^T)`` (16x36) at once.

On the 2-core development CPU, where oneDNN's direct convolution already runs near the
matrix-multiply peak, a 256-channel layer on 64x64 maps took 2.2-2.7x less time, and the official
network 1.8x less per crop (see docs/benchmarks.md). The transformed filters ``G w G^T`` are computed once, in float64. The
results equal the direct convolution up to float32 rounding of the transforms: about 1e-5 of the
output's largest magnitude per layer, and below 1e-4 at the network's outputs. The price is
memory: the transformed filters are 6x6, 4x the size of the 3x3 weights.

Only float32 is supported: in bfloat16 the transforms' rounding (8-bit mantissa, values multiplied
by up to 8 x 8) would swamp the result. On CUDA, cuDNN already picks Winograd kernels itself.
"""
from __future__ import annotations

from typing import TypeGuard

import torch
from torch import Tensor, nn

#: Output tile side (m) and input tile side (m + 3 - 1) of F(4x4, 3x3).
OUTPUT_TILE = 4
INPUT_TILE = 6
_DOUBLE = torch.float64
#: Input transform B^T (6x6), filter transform G (6x3), output transform A^T (4x6) for the points
#: 0, 1, -1, 2, -2, infinity (Lavin & Gray, section 4.2).
_BT = torch.tensor(
    [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
     [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], dtype=_DOUBLE,
)
_G = torch.tensor(
    [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
     [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], dtype=_DOUBLE,
)
_AT = torch.tensor([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]], dtype=_DOUBLE)
#: Tiles transformed together at most (128 tiles x 256 channels x 36 x 4 bytes = 4.7 MB of
#: transformed input): larger batches are cut into pieces that stay in the CPU's caches, which on
#: the development CPU made a batch of eight 64x64x256 maps 1.5x faster than transforming it whole.
DEFAULT_TILES_PER_CHUNK = 128
#: Fewest input and output channels for which :func:`use_winograd` replaces a convolution. The
#: transforms cost per channel what the saved multiplications gain only with enough channels: on the
#: development CPU (batch of 4, 64x64 and 16x16 maps, C -> C channels) Winograd took 1.9-4.5x as
#: long as oneDNN's direct convolution at 8-32 channels, about as long at 64, and was 1.24-1.30x
#: faster at 96, 1.5-1.7x at 128 and 2.2-2.6x at 256-384.
DEFAULT_MIN_CHANNELS = 96


def is_winograd_compatible(conv: nn.Module) -> TypeGuard[nn.Conv2d]:
    """Whether ``conv`` is a plain 3x3 ``nn.Conv2d`` with stride 1, padding 1, no dilation or groups."""
    return (
        type(conv) is nn.Conv2d and conv.kernel_size == (3, 3) and conv.stride == (1, 1)
        and conv.padding == (1, 1) and conv.dilation == (1, 1) and conv.groups == 1
        and conv.padding_mode == "zeros"
    )


def transform_filters(weight: Tensor, out_channels_per_step: int = 32) -> Tensor:
    """Winograd-domain filters ``G w G^T``: ``[Cout,Cin,3,3]`` -> float32 ``[36, Cin, Cout]``
    (index ``6*i + j`` of the 6x6 transformed tile first), computed in float64,
    ``out_channels_per_step`` output channels at a time so that the float64 temporaries stay small."""
    cout, cin = weight.shape[:2]
    g = _G.to(weight.device)
    filters = weight.new_empty(INPUT_TILE, INPUT_TILE, cin, cout, dtype=torch.float32)
    for first in range(0, cout, out_channels_per_step):
        block = weight[first: first + out_channels_per_step].to(_DOUBLE)  # [c, Cin, 3, 3]
        filters[..., first: first + out_channels_per_step] = torch.einsum("ik,ockl,jl->ijco", g, block, g)
    return filters.view(INPUT_TILE**2, cin, cout)


class WinogradConv2d(nn.Module):
    """A 3x3, stride-1, padding-1 convolution computed with Winograd F(4x4, 3x3).

    Built from an ``nn.Conv2d`` (see :func:`is_winograd_compatible`); inference only (no gradients
    flow to the transformed filters). ``forward``: float32 ``[N,Cin,H,W]`` (any memory format) ->
    float32 ``[N,Cout,H,W]`` in channels-last memory, equal to ``conv(x)`` within float32 rounding.
    ``tiles_per_chunk`` bounds how many 4x4 output tiles are transformed at once.
    """

    filters: Tensor
    bias: Tensor
    input_transform: Tensor
    output_transform: Tensor

    def __init__(self, conv: nn.Conv2d, tiles_per_chunk: int = DEFAULT_TILES_PER_CHUNK):
        super().__init__()
        if not is_winograd_compatible(conv):
            raise ValueError(f"Winograd F(4x4,3x3) needs a 3x3 stride-1 padding-1 Conv2d, got {conv}")
        if conv.weight.dtype != torch.float32:
            raise ValueError(f"Winograd convolution runs in float32 only, got {conv.weight.dtype}")
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.tiles_per_chunk = tiles_per_chunk
        device = conv.weight.device
        self.register_buffer("filters", transform_filters(conv.weight.detach()))
        bias = conv.bias.detach().clone() if conv.bias is not None else torch.zeros(conv.out_channels, device=device)
        self.register_buffer("bias", bias)
        self.register_buffer("input_transform", _BT.to(device, torch.float32))
        self.register_buffer("output_transform", torch.kron(_AT, _AT).to(device, torch.float32))

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, F(4x4,3x3), tiles_per_chunk={self.tiles_per_chunk}"

    def forward(self, x: Tensor) -> Tensor:
        n, channels, height, width = x.shape
        if channels != self.in_channels:
            raise ValueError(f"expected {self.in_channels} input channels, got {channels}")
        tiles_h, tiles_w = -(-height // OUTPUT_TILE), -(-width // OUTPUT_TILE)
        padded = _pad_nhwc(x, tiles_h * OUTPUT_TILE + 2, tiles_w * OUTPUT_TILE + 2)
        out = torch.empty(n, tiles_h * OUTPUT_TILE, tiles_w * OUTPUT_TILE, self.out_channels,
                          device=x.device, dtype=x.dtype)
        for image, first_row, end_row in self._chunks(n, tiles_h, tiles_w):
            rows = slice(first_row * OUTPUT_TILE, end_row * OUTPUT_TILE)
            source = padded[image, first_row * OUTPUT_TILE: end_row * OUTPUT_TILE + 2]
            target = out[image, rows]
            self._convolve_tiles(source, target, end_row - first_row, tiles_w)
        out = out[:, :height, :width].add_(self.bias)
        return out.permute(0, 3, 1, 2)

    def _chunks(self, n: int, tiles_h: int, tiles_w: int) -> list[tuple[slice, int, int]]:
        """``(images, first tile row, end tile row)`` pieces of at most ``tiles_per_chunk`` tiles
        (one piece for the whole batch when it is small enough; at least one tile row a piece)."""
        if n * tiles_h * tiles_w <= self.tiles_per_chunk:
            return [(slice(None), 0, tiles_h)]
        rows = max(1, self.tiles_per_chunk // tiles_w)
        return [
            (slice(i, i + 1), first, min(first + rows, tiles_h))
            for i in range(n) for first in range(0, tiles_h, rows)
        ]

    def _convolve_tiles(self, source: Tensor, target: Tensor, tiles_h: int, tiles_w: int) -> None:
        """Convolve padded NHWC ``source [n, 4*tiles_h+2, 4*tiles_w+2, Cin]`` into the NHWC view
        ``target [n, 4*tiles_h, 4*tiles_w, Cout]`` (without bias)."""
        n, cin, cout = source.shape[0], self.in_channels, self.out_channels
        stride_n, stride_h, stride_w, stride_c = source.stride()
        # overlapping 6x6 input tiles, the tile position first: [36, n*tiles_h*tiles_w*Cin]
        tiles = source.as_strided(
            (INPUT_TILE, INPUT_TILE, n, tiles_h, tiles_w, cin),
            (stride_h, stride_w, stride_n, OUTPUT_TILE * stride_h, OUTPUT_TILE * stride_w, stride_c),
        ).reshape(INPUT_TILE**2, -1)
        # B^T d B, separably: B^T over the tile rows, then over the tile columns (3x fewer
        # operations than the 36x36 product kron(B^T, B^T))
        rows = (self.input_transform @ tiles.view(INPUT_TILE, -1)).view(INPUT_TILE, INPUT_TILE, -1)
        transformed = torch.matmul(self.input_transform, rows).view(INPUT_TILE**2, -1, cin)  # [36, P, Cin]
        products = torch.bmm(transformed, self.filters)  # [36, P, Cout]
        blocks = (self.output_transform @ products.view(INPUT_TILE**2, -1)).view(
            OUTPUT_TILE, OUTPUT_TILE, n, tiles_h, tiles_w, cout
        )
        target.view(n, tiles_h, OUTPUT_TILE, tiles_w, OUTPUT_TILE, cout).copy_(blocks.permute(2, 3, 0, 4, 1, 5))


def _pad_nhwc(x: Tensor, padded_height: int, padded_width: int) -> Tensor:
    """``x [N,C,H,W]`` as a contiguous NHWC ``[N, padded_height, padded_width, C]`` tensor with ``x``
    at offset (1, 1) and zeros around it (only the border is zeroed: one pass over the data)."""
    n, channels, height, width = x.shape
    padded = x.new_empty(n, padded_height, padded_width, channels)
    padded[:, 0].zero_()
    padded[:, height + 1:].zero_()
    padded[:, 1: height + 1, 0].zero_()
    padded[:, 1: height + 1, width + 1:].zero_()
    padded[:, 1: height + 1, 1: width + 1].copy_(x.permute(0, 2, 3, 1))
    return padded


def use_winograd(module: nn.Module, min_channels: int = DEFAULT_MIN_CHANNELS) -> int:
    """Replace, in place, every Winograd-compatible float32 ``nn.Conv2d`` inside ``module`` with at
    least ``min_channels`` input and output channels by a :class:`WinogradConv2d`; returns how many
    were replaced."""
    replaced = 0
    for name, child in list(module.named_children()):
        if (
            is_winograd_compatible(child) and child.weight.dtype == torch.float32
            and min(child.in_channels, child.out_channels) >= min_channels
        ):
            setattr(module, name, WinogradConv2d(child))
            replaced += 1
        else:
            replaced += use_winograd(child, min_channels)
    return replaced
