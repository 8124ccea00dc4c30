"""Aerial tree crowns: the NEON images bundled in the DeepForest wheel, as a tiled COCO dataset.

The ``deepforest`` 2.1.0 wheel (MIT licence) ships, under ``deepforest/data/``, NEON airborne RGB
images (10 cm pixels) with hand-labelled tree-crown boxes in Pascal VOC XML. They are read straight
from the wheel (a zip file): the XML files and the images beside them are extracted into a
temporary folder and read with the project's VOC reader (:func:`~cornernet_saccade.data.voc.read_voc`:
VOC ``xmin..xmax`` are 1-based inclusive, the wheel's boxes run from 1 to the image width).

* Classes: one, ``tree``. ``SOAP_061.xml`` labels its crowns ``Dead``/``Alive``; both are trees.
* Split by image: the images named in ``val_images`` (default: the NEON tile
  ``2019_YELL_2_541000_4977000``) are the validation set, the others the training set, so no
  crown is seen in both.
* Tiling: an image larger than ``tile_size`` (default 400, DeepForest's own patch size) is cut
  into a grid of ``ceil(W / tile_size) x ceil(H / tile_size)`` near-equal tiles. Every box goes to
  exactly one tile, the one holding the largest part of it (the first such tile in row-major order
  on a tie), clipped to that tile: no box is lost or duplicated. Parts of a crown cut off by a
  tile border stay unannotated in the neighbouring tile.

Getting the wheel: :func:`fetch_wheel` downloads it once with pip (``pip download deepforest==2.1.0
--no-deps``, from the package registry pip is configured for) into a cache folder
(:func:`default_cache_dir`); the package is never installed. Offline, it fails with the command to
run by hand where there is a network.

Output: ``out_dir/train.json``, ``out_dir/val.json`` (COCO, file names relative to ``out_dir``)
and ``out_dir/images/<image stem>_x<left>_y<top>.png``.
"""
from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from cornernet_saccade.data.coco import coco_document, write_json
from cornernet_saccade.data.records import AnnotatedImage, DetectionDataset
from cornernet_saccade.data.voc import read_voc
from cornernet_saccade.errors import AnnotationError, ConfigError
from cornernet_saccade.images import read_image

#: Folder of the wheel holding the annotated images.
WHEEL_DATA_DIR = "deepforest/data/"
#: Files taken from that folder: the annotations and every image they may name.
_EXTRACTED_SUFFIXES = (".xml", ".png", ".tif", ".tiff", ".jpg", ".jpeg")
#: The wheel the data comes from: its requirement and file name.
WHEEL_REQUIREMENT = "deepforest==2.1.0"
WHEEL_FILE_NAME = "deepforest-2.1.0-py3-none-any.whl"
CLASS_NAMES: tuple[str, ...] = ("tree",)
DEFAULT_VAL_IMAGES: tuple[str, ...] = ("2019_YELL_2_541000_4977000_image_crop.png",)
DEFAULT_TILE_SIZE = 400


def default_cache_dir() -> Path:
    """Where fetched wheels are kept: ``$XDG_CACHE_HOME/cornernet_saccade``, by default
    ``~/.cache/cornernet_saccade``."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "cornernet_saccade"


def pip_download_command(dest: Path, pip_options: Sequence[str] = ()) -> list[str]:
    """The pip command that fetches the wheel (only it, no dependencies) into ``dest``."""
    return [sys.executable, "-m", "pip", "download", WHEEL_REQUIREMENT, "--no-deps", "--only-binary", ":all:",
            "-d", str(dest), *pip_options]


def fetch_wheel(cache_dir: str | Path | None = None, pip_options: Sequence[str] = (),
                timeout: float = 600.0) -> Path:
    """The deepforest wheel in ``cache_dir`` (default :func:`default_cache_dir`), downloaded with pip
    the first time (``pip_options`` are added to its command, e.g. ``--index-url``). ConfigError naming
    the command to run by hand when pip fails (no network, no such release) or finds nothing."""
    dest = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    wheel = dest / WHEEL_FILE_NAME
    if wheel.is_file():
        return wheel
    command = pip_download_command(dest, pip_options)
    try:
        dest.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        problem = _last_error_line(done.stderr) if done.returncode else None
    except (OSError, subprocess.TimeoutExpired) as exc:
        problem = str(exc)
    if problem is None and not wheel.is_file():
        problem = f"pip wrote no {WHEEL_FILE_NAME} into {dest}"
    if problem is not None:
        by_hand = f"python -m pip download {WHEEL_REQUIREMENT} --no-deps -d DIR"
        raise ConfigError(
            f"could not fetch {WHEEL_REQUIREMENT} with pip ({problem}); where there is a network, run "
            f"`{by_hand}`, then `cornernet-saccade make-trees --wheel DIR/{WHEEL_FILE_NAME} --out OUT`"
        )
    return wheel


def _last_error_line(stderr: str) -> str:
    """pip's own summary of what failed: its last ``ERROR:`` line, else its last line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR")]
    return (errors or lines or ["pip failed without a message"])[-1]


