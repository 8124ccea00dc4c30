"""Training samples: a scaled, cropped, flipped and colour-jittered crop and its targets (docs/reference.md §2-3).

Follows the original ``core/sample/cornernet_saccade.py`` step by step, with a ``numpy.random.Generator``
passed in instead of numpy's global RNG (so the random draws, but not their distributions, differ
from the original's).

Frames: boxes enter in **image pixels** (``x1, y1, x2, y2``), are scaled to **scaled-image pixels**,
then shifted to **crop pixels** of the ``input_size`` x ``input_size`` canvas; targets are in
output-map and attention cells (see :mod:`cornernet_saccade.data.targets`). Images are ``[H, W, 3]``
float BGR in ``[0, 1]`` until normalisation, after which the sample image is ``[3, S, S]``.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from cornernet_saccade.bounds import check_bounds
from cornernet_saccade.data.records import DetectionDataset
from cornernet_saccade.data.targets import (
    ATTENTION_TARGET_KEYS,
    build_attention_targets,
    build_corner_targets,
    build_cornernet_targets,
)
from cornernet_saccade.errors import ConfigError
from cornernet_saccade.images import read_image
from cornernet_saccade.inference.preprocess import COCO_MEAN_BGR, COCO_STD_BGR
from cornernet_saccade.model.geometry import (
    CROP_SIZE,
    LARGE_OBJECT_MIN,
    MIN_TRAINED_LONG_SIDE,
    SMALL_OBJECT_MAX,
    output_size,
)

#: PCA of COCO pixel colours (BGR order), from the original ``db/coco.py``.
COCO_EIG_VAL = (0.2141788, 0.01817699, 0.00341571)
COCO_EIG_VEC = (
    (-0.58752847, -0.69563484, 0.41340352),
    (-0.5832747, 0.00994535, -0.81221408),
    (-0.56089297, 0.71832671, 0.41158938),
)
#: ``cv2.COLOR_BGR2GRAY`` weights, BGR order.
_GRAY_WEIGHTS_BGR = np.array([0.114, 0.587, 0.299], np.float32)

#: Reference-object scale tiers ``(above, low, high)``: the first tier whose ``above`` the long side
#: ``m`` (image pixels) exceeds gives the scale ``integers(low, high) / m`` (high exclusive), so the
#: long side becomes an integer in ``[low, high)``: within the object's size tier (large, medium,
#: small), at least 16 pixels. The last tier takes every non-empty box.
REFERENCE_LONG_SIDE_TIERS = (
    (float(LARGE_OBJECT_MIN), LARGE_OBJECT_MIN, CROP_SIZE),
    (float(SMALL_OBJECT_MAX), SMALL_OBJECT_MAX, LARGE_OBJECT_MIN + 1),
    (0.0, MIN_TRAINED_LONG_SIDE, SMALL_OBJECT_MAX + 1),
)


#: Bounds of the size-like sample settings (:func:`~cornernet_saccade.bounds.check_bounds`; raised on
#: purpose with ``CORNERNET_SACCADE_LIMITS``): crop pixels, heatmap cells and classes, tag slots,
#: scales.
SAMPLING_BOUNDS: dict[str, float] = {"input_size": 2047, "output_size": 512, "num_classes": 10_000,
                                     "max_objects": 4096, "empty_image_scales": 16, "rand_scales": 16,
                                     "border": 2047}


@dataclass(frozen=True)
class SamplingConfig:
    """Training-sample settings; the defaults are the official CornerNet-Saccade values.

    Attributes:
        input_size: side of the square training crop (crop pixels).
        output_size: side of the corner heatmaps (output-map cells).
        num_classes: heatmap channels.
        max_objects: tag slots per image.
        min_scale: boxes whose long side (whole crop pixels) is below this are ignored, not positives.
        gaussian_iou: ``min_overlap`` of the corner-radius formula.
        centre_crop_prob: probability that the crop is centred on the reference object (with jitter)
            rather than placed uniformly at random around it.
        centre_jitter: largest jitter of the centred crop, pixels each way (the original draws
            ``randint(0, 15)``, i.e. 0..14).
        flip_prob: probability of a horizontal flip.
        vflip_prob: probability of a vertical flip (0, as the original; aerial images look the same
            upside down).
        rotate90_prob: probability of turning the crop by 90, 180 or 270 degrees (one of the three at
            random; 0, as the original).
        colour_jitter: brightness, contrast and saturation factors are ``1 + U(-v, v)``.
        lighting_std: standard deviation of the PCA lighting coefficients.
        eig_val, eig_vec: PCA of the dataset's colours (BGR), eigenvectors as columns of ``eig_vec``.
        mean, std: per-channel normalisation, BGR.
        empty_image_scales: scales drawn from for images without boxes.
    """

    input_size: int = CROP_SIZE
    output_size: int = output_size(CROP_SIZE)
    num_classes: int = 80
    max_objects: int = 128
    min_scale: int = MIN_TRAINED_LONG_SIDE
    gaussian_iou: float = 0.5
    centre_crop_prob: float = 0.5
    centre_jitter: int = 14
    flip_prob: float = 0.5
    vflip_prob: float = 0.0
    rotate90_prob: float = 0.0
    colour_jitter: float = 0.4
    lighting_std: float = 0.1
    eig_val: tuple[float, float, float] = COCO_EIG_VAL
    eig_vec: tuple[tuple[float, float, float], ...] = COCO_EIG_VEC
    mean: tuple[float, float, float] = COCO_MEAN_BGR
    std: tuple[float, float, float] = COCO_STD_BGR
    empty_image_scales: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1)

    def __post_init__(self) -> None:
        check_bounds(vars(self), SAMPLING_BOUNDS)
        for name in ("centre_crop_prob", "flip_prob", "vflip_prob", "rotate90_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("input_size", "output_size", "num_classes", "max_objects"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.centre_jitter < 0 or self.colour_jitter < 0 or self.lighting_std < 0:
            raise ValueError("centre_jitter, colour_jitter and lighting_std must be >= 0")
        if not self.empty_image_scales or min(self.empty_image_scales) <= 0:
            raise ValueError(f"empty_image_scales must be positive scales, got {self.empty_image_scales}")
        if len(self.eig_vec) != 3 or any(len(row) != 3 for row in self.eig_vec):
            raise ValueError("eig_vec must be a 3x3 matrix")

    def without_augmentation(self) -> SamplingConfig:
        """Same settings with a crop centred exactly on the reference object, no flip, no colour change
        (the scale is still drawn: it is what the saccade model learns from)."""
        return dataclasses.replace(self, centre_crop_prob=1.0, centre_jitter=0, flip_prob=0.0, vflip_prob=0.0,
                                   rotate90_prob=0.0, colour_jitter=0.0, lighting_std=0.0)


def clip_boxes(boxes: np.ndarray, y0: float, y1: float, x0: float, x1: float) -> tuple[np.ndarray, np.ndarray]:
    """Clip ``boxes [N, 4]`` to the pixels ``[x0, x1 - 1] x [y0, y1 - 1]``; drop empty ones.

    Returns the kept clipped boxes (float32, same frame) and their indices into ``boxes``.
    """
    clipped = np.asarray(boxes, np.float32).reshape(-1, 4).copy()
    clipped[:, 0::2] = np.clip(clipped[:, 0::2], x0, x1 - 1)
    clipped[:, 1::2] = np.clip(clipped[:, 1::2], y0, y1 - 1)
    keep = np.nonzero((clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1]))[0]
    return clipped[keep], keep


def choose_scale(boxes: np.ndarray, rng: np.random.Generator, cfg: SamplingConfig) -> tuple[np.floating, int | None]:
    """Pick a random reference box and the scale that gives its long side a random integer length.

    ``boxes``: ``[N, 4]`` float32 image pixels, non-empty boxes. Returns ``(scale, reference index)``
    with a float32 scale, as in the original (Python int / float32); without boxes, a scale from
    ``cfg.empty_image_scales`` and ``None``.
    """
    if len(boxes) == 0:
        return np.float64(rng.choice(cfg.empty_image_scales)), None
    index = int(rng.integers(len(boxes)))
    long_side = np.float32(max(boxes[index, 2] - boxes[index, 0], boxes[index, 3] - boxes[index, 1]))
    low, high = next((low, high) for above, low, high in REFERENCE_LONG_SIDE_TIERS if long_side > above)
    return np.float32(rng.integers(low, high)) / long_side, index


def scaled_size(height: int, width: int, scale: np.floating) -> tuple[int, int]:
    """``(int(H * scale), int(W * scale))``, at least 1 pixel each: the size of the scaled image."""
    return max(1, int(height * scale)), max(1, int(width * scale))


def _bilinear_taps(start: int, stop: int, in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source pixels and weights of output pixels ``start..stop-1`` along one axis of a bilinear
    resize from ``in_size`` to ``out_size`` with half-pixel centres (``align_corners=False``, no
    antialiasing; what ``cv2.resize(INTER_LINEAR)`` and ``F.interpolate(mode="bilinear")`` do).

    Returns ``(low, high, weight_high)``, each ``[stop - start]``.
    """
    ratio = np.float32(in_size) / np.float32(out_size)  # float32 coordinates, as torch computes them
    centres = np.arange(start, stop, dtype=np.float32) + np.float32(0.5)
    source = np.maximum(ratio * centres - np.float32(0.5), 0)
    low = np.minimum(source.astype(np.int64), in_size - 1)
    high = np.minimum(low + 1, in_size - 1)
    return low, high, source - low.astype(np.float32)


