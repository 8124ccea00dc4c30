"""``cornernet-saccade detect --weights W IMAGE_OR_FOLDER... --out DIR``: detect objects in images.

Writes, as each image finishes, its line of ``DIR/detections.jsonl`` and its picture
``DIR/<stem>.png`` (:func:`~cornernet_saccade.inference.visualize.render_panel`), then at the end
``DIR/detections.json`` (COCO results: ``image_id``, ``category_id``, ``bbox`` ``[x, y, w, h]``,
``score``, plus ``category``, ``file_name``, ``width`` and ``height``); see
:mod:`cornernet_saccade.inference.batch` for what is protected. Images that cannot be read are
reported on stderr and skipped; the exit code is 1 only when no image could be processed.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cornernet_saccade.cli.common import (
    add_detector_options,
    add_runtime_options,
    add_weights_option,
    detector_settings,
    positive_int,
    runtime_settings,
)
from cornernet_saccade.errors import ConfigError, CornerNetSaccadeError, ImageError, OutputError
from cornernet_saccade.inference.batch import (
    IMAGE_EXTENSIONS,
    LINES_NAME,
    PER_IMAGE_FORMATS,
    DetectedImage,
    ImageJob,
    OutputFolder,
    detect_image,
    detector_category_ids,
    find_images,
    pending,
    plan_jobs,
    run_description,
)
from cornernet_saccade.inference.settings import DecodeMergeSettings
from cornernet_saccade.tables import format_table

if TYPE_CHECKING:
    from cornernet_saccade.inference.detector import DetectorBase

#: Pictures and results keep detections scoring at least this unless --score-threshold says otherwise.
DEFAULT_SCORE_THRESHOLD = 0.3
#: Classes named per image in the summary table.
TOP_CLASSES = 3


def register(subparsers: Any) -> None:
    """Add the ``detect`` parser to ``subparsers``."""
    parser = subparsers.add_parser(
        "detect",
        help="detect objects in images; write COCO-style JSON and annotated pictures",
        description="Run the detector on image files and folders. Writes OUT/detections.jsonl (a line per image "
                    "as it finishes), OUT/detections.json (COCO results with category names) and OUT/<name>.png "
                    "(detections, attention maps and the crops the detector looked at; <name>: the image's path "
                    "below the folder searched, without its suffix unless another image shares the name). Unreadable "
                    "images are reported and skipped; exit code 1 only when no image could be processed. "
                    "No output replaces an input image; existing files are replaced only with --overwrite.",
    )
    parser.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER", help="image files and folders of images")
    add_weights_option(parser)
    add_detector_options(parser, score_threshold=DEFAULT_SCORE_THRESHOLD)
    add_runtime_options(parser)
    selection = parser.add_argument_group("which detections")
    selection.add_argument("--classes", metavar="NAME,...",
                           help="keep only these classes (names or 0-based indices, comma-separated)")
    selection.add_argument("--max-dets", type=positive_int, metavar="N", help="keep at most the N best per image")
    selection.add_argument("--class-names", metavar="FILE",
                           help="text file with one class name per line (default: the names the weights carry, "
                                "COCO's for an 80-class model without names, else class indices)")
    outputs = parser.add_argument_group("outputs")
    outputs.add_argument("--out", required=True, help="output folder (created if missing)")
    outputs.add_argument("--no-pictures", action="store_true", help="write no pictures")
    outputs.add_argument("--per-image", action="append", choices=sorted(PER_IMAGE_FORMATS), default=[],
                         help="also write per-image results: json (OUT/json/<stem>.json) or yolo "
                              "(OUT/labels/<stem>.txt: label cx cy w h score, fractions of the image); repeatable")
    outputs.add_argument("--overwrite", action="store_true", help="replace existing output files in OUT")
    outputs.add_argument("--resume", action="store_true",
                         help="continue an earlier run in OUT: skip images already in OUT/detections.jsonl "
                              "(refused when its weights, classes or settings differ, see OUT/detect_run.json)")
    parser.add_argument("--recursive", action="store_true", help="also search sub-folders for images "
                        "(never the output folder)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Detect on every input image; write the results and pictures; print the summary table."""
    paths, skipped = find_images(args.inputs, args.recursive, exclude=Path(args.out))
    for item in skipped:
        print(f"skipped {item.path}: {item.reason}", file=sys.stderr)
    if not paths:
        raise ImageError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in {', '.join(args.inputs)}")
    from cornernet_saccade.backends.distributed import setup, teardown

    context = setup(args.device)  # under torchrun: this process's shard of the images
    jobs = plan_jobs(paths, [Path(item) for item in args.inputs if Path(item).is_dir()])
    mine = jobs[context.rank::context.world_size]
    lines = f"detections.rank{context.rank}.jsonl" if context.distributed else LINES_NAME
    folder = OutputFolder(args.out, mine, pictures=not args.no_pictures, per_image=args.per_image,
                          overwrite=args.overwrite, resume=args.resume, lines_name=lines,
                          writes_results=context.is_main)
    try:  # from here on the folder (its lock) is closed however the run ends
        detector = build_detector(args, str(context.device))
        labels = class_selection(args, detector)
        folder.check_run(run_description(detector, args.weights, labels, args.max_dets), args.resume)
        todo = pending(mine, folder)
        if len(todo) < len(mine):
            print(f"resuming: {len(mine) - len(todo)} of {len(mine)} images already done in {args.out}",
                  file=sys.stderr)
        processed = detect_all(detector, todo, folder, lambda found: found.filter(labels, args.max_dets))
        if processed:
            print(summary_table(processed))
        context.barrier()
        results = folder.finish(jobs, gather=context.distributed) if context.is_main else None
    except KeyboardInterrupt:
        print(f"interrupted: the {len(folder.records)} images finished are kept in {folder.lines_path}; rerun the "
              f"same command with --resume to do the rest", file=sys.stderr)
        raise
    finally:
        folder.close()
    teardown(context)
    if not context.is_main:
        return 0
    done = len(folder.records)
    where = f"; detections written to {results}" if results else ""
    print(f"{done} of {len(jobs)} images processed{where}")
    return 0 if done else 1


