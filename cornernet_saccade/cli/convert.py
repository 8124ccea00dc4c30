"""``cornernet-saccade convert DATASET --out FILE.json``: a VOC or CSV (or COCO) dataset as COCO JSON."""
from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``convert`` parser to ``subparsers``."""
    from cornernet_saccade.data.load import FORMATS

    parser = subparsers.add_parser(
        "convert",
        help="write a VOC / CSV / COCO dataset as a COCO JSON file",
        description="Read a dataset as train, evaluate and analyze do (COCO JSON, VOC folder or split file, CSV) "
                    "and write it as a COCO JSON file: category ids 1..N in class order, boxes [x, y, w, h], image "
                    "file names relative to the output file's folder. Problems found while reading are listed "
                    "(the items are skipped or repaired, as for training).",
    )
    parser.add_argument("path", help="COCO JSON file, VOC folder or split file, or CSV file")
    parser.add_argument("--out", required=True, help="COCO JSON file to write")
    parser.add_argument("--image-root", help="folder the image file names are relative to (default: per format)")
    parser.add_argument("--format", choices=FORMATS, help="annotation format (default: from PATH)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Convert and print a summary; exit code 0."""
    import dataclasses
    import json
    import os
    from pathlib import Path

    from cornernet_saccade.data.coco import coco_document
    from cornernet_saccade.data.load import load_dataset
    from cornernet_saccade.outputs import check_new_output, make_folder, write_text

    out = Path(args.out)
    check_new_output(out, args.overwrite, inputs=(args.path,))
    dataset = load_dataset(args.path, image_root=args.image_root, format=args.format)
    folder = os.path.abspath(out.parent)
    records = [dataclasses.replace(r, path=Path(os.path.relpath(os.path.abspath(r.path), folder)).as_posix())
               for r in dataset.records]
    make_folder(out.parent)
    write_text(out, json.dumps(coco_document(records, dataset.class_names, f"converted from {args.path}")) + "\n")
    for issue in dataset.issues:
        print(issue)
    boxes = sum(len(r.boxes) for r in records)
    print(f"{len(records)} images, {boxes} boxes, {len(dataset.class_names)} classes "
          f"({', '.join(dataset.class_names)}) written to {out}")
    return 0
