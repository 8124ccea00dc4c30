"""COCO JSON reader (``instances_*.json``) and writer (:func:`coco_document`, :func:`write_json`).

* Classes: the categories sorted by id, mapped to contiguous 0-based labels (COCO ids 1..90 ->
  labels 0..79, as the original's ids -> 1..80 minus one); names from ``categories[].name``. With
  ``class_names`` given, a category's label is the index of its name there instead.
* Boxes: ``bbox = [x, y, w, h]`` -> ``x1, y1, x2, y2 = x, y, x + w, y + h`` (no ``-1``, as the
  original).
* ``iscrowd: 1`` annotations are left out and counted in ``ignored_objects["crowd"]`` (the original's
  ``getAnnIds`` keeps them as ordinary boxes).
* Image size: ``images[].width/height``; the image header when missing.
* Image paths: ``image_root / file_name``; ``image_root`` defaults to the JSON file's folder.

Fatal (:class:`~cornernet_saccade.errors.AnnotationError`): not JSON, not an object with lists
``images``, ``annotations``, ``categories``, an entry that is not an object or lacks a required key
(images: ``id``, ``file_name``; annotations: ``image_id``, ``category_id``, ``bbox``; categories:
``id``, ``name``), a malformed or repeated category id. Everything else is a per-item issue (see
:mod:`cornernet_saccade.data.builder`), plus ``duplicate id`` (image or annotation id seen before:
the later entry is skipped), ``invalid image`` (image id not an integer or ``file_name`` not a
non-empty string: image skipped) and ``unknown image id`` (annotation of an image not listed or
skipped). Issue locations are ``image id N`` / ``annotation id N``, or ``images[i]`` /
``annotations[i]`` (0-based) for entries without an integer id.
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeGuard

from cornernet_saccade.data.builder import DatasetBuilder, PendingImage, parse_number
from cornernet_saccade.data.records import AnnotatedImage, DetectionDataset
from cornernet_saccade.errors import AnnotationError
from cornernet_saccade.inputs import read_input_bytes

_IMAGE_KEYS = ("id", "file_name")
_ANNOTATION_KEYS = ("image_id", "category_id", "bbox")
_CATEGORY_KEYS = ("id", "name")
_SINGULAR = {"images": "image", "annotations": "annotation", "categories": "category"}


def read_coco(
    path: str | Path,
    *,
    image_root: str | Path | None = None,
    class_names: Sequence[str] | None = None,
) -> DetectionDataset:
    """Read a COCO detection JSON file into a :class:`DetectionDataset` (see the module docstring).

    Raises:
        AnnotationError: the file is missing or structurally malformed (message names the file and
            the offending entry).
    """
    path = Path(path)
    document = _load_json(path)
    categories = _categories(document, path)
    names_by_id = {category["id"]: category["name"] for category in categories}
    if class_names is None:
        ordered_ids = sorted(names_by_id)
        label_of = {category_id: label for label, category_id in enumerate(ordered_ids)}
        names = [names_by_id[category_id] for category_id in ordered_ids]
    else:
        names = list(class_names)
        label_by_name = {name: label for label, name in enumerate(names)}
        label_of = {
            category_id: label_by_name[name]
            for category_id, name in names_by_id.items()
            if name in label_by_name
        }
    builder = DatasetBuilder(path)
    root = Path(image_root) if image_root is not None else path.parent
    images = _read_images(document["images"], builder, path, root)
    _read_annotations(document["annotations"], images, builder, path)
    return builder.build(label_of, names, "category id")


def _load_json(path: Path) -> dict[str, Any]:
    """The parsed top-level object, checked to hold the three lists."""
    data = read_input_bytes(path, AnnotationError, "annotation file")
    try:
        document = json.loads(data)
    except json.JSONDecodeError as exc:
        raise AnnotationError(
            f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from exc
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise AnnotationError(f"{path}: not valid JSON ({exc})") from None
    except (UnicodeDecodeError, RecursionError, IsADirectoryError, PermissionError) as exc:
        raise AnnotationError(f"{path}: cannot read as JSON ({type(exc).__name__}: {exc})") from exc
    if not isinstance(document, dict):
        raise AnnotationError(f"{path}: top level must be a JSON object, found {type(document).__name__}")
    for key in ("images", "annotations", "categories"):
        if key not in document:
            raise AnnotationError(f"{path}: missing required key {key!r}")
        if not isinstance(document[key], list):
            raise AnnotationError(f"{path}: {key!r} must be a list, found {type(document[key]).__name__}")
    return document


def _entry(entries: list[Any], index: int, section: str, required: Sequence[str], path: Path) -> dict:
    """``entries[index]``, checked to be an object holding the ``required`` keys."""
    entry = entries[index]
    if not isinstance(entry, dict):
        raise AnnotationError(f"{path}: {section}[{index}] is not an object")
    missing = [key for key in required if key not in entry]
    if missing:
        raise AnnotationError(
            f"{path}: {_entry_location(section, index, entry)} lacks required key(s) {', '.join(missing)}"
        )
    return entry


def _entry_location(section: str, index: int, entry: dict) -> str:
    """``"image id 7"`` / ``"annotation id 7"`` when the entry has an id, else ``"images[3]"``."""
    entry_id = entry.get("id")
    if _is_id(entry_id):
        return f"{_SINGULAR[section]} id {entry_id}"
    return f"{section}[{index}]"


def _is_id(value: object) -> TypeGuard[int]:
    """Whether a JSON value is an integer id (booleans are not)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _categories(document: dict[str, Any], path: Path) -> list[dict]:
    """The category entries, checked: integer unique ids, string names."""
    entries = document["categories"]
    categories = [_entry(entries, index, "categories", _CATEGORY_KEYS, path) for index in range(len(entries))]
    seen: set[int] = set()
    for index, category in enumerate(categories):
        if not _is_id(category["id"]):
            raise AnnotationError(f"{path}: categories[{index}]: id {category['id']!r} is not an integer")
        if not isinstance(category["name"], str):
            raise AnnotationError(f"{path}: categories[{index}]: name {category['name']!r} is not a string")
        if category["id"] in seen:
            raise AnnotationError(f"{path}: categories[{index}]: category id {category['id']} repeated")
        seen.add(category["id"])
    return categories