def build_detector(args: argparse.Namespace, device: str) -> DetectorBase:
    """The detector the arguments ask for, on ``device``."""
    from cornernet_saccade.backends import load_detector

    runtime = {**runtime_settings(args), "device": device}
    settings = detector_settings(args)
    if args.max_dets is not None and args.max_dets > DecodeMergeSettings.max_per_image:
        settings.setdefault("max_per_image", args.max_dets)  # the detector keeps what --max-dets asks for
    return load_detector(args.weights, class_names_file=args.class_names, **runtime, **settings)


def class_selection(args: argparse.Namespace, detector: DetectorBase) -> list[int] | None:
    """The labels ``--classes`` keeps (None: all)."""
    if args.classes is None:
        return None
    return class_labels(args.classes, detector.class_names, detector.model.num_classes)


def class_labels(spec: str, class_names: Sequence[str] | None, num_classes: int) -> list[int]:
    """0-based labels of a comma-separated list of class names or indices; ConfigError for an
    unknown one, naming the known names."""
    labels = []
    for item in (part.strip() for part in spec.split(",") if part.strip()):
        if class_names is not None and item in class_names:
            labels.append(list(class_names).index(item))
        elif item.isdigit() and int(item) < num_classes:
            labels.append(int(item))
        else:
            known = ", ".join(class_names) if class_names else f"indices 0..{num_classes - 1}"
            raise ConfigError(f"--classes: unknown class {item!r} (known: {known})")
    return labels


def detect_all(detector: DetectorBase, jobs: Sequence[ImageJob], folder: OutputFolder, keep: Any) -> list[DetectedImage]:
    """Detect on each job with a progress bar (on a terminal; else a line per image on stderr, so a
    log of a run shows how far it got); report and skip the images that fail; stop on an output that
    cannot be written (what was written stays). Returns the records of this run."""
    from tqdm import tqdm

    ids = detector_category_ids(detector)
    records: list[DetectedImage] = []
    bar = tqdm(jobs, desc="detect", unit="image", disable=None)
    for number, job in enumerate(bar, 1):
        try:
            record, detections, image = detect_image(detector, job, ids, keep, view_progress=True)
        except CornerNetSaccadeError as exc:
            tqdm.write(f"skipped {_naming(job.path, exc)}", file=sys.stderr)
            continue
        try:
            folder.write(job, record, detections, image)
        except OutputError as exc:
            raise OutputError(f"{exc} (the {len(folder.records)} images finished before are kept in "
                              f"{folder.lines_path}; fix the problem and rerun with --resume)") from None
        finally:
            image.close()
        records.append(record)
        if bar.disable:
            print(f"{number}/{len(jobs)} {job.path}: {len(record.results)} detections, {record.seconds:.2f} s",
                  file=sys.stderr, flush=True)
    return records


def _naming(path: object, exc: Exception) -> str:
    """The error message, prefixed with ``path`` unless it already names it."""
    message = str(exc)
    return message if str(path) in message else f"{path}: {message}"


def display_names(file_names: Sequence[str]) -> list[str]:
    """Short distinct names of image paths: relative to their common folder (``sub/coffee.png``), the
    file name alone for one image, the paths as given when they share no folder."""
    paths = [Path(name) for name in file_names]
    if len(paths) < 2:
        return [path.name for path in paths]
    try:
        common = Path(os.path.commonpath(paths))
    except ValueError:  # absolute and relative paths mixed
        return list(file_names)
    return [path.relative_to(common).as_posix() for path in paths]


def summary_table(records: Sequence[DetectedImage]) -> str:
    """Aligned text table: image, detections, top classes, crops looked at, seconds."""
    rows = []
    for record, shown in zip(records, display_names([record.file_name for record in records])):
        names = Counter(entry["category"] for entry in record.results).most_common(TOP_CLASSES)
        top = ", ".join(f"{name}:{count}" for name, count in names) or "-"
        rows.append((shown, str(len(record.results)), top, str(record.crops),
                     f"{record.seconds:.2f}"))
    header = ("image", "detections", "top classes", "crops", "seconds")
    return format_table(header, rows, (False, True, False, True, True))
