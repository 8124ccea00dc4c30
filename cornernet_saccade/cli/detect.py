"""``cornernet-saccade detect --weights W IMAGE_OR_FOLDER... --out DIR``: detect objects in images.

Writes ``DIR/detections.json`` (COCO results: ``image_id``, ``category_id``, ``bbox`` ``[x, y, w, h]``
and ``score`` as :func:`cornernet_saccade.engine.evaluate.coco_results` writes them, plus the
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

from cornernet_saccade.backends import add_backend_argument, network_for_mode
from cornernet_saccade.errors import ConfigError, CornerNetSaccadeError, ImageError
from cornernet_saccade.images import read_image
from cornernet_saccade.inference.labels import COCO_CATEGORY_IDS, COCO_CLASS_NAMES

if TYPE_CHECKING:
    from cornernet_saccade.inference.detector import SaccadeDetector

#: File name endings of the images a folder is searched for (case-insensitive).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")
RESULTS_NAME = "detections.json"
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
    parser.add_argument("--weights", required=True,
                        help="weights file (official .pkl, training checkpoint, .safetensors) or bundled model name")
    parser.add_argument("--out", required=True, help="output folder (created if missing)")
    parser.add_argument("--mode", choices=("saccade", "full"), default="saccade",
                        help="saccade crops (default) or one pass over the whole image")
    parser.add_argument("--score-threshold", type=float, default=0.3,
                        help="keep detections scoring at least this (default 0.3)")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    parser.add_argument("--max-crops", type=int, default=30, help="most zoomed crops per image (default 30)")
    add_backend_argument(parser)
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
    from cornernet_saccade.engine.distributed import resolve_device
    from cornernet_saccade.engine.evaluate import load_model
    from cornernet_saccade.inference.detector import SaccadeDetector

    model, stored_names = load_model(args.weights)
    class_names = resolve_class_names(args.class_names, stored_names, model.num_classes)
    network = network_for_mode(model.to(resolve_device(args.device)), args.backend, args.mode, args.full_size)
    sizes = {"full_size": args.full_size} if args.full_size else {}
    detector = SaccadeDetector(
        network, class_names=class_names, mode=args.mode, **sizes,
        score_threshold=args.score_threshold, att_max_crops=args.max_crops,
    )
    return detector, category_ids_for_names(class_names, model.num_classes)


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
    from cornernet_saccade.engine.evaluate import coco_results
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


def read_class_names(path: str | Path) -> list[str]:
    """Class names from a text file, one per line (surrounding spaces and blank lines ignored)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the class names file ({exc})") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def resolve_class_names(names_file: str | None, stored: list[str] | None, num_classes: int) -> list[str] | None:
    """The model's class names: from ``names_file`` when given, else those the weights carry, else
    COCO's for an 80-class model, else ``None`` (class indices). ConfigError on a count mismatch."""
    names = read_class_names(names_file) if names_file else stored
    source = names_file or "the class names stored in the weights"
    if names is None:
        return list(COCO_CLASS_NAMES) if num_classes == len(COCO_CLASS_NAMES) else None
    if len(names) != num_classes:
        raise ConfigError(f"{source}: {len(names)} class names for a model with {num_classes} classes")
    return names


def category_ids_for_names(class_names: Sequence[str] | None, num_classes: int) -> list[int]:
    """COCO ``category_id`` of each class: COCO's ids (1..90 with gaps) when the classes are the 80
    COCO ones, else ``label + 1``."""
    if class_names is not None and tuple(class_names) == COCO_CLASS_NAMES:
        return list(COCO_CATEGORY_IDS)
    return list(range(1, num_classes + 1))


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
