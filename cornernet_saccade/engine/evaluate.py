"""COCO evaluation: run a detector over an annotated set and score it with pycocotools.

The set is a COCO JSON file, scored as it is, or any other format :func:`~cornernet_saccade.data.load.load_dataset`
reads (VOC, CSV), converted to COCO in memory with the detector's classes as its categories (objects
of other classes are reported and left out; VOC ``difficult`` objects are left out, so a detection
of one counts as a false positive). Classes become the categories by
:func:`~cornernet_saccade.inference.labels.category_ids`. Results are written in the COCO
format of the original: ``bbox = [x1, y1, x2 - x1, y2 - y1]`` and ``score``, both rounded to 2
decimals. pycocotools' console output is captured; :meth:`EvaluationResult.table` prints a summary.
"""
from __future__ import annotations

import contextlib
import io
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from cornernet_saccade.backends.distributed import DistContext
from cornernet_saccade.data.coco import coco_document, ground_truth_document
from cornernet_saccade.data.load import DatasetFormat, detect_format, load_dataset
from cornernet_saccade.data.records import AnnotatedImage, DetectionDataset
from cornernet_saccade.errors import CornerNetSaccadeError, OutputError
from cornernet_saccade.inference.detector import DetectorBase
from cornernet_saccade.inference.labels import category_ids
from cornernet_saccade.inference.results import box_iou, coco_results
from cornernet_saccade.outputs import check_new_output, make_folder, write_text

#: The reported ``COCOeval.stats`` by name and index: AP (IoU 0.50:0.95), AP50, AP75, AP small /
#: medium / large, and AR100 (recall with up to 100 detections per image, IoU 0.50:0.95). With
#: another ``max_dets`` every one of them counts up to ``max_dets`` detections per image, AR100
#: included (its name stays; the printed table calls it AR<max_dets>).
COCO_STATS = {"AP": 0, "AP50": 1, "AP75": 2, "APs": 3, "APm": 4, "APl": 5, "AR100": 8}
COCO_METRICS = tuple(COCO_STATS)
#: COCO's ``maxDets``: the most detections per image (the best-scoring) that AP and AR count.
COCO_MAX_DETS = 100
#: DeepForest's box precision / recall (its ``evaluate``): the least IoU of a match, and its default
#: score threshold of the predictions (``score_thresh``).
MATCH_IOU = 0.4
MATCH_MIN_SCORE = 0.1


@dataclass
class EvaluationResult:
    """Scores (``metrics``: :data:`COCO_METRICS`, -1 where COCO has no ground truth for one;
    ``box_precision`` / ``box_recall``: DeepForest's measure, :func:`box_precision_recall`) and run
    statistics: images evaluated, images ``skipped`` (error messages), detections, mean seconds and
    network-input pixels per image, and the results file when one was written."""

    metrics: dict[str, float]
    images: int
    detections: int
    seconds_per_image: float
    pixels_per_image: float
    skipped: list[str] = field(default_factory=list)
    results_path: str | None = None
    write_error: str | None = None
    per_class: dict[str, float] = field(default_factory=dict)
    box_precision: float = 0.0
    box_recall: float = 0.0
    max_dets: int = COCO_MAX_DETS

    def as_dict(self) -> dict[str, Any]:
        return {**self.metrics, "box_precision": self.box_precision, "box_recall": self.box_recall,
                "max_dets": self.max_dets, "images": self.images, "skipped_images": len(self.skipped),
                "detections": self.detections, "seconds_per_image": self.seconds_per_image,
                "pixels_per_image": self.pixels_per_image, "results": self.results_path}

    def table(self) -> str:
        names = [f"AR{self.max_dets}" if name == "AR100" else name for name in COCO_METRICS]
        header = "  ".join(f"{name:>6}" for name in names)
        values = "  ".join(f"{self.metrics[name]:6.3f}" for name in COCO_METRICS)
        lines = [
            f"COCO bbox evaluation: {self.images} images, {self.detections} detections"
            + (f", {len(self.skipped)} images skipped" if self.skipped else ""),
            header,
            values,
            f"time per image {self.seconds_per_image:.3f} s, network input per image "
            f"{self.pixels_per_image / 1e6:.2f} Mpixels",
        ]
        lines.append(f"box precision {self.box_precision:.3f}, box recall {self.box_recall:.3f} (DeepForest's measure: "
                     f"IoU >= {MATCH_IOU}, scores >= {MATCH_MIN_SCORE}, one-to-one)")
        if len(self.per_class) > 1:
            lines.append("AP per class: " + ", ".join(f"{name} {ap:.3f}" for name, ap in self.per_class.items()))
        return "\n".join(lines)


