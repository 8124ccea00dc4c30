"""What a detector looked at: :class:`DetectionTrace` (its views, attention, proposals and
candidates before the merge), kept with each image's detections."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from torch import Tensor

#: What the first round's views are in each mode of the saccade detector.
VIEW_KINDS = {"saccade": "initial views", "full": "whole image", "tiled": "tiles"}
#: The columns of :attr:`DetectionTrace.candidates`: the box (x1, y1, x2, y2), score, 0-based label.
CANDIDATE_BOX, CANDIDATE_SCORE, CANDIDATE_LABEL = slice(0, 4), 4, 5
#: The views of the CornerNet tester: the whole image padded to the network's canvas, per test scale.
PADDED_VIEWS = "padded views"


@dataclass(frozen=True)
class CropView:
    """A view the detector looked at: ``round`` (0 = the downsized initial views), its location
    ``center_yx`` / ``scale``, and ``region_xyxy``, the image-pixel square the canvas covers (may
    reach outside the image)."""

    round: int
    center_yx: tuple[float, float]
    scale: float
    region_xyxy: tuple[int, int, int, int]


@dataclass
class DetectionTrace:
    """What the detector looked at: every view (``crops``), the first round's attention
    probabilities ``attention_maps`` (coarse, middle, fine, each ``[views, 1, h, w]``), the
    locations each proposing round produced (``proposals``, ``[P, 4]`` y, x, scale, score) and
    every view's detections before the merge (``candidates``, float32 ``[M, 6]`` x1, y1, x2, y2
    image pixels, score, label: :data:`CANDIDATE_BOX`, :data:`CANDIDATE_SCORE`, :data:`CANDIDATE_LABEL`).
    ``view_kind``: what the first round's views are, as the picture titles them (:data:`VIEW_KINDS`;
    :data:`PADDED_VIEWS`, the CornerNet tester's whole-image padded canvases, one per test scale,
    are shown instead of attention maps).
    ``network_pixels``: the pixels of every network input the views made (``N*H*W`` of each
    ``[N,3,H,W]`` batch: padding and flipped copies included), see :meth:`count_input`."""

    crops: list[CropView] = field(default_factory=list)
    attention_maps: list[np.ndarray] = field(default_factory=list)
    proposals: list[np.ndarray] = field(default_factory=list)
    candidates: np.ndarray = field(default_factory=lambda: np.zeros((0, 6), np.float32))
    view_kind: str = VIEW_KINDS["saccade"]
    network_pixels: int = 0

    def count_input(self, batch: Tensor) -> None:
        """Add a network input batch ``[N,3,H,W]`` to :attr:`network_pixels`."""
        self.network_pixels += batch.shape[0] * batch.shape[-2] * batch.shape[-1]