def _read_images(
    entries: list[Any], builder: DatasetBuilder, path: Path, root: Path
) -> dict[int, PendingImage]:
    """Register every usable image; returns them by COCO id."""
    images: dict[int, PendingImage] = {}
    seen_ids: set[int] = set()
    for index in range(len(entries)):
        entry = _entry(entries, index, "images", _IMAGE_KEYS, path)
        location = _entry_location("images", index, entry)
        image_id, file_name = entry["id"], entry["file_name"]
        if not _is_id(image_id):
            problem = f"image id {image_id!r} is not an integer; image skipped"
            builder.report(path, location, "invalid image", problem)
            continue
        if image_id in seen_ids:
            problem = f"image id {image_id} appears again; entry skipped"
            builder.report(path, location, "duplicate id", problem)
            continue
        seen_ids.add(image_id)
        if not isinstance(file_name, str) or not file_name.strip():
            problem = f"file_name {file_name!r} is not a file name; image skipped"
            builder.report(path, location, "invalid image", problem)
            continue
        has_size = "width" in entry or "height" in entry
        annotated_size = (entry.get("width"), entry.get("height")) if has_size else None
        image = builder.add_image(
            image_id, root / file_name, annotated_size, annotation_path=path, location=location
        )
        if image is not None:
            images[image_id] = image
    return images


def _read_annotations(
    entries: list[Any], images: dict[int, PendingImage], builder: DatasetBuilder, path: Path
) -> None:
    """Add every non-crowd annotation's box to its image."""
    seen_ids: set[int] = set()
    for index in range(len(entries)):
        entry = _entry(entries, index, "annotations", _ANNOTATION_KEYS, path)
        location = _entry_location("annotations", index, entry)
        annotation_id = entry.get("id")
        if _is_id(annotation_id):
            if annotation_id in seen_ids:
                builder.report(
                    path, location, "duplicate id", f"annotation id {annotation_id} appears again; skipped"
                )
                continue
            seen_ids.add(annotation_id)
        if entry.get("iscrowd", 0) == 1:
            builder.ignore("crowd")
            continue
        image = images.get(entry["image_id"]) if _is_id(entry["image_id"]) else None
        if image is None:
            builder.report(
                path,
                location,
                "unknown image id",
                f"image id {entry['image_id']!r} is not a usable image of this file; annotation skipped",
            )
            continue
        if not _is_id(entry["category_id"]):
            builder.report(
                path, location, "unknown label", f"category id {entry['category_id']!r} is not an integer"
            )
            continue
        builder.add_box(
            image, entry["category_id"], _xywh_to_xyxy(entry["bbox"]), annotation_path=path, location=location
        )


