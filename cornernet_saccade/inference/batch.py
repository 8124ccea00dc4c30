"""Detection over many image files: finding the images, naming and protecting the outputs, and
writing results as each image finishes, so that a crash or a failed write keeps what was done.

An output folder holds ``detections.jsonl`` (one line per finished image, written and flushed as it
finishes), ``detections.json`` (the COCO results of every finished image, written at the end),
``detect_run.json`` (what made the results: weights, class names, settings, selection; a resumed run
must match it), ``<stem>.png`` pictures and, on request, per-image files (``json/<stem>.json``, YOLO
``labels/<stem>.txt``); ``<stem>`` keeps the sub-folders an image was found in (:func:`output_stems`).
No output ever replaces an input image of the run; an existing file is replaced only with
``overwrite`` (or, with ``resume``, when it belongs to an image not yet finished).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import stat
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cornernet_saccade.errors import OutputError
from cornernet_saccade.image_windows import WINDOWED_MIN_PIXELS, ImageWindows, open_windows
from cornernet_saccade.inference.detector_base import DetectorBase
from cornernet_saccade.inference.labels import category_ids
from cornernet_saccade.inference.results import Detections, coco_results
from cornernet_saccade.inference.saccade_detector import SaccadeDetector
from cornernet_saccade.outputs import (
    FolderLock,
    atomic_write,
    make_folder,
    open_no_follow,
    resolved_path,
    write_text,
    write_whole,
)

#: File name endings of the images a folder is searched for (case-insensitive).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")
RESULTS_NAME = "detections.json"
LINES_NAME = "detections.jsonl"
RUN_NAME = "detect_run.json"
#: Detector settings that change no detection (only which images can be read, or speed): a resumed
#: run may change them (e.g. raise max_pixels for an image the first run skipped).
RESULT_NEUTRAL_SETTINGS = frozenset({"max_pixels", "batch_size"})
#: The lines files of a run: ``detections.jsonl``, or one ``detections.rank<N>.jsonl`` per process.
LINES_GLOB = "detections*.jsonl"
#: Per-image output formats: sub-folder and file suffix.
PER_IMAGE_FORMATS = {"json": ("json", ".json"), "yolo": ("labels", ".txt")}


@dataclass(frozen=True)
class SkippedInput:
    """An input that is not processed, and why."""

    path: Path
    reason: str


@dataclass(frozen=True)
class ImageJob:
    """One image to process: its path, COCO image id and output stem."""

    path: Path
    image_id: int
    stem: str


@dataclass(frozen=True)
class DetectedImage:
    """One finished image, as its ``detections.jsonl`` line holds it: ``results`` are COCO result
    entries (plus ``category``, ``file_name``, ``width``, ``height``)."""

    file_name: str
    image_id: int
    width: int
    height: int
    crops: int
    seconds: float
    results: list[dict[str, Any]]

    def line(self) -> str:
        return json.dumps({"file_name": self.file_name, "image_id": self.image_id, "width": self.width,
                           "height": self.height, "crops": self.crops, "seconds": round(self.seconds, 4),
                           "results": self.results})


def find_images(
    inputs: Sequence[str | Path], recursive: bool = False, exclude: Path | None = None
) -> tuple[list[Path], list[SkippedInput]]:
    """Image paths of ``inputs`` and the entries skipped while searching folders.

    Folders give their files with an image extension (sorted; with sub-folders when
    ``recursive``; never inside ``exclude``, the output folder, when it lies below the folder
    searched); links to nowhere, link loops and folders with an image extension are skipped and
    reported. Anything else is kept as given (a missing file is reported when it is read). Repeated
    paths are kept once, first place.
    """
    paths: list[Path] = []
    skipped: list[SkippedInput] = []
    excluded = resolved_path(exclude) if exclude is not None else None
    for item in inputs:
        path = Path(item)
        if not path.is_dir():
            paths.append(path)
            continue
        found = sorted(path.rglob("*") if recursive else path.glob("*"))
        skip = excluded if excluded is not None and resolved_path(path) in excluded.parents else None
        for candidate in found:
            if candidate.suffix.lower() not in IMAGE_EXTENSIONS or _inside(candidate, skip):
                continue
            problem = _not_a_file(candidate)
            if problem:
                skipped.append(SkippedInput(candidate, problem))
            else:
                paths.append(candidate)
    return list(dict.fromkeys(paths)), skipped


def _inside(path: Path, folder: Path | None) -> bool:
    return folder is not None and folder in path.resolve().parents


def _not_a_file(path: Path) -> str | None:
    """Why ``path`` (found in a folder) is not an image file to read, or None."""
    try:
        status = os.stat(path)
    except OSError as exc:
        return "a link to nowhere" if path.is_symlink() and exc.errno == 2 else (exc.strerror or str(exc))
    return None if stat.S_ISREG(status.st_mode) else "not a regular file (a folder?)"


def image_ids(paths: Sequence[Path]) -> list[int]:
    """COCO image ids: the file stems when they are all distinct whole numbers (COCO's own file
    names, ``000000397133.jpg`` -> 397133), else 1, 2, 3, ... in order."""
    stems = [path.stem for path in paths]
    if all(stem.isascii() and stem.isdigit() for stem in stems) and len({int(s) for s in stems}) == len(stems):
        return [int(stem) for stem in stems]
    return list(range(1, len(paths) + 1))


def output_stems(paths: Sequence[Path], folders: Sequence[Path] = ()) -> list[str]:
    """A distinct output name per path: its path relative to the first of the searched ``folders``
    that holds it, without the suffix (``sub/coffee``: the outputs keep the sub-folders), else its
    stem; names that several paths share keep the suffix (``coffee.jpg``, ``coffee.png``), and
    ``_2``, ``_3``, ... are added to repeats that remain (the same name under two input folders)."""
    relative = [_relative_to_search(path, folders) for path in paths]
    bare = [name.with_suffix("").as_posix() for name in relative]
    shared = {name for name, count in Counter(bare).items() if count > 1}
    used: set[str] = set()
    stems = []
    for name, full in zip(bare, relative):
        base = full.as_posix() if name in shared else name
        stem, number = base, 1
        while stem in used:
            number += 1
            stem = f"{base}_{number}"
        used.add(stem)
        stems.append(stem)
    return stems


def _relative_to_search(path: Path, folders: Sequence[Path]) -> Path:
    """``path`` relative to the first of ``folders`` it lies in (as found by :func:`find_images`),
    else its file name."""
    for folder in folders:
        if folder in path.parents:
            return path.relative_to(folder)
    return Path(path.name)


def plan_jobs(paths: Sequence[Path], folders: Sequence[Path] = ()) -> list[ImageJob]:
    """A job per path, with its image id and output stem (:func:`output_stems` of the searched ``folders``)."""
    return [ImageJob(*job) for job in zip(paths, image_ids(paths), output_stems(paths, folders))]


class OutputFolder:
    """The output folder of one detection run: checks every planned output up front, writes results
    as images finish, and the COCO results file at the end.

    ``jobs``: the run's images; ``pictures``: write ``<stem>.png``; ``per_image``: keys of
    :data:`PER_IMAGE_FORMATS`; ``overwrite``: existing outputs may be replaced; ``resume``: keep the
    finished images of an earlier run in this folder (their lines in ``detections.jsonl``) and skip
    them. ``lines_name``: this process's lines file; ``writes_results``: this process writes
    ``detections.json`` (one process of a sharded run does). Raises :class:`OutputError` naming the
    path when an output would replace an input image, would replace an existing file without
    ``overwrite``/``resume``, or cannot be written.
    """

    def __init__(self, folder: str | Path, jobs: Sequence[ImageJob], *, pictures: bool = True,
                 per_image: Sequence[str] = (), overwrite: bool = False, resume: bool = False,
                 lines_name: str = LINES_NAME, writes_results: bool = True) -> None:
        self.folder = Path(folder)
        self.pictures = pictures
        self.per_image = tuple(per_image)
        self.lines_path = self.folder / lines_name
        self.writes_results = writes_results
        self.records: dict[Path, DetectedImage] = {}
        self._check_inputs_kept(jobs)
        self._make_folders()
        self._lock = FolderLock(self.folder / f".{lines_name}.lock")
        try:
            self.records = self.read_all_records() if resume else {}
            self._check_plan(jobs, overwrite or resume)
            self._lines = self._open_lines(append=resume)
        except BaseException:
            self._lock.release()
            raise

    def outputs(self, job: ImageJob) -> list[Path]:
        """Every file this run writes for ``job``."""
        paths = [self.folder / f"{job.stem}.png"] if self.pictures else []
        return paths + [self.folder / PER_IMAGE_FORMATS[f][0] / f"{job.stem}{PER_IMAGE_FORMATS[f][1]}"
                        for f in self.per_image]

    def is_done(self, job: ImageJob) -> bool:
        """Whether an earlier run (or this one) finished ``job``'s image: the same file, however its
        path was written (relative, absolute, through links)."""
        return resolved_path(job.path) in self.records

    def _planned(self, jobs: Sequence[ImageJob]) -> list[Path]:
        planned = [path for job in jobs if not self.is_done(job) for path in self.outputs(job)]
        return planned + ([self.folder / RESULTS_NAME, self.folder / RUN_NAME, self.lines_path] if self.writes_results
                          else [self.lines_path])

    def _check_inputs_kept(self, jobs: Sequence[ImageJob]) -> None:
        inputs = {resolved_path(job.path) for job in jobs}
        for path in self._planned(jobs):
            if resolved_path(path) in inputs:
                raise OutputError(f"{path}: an output would replace an input image of this run; choose "
                                  f"another output folder")

    def _check_plan(self, jobs: Sequence[ImageJob], may_replace: bool) -> None:
        if not may_replace:
            existing = [path for path in self._planned(jobs) if os.path.lexists(path)]
            if existing:
                more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
                raise OutputError(f"{existing[0]}{more}: already exists; choose another output folder, "
                                  f"--resume to continue that run or --overwrite to replace its files")

    def _make_folders(self) -> None:
        subfolders = [self.folder / PER_IMAGE_FORMATS[f][0] for f in self.per_image]
        for folder in (self.folder, *subfolders):
            make_folder(folder)

    def _open_lines(self, append: bool) -> int:
        """This process's lines file, never through a link; when appending, cut after its last
        whole line first (a line torn by a crash or a full disk; its image is redone)."""
        fd = open_no_follow(self.lines_path, append)
        if append:
            whole = self.lines_path.read_bytes().rfind(b"\n") + 1
            if whole < os.fstat(fd).st_size:
                os.ftruncate(fd, whole)
        return fd

    def write(self, job: ImageJob, record: DetectedImage, detections: Detections, pixels: Any) -> None:
        """Write one finished image's files, then its ``detections.jsonl`` line (flushed)."""
        if self.pictures:
            from cornernet_saccade.inference.visualize import render_panel

            picture = self.folder / f"{job.stem}.png"
            atomic_write(picture, lambda path: render_panel(pixels, detections).save(path, format="PNG"))
        for name in self.per_image:
            folder, suffix = PER_IMAGE_FORMATS[name]
            text = per_image_text(name, record, detections)
            write_text(self.folder / folder / f"{job.stem}{suffix}", text)
        write_whole(self._lines, self.lines_path, (record.line() + "\n").encode())
        self.records[resolved_path(record.file_name)] = record

    def check_run(self, description: dict[str, Any], resume: bool) -> None:
        """Make sure every result in the folder comes from the run ``description``
        (:func:`run_description`): with ``resume``, an earlier ``detect_run.json`` that differs is an
        OutputError naming what differs (a folder of a version that wrote none is resumed as it is);
        then the description is written (by the process that writes the results)."""
        path = self.folder / RUN_NAME
        if resume and path.is_file():
            differences = run_differences(_read_json(path), description)
            if differences:
                raise OutputError(
                    f"{self.folder}: --resume would mix results of different runs; that run differs in "
                    f"{'; '.join(differences)}. Rerun with its options, choose another output folder, or "
                    f"use --overwrite to start over"
                )
        if self.writes_results:
            write_text(path, json.dumps(description, indent=1) + "\n")

    def read_all_records(self) -> dict[Path, DetectedImage]:
        """The finished images in every lines file of the folder (all processes of the run), by
        their files' resolved paths."""
        records: dict[Path, DetectedImage] = {}
        for path in sorted(self.folder.glob(LINES_GLOB)):
            records.update((resolved_path(name), record) for name, record in read_records(path).items())
        return records

    def _close_lines(self) -> None:
        """Every line was written whole, so closing loses nothing (and its error is not one)."""
        if self._lines >= 0:
            with contextlib.suppress(OSError):
                os.close(self._lines)
            self._lines = -1

    def close(self) -> None:
        """Close the lines file and release the lock of this run's outputs (again: nothing)."""
        self._close_lines()
        self._lock.release()

    def finish(self, order: Sequence[ImageJob], gather: bool = False) -> Path | None:
        """Close the lines file; write ``detections.json`` (every finished image's results, in the
        order of ``order``; with ``gather``, those of every process's lines file too). Returns its
        path, or None (and writes nothing) when no image finished. The outputs stay locked until
        :meth:`close`."""
        self._close_lines()
        if gather:
            self.records = self.read_all_records()
        records = [self.records[resolved_path(job.path)] for job in order if self.is_done(job)]
        if not records:
            return None
        path = self.folder / RESULTS_NAME
        write_text(path, results_json([r for rec in records for r in rec.results]))
        return path


