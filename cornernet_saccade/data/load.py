"""``load_dataset``: pick the reader for an annotation file or folder."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from cornernet_saccade.data.coco import read_coco
from cornernet_saccade.data.csv_reader import read_csv
from cornernet_saccade.data.records import DetectionDataset
from cornernet_saccade.data.voc import read_voc
from cornernet_saccade.errors import AnnotationError

DatasetFormat = Literal["coco", "voc", "csv"]
FORMATS: tuple[DatasetFormat, ...] = ("coco", "voc", "csv")


def detect_format(path: str | Path) -> DatasetFormat:
    """The annotation format of ``path``: a folder or a ``.txt`` split file is VOC, ``.json`` is
    COCO, ``.csv`` is CSV.

    Raises:
        AnnotationError: ``path`` does not exist or its type cannot be told.
    """
    path = Path(path)
    if path.is_dir():
        return "voc"
    if not path.is_file():
        raise AnnotationError(f"{path}: annotation file or folder not found")
    suffix = path.suffix.lower()
    by_suffix: dict[str, DatasetFormat] = {".json": "coco", ".csv": "csv", ".txt": "voc"}
    if suffix not in by_suffix:
        raise AnnotationError(
            f"{path}: cannot tell the annotation format from the extension {suffix!r}; "
            f"pass the format ({', '.join(FORMATS)})"
        )
    return by_suffix[suffix]


def load_dataset(
    path: str | Path,
    *,
    image_root: str | Path | None = None,
    class_names: Sequence[str] | None = None,
    format: DatasetFormat | None = None,
) -> DetectionDataset:
    """Read a COCO JSON file, a Pascal VOC folder / split file or a CSV file.

    Args:
        path: the annotation file or folder.
        image_root: folder the image file names are relative to (default: per format, see
            :mod:`.coco`, :mod:`.voc`, :mod:`.csv_reader`).
        class_names: the class list, fixing the label order (default: from the annotations).
        format: ``"coco"``, ``"voc"`` or ``"csv"``; detected by :func:`detect_format` if ``None``.

    Raises:
        AnnotationError: unknown format, missing path, or a structurally malformed file.
    """
    chosen = format if format is not None else detect_format(path)
    readers = {"coco": read_coco, "voc": read_voc, "csv": read_csv}
    if chosen not in readers:
        raise AnnotationError(
            f"{path}: unknown annotation format {chosen!r} (expected one of {', '.join(FORMATS)})"
        )
    return readers[chosen](path, image_root=image_root, class_names=class_names)
