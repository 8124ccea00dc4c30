"""Where recall is lost: for every ground-truth object, how far it got through the saccade pipeline.

Stages, each a fraction of the ground-truth objects (per COCO size and per class):

``covered``
    some view the detector looked at (a crop, the full-mode canvas, a tile: its ``region_xyxy``)
    contains the whole object at a zoom that brings its long side into the range the model was
    trained on (:data:`TRAINED_LONG_SIDE`, crop pixels);
``proposed``
    some proposed location (attention peak or reference detection, before the ``att_max_crops``
    cap) would show it that way;
``detected``
    some view's detection before the merge has its class and IoU >= :data:`MATCH_IOU`, any score;
``kept``
    such a detection survives soft-NMS and ``max_per_image``;
``found``
    such a detection scores at least ``score_threshold``: it is in the final result.

Sizes are COCO's by box area in image pixels: small < 32², medium < 96², large otherwise. The
report also says what the detector looked at per image (first views, zoomed crops, network pixels):
with ``views="auto"`` that is what the view policy chose for each image's size.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm import tqdm

from cornernet_saccade.data.records import AnnotatedImage
from cornernet_saccade.data.samples import SamplingConfig
from cornernet_saccade.errors import CornerNetSaccadeError
from cornernet_saccade.inference.detector import SaccadeDetector
from cornernet_saccade.inference.results import Detections, box_iou
from cornernet_saccade.inference.trace import CANDIDATE_BOX, CANDIDATE_LABEL
from cornernet_saccade.model.geometry import CROP_SIZE
from cornernet_saccade.tables import format_table

STAGES = ("covered", "proposed", "detected", "kept", "found")
#: Long sides (crop pixels) of the objects the training samples show: the sampler's smallest
#: reference object (its ``min_scale``) up to the crop.
TRAINED_LONG_SIDE = (float(SamplingConfig.min_scale), float(CROP_SIZE))
MATCH_IOU = 0.5
#: COCO's size tiers by area (image pixels squared).
SIZE_TIERS = (("small", 0.0, 32.0**2), ("medium", 32.0**2, 96.0**2), ("large", 96.0**2, float("inf")))
#: Test-time caps whose cost :func:`cap_costs` measures (each run again at twice its value).
CAPS = ("top_k", "num_dets", "att_max_crops", "max_per_image")


def _matched(boxes: np.ndarray, labels: np.ndarray, found: np.ndarray, found_labels: np.ndarray) -> np.ndarray:
    """Per ground-truth box: some found box of its class has IoU >= MATCH_IOU. ``[N]`` bool."""
    if len(found) == 0 or len(boxes) == 0:
        return np.zeros(len(boxes), bool)
    same_class = labels[:, None] == found_labels[None, :]
    return ((box_iou(boxes, found) >= MATCH_IOU) & same_class).any(axis=1)


def _shown(boxes: np.ndarray, squares_xyxy: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Per box: some view (its image-pixel square ``x0, y0, x1, y1``, zoom ``scale`` crop pixels per
    image pixel) holds the whole box with its long side, zoomed, in :data:`TRAINED_LONG_SIDE`. ``[N]`` bool."""
    if len(scales) == 0 or len(boxes) == 0:
        return np.zeros(len(boxes), bool)
    inside = ((boxes[:, None, 0] >= squares_xyxy[None, :, 0]) & (boxes[:, None, 2] <= squares_xyxy[None, :, 2])
              & (boxes[:, None, 1] >= squares_xyxy[None, :, 1]) & (boxes[:, None, 3] <= squares_xyxy[None, :, 3]))
    long_side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])[:, None] * scales[None, :]
    in_range = (long_side >= TRAINED_LONG_SIDE[0]) & (long_side <= TRAINED_LONG_SIDE[1])
    return (inside & in_range).any(axis=1)


def _location_squares(locations: np.ndarray) -> np.ndarray:
    """``[P,4]`` image-pixel squares ``x0, y0, x1, y1`` of the crops of ``locations`` ``[P, >=3]``
    (y, x, scale): side ``CROP_SIZE / scale`` centred on the location."""
    centres = locations[:, :2].astype(np.float64)
    half = CROP_SIZE / locations[:, 2].astype(np.float64) / 2
    return np.stack((centres[:, 1] - half, centres[:, 0] - half, centres[:, 1] + half, centres[:, 0] + half), axis=1)