def read_records(path: Path) -> dict[str, DetectedImage]:
    """The finished images of an earlier run (its ``detections.jsonl``), keyed by file name; a
    missing file gives none, a torn last line (no line end: a crash or a full disk while writing
    it) is ignored."""
    if path.is_symlink():
        raise OutputError(f"{path}: a link; refusing to read or write through it (the program's outputs are "
                          f"never links: remove it or choose another output folder)")
    if not path.is_file():
        return {}
    records: dict[str, DetectedImage] = {}
    try:
        *lines, _torn = path.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise OutputError(f"{path}: cannot read the earlier run's results ({exc})") from None
    for number, line in enumerate(lines, 1):
        try:
            data = json.loads(line)
            record = DetectedImage(**data)
        except (ValueError, TypeError, RecursionError):
            raise OutputError(f"{path}: line {number} is not a result line of this program") from None
        records[record.file_name] = record
    return records


def run_description(detector: DetectorBase, weights: str | Path, labels: Sequence[int] | None,
                    max_dets: int | None) -> dict[str, Any]:
    """What makes a detection run's results (``detect_run.json``): the weights file, the class names,
    the detector settings and the class / count selection. JSON types only."""
    from cornernet_saccade.model.checkpoint import resolve_weights_path

    settings = json.loads(json.dumps(dataclasses.asdict(detector.config)))  # tuples as lists, as read back
    return {"weights": str(resolve_weights_path(weights).resolve()), "class_names": detector.class_names,
            "settings": settings, "classes": None if labels is None else list(labels), "max_dets": max_dets}


