"""``cornernet-saccade detect --weights W IMAGE_OR_FOLDER... --out DIR``: detect objects in images.

Writes ``DIR/detections.json`` (COCO results: ``image_id``, ``category_id``, ``bbox`` ``[x, y, w, h]``
and ``score`` as :func:`cornernet_saccade.inference.results.coco_results` writes them, plus the
``category`` name and the image's ``file_name``) and, per image, ``DIR/<stem>.png``: the
:func:`~cornernet_saccade.inference.visualize.render_panel` picture. Images that cannot be read are reported
on stderr and skipped; the exit code is 1 only when no image could be processed.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cornernet_saccade.cli.common import (
    add_detector_options,
    add_runtime_options,
    add_weights_option,
    detector_settings,
    runtime_settings,
)
from cornernet_saccade.errors import ConfigError, CornerNetSaccadeError, ImageError
from cornernet_saccade.images import read_image
from cornernet_saccade.inference.labels import category_ids
from cornernet_saccade.inference.results import coco_results

if TYPE_CHECKING:
    from cornernet_saccade.inference.detector import SaccadeDetector

#: File name endings of the images a folder is searched for (case-insensitive).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")
RESULTS_NAME = "detections.json"
#: Pictures and results keep detections scoring at least this unless --score-threshold says otherwise.
DEFAULT_SCORE_THRESHOLD = 0.3
#: Classes named per image in the summary table.
TOP_CLASSES = 3


def register(subparsers: Any) -> None:
    """Add the ``detect`` parser to ``subparsers``."""
    parser = subparsers.add_parser(
        "detect",
        help="detect objects in images; write COCO-style JSON and annotated pictures",
        description="Run the detector on image files and folders. Writes OUT/detections.json (COCO results "
                    "with category names) and OUT/<image stem>.png (detections, attention maps and the crops "
                    "the detector looked at). Unreadable images are reported and skipped; exit code 1 only "
                    "when no image could be processed.",
    )
    parser.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER", help="image files and folders of images")
    add_weights_option(parser)
    parser.add_argument("--out", required=True, help="output folder (created if missing)")
    add_detector_options(parser, score_threshold=DEFAULT_SCORE_THRESHOLD)
    add_runtime_options(parser)
    parser.add_argument("--class-names", metavar="FILE",
                        help="text file with one class name per line (default: the names the weights carry, "
                             "COCO's for an 80-class model without names, else class indices)")
    parser.add_argument("--recursive", action="store_true", help="also search sub-folders for images")
    parser.add_argument("--no-pictures", action="store_true", help="write only detections.json")
    parser.set_defaults(func=run)


@dataclass(frozen=True)
class ImageSummary:
    """One processed image's line of the summary table."""

    name: str
    detections: int
    top_classes: str
    crops: int
    seconds: float


def run(args: argparse.Namespace) -> int:
    """Detect on every input image; write the JSON and pictures; print the summary table."""
    paths = expand_inputs(args.inputs, args.recursive)
    if not paths:
        raise ImageError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in {', '.join(args.inputs)}")
    detector, category_ids = build_detector(args)
    out_dir = make_output_folder(args.out)
    summaries, results = detect_all(detector, paths, category_ids, out_dir, draw=not args.no_pictures)
    (out_dir / RESULTS_NAME).write_text(results_json(results), encoding="utf-8")
    print(summary_table(summaries))
    print(f"{len(summaries)} of {len(paths)} images processed; detections written to {out_dir / RESULTS_NAME}")
    return 0 if summaries else 1


def build_detector(args: argparse.Namespace) -> tuple[SaccadeDetector, list[int]]:
    """The detector the arguments ask for, and the COCO category id of each of its classes."""
    from cornernet_saccade.backends import load_detector

    detector = load_detector(args.weights, class_names_file=args.class_names, **runtime_settings(args),
                             **detector_settings(args))
    return detector, category_ids(detector.class_names, detector.model.num_classes)


def make_output_folder(path: str) -> Path:
    """Create the output folder (and its parents); ConfigError when that is impossible."""
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{folder}: cannot create the output folder ({exc.strerror or exc})") from None
    return folder