def resize_window(image: np.ndarray, out_size: tuple[int, int], window: tuple[int, int, int, int]) -> np.ndarray:
    """The window ``(y0, y1, x0, x1)`` of ``image [H, W, 3]`` bilinearly resized to ``out_size``
    ``(height, width)``, ``[y1 - y0, x1 - x0, 3]`` float32, computed without resizing the rest (so
    a tiny reference object scaled up 16 times does not allocate the whole enlarged image)."""
    y0, y1, x0, x1 = window
    low, high, weight = _bilinear_taps(y0, y1, image.shape[0], out_size[0])
    rows = image[low] * (1 - weight)[:, None, None] + image[high] * weight[:, None, None]
    low, high, weight = _bilinear_taps(x0, x1, image.shape[1], out_size[1])
    return rows[:, low] * (1 - weight)[None, :, None] + rows[:, high] * weight[None, :, None]


def choose_crop_centre(
    side: int,
    reference: tuple[float, float] | None,
    centred: bool,
    rng: np.random.Generator,
    cfg: SamplingConfig,
) -> int:
    """Crop centre along one axis of the scaled image (pixels of that axis).

    ``side``: image length along the axis; ``reference``: the reference box's ``(low, high)`` edges on
    that axis, or ``None``. Images not longer than the crop are centred; ``centred`` crops centre on
    the reference box, jittered by up to ``cfg.centre_jitter`` each way; otherwise the crop is placed
    uniformly so that the reference box (when there is one) stays inside (or, for a box longer than
    the crop, anywhere between the two placements that cut it least).
    """
    crop = cfg.input_size
    if side <= crop:
        return side // 2
    if reference is None or not centred:
        low = max(reference[1] - crop, 0) if reference is not None else 0
        high = min(side - crop, reference[0]) if reference is not None else side - crop
        # a reference box longer than the crop (only with crops smaller than the size tiers assume)
        # cannot fit: the crop then lands anywhere between the two limits
        low, high = min(low, high), max(low, high)
        return int(rng.integers(int(low), int(high) + 1)) + crop // 2
    middle = (reference[0] + reference[1]) // 2
    low = max(middle - rng.integers(0, cfg.centre_jitter + 1), 0)
    high = min(middle + rng.integers(0, cfg.centre_jitter + 1), side - 1)
    return int(rng.integers(int(low), int(high) + 1))


