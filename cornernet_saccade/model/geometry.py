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

#: The smallest long side (crop pixels) the training sampler zooms an object to
#: (:data:`~cornernet_saccade.data.samples.REFERENCE_LONG_SIDE_TIERS`; ``SamplingConfig.min_scale``).
MIN_TRAINED_LONG_SIDE = 16


def output_size(input_size: int, stride_layers: int = 2) -> int:
    """Side of the corner heatmaps (cells) for an input side (pixels): ``input_size`` halved (rounded
    up) by each of the stem's ``stride_layers`` stride-2 layers, ``ceil(ceil(input_size / 2) / 2)``
    for the saccade model and CornerNet (255 -> 64, 511 -> 128), three for CornerNet-Squeeze (511 -> 64)."""
    size = input_size
    for _ in range(stride_layers):
        size = -(-size // 2)
    return size


def output_stride(stem_residuals: int) -> int:
    """Input pixels per output-map cell of a network whose stem has ``stem_residuals`` stride-2
    residual blocks after its stride-2 7x7 convolution: 4 (CornerNet-Saccade, CornerNet), 8 (Squeeze)."""
    return 2 * 2**stem_residuals


#: Times each hourglass halves its input (its levels below the top); the heatmap side must be a
#: multiple of ``2 ** HOURGLASS_HALVINGS``.
HOURGLASS_HALVINGS = 3

#: The network takes input sides of the form ``INPUT_SIZE_STEP * k - 1`` (pixels, k >= 1: 31, 63,
#: ..., 255, 511, 1023...), whose heatmap side ``output_size`` is ``8k``, a multiple every hourglass
#: level can halve. The one rule for input sizes: the detector feeds only such sides (saccade crops
#: 255, full mode :func:`padded_input_size`) and an ONNX export takes them (its dynamic H and W).
INPUT_SIZE_STEP = 4 * 2**HOURGLASS_HALVINGS


def is_input_size(side: int) -> bool:
    """Whether the network takes an input side (pixels): ``INPUT_SIZE_STEP * k - 1``, k >= 1."""
    return side > 0 and (side + 1) % INPUT_SIZE_STEP == 0


def padded_input_size(size: int) -> int:
    """The smallest network input side (pixels) ``>= size`` the network takes (:func:`is_input_size`,
    the original's form ``32k - 1``): a canvas of ``size`` pixels is padded (zeros at its bottom and
    right) to this side. ``500 -> 511``, ``511 -> 511``, ``512 -> 543``."""
    return -(-(size + 1) // INPUT_SIZE_STEP) * INPUT_SIZE_STEP - 1


#: The CornerNet tester (CornerNet-Squeeze, CornerNet) centres each resized image on a canvas of
#: sides ``TESTER_SIZE_STEP * k - 1`` (pixels: 127, 255, 383, 511, ...; the original's ``side | 127``),
#: whose output maps (``16k`` cells at Squeeze's stride 8, ``32k`` at CornerNet's stride 4) every
#: level of their official hourglasses can halve. An ONNX export of those networks takes these sides.
TESTER_SIZE_STEP = 128


def tester_canvas_size(side: int) -> int:
    """The CornerNet tester's canvas side (pixels) for a resized image side: the smallest
    ``TESTER_SIZE_STEP * k - 1 >= side`` (``side | 127``: ``383 -> 383``, ``384 -> 511``)."""
    return side | (TESTER_SIZE_STEP - 1)


def attention_map_sizes(input_size: int, ratios: tuple[int, ...] = ATTENTION_RATIOS) -> list[int]:
    """Side of each attention map in cells: ``ceil(input_size / ratio)`` (16, 32, 64 for 255)."""
    return [-(-input_size // ratio) for ratio in ratios]
