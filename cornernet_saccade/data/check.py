"""Dataset validation: the readers' issues plus a full decode of every image.

:func:`check_dataset` adds to the issues the readers already found (bad boxes, unknown labels,
duplicate ids, ...):

* ``unreadable image`` (error): :func:`~cornernet_saccade.images.read_image` fails (missing, truncated,
  not an image, too large, ...);
* ``size mismatch`` (error): the decoded size differs from the record's (annotated) size, against
  which the boxes were checked and clipped;
* ``duplicate image`` (warning): two records use the same image file;
* ``duplicate class name`` (warning): several classes (e.g. COCO categories) share a name.

Issues found here are located by ``image id N`` in the annotation source.
"""
from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass

from tqdm import tqdm

from cornernet_saccade.data.records import AnnotatedImage, DataIssue, DetectionDataset
from cornernet_saccade.errors import ImageError
from cornernet_saccade.images import DEFAULT_MAX_PIXELS, read_image


@dataclass
class CheckReport:
    """Outcome of :func:`check_dataset`.

    Attributes:
        dataset: the dataset checked.
        issues: the reader's issues followed by those found by decoding the images.
    """

    dataset: DetectionDataset
    issues: list[DataIssue]

    @property
    def num_errors(self) -> int:
        return sum(issue.severity == "error" for issue in self.issues)

    @property
    def num_warnings(self) -> int:
        return sum(issue.severity == "warning" for issue in self.issues)

    @property
    def ok(self) -> bool:
        """No errors (warnings allowed)."""
        return self.num_errors == 0

    def boxes_per_class(self) -> dict[str, int]:
        """Number of boxes of each class, in label order, counted by label. A name shared by several
        classes is shown as ``"name (label N)"`` for each, so that no class's count hides another's."""
        counts: Counter[int] = Counter()
        for record in self.dataset.records:
            counts.update(record.labels.tolist())
        names = self.dataset.class_names
        shared = {name for name, count in Counter(names).items() if count > 1}
        return {
            f"{name} (label {label})" if name in shared else name: counts[label] for label, name in enumerate(names)
        }

    def problems_by_kind(self) -> dict[tuple[str, str], int]:
        """``(severity, kind) -> count``, errors first, then by kind."""
        counts = Counter((issue.severity, issue.kind) for issue in self.issues)
        return dict(sorted(counts.items(), key=lambda item: (item[0][0] != "error", item[0][1])))

    def summary(self) -> str:
        """Multi-line summary: images, boxes per class, ignored objects, problems by kind."""
        records = self.dataset.records
        without_boxes = sum(len(record.labels) == 0 for record in records)
        per_class = self.boxes_per_class()
        lines = [
            f"dataset: {self.dataset.source}",
            f"images: {len(records)} ({without_boxes} without boxes)",
            f"boxes: {sum(per_class.values())} in {len(per_class)} classes",
        ]
        width = max((len(name) for name in per_class), default=0)
        lines += [f"  {name:<{width}}  {count}" for name, count in per_class.items()]
        for reason, count in sorted(self.dataset.ignored_objects.items()):
            lines.append(f"ignored {reason} objects: {count}")
        problems = self.problems_by_kind()
        lines.append("problems:" if problems else "problems: none")
        lines += [f"  {severity:<7}  {kind}: {count}" for (severity, kind), count in problems.items()]
        lines.append(f"result: {self.num_errors} errors, {self.num_warnings} warnings")
        return "\n".join(lines)


def check_dataset(
    dataset: DetectionDataset, *, max_pixels: int = DEFAULT_MAX_PIXELS, progress: bool = True
) -> CheckReport:
    """Decode every image of ``dataset`` and collect all problems (see the module docstring).

    Args:
        max_pixels: passed to :func:`~cornernet_saccade.images.read_image`.
        progress: show a tqdm progress bar on stderr.
    """
    issues = list(dataset.issues) + _shared_class_names(dataset)
    first_use: dict[str, int] = {}
    bar = tqdm(dataset.records, desc="checking images", unit="image", disable=not progress, file=sys.stderr)
    for record in bar:
        issues += _check_image(dataset.source, record, max_pixels)
        if record.path in first_use:
            issues.append(
                DataIssue(
                    dataset.source,
                    f"image id {record.image_id}",
                    f"image file {record.path} is also used by image id {first_use[record.path]}",
                    "warning",
                    "duplicate image",
                )
            )
        else:
            first_use[record.path] = record.image_id
    return CheckReport(dataset, issues)


def _shared_class_names(dataset: DetectionDataset) -> list[DataIssue]:
    """A warning for each class name that several classes (labels) share, e.g. two COCO categories
    with one name: their boxes are counted apart, but detections would show the same name."""
    labels: dict[str, list[int]] = {}
    for label, name in enumerate(dataset.class_names):
        labels.setdefault(name, []).append(label)
    return [
        DataIssue(dataset.source, "", f"class name {name!r} is shared by labels {shared} (counted apart)",
                  "warning", "duplicate class name")
        for name, shared in labels.items()
        if len(shared) > 1
    ]


def _check_image(source: str, record: AnnotatedImage, max_pixels: int) -> list[DataIssue]:
    """Issues of one record's image file: unreadable, or not of the recorded size."""
    location = f"image id {record.image_id}"
    try:
        height, width = read_image(record.path, max_pixels=max_pixels).shape[:2]
    except ImageError as exc:
        return [DataIssue(source, location, str(exc), "error", "unreadable image")]
    if (width, height) != (record.width, record.height):
        problem = (
            f"{record.path} is {width}x{height} but the annotation says {record.width}x{record.height}"
        )
        return [DataIssue(source, location, problem, "error", "size mismatch")]
    return []
