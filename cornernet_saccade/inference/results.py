"""What a detector returns: :class:`Detections` of one image, with the
:class:`~cornernet_saccade.inference.trace.DetectionTrace` of what it looked at."""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, overload

import numpy as np

from cornernet_saccade.inference.trace import DetectionTrace
from cornernet_saccade.inference.visualize import render_panel

#: Score a detection needs to be drawn by :meth:`Detections.draw` / :meth:`Detections.save` unless
#: told otherwise (the ``detect`` command's default threshold: the API keeps every box for COCO
#: evaluation, and 100 labels would hide the image).
DRAW_SCORE_THRESHOLD = 0.3
#: Detections :meth:`Detections.__repr__` names.
REPR_DETECTIONS = 5


@dataclass(frozen=True, repr=False)
class Detections:
    """Detections of one image, best score first.

    ``boxes`` float32 ``[M,4]`` x1, y1, x2, y2 in input-image pixels (clipped to the image unless
    ``SaccadeConfig.clip_boxes`` is off, which gives the original's unclipped boxes); ``scores``
    float32 ``[M]``; ``labels`` int64 ``[M]`` 0-based; ``class_names``
    the name of each detection's class (``None`` without names); ``trace`` how they were found.

    ``len(detections)`` is ``M``; ``detections[i]`` is detection ``i`` as a dict (see
    :meth:`to_dicts`), iterating gives those dicts; ``detections[2:5]``, a boolean mask or an index
    array give :class:`Detections` (see :meth:`select`). ``repr`` names the count and the best few.
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    class_names: list[str] | None
    trace: DetectionTrace

    def __len__(self) -> int:
        return len(self.scores)

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, index: slice | np.ndarray | Sequence[int]) -> Detections: ...

    def __getitem__(self, index: Any) -> dict[str, Any] | Detections:
        if isinstance(index, (int, np.integer)):
            if not -len(self) <= index < len(self):
                raise IndexError(f"detection {index} of {len(self)}")
            return self._entry(int(index) % len(self))
        if isinstance(index, slice):
            return self.select(index)
        picked = np.asarray(index)
        return self.select(picked if picked.size else np.zeros(0, np.int64))

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (self._entry(i) for i in range(len(self)))

    def __repr__(self) -> str:
        best = ", ".join(f"{self._name(i)} {self.scores[i]:.2f}" for i in range(min(len(self), REPR_DETECTIONS)))
        more = f", ... ({len(self) - REPR_DETECTIONS} more)" if len(self) > REPR_DETECTIONS else ""
        return (f"Detections({len(self)} boxes{': ' if best else ''}{best}{more}; "
                f"{len(self.trace.crops)} views looked at)")

    def _name(self, index: int) -> str:
        return self.class_names[index] if self.class_names is not None else f"class {self.labels[index]}"

    def _entry(self, index: int) -> dict[str, Any]:
        """Detection ``index`` as a :meth:`to_dicts` entry."""
        return {"box": [float(v) for v in self.boxes[index]], "score": float(self.scores[index]),
                "label": int(self.labels[index]),
                "class_name": self.class_names[index] if self.class_names is not None else None}

    def select(self, keep: np.ndarray | slice) -> Detections:
        """The detections ``keep`` picks (a boolean mask, indices or a slice), same trace."""
        names = self.class_names
        if names is not None:
            names = [names[i] for i in np.arange(len(self))[keep].tolist()]
        return Detections(self.boxes[keep], self.scores[keep], self.labels[keep], names, self.trace)

    def filter(self, classes: Sequence[int | str] | None = None, max_detections: int | None = None) -> Detections:
        """Only the classes in ``classes`` (0-based labels or class names, mixed as wished; all when
        None), then at most the ``max_detections`` best. A name without class names is a ValueError."""
        if classes is None:
            kept = self
        else:
            names = {c for c in classes if isinstance(c, str)}
            if names and self.class_names is None:
                raise ValueError(f"classes {sorted(names)} given by name, but these detections have no class "
                                 f"names: give 0-based labels")
            wanted = np.isin(self.labels, [c for c in classes if not isinstance(c, str)])
            if names:
                wanted |= np.isin(np.asarray(self.class_names, dtype=object), list(names))
            kept = self.select(wanted)
        return kept if max_detections is None else kept.select(slice(0, max_detections))

    def to_dicts(self) -> list[dict[str, Any]]:
        """One dict per detection: ``box`` (x1, y1, x2, y2 image pixels), ``score``, ``label`` and
        ``class_name`` (None without names)."""
        return list(self)

    def to_coco(self, image_id: int, category_ids: Sequence[int] | None = None) -> list[dict[str, Any]]:
        """COCO result entries (:func:`coco_results`); ``category_ids`` per label, default ``label + 1``."""
        ids = category_ids if category_ids is not None else range(1, int(self.labels.max(initial=-1)) + 2)
        return coco_results(image_id, self, list(ids))

    def draw(self, image: Any, score_threshold: float = DRAW_SCORE_THRESHOLD) -> Any:
        """The annotated picture (a PIL image) of ``image`` (path, array or PIL image): the detections
        scoring at least ``score_threshold``, attention maps and crops, as ``detect`` writes it."""
        return render_panel(image, self, score_threshold=score_threshold)

    def save(self, path: str, image: Any, score_threshold: float = DRAW_SCORE_THRESHOLD) -> None:
        """Write :meth:`draw`'s picture to ``path`` (format from the suffix)."""
        self.draw(image, score_threshold).save(path)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU ``[N,M]`` of boxes ``a`` ``[N,4]`` and ``b`` ``[M,4]`` (x1, y1, x2, y2; continuous areas)."""
    a, b = a.astype(np.float64)[:, None], b.astype(np.float64)[None]
    width = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    height = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = width * height
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def coco_results(image_id: int, detections: Detections, category_ids: Sequence[int]) -> list[dict[str, Any]]:
    """One image's detections as COCO result entries (bbox ``[x, y, w, h]`` and score rounded to 2
    decimals, as the original)."""
    boxes = detections.boxes.astype(np.float64)
    sizes = boxes[:, 2:] - boxes[:, :2]
    return [
        {"image_id": image_id, "category_id": int(category_ids[label]),
         "bbox": [round(float(v), 2) for v in (x1, y1, w, h)], "score": round(float(score), 2)}
        for (x1, y1, _, _), (w, h), score, label in zip(boxes, sizes, detections.scores, detections.labels)
    ]