@dataclass(frozen=True)
class Tile:
    """A tile ``rect`` = (x0, y0, x1, y1) in image pixels and its boxes in tile pixels."""

    rect: tuple[int, int, int, int]
    boxes: np.ndarray
    labels: np.ndarray


def extract_wheel_data(wheel: str | Path, dest: Path) -> int:
    """Copy the annotation XMLs and images of ``deepforest/data/`` in ``wheel`` into ``dest``.

    Returns the number of XML files. Raises AnnotationError if the wheel is not a readable zip or
    holds no annotations there.
    """
    try:
        with zipfile.ZipFile(wheel) as archive:
            members = [name for name in archive.namelist() if _is_data_file(name)]
            for name in members:
                (dest / PurePosixPath(name).name).write_bytes(archive.read(name))
    except (zipfile.BadZipFile, OSError) as exc:
        raise AnnotationError(f"{wheel}: cannot read the wheel as a zip file ({exc})") from exc
    xml_count = sum(name.lower().endswith(".xml") for name in members)
    if xml_count == 0:
        raise AnnotationError(f"{wheel}: no {WHEEL_DATA_DIR}*.xml annotation files in the wheel")
    return xml_count


def _is_data_file(name: str) -> bool:
    """Whether zip member ``name`` is a file directly inside WHEEL_DATA_DIR that we extract."""
    if not name.startswith(WHEEL_DATA_DIR):
        return False
    rest = name[len(WHEEL_DATA_DIR):]
    return bool(rest) and "/" not in rest and rest.lower().endswith(_EXTRACTED_SUFFIXES)


def read_tree_crowns(wheel: str | Path, work_dir: Path) -> DetectionDataset:
    """Extract the wheel's annotated images into ``work_dir`` and read them as one-class data.

    Raises AnnotationError when the VOC reader had to drop an object (an error-level issue).
    """
    extract_wheel_data(wheel, work_dir)
    dataset = read_voc(work_dir)
    errors = [issue for issue in dataset.issues if issue.severity == "error"]
    if errors:
        raise AnnotationError(f"{wheel}: {len(errors)} unusable annotation(s), first: {errors[0]}")
    for record in dataset.records:
        record.labels = np.zeros_like(record.labels)
    return DetectionDataset(dataset.records, list(CLASS_NAMES), str(wheel), dataset.issues,
                            dataset.ignored_objects)


def tile_grid(width: int, height: int, tile_size: int) -> list[tuple[int, int, int, int]]:
    """Near-equal tiles (x0, y0, x1, y1) covering a ``width`` x ``height`` image, row-major.

    Each side is cut into ``ceil(side / tile_size)`` parts at ``round(k * side / parts)``;
    ``tile_size == 0`` gives the whole image as one tile.
    """
    def cuts(side: int) -> list[int]:
        parts = max(1, math.ceil(side / tile_size)) if tile_size > 0 else 1
        return [round(k * side / parts) for k in range(parts + 1)]

    xs, ys = cuts(width), cuts(height)
    return [(x0, y0, x1, y1) for y0, y1 in zip(ys, ys[1:]) for x0, x1 in zip(xs, xs[1:])]


