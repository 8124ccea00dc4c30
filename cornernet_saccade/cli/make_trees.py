"""``cornernet-saccade make-trees``: convert DeepForest's NEON tree-crown data to a COCO dataset."""
from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``make-trees`` parser to ``subparsers``."""
    from cornernet_saccade.datasets.trees import DEFAULT_TILE_SIZE, DEFAULT_VAL_IMAGES

    parser = subparsers.add_parser(
        "make-trees",
        help="convert the tree crowns of the deepforest wheel to a tiled COCO dataset",
        description="Read the NEON tree-crown images and VOC boxes from the deepforest 2.1.0 wheel "
                    "(get it with: pip download deepforest==2.1.0 --no-deps -d DIR) and write "
                    "OUT/train.json, OUT/val.json and OUT/images/ (see docs/datasets.md).",
    )
    parser.add_argument("--wheel", required=True, help="path of deepforest-2.1.0-py3-none-any.whl")
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

    splits = convert_trees(args.wheel, args.out, args.val_images or DEFAULT_VAL_IMAGES,
                           args.tile_size)
    for split, dataset in splits.items():
        boxes = sum(len(record.boxes) for record in dataset.records)
        print(f"{split}: {len(dataset)} images, {boxes} boxes -> {dataset.source}")
    return 0
