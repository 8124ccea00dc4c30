"""Training data: dataset readers (COCO JSON, Pascal VOC XML, CSV) into :class:`AnnotatedImage` /
:class:`DetectionDataset`, dataset checks (:mod:`.check`), and training crops (:mod:`.sampler`)."""
from __future__ import annotations

from cornernet_saccade.data.coco import read_coco
from cornernet_saccade.data.csv_reader import read_csv
from cornernet_saccade.data.load import FORMATS, detect_format, load_dataset
from cornernet_saccade.data.records import AnnotatedImage, DataIssue, DetectionDataset
from cornernet_saccade.data.voc import read_voc

__all__ = [
    "FORMATS",
    "DataIssue",
    "DetectionDataset",
    "AnnotatedImage",
    "detect_format",
    "load_dataset",
    "read_coco",
    "read_csv",
    "read_voc",
]