def detect_all(
    detector: SaccadeDetector, paths: Sequence[Path], category_ids: Sequence[int], out_dir: Path, draw: bool
) -> tuple[list[ImageSummary], list[dict[str, Any]]]:
    """Detect on each image with a progress bar; report and skip the ones that fail. Returns the
    summaries and COCO result entries of the processed images."""
    from tqdm import tqdm

    summaries: list[ImageSummary] = []
    results: list[dict[str, Any]] = []
    jobs = list(zip(paths, image_ids(paths), output_stems(paths)))
    for path, image_id, stem in tqdm(jobs, desc="detect", unit="image", disable=None):
        try:
            summary, entries = process_image(detector, path, image_id, category_ids, out_dir / f"{stem}.png", draw)
        except CornerNetSaccadeError as exc:
            tqdm.write(f"skipped {_naming(path, exc)}", file=sys.stderr)
            continue
        summaries.append(summary)
        results.extend(entries)
    return summaries, results


def process_image(
    detector: SaccadeDetector, path: Path, image_id: int, category_ids: Sequence[int], picture: Path, draw: bool
) -> tuple[ImageSummary, list[dict[str, Any]]]:
    """Detect on one image; write its panel to ``picture`` when ``draw``; return its summary and
    its COCO result entries."""
    from cornernet_saccade.inference.visualize import detection_name, render_panel

    pixels = read_image(path)
    start = time.perf_counter()
    detections = detector(pixels)
    seconds = time.perf_counter() - start
    if draw:
        render_panel(pixels, detections).save(picture)
    names = [detection_name(detections, index) for index in range(len(detections))]
    entries = coco_results(image_id, detections, category_ids)
    for entry, name in zip(entries, names):
        entry.update(category=name, file_name=str(path))
    top = ", ".join(f"{name}:{count}" for name, count in Counter(names).most_common(TOP_CLASSES))
    return ImageSummary(path.name, len(detections), top, len(detections.trace.crops), seconds), entries


def results_json(results: Sequence[dict[str, Any]]) -> str:
    """The results as a JSON list, one entry per line."""
    return "[\n" + ",\n".join(json.dumps(entry) for entry in results) + "\n]\n" if results else "[]\n"


def _naming(path: Path, exc: Exception) -> str:
    """The error message, prefixed with ``path`` unless it already names it."""
    message = str(exc)
    return message if str(path) in message else f"{path}: {message}"


def expand_inputs(inputs: Sequence[str], recursive: bool = False) -> list[Path]:
    """Image paths of ``inputs``: folders give their files with an image extension (sorted; with
    sub-folders when ``recursive``), anything else is kept as given (a missing or unreadable file
    is reported when it is read). Repeated paths are kept once, first place."""
    paths: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = path.rglob("*") if recursive else path.glob("*")
            paths += sorted(p for p in found if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        else:
            paths.append(path)
    return list(dict.fromkeys(paths))


def image_ids(paths: Sequence[Path]) -> list[int]:
    """COCO image ids: the file stems when they are all distinct whole numbers (COCO's own file
    names, ``000000397133.jpg`` -> 397133), else 1, 2, 3, ... in order."""
    stems = [path.stem for path in paths]
    if all(stem.isascii() and stem.isdigit() for stem in stems) and len({int(s) for s in stems}) == len(stems):
        return [int(stem) for stem in stems]
    return list(range(1, len(paths) + 1))


def output_stems(paths: Sequence[Path]) -> list[str]:
    """A distinct picture name per path: its stem, with ``_2``, ``_3``, ... added on repeats."""
    used: set[str] = set()
    stems = []
    for path in paths:
        stem, number = path.stem, 1
        while stem in used:
            number += 1
            stem = f"{path.stem}_{number}"
        used.add(stem)
        stems.append(stem)
    return stems


def summary_table(summaries: Sequence[ImageSummary]) -> str:
    """Aligned text table: image, detections, top classes, crops looked at, seconds."""
    rows = [(s.name, str(s.detections), s.top_classes or "-", str(s.crops), f"{s.seconds:.2f}") for s in summaries]
    header = ("image", "detections", "top classes", "crops", "seconds")
    return format_table(header, rows, (False, True, False, True, True))


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]], right_aligned: Sequence[bool]) -> str:
    """Text table with columns as wide as their widest cell; ``right_aligned`` per column."""
    widths = [max(len(row[c]) for row in (header, *rows)) for c in range(len(header))]
    lines = [
        "  ".join(cell.rjust(width) if right else cell.ljust(width)
                  for cell, width, right in zip(row, widths, right_aligned))
        for row in (header, *rows)
    ]
    return "\n".join(line.rstrip() for line in lines)