def load_ground_truth(path: str | Path) -> Any:
    """A pycocotools ``COCO`` of the annotation file's usable entries
    (:func:`~cornernet_saccade.data.coco.ground_truth_document`: ``area`` and ``iscrowd`` filled in,
    malformed entries left out as the reader leaves them out)."""
    return coco_ground_truth(ground_truth_document(path))


def coco_ground_truth(document: dict[str, Any]) -> Any:
    """A pycocotools ``COCO`` of a COCO document; missing ``area`` (box area) and ``iscrowd`` (0)
    are filled in, since COCOeval needs them."""
    from pycocotools.coco import COCO

    for annotation in document.get("annotations", []):
        annotation.setdefault("iscrowd", 0)
        if "area" not in annotation:
            annotation["area"] = float(annotation["bbox"][2]) * float(annotation["bbox"][3])
    ground_truth = COCO()
    ground_truth.dataset = document
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth.createIndex()
    return ground_truth


def box_precision_recall(ground_truth: Any, results: list[dict[str, Any]], image_ids: Sequence[int],
                         iou: float = MATCH_IOU, min_score: float = MATCH_MIN_SCORE) -> tuple[float, float]:
    """DeepForest's box precision and recall over ``image_ids``: each image's results scoring at least
    ``min_score`` are matched one-to-one to its ground-truth boxes (any class, crowd regions left
    out) by descending IoU, a pair counting when its IoU is at least ``iou``; precision = matches /
    results, recall = matches / ground-truth boxes (0 where there are none). DeepForest assigns the
    pairs with the Hungarian method; matching greedily by IoU gives the same pairs unless one box
    overlaps two others at IoU >= ``iou`` each."""
    matched = predicted = truths = 0
    by_image: dict[int, list[list[float]]] = {}
    for entry in results:
        if entry["score"] >= min_score:
            by_image.setdefault(int(entry["image_id"]), []).append(entry["bbox"])
    for image_id in image_ids:
        boxes = [a["bbox"] for a in ground_truth.imgToAnns.get(image_id, []) if not a.get("iscrowd", 0)]
        found = by_image.get(image_id, [])
        predicted, truths = predicted + len(found), truths + len(boxes)
        matched += _greedy_matches(_xyxy(found), _xyxy(boxes), iou)
    return matched / max(predicted, 1), matched / max(truths, 1)


def _xyxy(boxes: list[list[float]]) -> np.ndarray:
    """COCO ``[x, y, w, h]`` boxes as ``[N, 4]`` x1, y1, x2, y2."""
    array = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([array[:, :2], array[:, :2] + array[:, 2:]], axis=1)


def _greedy_matches(found: np.ndarray, truth: np.ndarray, threshold: float) -> int:
    """Pairs of ``found`` and ``truth`` boxes matched one-to-one by descending IoU, IoU >= ``threshold``."""
    if not len(found) or not len(truth):
        return 0
    ious = box_iou(found, truth)
    count = 0
    while True:
        best = np.unravel_index(int(np.argmax(ious)), ious.shape)
        if ious[best] < threshold:
            return count
        count += 1
        ious[best[0], :], ious[:, best[1]] = -1.0, -1.0