def crop_window(
    image_size: tuple[int, int], centre_y: int, centre_x: int, size: int
) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int], tuple[int, int]]:
    """Where the crop around ``(centre_y, centre_x)`` of an image of ``image_size (H, W)`` lands.

    As in the original, the window spans ``centre - size // 2`` to ``centre + size // 2`` (exclusive),
    so at most ``size - 1`` pixels are copied and the canvas's last row and column stay zero.

    Returns the window ``(y0, y1, x0, x1)`` in image pixels, the region ``(top, bottom, left, right)``
    of the ``size x size`` canvas it fills (crop pixels), and the offset ``(dy, dx)`` with
    ``crop = image - offset``.
    """
    half = size // 2
    height, width = image_size
    x0, x1 = max(0, centre_x - half), min(centre_x + half, width)
    y0, y1 = max(0, centre_y - half), min(centre_y + half, height)
    top, left = half - (centre_y - y0), half - (centre_x - x0)
    return (y0, y1, x0, x1), (top, top + y1 - y0, left, left + x1 - x0), (centre_y - half, centre_x - half)


def flip_and_turn(crop: np.ndarray, boxes: np.ndarray, rng: np.random.Generator,
                  cfg: SamplingConfig) -> tuple[np.ndarray, np.ndarray]:
    """The square ``crop [S, S, 3]`` and its ``boxes [N, 4]`` (crop pixels, changed in place) flipped
    horizontally (``x' = S - x - 1``) with ``cfg.flip_prob``, then flipped vertically with
    ``cfg.vflip_prob`` and turned counter-clockwise by ``k`` x 90 degrees (``k`` uniform in 1-3) with
    ``cfg.rotate90_prob``. A turn by 90 degrees maps ``(x, y)`` to ``(y, S - 1 - x)``. The last two draw
    from ``rng`` only when their probability is above 0, so the original's draws are unchanged."""
    side = crop.shape[0]
    if rng.random() < cfg.flip_prob:
        crop = np.ascontiguousarray(crop[:, ::-1])
        boxes[:, [0, 2]] = side - boxes[:, [2, 0]] - 1
    if cfg.vflip_prob and rng.random() < cfg.vflip_prob:
        crop = np.ascontiguousarray(crop[::-1])
        boxes[:, [1, 3]] = side - boxes[:, [3, 1]] - 1
    if cfg.rotate90_prob and rng.random() < cfg.rotate90_prob:
        turns = int(rng.integers(1, 4))
        crop = np.ascontiguousarray(np.rot90(crop, turns))
        for _ in range(turns):
            boxes[:] = np.stack([boxes[:, 1], side - 1 - boxes[:, 2], boxes[:, 3], side - 1 - boxes[:, 0]], axis=1)
    return crop, boxes


