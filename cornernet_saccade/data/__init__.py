"""Training data: dataset readers (COCO JSON, Pascal VOC XML, CSV) into :class:`ImageRecord` /
:class:`DetectionDataset`, dataset checks (:mod:`.check`), and training crops (:mod:`.sampler`)."""
from __future__ import annotations

from .coco import read_coco
from .csv_reader import read_csv
from .load import FORMATS, detect_format, load_dataset
from .records import DataIssue, DetectionDataset, ImageRecord
from .voc import read_voc

__all__ = [
    "FORMATS",
    "DataIssue",
    "DetectionDataset",
    "ImageRecord",
    "detect_format",
    "load_dataset",
    "read_coco",
    "read_csv",
    "read_voc",
]