def coco_metrics(ground_truth: Any, results: list[dict[str, Any]], image_ids: Sequence[int],
                 max_dets: int = COCO_MAX_DETS) -> dict[str, float]:
    """:data:`COCO_METRICS` of ``results`` on ``image_ids`` (all 0 without results), counting up to
    ``max_dets`` detections per image."""
    return coco_scores(ground_truth, results, image_ids, max_dets)[0]


def coco_scores(
    ground_truth: Any, results: list[dict[str, Any]], image_ids: Sequence[int], max_dets: int = COCO_MAX_DETS,
) -> tuple[dict[str, float], dict[str, float]]:
    """:func:`coco_metrics` and the AP (IoU 0.50:0.95, all sizes) of each category by name; a
    category without ground truth on these images gets -1, as COCO reports undefined values.

    ``max_dets``: COCO's ``maxDets`` (``[1, 10, max_dets]``), the most detections per image that
    every reported score counts; 100 (COCO's) caps the recall of an image of more objects, such as
    a whole aerial image of 279 tree crowns. pycocotools' summary reads its AP at 100 detections
    whatever ``maxDets`` says (-1 otherwise), so AP is taken from the accumulated precision here."""
    from pycocotools.cocoeval import COCOeval

    if max_dets < 1:
        raise ValueError(f"max_dets must be >= 1, got {max_dets}")

    names = {int(c["id"]): str(c["name"]) for c in ground_truth.dataset.get("categories", [])}
    if not results:
        return {name: 0.0 for name in COCO_METRICS}, {name: 0.0 for name in names.values()}
    with contextlib.redirect_stdout(io.StringIO()):
        evaluation = COCOeval(ground_truth, ground_truth.loadRes(results), "bbox")
        evaluation.params.imgIds = list(image_ids)
        evaluation.params.maxDets = [1, 10, max_dets]
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    precision = evaluation.eval["precision"][:, :, :, 0, -1]  # [IoU, recall, category], all sizes, max_dets
    per_class = {}
    for index, category_id in enumerate(evaluation.params.catIds):
        values = precision[:, :, index]
        per_class[names.get(int(category_id), str(category_id))] = (
            float(values[values > -1].mean()) if (values > -1).any() else -1.0)
    stats = [float(value) for value in evaluation.stats]
    defined = precision[precision > -1]
    stats[0] = float(defined.mean()) if defined.size else -1.0  # summarize() reads AP at 100 detections
    return {name: stats[index] for name, index in COCO_STATS.items()}, per_class


@dataclass
class _DetectionRun:
    """What :func:`_detect_all` gathered: COCO result entries, evaluated image ids, skipped images'
    messages, seconds spent detecting and network-input pixels."""

    results: list[dict[str, Any]] = field(default_factory=list)
    image_ids: list[int] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0
    network_pixels: int = 0


def _detect_all(detector: DetectorBase, records: Sequence[AnnotatedImage], category_ids: Sequence[int],
                progress: bool) -> _DetectionRun:
    run = _DetectionRun()
    for record in tqdm(records, desc="evaluate", unit="img", disable=not progress, leave=False):
        start = time.perf_counter()
        try:
            detections = detector(record.path)
        except CornerNetSaccadeError as exc:
            run.skipped.append(str(exc))
            continue
        run.seconds += time.perf_counter() - start
        run.network_pixels += detections.trace.network_pixels
        run.image_ids.append(record.image_id)
        run.results.extend(coco_results(record.image_id, detections, category_ids))
    return run


def evaluation_set(
    annotations: str | Path, image_root: str | Path | None, format: DatasetFormat | None,
    class_names: Sequence[str] | None, num_classes: int,
) -> tuple[DetectionDataset, Any, list[int]]:
    """The records, the pycocotools ground truth and the category id of each of the detector's
    ``num_classes`` classes (named ``class_names``) of an annotation set: a COCO JSON file as it is,
    another format (``format``, else told from the path) read with ``class_names`` and converted to
    COCO (category ids ``label + 1``). AnnotationError when the set cannot be read or its categories
    do not fit the classes: the trainer calls it before training, so that evaluation during training
    cannot fail later."""
    chosen = format or detect_format(annotations)
    if chosen == "coco":
        dataset, ground_truth = load_dataset(annotations, image_root=image_root, format="coco"), load_ground_truth(annotations)
    else:
        dataset = load_dataset(annotations, image_root=image_root, format=chosen, class_names=class_names)
        ground_truth = coco_ground_truth(coco_document(dataset.records, dataset.class_names, str(annotations)))
    ids = category_ids(class_names, num_classes, ground_truth.dataset["categories"], str(annotations))
    return dataset, ground_truth, ids