def jitter_colours(image: np.ndarray, rng: np.random.Generator, cfg: SamplingConfig) -> None:
    """Brightness, contrast and saturation jitter in random order, then PCA lighting; in place.

    ``image``: ``[H, W, 3]`` float32 BGR in ``[0, 1]``. The grey image used by contrast and saturation
    is computed once, before any change (as in the original).
    """
    grey = image @ _GRAY_WEIGHTS_BGR
    grey_mean = grey.mean()
    for step in rng.permutation(3):
        alpha = np.float32(1.0 + rng.uniform(-cfg.colour_jitter, cfg.colour_jitter))
        image *= alpha
        if step == 1:  # contrast: blend with the mean grey level
            image += (1 - alpha) * grey_mean
        elif step == 2:  # saturation: blend with the grey image
            image += (1 - alpha) * grey[:, :, None]
    coefficients = rng.normal(0.0, cfg.lighting_std, size=3)
    image += (np.asarray(cfg.eig_vec) @ (np.asarray(cfg.eig_val) * coefficients)).astype(np.float32)


def build_training_sample(
    image_bgr01: np.ndarray,
    boxes: np.ndarray,
    labels: np.ndarray,
    rng: np.random.Generator,
    cfg: SamplingConfig | None = None,
) -> dict[str, np.ndarray]:
    """One training sample: crop image and every target (docs/reference.md §2 steps 1-7, §3).

    Args:
        image_bgr01: ``[H, W, 3]`` float BGR in ``[0, 1]``, image pixels.
        boxes: ``[N, 4]`` ``x1, y1, x2, y2`` image pixels.
        labels: ``[N]`` 0-based class indices.
        rng: source of every random choice (same state, same sample).
        cfg: sampling settings (official defaults when ``None``).

    Returns:
        ``image`` float32 ``[3, S, S]`` (normalised BGR crop, S = input size), ``tl_heat, br_heat,
        tl_valid, br_valid`` float32 ``[C, S', S']`` (S' = output size), ``tag_mask`` bool ``[M]``,
        ``tl_ind, br_ind`` int64 ``[M]``, ``tl_off, br_off`` float32 ``[M, 2]``, ``att_coarse,
        att_middle, att_fine`` float32 ``[1, s, s]`` (see :mod:`cornernet_saccade.data.targets`).
    """
    cfg = cfg or SamplingConfig()
    image = np.asarray(image_bgr01, np.float32)
    labels = np.asarray(labels, np.int64).reshape(-1)
    height, width = image.shape[:2]

    # 1-3: clip, choose the scale from a reference object, place the crop, resize what it shows.
    boxes_in_image, kept = clip_boxes(boxes, 0, height, 0, width)
    scale, ref = choose_scale(boxes_in_image, rng, cfg)
    reference_boxes = np.asarray(boxes, np.float32).reshape(-1, 4)[kept] * scale.astype(np.float32)
    scaled_boxes = boxes_in_image * scale.astype(np.float32)
    size = scaled_size(height, width, scale)
    centred = rng.random() < cfg.centre_crop_prob
    ref_ys, ref_xs = (None, None) if ref is None else (tuple(scaled_boxes[ref, 1::2]), tuple(scaled_boxes[ref, 0::2]))
    centre_y = choose_crop_centre(size[0], ref_ys, centred, rng, cfg)
    centre_x = choose_crop_centre(size[1], ref_xs, centred, rng, cfg)
    window, region, (dy, dx) = crop_window(size, centre_y, centre_x, cfg.input_size)
    crop: np.ndarray = np.zeros((cfg.input_size, cfg.input_size, 3), np.float32)
    crop[region[0]:region[1], region[2]:region[3]] = resize_window(image, size, window)
    crop_boxes, in_crop = clip_boxes(scaled_boxes - np.array([dx, dy, dx, dy], np.float32), *region)
    kept = kept[in_crop]

    # 4: horizontal flip, x' = S - x - 1 (and the optional vertical flip and quarter turns).
    crop, crop_boxes = flip_and_turn(crop, crop_boxes, rng, cfg)

    # 5-6: attention targets, colour jitter and lighting, normalisation.
    attention = build_attention_targets(crop_boxes, cfg.input_size)
    jitter_colours(crop, rng, cfg)
    crop = (crop - np.asarray(cfg.mean, np.float32)) / np.asarray(cfg.std, np.float32)

    # 7: corner targets.
    sample = build_corner_targets(
        crop_boxes, labels[kept], reference_boxes[in_crop],
        num_classes=cfg.num_classes, input_size=cfg.input_size, output_size=cfg.output_size,
        min_scale=cfg.min_scale, gaussian_iou=cfg.gaussian_iou, max_objects=cfg.max_objects,
    )
    sample["image"] = np.ascontiguousarray(crop.transpose(2, 0, 1))
    sample.update(zip(ATTENTION_TARGET_KEYS, attention))
    return sample