def object_stages(detections: Detections, boxes: np.ndarray, labels: np.ndarray, score_threshold: float) -> np.ndarray:
    """Which stages each ground-truth object reached: ``[N, len(STAGES)]`` bool.

    ``detections``: the detector's output with a score threshold of 0 (so it holds every detection
    kept after soft-NMS and ``max_per_image``); ``boxes [N,4]`` / ``labels [N]`` the ground truth
    (image pixels, 0-based classes)."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    labels = np.asarray(labels, np.int64)
    trace = detections.trace
    views = trace.crops  # their regions: the saccade crops, the full-mode canvas, the tiles
    covered = _shown(boxes, np.array([v.region_xyxy for v in views], np.float64).reshape(-1, 4),
                     np.array([v.scale for v in views], np.float64))
    proposals = np.concatenate([p[:, :3] for p in trace.proposals]) if trace.proposals else np.zeros((0, 3))
    proposed = _shown(boxes, _location_squares(proposals), proposals[:, 2].astype(np.float64))
    candidates = trace.candidates
    detected = _matched(boxes, labels, candidates[:, CANDIDATE_BOX].astype(np.float64),
                        candidates[:, CANDIDATE_LABEL].astype(np.int64))
    kept = _matched(boxes, labels, detections.boxes.astype(np.float64), detections.labels)
    final = detections.scores >= score_threshold
    found = _matched(boxes, labels, detections.boxes[final].astype(np.float64), detections.labels[final])
    return np.stack([covered, proposed, detected, kept, found], axis=1)


@dataclass
class RecallReport:
    """Stage flags of every ground-truth object with its size tier and class; ``skipped`` images."""

    class_names: list[str]
    stages: list[np.ndarray] = field(default_factory=list)
    sizes: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    cap_costs: dict[str, float] = field(default_factory=dict)
    #: Per analysed image: first views, zoomed crops, network input pixels (:func:`looked_at`).
    views: list[tuple[int, int, int]] = field(default_factory=list)

    def add(self, stages: np.ndarray, boxes: np.ndarray, labels: np.ndarray) -> None:
        corners = np.asarray(boxes, np.float64).reshape(-1, 4)
        areas = np.prod(corners[:, 2:] - corners[:, :2], axis=1)
        self.stages += list(stages)
        self.sizes += [next(name for name, low, high in SIZE_TIERS if low <= area < high) for area in areas]
        self.labels += [int(label) for label in labels]

    def rows(self) -> list[tuple[str, int, list[float]]]:
        """``(group, objects, fraction per stage)`` for all objects, each size tier and each class."""
        flags = np.array(self.stages, bool).reshape(-1, len(STAGES))
        groups = [("all", np.ones(len(flags), bool))]
        groups += [(name, np.array(self.sizes) == name) for name, _, _ in SIZE_TIERS]
        groups += [(f"class {name}", np.array(self.labels) == index) for index, name in enumerate(self.class_names)]
        return [(name, int(mask.sum()), [float(v) for v in flags[mask].mean(axis=0)] if mask.any() else [0.0] * 5)
                for name, mask in groups]

    def views_per_image(self) -> dict[str, float]:
        """Mean first views, zoomed crops and network Mpixels per image (zeros without images)."""
        means = np.array(self.views, np.float64).reshape(-1, 3).mean(axis=0) if self.views else np.zeros(3)
        return {"first views": float(means[0]), "zoomed crops": float(means[1]),
                "network Mpixels": float(means[2]) / 1e6}

    def table(self) -> str:
        rows = [(name, str(count), *(f"{v:.3f}" for v in values)) for name, count, values in self.rows()]
        text = format_table(("objects", "count", *STAGES), rows, (False, True, *[True] * len(STAGES)))
        looked = ", ".join(f"{value:.1f} {name}" for name, value in self.views_per_image().items())
        text += f"\n\nlooked at per image: {looked}"
        if self.cap_costs:
            base = self.rows()[0][2][-1]
            costs = [(cap, f"{base:.3f}", f"{found:.3f}") for cap, found in self.cap_costs.items()]
            text += "\n\n" + format_table(("cap (x2)", "found", "found with cap x2"), costs, (False, True, True))
        return text

    def as_dict(self) -> dict[str, Any]:
        return {"stages": list(STAGES), "rows": [{"group": g, "objects": n, **dict(zip(STAGES, v))}
                                                 for g, n, v in self.rows()],
                "cap_costs": self.cap_costs, "skipped": self.skipped, "per_image": self.views_per_image()}


def analyze_records(detector: SaccadeDetector, records: Sequence[AnnotatedImage], class_names: Sequence[str],
                    progress: bool = True) -> RecallReport:
    """The stages reached by every object of ``records``; the final result is the detector's own
    ``score_threshold`` (it is run with threshold 0 to see what the threshold drops)."""
    threshold = detector.config.score_threshold
    open_detector = _with_settings(detector, score_threshold=0.0)
    report = RecallReport(list(class_names))
    for record in tqdm(records, desc="analyze", unit="img", disable=not progress, leave=False):
        try:
            detections = open_detector(record.path)
        except CornerNetSaccadeError as exc:
            report.skipped.append(str(exc))
            continue
        report.add(object_stages(detections, record.boxes, record.labels, threshold), record.boxes, record.labels)
        report.views.append(looked_at(detections))
    return report


def looked_at(detections: Detections) -> tuple[int, int, int]:
    """What the detector looked at for one image: first views (round 0: the saccade first views, the
    full-mode canvas or the tiles), zoomed crops (later rounds) and network input pixels."""
    trace = detections.trace
    first = sum(view.round == 0 for view in trace.crops)
    return first, len(trace.crops) - first, trace.network_pixels


def cap_costs(detector: SaccadeDetector, records: Sequence[AnnotatedImage], progress: bool = True) -> dict[str, float]:
    """The fraction of objects found with each cap of :data:`CAPS` doubled (one run per cap; with
    ``views="auto"`` doubling ``att_max_crops`` doubles the crop budget up to its cap)."""
    costs = {}
    for cap in CAPS:
        doubled = _with_settings(detector, **{cap: 2 * getattr(detector.config, cap)})
        report = analyze_records(doubled, records, [], progress)
        costs[cap] = report.rows()[0][2][-1]
    return costs


def _with_settings(detector: SaccadeDetector, **changes: Any) -> SaccadeDetector:
    config = dataclasses.replace(detector.config, **changes)
    return SaccadeDetector(detector.model, config, class_names=detector.class_names)
