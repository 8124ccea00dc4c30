"""``cornernet-saccade check-data PATH``: validate a detection dataset.

Lists every problem (file, line/id, severity, description), then a summary: images, boxes per
class, problems by kind. Exit code 0 when there is no error (warnings allowed), 1 otherwise.
"""
from __future__ import annotations

import argparse

from cornernet_saccade.cli.common import add_max_pixels_option
from cornernet_saccade.data.check import check_dataset
from cornernet_saccade.data.load import FORMATS, load_dataset
from cornernet_saccade.images import DEFAULT_MAX_PIXELS


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "check-data",
        help="validate a COCO / VOC / CSV dataset (annotations and images)",
        description="Read a dataset, decode every image, and report missing or unreadable images, "
        "boxes outside the image or degenerate, unknown labels and duplicate ids. "
        "Exit code 0 if there are no errors (warnings allowed), 1 otherwise.",
    )
    parser.add_argument("path", help="COCO JSON file, VOC folder or split file, or CSV file")
    parser.add_argument("--image-root", help="folder the image file names are relative to")
    parser.add_argument("--format", choices=FORMATS, help="annotation format (default: from PATH)")
    add_max_pixels_option(parser, DEFAULT_MAX_PIXELS)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    dataset = load_dataset(args.path, image_root=args.image_root, format=args.format)
    report = check_dataset(dataset, max_pixels=args.max_pixels)
    for issue in report.issues:
        print(issue)
    print(report.summary())
    return 0 if report.ok else 1