#: The original CornerNet sampler's crop scales, ``np.arange(0.6, 1.4, 0.1)`` (8 values, 1.4 excluded).
CORNERNET_RAND_SCALES = tuple(float(v) for v in np.arange(0.6, 1.4, 0.1))


@dataclass(frozen=True)
class CornerNetSamplingConfig(SamplingConfig):
    """CornerNet-Squeeze / CornerNet sample settings; defaults are the official Squeeze values
    (CornerNet: ``output_size`` 128). ``centre_crop_prob``, ``centre_jitter``, ``min_scale`` and
    ``empty_image_scales`` are unused.

    Attributes (besides :class:`SamplingConfig`'s):
        rand_scales: crop-side factors; the crop is ``int(input_size * scale)`` image pixels square.
        border: crop centres stay this far (halved until it fits) from the image edges.
    """

    input_size: int = 511
    output_size: int = 64
    gaussian_iou: float = 0.3
    rand_scales: tuple[float, ...] = CORNERNET_RAND_SCALES
    border: int = 128

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.rand_scales or min(self.rand_scales) <= 0:
            raise ValueError(f"rand_scales must be positive scales, got {self.rand_scales}")
        if self.border < 1:
            raise ValueError(f"border must be >= 1, got {self.border}")


def crop_border(border: int, side: int) -> int:
    """``border`` halved until ``side - b > b`` (the original ``_get_border``), pixels."""
    divisor = 1
    while side - border // divisor <= border // divisor:
        divisor *= 2
    return border // divisor


