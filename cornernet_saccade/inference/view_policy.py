"""The view policy: which first views and how many zoomed crops an image gets (``SaccadeConfig.views``).

``views="fixed"`` takes ``init_sizes`` and ``att_max_crops`` as given (the original). ``views="auto"``
derives both from the image size (:func:`view_plan`):

* **first views**: those of ``init_sizes`` (the whole-image views, for large objects, and any grid
  they hold), plus one grid of 255 px views covering the image (an ``init_sizes`` entry above 255,
  see :func:`~cornernet_saccade.inference.locations.initial_locations`) at the zoom
  :func:`grid_zoom`, which makes an object of long side ``min_object_size`` (image pixels)
  ``MIN_TRAINED_LONG_SIDE / fine`` crop pixels long in the first view (one fine attention cell, 4
  crop pixels, with the official ``fine`` zoom 4) and ``MIN_TRAINED_LONG_SIDE`` (16, the smallest
  long side the training sampler shows) in the crop the fine attention map proposes there. No grid
  when ``init_sizes`` already zoom that much (a small image): auto never looks at less than fixed.
* **crop budget**: every location the attention maps and the confident detections propose is
  zoomed into, up to ``att_max_crops`` per :data:`AUTO_CROP_AREA` image pixels (at least
  ``att_max_crops``, at most :data:`MAX_AUTO_CROPS`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from cornernet_saccade.inference.settings import SaccadeConfig
from cornernet_saccade.model.geometry import MIN_TRAINED_LONG_SIDE

#: Highest zoom (crop pixels per image pixel) of the auto grid: native resolution. First views never
#: enlarge the image; with the official fine zoom 4 its fine proposals reach the largest zoom a
#: proposal may have (``MAX_NEXT_SCALE``, :mod:`~cornernet_saccade.inference.locations`).
MAX_GRID_ZOOM = 1.0

#: Image area (image pixels) per ``att_max_crops`` zoomed crops in the auto budget: 2048 x 2048, so
#: the crops look at no more pixels than about half the image's.
AUTO_CROP_AREA = 2048 * 2048

#: The most zoomed crops the auto budget gives any image (2000 crops of 255 px: 130 Mpixels of
#: network input).
MAX_AUTO_CROPS = 2000


@dataclass(frozen=True)
class ViewPlan:
    """What the saccade rounds of one image look at: the first views' ``init_sizes`` (long side of
    the image in crop pixels, :func:`~cornernet_saccade.inference.locations.initial_locations`) and
    ``max_crops``, the most zoomed crops over all rounds."""

    init_sizes: tuple[int, ...]
    max_crops: int


def grid_zoom(min_object_size: float, fine_zoom: float) -> float:
    """Zoom of the auto grid of first views: ``MIN_TRAINED_LONG_SIDE / (fine * min_object_size)``
    with ``fine = max(1, fine_zoom)`` (the fine attention map's zoom multiplier; a map that does not
    zoom in leaves the grid to show the object at its trained size), at most :data:`MAX_GRID_ZOOM`.
    ``min_object_size``: long side, image pixels. ``16, 4 -> 0.25``; ``10, 4 -> 0.4``; ``2, 4 -> 1.0``."""
    return min(MAX_GRID_ZOOM, MIN_TRAINED_LONG_SIDE / (max(1.0, fine_zoom) * min_object_size))


def crop_budget(height: int, width: int, max_crops: int) -> int:
    """Auto crop budget of an image of ``height x width`` image pixels: ``max_crops`` per
    :data:`AUTO_CROP_AREA` pixels rounded up, at least ``max_crops`` and at most
    :data:`MAX_AUTO_CROPS` (``max_crops`` itself when that is larger). ``4096 x 3072, 30 -> 90``."""
    by_area = math.ceil(max_crops * height * width / AUTO_CROP_AREA)
    return max(max_crops, min(MAX_AUTO_CROPS, by_area))


def view_plan(height: int, width: int, config: SaccadeConfig) -> ViewPlan:
    """The first views and crop budget of a ``height x width`` image (image pixels) under ``config``.

    ``views="fixed"``: ``init_sizes`` and ``att_max_crops``. ``views="auto"``: ``init_sizes``, then
    the grid size ``ceil(grid_zoom * max(height, width))`` when it exceeds them all; budget
    :func:`crop_budget`.
    E.g. official settings and ``min_object_size`` 16 (zoom 0.25): a 640x480 image keeps
    ``(192, 255)``, a 4096x3072 image gets ``(192, 255, 1024)``.
    """
    if config.views == "fixed":
        return ViewPlan(config.init_sizes, config.att_max_crops)
    zoom = grid_zoom(config.min_object_size, config.att_scales[0][-1])
    grid = math.ceil(zoom * max(height, width))
    sizes = (*config.init_sizes, grid) if grid > max(config.init_sizes) else config.init_sizes
    return ViewPlan(sizes, crop_budget(height, width, config.att_max_crops))
