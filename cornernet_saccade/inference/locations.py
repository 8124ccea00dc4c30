"""Where to look next: the first views, attention peaks and confident detections turned into
*locations*, merged by distance and zoom.

A location is a row ``y, x, scale, score`` (image pixels; ``scale`` = zoom, crop pixels per image
pixel). Locations are small host-side numpy arrays and keep the original's dtypes on purpose: the
initial locations are float32 (so a crop side ``int(255 / scale)`` is computed in float32 there, as
in the original) and the attention/reference ones float64. Attention cells are 16, 8 and 4 crop
pixels for the coarse, middle and fine maps.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch import Tensor

from cornernet_saccade.inference.decode import BOX, SCORE, keep_peaks
from cornernet_saccade.inference.views import tile_origins, window_side
from cornernet_saccade.model.geometry import ATTENTION_RATIOS, CROP_SIZE, LARGE_OBJECT_MIN, SMALL_OBJECT_MAX

#: First-round detections with a score above this are kept (the rest are left to the zoomed crops).
FIRST_ROUND_MIN_SCORE = 0.3


#: Detections above this score propose a reference location (zoom on the object itself).
REFERENCE_MIN_SCORE = 0.5


#: Long side (crop pixels) a reference location zooms a large, medium and small detection to.
REFERENCE_ZOOM_SIDES = (192, 64, 24)


#: A crop zoomed by more than this proposes no further locations ...
MAX_PROPOSING_SCALE = 2.0


#: ... nor does a location that would need a zoom above this.
MAX_NEXT_SCALE = 4.0


#: Distance (crop pixels at the kept location's zoom) within which ``location_nms`` merges locations.
LOCATION_NMS_DISTANCE = 16.0


#: Zoom ratios that ``location_nms`` treats as the same scale (inclusive).
SAME_SCALE_RATIOS = (0.8, 1.2)


def initial_locations(height: int, width: int, sizes: Sequence[int], canvas: int = CROP_SIZE) -> np.ndarray:
    """The first-round views ``[N, 4]`` float32 (y, x, zoom, score 1), ``size / max(H, W)`` zoom for
    each of ``sizes`` (the long side becomes ``size`` crop pixels).

    A size up to ``canvas`` gives one view at the image centre ``(H // 2, W // 2)`` (the original;
    the official sizes are 192 and 255). A larger size would not fit one ``canvas`` crop (the
    original shows only its centre), so it gives the fewest views that cover the whole resized
    image, row-major: the crop windows (side
    :func:`~cornernet_saccade.inference.views.window_side` image pixels) start at the
    :func:`~cornernet_saccade.inference.views.tile_origins` of each axis without overlap, the first at
    the image's top-left, the last at its bottom-right edge. E.g. 1000x2000 at size 1020: zoom 0.51,
    a 2 x 4 grid.
    """
    rows = []
    for size in sizes:
        scale = np.float32(size / max(height, width))
        if size <= canvas:
            rows.append([height // 2, width // 2, scale, 1.0])
            continue
        half = window_side(scale, canvas) // 2
        side = max(1, 2 * half)  # a window of 1 pixel (an image of a few pixels zoomed far) has half 0
        columns = tile_origins(width, side, 0)
        for y in tile_origins(height, side, 0):
            rows.extend([y + half, x + half, scale, 1.0] for x in columns)
    return np.array(rows, dtype=np.float32)


def attention_peaks(attentions: Sequence[Tensor], kernels: Sequence[int]) -> list[Tensor]:
    """The original ``att_nms``: keep only local maxima (``k x k`` windows) of each attention map."""
    return [keep_peaks(att, k) for att, k in zip(attentions, kernels)]


def decode_attention_locations(
    attentions: Sequence[np.ndarray],
    att_scales: Sequence[float],
    scales: np.ndarray,
    offsets: np.ndarray,
    image_hw: tuple[int, int],
    threshold: float,
    ignore_same: bool = False,
) -> np.ndarray:
    """Attention peaks -> next locations (the original ``decode_atts``).

    ``attentions``: coarse, middle, fine probabilities after peak keeping, ``[N,1,h,w]`` each, for
    views of zoom ``scales`` ``[N]`` and ``offsets`` ``[N,2]`` (y, x). A cell above ``threshold``
    maps its corner (not centre) to image pixels ``cell * ratio / scale + offset`` and proposes zoom
    ``att_scale * scale``; cells outside the image are dropped, and nothing is proposed by views
    zoomed over :data:`MAX_PROPOSING_SCALE`, for zooms over :data:`MAX_NEXT_SCALE`, or (``ignore_same``)
    by maps whose ``att_scale <= 1``. Returns float64 ``[M,4]`` y, x, scale, score, ordered by view,
    then map, then row-major cell.
    """
    height, width = image_hw
    rows = [np.zeros((0, 4))]
    for view, (scale, (offset_y, offset_x)) in enumerate(zip(scales, offsets)):
        for att, ratio, att_scale in zip(attentions, ATTENTION_RATIOS, att_scales):
            next_scale = att_scale * scale
            if (ignore_same and att_scale <= 1) or scale > MAX_PROPOSING_SCALE or next_scale > MAX_NEXT_SCALE:
                continue
            cell_ys, cell_xs = np.nonzero(att[view, 0] > threshold)
            scores = att[view, 0, cell_ys, cell_xs]
            ys = cell_ys * ratio / scale + offset_y
            xs = cell_xs * ratio / scale + offset_x
            inside = (ys >= 0) & (ys < height) & (xs >= 0) & (xs < width)
            count = int(inside.sum())
            rows.append(np.stack((ys[inside], xs[inside], np.full(count, next_scale), scores[inside]), axis=1))
    return np.concatenate(rows).astype(np.float64)


def reference_locations(detections: np.ndarray) -> np.ndarray:
    """Zoom on confident detections (the original ``get_ref_locs``).

    ``detections`` ``[N, 8]`` detection rows (the columns of :mod:`~cornernet_saccade.inference.decode`)
    in image pixels. Each one scoring above :data:`REFERENCE_MIN_SCORE` gives ``[centre y, centre x,
    zoom, 1]`` with zoom making its long side one of :data:`REFERENCE_ZOOM_SIDES` by its size tier
    (192 above 96 pixels, 64 above 32, else 24 crop pixels); computed in the detections' dtype. ``[M,4]``.
    """
    boxes = detections[detections[:, SCORE] > REFERENCE_MIN_SCORE][:, BOX]  # x1, y1, x2, y2
    centre_x = (boxes[:, 0] + boxes[:, 2]) / 2
    centre_y = (boxes[:, 1] + boxes[:, 3]) / 2
    longest = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    target = np.where(longest > LARGE_OBJECT_MIN, REFERENCE_ZOOM_SIDES[0],
                      np.where(longest > SMALL_OBJECT_MAX, REFERENCE_ZOOM_SIDES[1], REFERENCE_ZOOM_SIDES[2]))
    target = target.astype(longest.dtype)
    with np.errstate(divide="ignore"):
        scales = target / longest
    return np.stack((centre_y, centre_x, scales, np.ones_like(scales)), axis=1)


def location_nms(locations: np.ndarray, distance: float = LOCATION_NMS_DISTANCE) -> np.ndarray:
    """Greedy merge of nearby locations at similar zoom (the original ``location_nms``).

    Highest score first, in the order of numpy's default (unstable) ``argsort`` reversed, exactly
    as the original (its tie order among equal scores decides which location survives). A location
    is dropped when ``min(|dy|, |dx|) <= distance / kept_scale`` and
    ``0.8 <= kept_scale / scale <= 1.2`` for a kept one. ``[N,4]`` -> ``[M,4]``.
    """
    ordered = locations[np.argsort(locations[:, 3])[::-1]]
    ys, xs, scales = ordered[:, 0], ordered[:, 1], ordered[:, 2]
    low, high = SAME_SCALE_RATIOS
    alive = np.ones(len(ordered), dtype=bool)
    kept = []
    for i in range(len(ordered)):  # one row of the distance and ratio tables at a time: memory O(N)
        if alive[i]:
            kept.append(i)
            near = np.minimum(np.abs(ys[i] - ys), np.abs(xs[i] - xs))
            with np.errstate(divide="ignore", invalid="ignore"):
                ratios = scales[i] / scales
            alive &= (near > distance / scales[i]) | (ratios > high) | (ratios < low)
    return ordered[kept].reshape(-1, 4)