def _gathered(run: _DetectionRun) -> _DetectionRun:
    """Every process's run merged (a collective: all processes call it)."""
    import torch.distributed as dist

    runs: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(runs, run)
    merged = _DetectionRun()
    for part in runs:
        merged.results += part.results
        merged.image_ids += part.image_ids
        merged.skipped += part.skipped
        merged.seconds += part.seconds
        merged.network_pixels += part.network_pixels
    return merged


def evaluate(
    detector: DetectorBase,
    annotations: str | Path,
    *,
    image_root: str | Path | None = None,
    max_images: int = 0,
    results_path: str | Path | None = None,
    progress: bool = True,
    overwrite: bool = False,
    context: DistContext | None = None,
    format: DatasetFormat | None = None,
    max_dets: int = COCO_MAX_DETS,
) -> EvaluationResult:
    """Detect on the images of an annotation set (the first ``max_images``; 0: all) and score: a
    COCO JSON file, or a VOC / CSV set converted to COCO (:func:`evaluation_set`; ``format`` as
    :func:`~cornernet_saccade.data.load.load_dataset`, told from the path when None).

    With a distributed ``context`` (every process calls this), each process detects on every
    ``world_size``-th image; the results are gathered and each process returns the scores of all.

    ``results_path``: where the COCO results go (see :func:`results_target`); a failed write is
    reported in ``write_error`` and the scores are still returned.

    The detector's ``class_names`` match its classes to the file's categories (``None``: by id
    order). Images that cannot be read are skipped, reported in ``skipped`` and left out of the
    scores. ``max_dets``: the most detections per image the COCO scores count (:func:`coco_scores`);
    the detector's own ``max_per_image`` caps what it returns.
    """
    dataset, ground_truth, class_ids = evaluation_set(
        annotations, image_root, format, detector.class_names, detector.model.num_classes)
    records = dataset.records[:max_images] if max_images else dataset.records
    target = results_target(results_path, annotations, overwrite)
    if context is not None and context.distributed:
        records = records[context.rank::context.world_size]
    run = _detect_all(detector, records, class_ids, progress)
    if context is not None and context.distributed:
        run = _gathered(run)
    write_error = None
    if target is not None and (context is None or context.is_main):
        try:
            write_text(target, json.dumps(run.results))
        except OutputError as exc:
            write_error, target = str(exc), None
    metrics, per_class = coco_scores(ground_truth, run.results, run.image_ids, max_dets)
    precision, recall = box_precision_recall(ground_truth, run.results, run.image_ids)
    count = max(len(run.image_ids), 1)
    return EvaluationResult(
        metrics=metrics, per_class=per_class, box_precision=precision, box_recall=recall, images=len(run.image_ids),
        detections=len(run.results), seconds_per_image=run.seconds / count,
        pixels_per_image=run.network_pixels / count, skipped=run.skipped,
        results_path=None if target is None else str(target), write_error=write_error, max_dets=max_dets,
    )


def results_target(results_path: str | Path | None, annotations: str | Path, overwrite: bool = False) -> Path | None:
    """Where the results go: ``results_path``, or ``detections.json`` inside it when it is a folder.
    Checked before any image is detected: OutputError when it is the annotation file, exists and
    ``overwrite`` is not set, or its folder cannot be created."""
    if results_path is None:
        return None
    target = Path(results_path)
    if target.is_dir():
        target = target / "detections.json"
    check_new_output(target, overwrite, inputs=(annotations,))
    make_folder(target.parent)
    return target
