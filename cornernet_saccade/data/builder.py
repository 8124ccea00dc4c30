"""What the three dataset readers share: size lookup, box checks and the final label mapping.

A reader walks its annotation file, registers each image with :meth:`DatasetBuilder.add_image` and
each object with :meth:`DatasetBuilder.add_box` (boxes already converted to ``x1, y1, x2, y2`` image
pixels), then calls :meth:`DatasetBuilder.build` with the class order. Problems with single items
become :class:`~cornernet_saccade.data.records.DataIssue` entries; the item is skipped or repaired:

=====================  ========  ===============================================================
kind                   severity  what happens
=====================  ========  ===============================================================
``invalid box``        error     coordinates missing, not numbers, non-finite, or x2 < x1 / y2 < y1
``box outside image``  error     box does not overlap the image at all: skipped
``degenerate box``     warning   zero width or height: skipped (the original drops these too)
``box clipped``        warning   box reaches outside the image: clipped to it
``unknown label``      error     label / category not among the classes: skipped
``unreadable image``   error     no usable size in the annotation and the image header is
                                 unreadable: image skipped
``invalid size``       warning   annotated width/height not an integer in [1, 2**24]: header used
=====================  ========  ===============================================================
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cornernet_saccade.data.records import AnnotatedImage, DataIssue, DetectionDataset, Severity
from cornernet_saccade.errors import ImageError
from cornernet_saccade.images import image_size


@dataclass
class PendingObject:
    """An object whose box passed the checks, waiting for its label (known once all classes are)."""

    key: Hashable
    box: tuple[float, float, float, float]
    annotation_path: str
    location: str


@dataclass
class PendingImage:
    """An image registered by a reader, with its checked objects."""

    image_id: int
    path: str
    width: int
    height: int
    objects: list[PendingObject] = field(default_factory=list)


def parse_number(value: object) -> float | None:
    """``value`` as a float if it is a JSON number or a numeric string, else ``None``.

    Booleans are not numbers here; ``nan``/``inf`` parse (and are rejected later as non-finite).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        return float(value)
    except (ValueError, OverflowError):
        return None


#: Largest accepted image side: float32 box coordinates are exact integers up to here.
MAX_IMAGE_SIDE = 1 << 24


def parse_size(value: object) -> int | None:
    """``value`` as an image side in pixels (``640``, ``640.0``, ``"640"``): an integer in
    ``[1, MAX_IMAGE_SIDE]``, else ``None``."""
    number = parse_number(value)
    if number is None or not 1 <= number <= MAX_IMAGE_SIDE or number != int(number):
        return None
    return int(number)


