"""Training targets: corner heatmaps, offsets, tag indices, ignore masks and attention maps.

Reproduces the target builder of the original sampler (docs/reference.md §2 step 7 and §3) value for value.

Frames: boxes come in **crop pixels** of the ``input_size`` x ``input_size`` training crop (after the
horizontal flip), ``x1, y1, x2, y2``; corner targets live in **output-map cells**
(``output_size / input_size`` cells per crop pixel, 64/255 for the official sizes); attention maps
live in **attention cells** of ``ratio`` crop pixels each. Arithmetic on box coordinates is done in
float32, like the original (numpy float32 arrays times Python floats), so that integer cells and
sub-cell offsets come out identical.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from cornernet_saccade.model.geometry import (
    ATTENTION_RATIOS,
    CROP_SIZE,
    LARGE_OBJECT_MIN,
    SMALL_OBJECT_MAX,
    attention_map_sizes,
)

#: Sample/target-dict keys of the coarse, middle and fine attention maps.
ATTENTION_TARGET_KEYS = ("att_coarse", "att_middle", "att_fine")
#: Long-side ranges (crop pixels, both ends inclusive) of the coarse, middle and fine attention maps:
#: the object-size tiers, the large one reaching past the crop.
ATTENTION_LONG_SIDE_RANGES: tuple[tuple[float, float], ...] = (
    (float(LARGE_OBJECT_MIN), float(CROP_SIZE + 1)),
    (float(SMALL_OBJECT_MAX), float(LARGE_OBJECT_MIN)),
    (0.0, float(SMALL_OBJECT_MAX)),
)


def gaussian_radius(height: int, width: int, min_overlap: float) -> float:
    """CornerNet's corner radius: the smallest of three quadratic-equation roots.

    ``height`` and ``width`` are the box size in output-map cells (rounded up). Each root bounds how
    far the two corners may move (together, one inwards and one outwards, or both outwards) while the
    moved box keeps IoU ``>= min_overlap`` with the true box. Returns a float radius in cells.
    """
    # Operation order as in the original so that int(radius) truncates identically.
    side_sum = height + width

    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (side_sum - math.sqrt(side_sum ** 2 - 4 * c1)) / 2

    b2 = 2 * side_sum
    c2 = (1 - min_overlap) * width * height
    r2 = (b2 - math.sqrt(b2 ** 2 - 16 * c2)) / 8

    a3 = 4 * min_overlap
    b3 = -2 * min_overlap * side_sum
    c3 = (min_overlap - 1) * width * height
    r3 = (b3 + math.sqrt(b3 ** 2 - 4 * a3 * c3)) / (2 * a3)
    return min(r1, r2, r3)


@lru_cache(maxsize=64)
def gaussian_kernel(radius: int) -> np.ndarray:
    """Square Gaussian peak, float64 ``[2r+1, 2r+1]``, value 1 at the centre, sigma ``(2r+1)/6``.

    Values below ``eps(float64) * max`` are set to 0 (as the original does). The returned array is
    shared between calls (cached): do not modify it.
    """
    diameter = 2 * radius + 1
    sigma = diameter / 6
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-(offsets[None, :] ** 2 + offsets[:, None] ** 2) / (2 * sigma * sigma))
    kernel[kernel < np.finfo(np.float64).eps * kernel.max()] = 0
    kernel.flags.writeable = False
    return kernel


def draw_gaussian(heatmap: np.ndarray, x: int, y: int, radius: int) -> None:
    """Draw a Gaussian peak at cell ``(x, y)`` into ``heatmap [H, W]`` in place (element-wise max).

    The kernel of :func:`gaussian_kernel` is cut at the map border.
    """
    height, width = heatmap.shape
    left, right = min(x, radius), min(width - x, radius + 1)
    top, bottom = min(y, radius), min(height - y, radius + 1)
    window = heatmap[y - top:y + bottom, x - left:x + right]
    kernel = gaussian_kernel(radius)[radius - top:radius + bottom, radius - left:radius + right]
    np.maximum(window, kernel, out=window)


def box_area_ratio(boxes: np.ndarray, reference_boxes: np.ndarray) -> np.ndarray:
    """Area of each box over the area of its reference box, ``[N]`` (both ``[N, 4]`` x1,y1,x2,y2)."""
    def areas(b: np.ndarray) -> np.ndarray:
        return (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return areas(boxes) / areas(reference_boxes)


def build_corner_targets(
    boxes: np.ndarray,
    labels: np.ndarray,
    reference_boxes: np.ndarray,
    *,
    num_classes: int,
    input_size: int,
    output_size: int,
    min_scale: int,
    gaussian_iou: float,
    max_objects: int,
) -> dict[str, np.ndarray]:
    """Corner heatmaps, offsets, tag indices and ignore-derived valid masks for one crop.

    Args:
        boxes: float32 ``[N, 4]`` final boxes in crop pixels (clipped to the crop, after flip).
        labels: int ``[N]`` **0-based** class indices (the original stores 1-based categories and
            subtracts 1 here; callers holding 1-based categories subtract 1 first).
        reference_boxes: float ``[N, 4]`` the same objects scaled to the crop's resolution but neither
            shifted nor clipped (only their areas are used): a box is positive when
            ``area(box) / area(reference) > 0.5``.
        num_classes, input_size, output_size, min_scale, gaussian_iou, max_objects: docs/reference.md §2 values.

    Returns:
        ``tl_heat, br_heat, tl_valid, br_valid``: float32 ``[C, S, S]`` (S = output_size);
        ``tl_off, br_off``: float32 ``[M, 2]`` sub-cell offsets (x, y);
        ``tl_ind, br_ind``: int64 ``[M]`` flat cell index ``y * S + x``; ``tag_mask``: bool ``[M]``.

    A box is drawn into the heatmaps and gets a tag slot when it is positive and its long side in
    whole crop pixels is ``>= min_scale``; every other box is drawn into an ignore map, and
    ``valid = (ignore == 0)`` removes its Gaussian from the focal loss. Positives beyond
    ``max_objects`` (the original would crash) are treated as ignored.
    """
    ratio = np.float32(output_size / input_size)
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    cells_f = boxes * ratio
    cells = cells_f.astype(np.int64)
    offsets = cells_f - cells.astype(np.float32)
    whole_pixels = boxes.astype(np.int64)
    long_sides = np.maximum(whole_pixels[:, 3] - whole_pixels[:, 1], whole_pixels[:, 2] - whole_pixels[:, 0])
    positive = box_area_ratio(boxes, np.asarray(reference_boxes, dtype=np.float32).reshape(-1, 4)) > 0.5
    positive &= long_sides >= min_scale
    positive &= np.cumsum(positive) <= max_objects

    shape = (num_classes, output_size, output_size)
    heats = {"tl": np.zeros(shape, np.float32), "br": np.zeros(shape, np.float32)}
    ignored = {"tl": np.zeros(shape, np.float32), "br": np.zeros(shape, np.float32)}
    for i, label in enumerate(np.asarray(labels, dtype=np.int64)):
        extent = (boxes[i, 2:] - boxes[i, :2]) * ratio
        radius = max(0, int(gaussian_radius(math.ceil(extent[1]), math.ceil(extent[0]), gaussian_iou)))
        maps = heats if positive[i] else ignored
        draw_gaussian(maps["tl"][label], int(cells[i, 0]), int(cells[i, 1]), radius)
        draw_gaussian(maps["br"][label], int(cells[i, 2]), int(cells[i, 3]), radius)

    num_positive = int(positive.sum())
    targets: dict[str, np.ndarray] = {
        "tl_heat": heats["tl"],
        "br_heat": heats["br"],
        "tl_valid": (ignored["tl"] == 0).astype(np.float32),
        "br_valid": (ignored["br"] == 0).astype(np.float32),
        "tag_mask": np.arange(max_objects) < num_positive,
    }
    for corner, columns in (("tl", slice(0, 2)), ("br", slice(2, 4))):
        off = np.zeros((max_objects, 2), np.float32)
        ind = np.zeros(max_objects, np.int64)
        off[:num_positive] = offsets[positive, columns]
        ind[:num_positive] = cells[positive, columns][:, 1] * output_size + cells[positive, columns][:, 0]
        targets[f"{corner}_off"] = off
        targets[f"{corner}_ind"] = ind
    return targets


def build_attention_targets(
    boxes: np.ndarray,
    input_size: int,
    ratios: tuple[int, ...] = ATTENTION_RATIOS,
    long_side_ranges: tuple[tuple[float, float], ...] = ATTENTION_LONG_SIDE_RANGES,
) -> list[np.ndarray]:
    """Binary attention maps (coarse, middle, fine), each float32 ``[1, s, s]`` in attention cells.

    ``boxes``: ``[N, 4]`` every final box in crop pixels (after flip), invalid and low-overlap ones
    included. A box whose long side lies in a map's inclusive range sets the cell holding its centre,
    ``(int(cy / ratio), int(cx / ratio))``, to 1 (no Gaussian).
    """
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    long_sides = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    centres = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], axis=1)
    maps = []
    for size, ratio, (low, high) in zip(attention_map_sizes(input_size, ratios), ratios, long_side_ranges):
        att = np.zeros((1, size, size), np.float32)
        in_range = (long_sides >= low) & (long_sides <= high)
        cells = (centres[in_range] / np.float32(ratio)).astype(np.int64)
        att[0, cells[:, 1], cells[:, 0]] = 1
        maps.append(att)
    return maps


def build_cornernet_targets(
    boxes: np.ndarray,
    labels: np.ndarray,
    *,
    num_classes: int,
    input_size: int,
    output_size: int,
    gaussian_iou: float,
    max_objects: int,
) -> dict[str, np.ndarray]:
    """CornerNet-Squeeze / CornerNet targets: every box is a positive (no size or overlap test, no
    ignore map), see :func:`build_corner_targets` for the frames and arrays; no ``*_valid`` masks.

    ``boxes``: float32 ``[N, 4]`` final boxes in input pixels (clipped, after flip); ``labels``:
    0-based classes ``[N]``. More than ``max_objects`` boxes keep the first ``max_objects``.
    """
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    targets = build_corner_targets(
        boxes, labels, boxes, num_classes=num_classes, input_size=input_size, output_size=output_size,
        min_scale=0, gaussian_iou=gaussian_iou, max_objects=max_objects,
    )
    del targets["tl_valid"], targets["br_valid"]
    return targets