def run_differences(earlier: Any, now: dict[str, Any]) -> list[str]:
    """``key: earlier value then, value now`` for each entry of a run description (settings one by
    one, except :data:`RESULT_NEUTRAL_SETTINGS`) that differs; a malformed ``earlier`` is one difference."""
    if not isinstance(earlier, dict) or not isinstance(earlier.get("settings"), dict):
        return [f"{RUN_NAME} (not a run description of this program)"]
    pairs = [(key, earlier.get(key), value) for key, value in now.items() if key != "settings"]
    pairs += [(key, earlier["settings"].get(key), value) for key, value in now["settings"].items()
              if key not in RESULT_NEUTRAL_SETTINGS]
    return [f"{key}: {then!r} then, {value!r} now" for key, then, value in pairs if then != value]


def _read_json(path: Path) -> Any:
    """The JSON document of ``path``; OutputError naming it when it cannot be read."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise OutputError(f"{path}: cannot read the earlier run's description ({exc})") from None


def results_json(results: Sequence[dict[str, Any]]) -> str:
    """The results as a JSON list, one entry per line."""
    return "[\n" + ",\n".join(json.dumps(entry) for entry in results) + "\n]\n" if results else "[]\n"


def per_image_text(name: str, record: DetectedImage, detections: Detections) -> str:
    """One image's results in a per-image format: ``json`` (its record) or ``yolo`` (a line
    ``label centre_x centre_y width height score`` per detection, fractions of the image size)."""
    if name == "json":
        return json.dumps(json.loads(record.line()), indent=1) + "\n"
    lines = []
    for (x1, y1, x2, y2), score, label in zip(detections.boxes.tolist(), detections.scores.tolist(),
                                               detections.labels.tolist()):
        cx, cy = (x1 + x2) / 2 / record.width, (y1 + y2) / 2 / record.height
        w, h = (x2 - x1) / record.width, (y2 - y1) / record.height
        lines.append(f"{label} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f} {score:.4f}")
    return "".join(line + "\n" for line in lines)


def detect_image(detector: DetectorBase, job: ImageJob, ids: Sequence[int],
                 keep: Callable[[Detections], Detections] | None = None,
                 view_progress: bool = False) -> tuple[DetectedImage, Detections, ImageWindows]:
    """Open and detect one image; its record, its detections (after ``keep``) and the image (an
    :class:`~cornernet_saccade.image_windows.ImageWindows`: a large tiled TIFF is read by windows;
    the caller closes it). ``view_progress``: a progress bar of the views run on an image of more
    than :data:`~cornernet_saccade.image_windows.WINDOWED_MIN_PIXELS` pixels (saccade detectors)."""
    from cornernet_saccade.inference.visualize import detection_name

    source = open_windows(job.path, max_pixels=detector.config.max_pixels)
    height, width = source.height, source.width
    try:
        with _views_bar(detector, job, view_progress and height * width > WINDOWED_MIN_PIXELS):
            start = time.perf_counter()
            detections = detector(source)
            seconds = time.perf_counter() - start
    except BaseException:
        source.close()
        raise
    if keep is not None:
        detections = keep(detections)
    results = coco_results(job.image_id, detections, ids)
    for index, entry in enumerate(results):
        entry.update(category=detection_name(detections, index), file_name=str(job.path), width=width, height=height)
    record = DetectedImage(str(job.path), job.image_id, width, height, len(detections.trace.crops), seconds, results)
    return record, detections, source


@contextlib.contextmanager
def _views_bar(detector: DetectorBase, job: ImageJob, show: bool) -> Iterator[None]:
    """While open, a progress bar counts the views ``detector`` runs (when ``show`` and it reports
    them through ``on_views``: the saccade detector)."""
    if not show or not isinstance(detector, SaccadeDetector):
        yield
        return
    from tqdm import tqdm

    with tqdm(desc=f"{job.path.name}: views", unit="view", leave=False, disable=None) as bar:
        detector.on_views = bar.update
        try:
            yield
        finally:
            detector.on_views = None


def detector_category_ids(detector: DetectorBase) -> list[int]:
    """The COCO category id of each of the detector's classes."""
    return category_ids(detector.class_names, detector.model.num_classes)


def pending(jobs: Iterable[ImageJob], folder: OutputFolder) -> list[ImageJob]:
    """The jobs ``folder`` has no finished record of."""
    return [job for job in jobs if not folder.is_done(job)]
