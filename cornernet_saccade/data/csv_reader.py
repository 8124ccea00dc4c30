"""CSV reader: one object per row, ``image_path,xmin,ymin,xmax,ymax,label``.

* ``xmin..ymax`` are taken as ``x1, y1, x2, y2`` in image pixels (continuous, no ``-1``).
* ``label`` is a class name. Classes: ``class_names`` if given, else every label of a complete
  row, sorted (also from rows skipped for a bad box or image, so the labels stay stable).
* A row whose five box fields are all empty lists an image without objects.
* Relative image paths are resolved against ``image_root``, by default the CSV file's folder.
* An optional header row is recognised as a first row whose four coordinate fields are all
  non-empty and not numbers. Blank lines are skipped; a UTF-8 byte-order mark is allowed.
* Images keep the order of their first row; image ids are 0-based in that order. Sizes come from
  the image headers (read once per image; the pixels are not decoded).

Fatal (:class:`~cornernet_saccade.errors.AnnotationError`, naming the file and line): the file
cannot be read as UTF-8 CSV, or a row does not have exactly six fields. Per-item issues (location
``line N``) are those of :mod:`cornernet_saccade.data.builder`, plus ``incomplete row`` (empty image
path, or some but not all box fields empty: the row is skipped).
"""
from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from pathlib import Path

from cornernet_saccade.data.builder import DatasetBuilder, PendingImage, parse_number
from cornernet_saccade.data.records import DetectionDataset
from cornernet_saccade.errors import AnnotationError
from cornernet_saccade.inputs import read_input_text

_FIELDS = ("image_path", "xmin", "ymin", "xmax", "ymax", "label")


def read_csv(
    path: str | Path,
    *,
    image_root: str | Path | None = None,
    class_names: Sequence[str] | None = None,
) -> DetectionDataset:
    """Read a detection CSV file into a :class:`DetectionDataset` (see the module docstring).

    Raises:
        AnnotationError: the file is missing, not UTF-8 CSV, or has a row of the wrong length.
    """
    path = Path(path)
    root = Path(image_root) if image_root is not None else path.parent
    builder = DatasetBuilder(path)
    images: dict[str, PendingImage | None] = {}  # None: image registered but unusable
    names_seen: set[str] = set()
    for line, row in _rows(path):
        location = f"line {line}"
        image_field, box_fields, label = row[0].strip(), row[1:5], row[5].strip()
        if not image_field:
            builder.report(path, location, "incomplete row", "empty image path; row skipped")
            continue
        if image_field not in images:
            images[image_field] = builder.add_image(
                len(images), root / image_field, None, annotation_path=path, location=location
            )
        image = images[image_field]
        filled = [bool(value.strip()) for value in (*box_fields, label)]
        if all(filled):
            names_seen.add(label)
        if image is None or not any(filled):
            continue
        if not all(filled):
            builder.report(
                path,
                location,
                "incomplete row",
                "some of xmin, ymin, xmax, ymax, label are empty; row skipped",
            )
            continue
        box = tuple(parse_number(value.strip()) for value in box_fields)
        builder.add_box(image, label, box, annotation_path=path, location=location)
    names = list(class_names) if class_names is not None else sorted(names_seen)
    return builder.build({name: label for label, name in enumerate(names)}, names, "label")


def _rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """``(line number, six fields)`` for each data row (blank lines and a header row skipped)."""
    line = 0
    try:
        with io.StringIO(read_input_text(path, AnnotationError, "annotation file"), newline="") as handle:
            reader = csv.reader(handle, strict=True)
            first = True
            for row in reader:
                line = reader.line_num
                if not any(field.strip() for field in row):
                    continue
                if len(row) != len(_FIELDS):
                    raise AnnotationError(
                        f"{path}: line {line}: expected {len(_FIELDS)} fields "
                        f"({','.join(_FIELDS)}), found {len(row)}"
                    )
                if first and _is_header(row):
                    first = False
                    continue
                first = False
                yield line, row
    except FileNotFoundError as exc:
        raise AnnotationError(f"{path}: annotation file not found") from exc
    except (csv.Error, UnicodeDecodeError, IsADirectoryError, PermissionError) as exc:
        raise AnnotationError(f"{path}: near line {line + 1}: cannot read as UTF-8 CSV ({exc})") from exc


def _is_header(row: list[str]) -> bool:
    """A header row: its four coordinate fields are non-empty and not numbers."""
    return all(value.strip() and parse_number(value.strip()) is None for value in row[1:5])