class DatasetBuilder:
    """Collects images, objects and issues for one annotation source (see the module docstring)."""

    def __init__(self, source: str | Path) -> None:
        self.source = str(source)
        self.issues: list[DataIssue] = []
        self.ignored_objects: Counter[str] = Counter()
        self.images: list[PendingImage] = []

    def report(
        self, path: str | Path, location: str, kind: str, problem: str, severity: Severity = "error"
    ) -> None:
        """Record one issue."""
        self.issues.append(DataIssue(str(path), location, problem, severity, kind))

    def ignore(self, reason: str) -> None:
        """Count one object left out on purpose (e.g. ``"crowd"``)."""
        self.ignored_objects[reason] += 1

    def add_image(
        self,
        image_id: int,
        image_path: str | Path,
        annotated_size: tuple[object, object] | None,
        *,
        annotation_path: str | Path,
        location: str,
    ) -> PendingImage | None:
        """Register an image; ``None`` (and an issue) when its size cannot be known.

        Args:
            annotated_size: ``(width, height)`` as written in the annotation (any type), or
                ``None`` when the annotation has none; the image header is read when it is absent
                or not a pair of positive integers.
        """
        size = self._image_size(image_path, annotated_size, annotation_path, location)
        if size is None:
            return None
        image = PendingImage(image_id, str(image_path), size[0], size[1])
        self.images.append(image)
        return image

    def add_box(
        self,
        image: PendingImage,
        key: Hashable,
        box: Sequence[float | None],
        *,
        annotation_path: str | Path,
        location: str,
    ) -> None:
        """Check one box ``x1, y1, x2, y2`` (image pixels; ``None`` = unparsable coordinate) and
        keep it, clipped to the image, unless it is unusable (see the module docstring)."""
        where = (annotation_path, location)
        if any(value is None or not math.isfinite(value) for value in box):
            self.report(*where, "invalid box", f"box coordinates are not finite numbers: {list(box)}")
            return
        x1, y1, x2, y2 = (float(value) for value in box)  # type: ignore[arg-type]
        if x2 < x1 or y2 < y1:
            self.report(*where, "invalid box", f"box has negative width or height: {_fmt(box)}")
            return
        if x2 == x1 or y2 == y1:
            self.report(*where, "degenerate box", f"box has zero width or height: {_fmt(box)}", "warning")
            return
        width, height = image.width, image.height
        if x1 >= width or y1 >= height or x2 <= 0 or y2 <= 0:
            self.report(
                *where, "box outside image", f"box {_fmt(box)} lies outside the {width}x{height} image"
            )
            return
        clipped = (max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height)))
        if clipped != (x1, y1, x2, y2):
            self.report(
                *where,
                "box clipped",
                f"box {_fmt(box)} reaches outside the {width}x{height} image; clipped to {_fmt(clipped)}",
                "warning",
            )
        image.objects.append(PendingObject(key, clipped, str(annotation_path), location))

    def build(
        self, label_of: Mapping[Hashable, int], class_names: list[str], key_name: str
    ) -> DetectionDataset:
        """The dataset, with each object's key mapped through ``label_of``.

        Objects whose key is not in ``label_of`` are dropped with an ``unknown label`` issue that
        calls the key ``key_name`` (e.g. ``"category id"``).
        """
        records = [self._record(image, label_of, key_name) for image in self.images]
        return DetectionDataset(
            records, list(class_names), self.source, self.issues, dict(self.ignored_objects)
        )

    def _record(
        self, image: PendingImage, label_of: Mapping[Hashable, int], key_name: str
    ) -> AnnotatedImage:
        boxes, labels = [], []
        for obj in image.objects:
            label = label_of.get(obj.key)
            if label is None:
                self.report(
                    obj.annotation_path, obj.location, "unknown label", f"unknown {key_name} {obj.key!r}"
                )
                continue
            boxes.append(obj.box)
            labels.append(label)
        return AnnotatedImage(
            image.image_id,
            image.path,
            image.width,
            image.height,
            np.array(boxes, dtype=np.float32).reshape(-1, 4),
            np.array(labels, dtype=np.int64),
        )

    def _image_size(
        self,
        image_path: str | Path,
        annotated_size: tuple[object, object] | None,
        annotation_path: str | Path,
        location: str,
    ) -> tuple[int, int] | None:
        """``(width, height)`` from the annotation if valid, else from the image header."""
        if annotated_size is not None:
            width, height = (parse_size(value) for value in annotated_size)
            if width is not None and height is not None:
                return width, height
            self.report(
                annotation_path,
                location,
                "invalid size",
                f"image size {annotated_size[0]!r}x{annotated_size[1]!r} is not a pair of integers in "
                f"[1, {MAX_IMAGE_SIDE}]; reading it from the image file",
                "warning",
            )
        try:
            return image_size(image_path)
        except ImageError as exc:
            self.report(annotation_path, location, "unreadable image", f"image skipped: {exc}")
            return None


def _fmt(box: Sequence[float | None]) -> str:
    """A box as ``[x1, y1, x2, y2]`` with compact numbers."""
    return "[" + ", ".join(f"{value:g}" if value is not None else "?" for value in box) + "]"