def ground_truth_document(path: str | Path) -> dict[str, Any]:
    """The file's document as the scores need it (pycocotools): the images with an integer id and
    the annotations of those images whose category id is an integer and whose ``bbox`` is four
    finite numbers (as floats; crowd regions included), with ``iscrowd`` (0) and ``area`` (box area)
    filled in where missing or malformed and ids renumbered 1..N. What the reader skips with a
    problem report is left out here too, instead of failing inside pycocotools."""
    path = Path(path)
    document = _load_json(path)
    images = [entry for entry in document["images"] if isinstance(entry, dict) and _is_id(entry.get("id"))]
    image_ids = {entry["id"] for entry in images}
    annotations: list[dict[str, Any]] = []
    for entry in document["annotations"]:
        if not isinstance(entry, dict) or not _is_id(entry.get("image_id")) or entry["image_id"] not in image_ids:
            continue
        box = _finite_box(entry.get("bbox"))
        if not _is_id(entry.get("category_id")) or box is None:
            continue
        area = parse_number(entry.get("area"))
        annotations.append({**entry, "id": len(annotations) + 1, "bbox": box,
                            "iscrowd": 1 if entry.get("iscrowd", 0) == 1 else 0,
                            "area": area if area is not None and math.isfinite(area) else box[2] * box[3]})
    return {**document, "images": images, "annotations": annotations}


def _finite_box(bbox: object) -> list[float] | None:
    """COCO ``[x, y, w, h]`` as four finite floats, else ``None``."""
    values = [parse_number(value) for value in bbox] if isinstance(bbox, list) and len(bbox) == 4 else []
    numbers = [value for value in values if value is not None and math.isfinite(value)]
    return numbers if len(numbers) == 4 else None


def _xywh_to_xyxy(bbox: object) -> tuple[float | None, ...]:
    """COCO ``[x, y, w, h]`` -> ``(x, y, x + w, y + h)`` image pixels; ``None`` for unparsable values."""
    if not isinstance(bbox, list) or len(bbox) != 4:
        return (None, None, None, None)
    x, y, w, h = (parse_number(value) for value in bbox)
    x2 = x + w if x is not None and w is not None else None
    y2 = y + h if y is not None and h is not None else None
    return (x, y, x2, y2)


# ---------------------------------------------------------------- writing


def coco_document(records: list[AnnotatedImage], class_names: Sequence[str],
                  description: str) -> dict[str, Any]:
    """A COCO detection document of ``records``.

    Each record's ``path`` becomes ``file_name`` (so it should be relative to the JSON file's
    folder) and its ``image_id`` the image id; boxes are x1,y1,x2,y2 image pixels and labels
    0-based. Category ids are ``label + 1``; ``area`` is the box area; annotation ids run from 1.
    """
    annotations: list[dict[str, Any]] = []
    for record in records:
        for (x1, y1, x2, y2), label in zip(record.boxes.tolist(), record.labels.tolist()):
            width, height = x2 - x1, y2 - y1
            annotations.append({
                "id": len(annotations) + 1, "image_id": record.image_id,
                "category_id": int(label) + 1, "bbox": [x1, y1, width, height],
                "area": width * height, "iscrowd": 0,
            })
    return {
        "info": {"description": description},
        "images": [{"id": r.image_id, "file_name": r.path, "width": r.width, "height": r.height}
                   for r in records],
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": name, "supercategory": "object"}
                       for i, name in enumerate(class_names)],
    }


def write_json(path: Path, document: dict[str, Any]) -> None:
    """Write ``document`` as compact JSON (the same document always gives the same bytes)."""
    path.write_text(json.dumps(document, separators=(",", ":")) + "\n", encoding="utf-8")
