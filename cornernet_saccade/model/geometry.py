"""The saccade architecture's geometry, defined once: crop size, output-map size, attention scales
and the object-size tiers they serve.

Frames: **crop pixels** (the network input, 255x255 for a saccade crop) and **output-map cells**
(the corner heatmaps, four times coarser). Object sizes are long sides in crop pixels.
"""
from __future__ import annotations

#: Side of a saccade crop and of a training sample, crop pixels.
CROP_SIZE = 255

#: Crop pixels per attention cell of the coarse, middle and fine attention maps (large, medium and
#: small objects).
ATTENTION_RATIOS: tuple[int, ...] = (16, 8, 4)

#: Object-size tiers by long side in crop pixels: *large* above :data:`LARGE_OBJECT_MIN`, *small*
#: up to :data:`SMALL_OBJECT_MAX`, *medium* in between. The attention maps, the reference zooms at
#: test time and the training scale sampling all use these bounds.
LARGE_OBJECT_MIN = 96
SMALL_OBJECT_MAX = 32


def output_size(input_size: int, stride_layers: int = 2) -> int:
    """Side of the corner heatmaps (cells) for an input side (pixels): ``input_size`` halved (rounded
    up) by each of the stem's ``stride_layers`` stride-2 layers, ``ceil(ceil(input_size / 2) / 2)``
    for the saccade model and CornerNet (255 -> 64, 511 -> 128), three for CornerNet-Squeeze (511 -> 64)."""
    size = input_size
    for _ in range(stride_layers):
        size = -(-size // 2)
    return size


#: Times each hourglass halves its input (its levels below the top); the heatmap side must be a
#: multiple of ``2 ** HOURGLASS_HALVINGS``.
HOURGLASS_HALVINGS = 3


def padded_input_size(size: int) -> int:
    """The smallest network input side (pixels) ``>= size`` the hourglass takes, of the original's
    form ``32k - 1`` (255, 511, 1023...), whose heatmap side ``output_size`` is ``8k``: a canvas of
    ``size`` pixels is padded (zeros at its bottom and right) to this side. ``500 -> 511``,
    ``511 -> 511``, ``512 -> 543``."""
    step = 4 * 2**HOURGLASS_HALVINGS
    return -(-(size + 1) // step) * step - 1


def attention_map_sizes(input_size: int, ratios: tuple[int, ...] = ATTENTION_RATIOS) -> list[int]:
    """Side of each attention map in cells: ``ceil(input_size / ratio)`` (16, 32, 64 for 255)."""
    return [-(-input_size // ratio) for ratio in ratios]
