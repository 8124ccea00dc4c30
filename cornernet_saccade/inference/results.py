"""What the detector returns: :class:`Detections` of one image and the :class:`SaccadeTrace` of what it looked at."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


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
class SaccadeTrace:
    """What the detector looked at: every view (``crops``), the first round's attention
    probabilities ``attention_maps`` (coarse, middle, fine, each ``[views, 1, h, w]``), and the
    locations each proposing round produced (``proposals``, ``[P, 4]`` y, x, scale, score)."""

    crops: list[CropView] = field(default_factory=list)
    attention_maps: list[np.ndarray] = field(default_factory=list)
    proposals: list[np.ndarray] = field(default_factory=list)


@dataclass(frozen=True)
class Detections:
    """Detections of one image, best score first.

    ``boxes`` float32 ``[M,4]`` x1, y1, x2, y2 in input-image pixels (not clipped to the image, as
    the original); ``scores`` float32 ``[M]``; ``labels`` int64 ``[M]`` 0-based; ``class_names``
    the name of each detection's class (``None`` without names); ``trace`` how they were found.
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    class_names: list[str] | None
    trace: SaccadeTrace

    def __len__(self) -> int:
        return len(self.scores)
