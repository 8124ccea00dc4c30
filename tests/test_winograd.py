"""Winograd F(4x4, 3x3) convolution against hand-computed results and the direct convolution."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from head_compare import max_rel_diff
from torch import nn

from cornernet_saccade.backends.winograd import WinogradConv2d, is_winograd_compatible, use_winograd


def conv_with(weight: torch.Tensor, bias: torch.Tensor | None = None) -> nn.Conv2d:
    cout, cin = weight.shape[:2]
    conv = nn.Conv2d(cin, cout, 3, padding=1, bias=bias is not None)
    with torch.no_grad():
        conv.weight.copy_(weight)
        if bias is not None:
            conv.bias.copy_(bias)
    return conv


def test_centre_tap_filter_returns_the_input():
    weight = torch.zeros(1, 1, 3, 3)
    weight[0, 0, 1, 1] = 1.0
    x = torch.arange(35, dtype=torch.float32).view(1, 1, 5, 7)
    out = WinogradConv2d(conv_with(weight))(x)
    torch.testing.assert_close(out, x, rtol=0, atol=1e-4)


def test_box_filter_counts_the_neighbours_inside_the_image():
    # a 3x3 box filter on ones counts each pixel's neighbours within the image: 4 at the corners,
    # 6 along the edges, 9 inside; the bias is added once
    out = WinogradConv2d(conv_with(torch.ones(1, 1, 3, 3), torch.tensor([0.5])))(torch.ones(1, 1, 5, 6))
    expected = torch.full((5, 6), 9.0)
    expected[[0, -1], :] = 6.0
    expected[:, [0, -1]] = 6.0
    expected[[0, 0, -1, -1], [0, -1, 0, -1]] = 4.0
    torch.testing.assert_close(out[0, 0], expected + 0.5, rtol=0, atol=1e-4)


def test_filter_taps_land_where_the_direct_convolution_puts_them():
    # a single tap at (row 0, column 2) reads the input one row up and one column right
    weight = torch.zeros(1, 1, 3, 3)
    weight[0, 0, 0, 2] = 2.0
    x = torch.randn(1, 1, 9, 9, generator=torch.Generator().manual_seed(0))
    expected = torch.zeros_like(x)
    expected[..., 1:, :-1] = 2.0 * x[..., :-1, 1:]
    torch.testing.assert_close(WinogradConv2d(conv_with(weight))(x), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    "batch, cin, cout, height, width, tiles_per_chunk, channels_last",
    [
        (2, 16, 40, 16, 16, 128, True),  # whole tiles, one chunk; filters transformed in 2 steps of output channels
        (3, 8, 5, 7, 10, 128, False),  # partial tiles at the bottom and right, NCHW input
        (3, 32, 16, 13, 21, 4, True),  # chunked: several tile rows and images per call
        (2, 16, 16, 9, 30, 3, True),  # a tile row wider than a chunk: one row per piece
        (1, 4, 4, 1, 1, 128, True),  # a single pixel
    ],
)
def test_equals_the_direct_convolution(batch, cin, cout, height, width, tiles_per_chunk, channels_last):
    generator = torch.Generator().manual_seed(cin * 100 + height)
    conv = conv_with(torch.randn(cout, cin, 3, 3, generator=generator), torch.randn(cout, generator=generator))
    x = torch.randn(batch, cin, height, width, generator=generator)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        expected = F.conv2d(x, conv.weight, conv.bias, padding=1)
        got = WinogradConv2d(conv, tiles_per_chunk)(x)
    assert got.shape == expected.shape
    assert max_rel_diff(got, expected) <= 1e-5


def test_use_winograd_replaces_only_compatible_convolutions():
    network = nn.Sequential(
        nn.Conv2d(4, 4, 3, padding=1),  # replaced
        nn.Sequential(nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1, bias=False)),  # replaced (nested)
        nn.Conv2d(4, 4, 3, padding=1, stride=2),
        nn.Conv2d(4, 4, 1),
        nn.Conv2d(4, 4, 3, padding=2, dilation=2),
        nn.Conv2d(4, 4, 3, padding=1, groups=2),
        nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"),
    )
    x = torch.randn(1, 4, 12, 12)
    with torch.no_grad():
        expected = network(x)
        assert use_winograd(network, min_channels=4) == 2
        got = network(x)
    assert isinstance(network[0], WinogradConv2d) and isinstance(network[1][1], WinogradConv2d)
    assert sum(isinstance(m, WinogradConv2d) for m in network.modules()) == 2
    assert max_rel_diff(got, expected) <= 1e-5


def test_use_winograd_leaves_narrow_convolutions_to_the_direct_algorithm():
    network = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.Conv2d(16, 16, 3, padding=1), nn.Conv2d(16, 8, 3, padding=1))
    assert use_winograd(network, min_channels=16) == 1
    assert [type(m) for m in network] == [nn.Conv2d, WinogradConv2d, nn.Conv2d]
    assert use_winograd(nn.Sequential(nn.Conv2d(64, 64, 3, padding=1))) == 0  # below the default


def test_use_winograd_leaves_depthwise_and_transposed_convolutions_alone():
    # CornerNet-Squeeze's fire modules (depthwise 3x3, stride 1, padding 1) and a 3x3 transposed
    # convolution of the same geometry, wide enough to pass the channel threshold
    network = nn.Sequential(
        nn.Conv2d(128, 128, 3, padding=1, groups=128), nn.ConvTranspose2d(128, 128, 3, padding=1),
        nn.Conv2d(128, 128, 3, padding=1),  # dense: replaced
    )
    assert not is_winograd_compatible(network[0]) and not is_winograd_compatible(network[1])
    assert use_winograd(network) == 1
    assert [type(m) for m in network] == [nn.Conv2d, nn.ConvTranspose2d, WinogradConv2d]


def test_rejects_what_it_cannot_compute():
    assert not is_winograd_compatible(nn.Conv2d(2, 2, 3, padding=1, stride=2))
    with pytest.raises(ValueError, match="3x3 stride-1 padding-1"):
        WinogradConv2d(nn.Conv2d(2, 2, 5, padding=2))
    with pytest.raises(ValueError, match="float32 only"):
        WinogradConv2d(nn.Conv2d(2, 2, 3, padding=1).to(torch.bfloat16))
    assert use_winograd(nn.Sequential(nn.Conv2d(2, 2, 3, padding=1).double()), min_channels=1) == 0
    with pytest.raises(ValueError, match="expected 2 input channels, got 3"):
        WinogradConv2d(nn.Conv2d(2, 2, 3, padding=1))(torch.zeros(1, 3, 4, 4))