def assign_to_tiles(boxes: np.ndarray, tiles: Sequence[tuple[int, int, int, int]]) -> np.ndarray:
    """Index of the tile holding the largest part of each box (first one on ties), int64 [N]."""
    rects = np.asarray(tiles, dtype=np.float64).reshape(-1, 4)
    low = np.maximum(boxes[:, None, :2], rects[None, :, :2])
    high = np.minimum(boxes[:, None, 2:], rects[None, :, 2:])
    overlap = np.prod(np.clip(high - low, 0.0, None), axis=2)
    return overlap.argmax(axis=1).astype(np.int64) if len(boxes) else np.zeros(0, np.int64)


def tile_record(record: AnnotatedImage, tile_size: int) -> list[Tile]:
    """Cut ``record`` into tiles; boxes move from image pixels to tile pixels (see module doc)."""
    tiles = tile_grid(record.width, record.height, tile_size)
    owner = assign_to_tiles(record.boxes, tiles)
    result = []
    for index, (x0, y0, x1, y1) in enumerate(tiles):
        mine = owner == index
        clipped = np.clip(record.boxes[mine], [x0, y0, x0, y0], [x1, y1, x1, y1])
        local = (clipped - np.array([x0, y0, x0, y0], dtype=np.float32)).astype(np.float32)
        result.append(Tile((x0, y0, x1, y1), local, record.labels[mine]))
    return result


def _write_tiles(record: AnnotatedImage, tile_size: int, out_dir: Path, first_id: int,
                 ) -> list[AnnotatedImage]:
    """Write the tiles of ``record`` as PNG files; their records have ids from ``first_id``."""
    pixels = read_image(record.path)
    stem = Path(record.path).stem.replace(" ", "_")
    written: list[AnnotatedImage] = []
    for tile in tile_record(record, tile_size):
        x0, y0, x1, y1 = tile.rect
        file_name = f"images/{stem}_x{x0}_y{y0}.png"
        Image.fromarray(pixels[y0:y1, x0:x1]).save(out_dir / file_name)
        written.append(AnnotatedImage(first_id + len(written), file_name, x1 - x0, y1 - y0,
                                   tile.boxes, tile.labels))
    return written


def convert_trees(wheel: str | Path, out_dir: str | Path,
                  val_images: Sequence[str] = DEFAULT_VAL_IMAGES,
                  tile_size: int = DEFAULT_TILE_SIZE) -> dict[str, DetectionDataset]:
    """Write the tree-crown COCO dataset from ``wheel`` into ``out_dir`` (see the module docstring).

    ``val_images`` are image file names (as in the XML ``<filename>``) forming the validation set.
    Returns the written splits by name; each dataset's ``source`` is its JSON file and its
    records' paths are relative to ``out_dir``.
    """
    if tile_size < 0:
        raise ConfigError(f"make-trees {wheel}: tile size must be >= 0 (0 = no tiling), "
                          f"got {tile_size}")
    out = Path(out_dir)
    splits: dict[str, list[AnnotatedImage]] = {"train": [], "val": []}
    with tempfile.TemporaryDirectory(prefix="trees-") as work_dir:
        dataset = read_tree_crowns(wheel, Path(work_dir))
        available = {Path(record.path).name for record in dataset.records}
        missing = sorted(set(val_images) - available)
        if missing:
            raise ConfigError(f"{wheel}: validation image(s) {missing} not among the annotated "
                              f"images {sorted(available)}")
        (out / "images").mkdir(parents=True, exist_ok=True)
        for record in dataset.records:
            records = splits["val" if Path(record.path).name in val_images else "train"]
            records.extend(_write_tiles(record, tile_size, out, len(records) + 1))
    written = {}
    for split, records in splits.items():
        path = out / f"{split}.json"
        write_json(path, coco_document(records, CLASS_NAMES,
                                       f"DeepForest NEON tree crowns ({Path(wheel).name}), {split}"))
        written[split] = DetectionDataset(records, list(CLASS_NAMES), str(path))
    return written