def build_cornernet_sample(
    image_bgr01: np.ndarray,
    boxes: np.ndarray,
    labels: np.ndarray,
    rng: np.random.Generator,
    cfg: CornerNetSamplingConfig | None = None,
) -> dict[str, np.ndarray]:
    """One CornerNet-Squeeze / CornerNet training sample (the original ``core/sample/cornernet.py``).

    A square crop of ``int(S * scale)`` image pixels (``scale`` from ``cfg.rand_scales``, S the input
    size), centred at a random point at least the border from the image edges and zero padded,
    resized to S x S, boxes clipped to it (empty ones dropped), flipped with ``cfg.flip_prob``,
    colour jittered and normalised; targets for every remaining box.

    Args, frames: as :func:`build_training_sample`. Returns ``image`` float32 ``[3, S, S]``,
    ``tl_heat, br_heat`` float32 ``[C, S', S']``, ``tag_mask`` bool ``[M]``, ``tl_ind, br_ind``
    int64 ``[M]``, ``tl_off, br_off`` float32 ``[M, 2]``.
    """
    cfg = cfg or CornerNetSamplingConfig()
    image = np.asarray(image_bgr01, np.float32)
    labels = np.asarray(labels, np.int64).reshape(-1)
    height, width = image.shape[:2]
    side = cfg.input_size

    scale = float(rng.choice(cfg.rand_scales))
    crop_side = max(1, int(side * scale))
    centre_x = int(rng.integers(crop_border(cfg.border, width), width - crop_border(cfg.border, width)))
    centre_y = int(rng.integers(crop_border(cfg.border, height), height - crop_border(cfg.border, height)))
    window, region, (dy, dx) = crop_window((height, width), centre_y, centre_x, crop_side)
    canvas = np.zeros((crop_side, crop_side, 3), np.float32)
    canvas[region[0]:region[1], region[2]:region[3]] = image[window[0]:window[1], window[2]:window[3]]
    crop = resize_window(canvas, (side, side), (0, side, 0, side))
    crop_boxes = (np.asarray(boxes, np.float32).reshape(-1, 4) - np.array([dx, dy, dx, dy], np.float32))
    crop_boxes = crop_boxes * np.float32(side / crop_side)
    crop_boxes, kept = clip_boxes(crop_boxes, 0, side, 0, side)

    crop, crop_boxes = flip_and_turn(crop, crop_boxes, rng, cfg)
    jitter_colours(crop, rng, cfg)
    crop = (crop - np.asarray(cfg.mean, np.float32)) / np.asarray(cfg.std, np.float32)
    sample = build_cornernet_targets(
        crop_boxes, labels[kept], num_classes=cfg.num_classes, input_size=side,
        output_size=cfg.output_size, gaussian_iou=cfg.gaussian_iou, max_objects=cfg.max_objects,
    )
    sample["image"] = np.ascontiguousarray(crop.transpose(2, 0, 1))
    return sample


class TrainingSampleDataset(torch.utils.data.Dataset):
    """Training samples of a :class:`DetectionDataset`, reproducible per ``(seed, epoch, index)``:
    CornerNet-Saccade samples, or CornerNet ones when ``cfg`` is a :class:`CornerNetSamplingConfig`.

    Each item draws from its own ``numpy.random.default_rng([seed, epoch, index])``, so DataLoader
    workers are independent and a run is reproducible whatever the number of workers. Call
    :meth:`set_epoch` before iterating an epoch (workers copy the dataset when an iterator starts,
    so use non-persistent workers). A bad image raises
    :class:`~cornernet_saccade.errors.ImageError` (from :func:`cornernet_saccade.images.read_image`),
    naming the file, so that the training loop can skip it.
    """

    def __init__(self, dataset: DetectionDataset, cfg: SamplingConfig | None = None, seed: int = 0) -> None:
        self.dataset = dataset
        self.cfg = cfg or SamplingConfig()
        self.seed = seed
        self.epoch = 0
        if len(dataset.class_names) != self.cfg.num_classes:
            raise ConfigError(
                f"{dataset.source}: the dataset has {len(dataset.class_names)} classes but the sampling "
                f"config has num_classes={self.cfg.num_classes}"
            )

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random draws the following items use."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        record = self.dataset.records[index]
        image_bgr01 = read_image(record.path)[:, :, ::-1].astype(np.float32) / 255
        rng = np.random.default_rng([self.seed, self.epoch, index])
        if isinstance(self.cfg, CornerNetSamplingConfig):
            return build_cornernet_sample(image_bgr01, record.boxes, record.labels, rng, self.cfg)
        return build_training_sample(image_bgr01, record.boxes, record.labels, rng, self.cfg)


def collate(samples: Sequence[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
    """Stack samples into tensors batched along dim 0 (``[B, ...]``, dtypes kept)."""
    return {key: torch.from_numpy(np.stack([sample[key] for sample in samples])) for key in samples[0]}
