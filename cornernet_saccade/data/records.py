"""The one internal representation of a detection dataset, whatever file format it came from.

Boxes are ``x1, y1, x2, y2`` in **image pixels** as continuous coordinates (pixel ``(i, j)`` covers
``[j, j+1) x [i, i+1)``), so a COCO ``[x, y, w, h]`` becomes ``[x, y, x+w, y+h]`` exactly as the
original does (no ``-1``). Every box kept in a record lies inside ``[0, width] x [0, height]`` and
has positive width and height.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

#: ``"error"``: the data is inconsistent and something was dropped because of it (check-data exits
#: with 1); ``"warning"``: the reader repaired it without losing an object (e.g. a clipped box).
Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class DataIssue:
    """One problem found in a dataset.

    Attributes:
        path: the file the problem is in (annotation file, or image file for image problems).
        location: where in that file: ``"line 12"`` (CSV, 1-based), ``"image id 42"`` /
            ``"annotation id 7"`` (COCO, and check-data), ``"object 3"`` (VOC, 1-based); empty when
            the whole file is concerned.
        problem: human-readable description, including the offending values.
        severity: ``"error"`` or ``"warning"`` (see :data:`Severity`).
        kind: short stable category used to count problems (e.g. ``"degenerate box"``).
    """

    path: str
    location: str
    problem: str
    severity: Severity
    kind: str

    def __str__(self) -> str:
        where = f"{self.path}: {self.location}" if self.location else self.path
        return f"{where}: {self.severity}: {self.problem}"


@dataclass
class AnnotatedImage:
    """One image and its ground-truth objects.

    Attributes:
        image_id: integer id (the COCO id; a running index for VOC and CSV).
        path: image file path.
        width, height: image size in pixels, after EXIF orientation.
        boxes: ``float32 [N, 4]`` ``x1, y1, x2, y2`` in image pixels (see the module docstring).
        labels: ``int64 [N]`` 0-based class indices into ``DetectionDataset.class_names``.
    """

    image_id: int
    path: str
    width: int
    height: int
    boxes: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        if len(self.boxes) != len(self.labels):
            raise ValueError(
                f"image {self.image_id}: {len(self.boxes)} boxes but {len(self.labels)} labels"
            )


@dataclass
class DetectionDataset:
    """A list of image records plus the class names their labels index.

    Attributes:
        records: one per usable image, in the order of the annotation file.
        class_names: ``class_names[label]`` is the name of ``label``.
        source: the annotation file or folder read.
        issues: problems found while reading (skipped or repaired items).
        ignored_objects: objects left out on purpose, by reason (``"crowd"`` for COCO
            ``iscrowd`` annotations, ``"difficult"`` for VOC difficult objects).
    """

    records: list[AnnotatedImage]
    class_names: list[str]
    source: str
    issues: list[DataIssue] = field(default_factory=list)
    ignored_objects: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        """Number of images."""
        return len(self.records)
