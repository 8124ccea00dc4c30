"""``cornernet-saccade evaluate --weights W --data VAL``: COCO AP of a model on a COCO JSON, VOC or CSV set."""
from __future__ import annotations

import argparse
import sys
from typing import Any

from cornernet_saccade.cli.common import (
    add_dataset_options,
    add_detector_options,
    add_runtime_options,
    add_weights_option,
    detector_settings,
    positive_int,
    runtime_settings,
)


def register(subparsers: Any) -> None:
    """Add the ``evaluate`` parser to ``subparsers``."""
    parser = subparsers.add_parser(
        "evaluate",
        help="COCO evaluation (AP, AP50, AP75, AP small/medium/large) on a COCO JSON, VOC or CSV set",
        description="Detect on every image of an annotated set (COCO JSON; VOC or CSV, converted to COCO with "
                    "the model's classes as categories) and score the detections with pycocotools.",
    )
    add_weights_option(parser)
    add_dataset_options(parser, "annotations of the evaluation images: COCO JSON, VOC folder or split file, or CSV")
    parser.add_argument("--out", help="write the detections here (COCO results JSON; a folder gets "
                                      "detections.json); never the annotation file")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    parser.add_argument("--max-dets", type=positive_int, default=None, metavar="N",
                        help="most detections per image the scores count (COCO's maxDets, default 100) and the "
                             "detector keeps (its max_per_image, unless --set max_per_image=... says otherwise); "
                             "raise it for images of more than 100 objects, e.g. a whole aerial image")
    add_detector_options(parser)
    add_runtime_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate and print the COCO table."""
    from cornernet_saccade.backends import load_detector
    from cornernet_saccade.backends.distributed import setup, teardown
    from cornernet_saccade.engine.evaluate import COCO_MAX_DETS, evaluate, results_target

    context = setup(args.device)  # under torchrun: the images are sharded over the processes
    runtime = {**runtime_settings(args), "device": str(context.device)}
    settings = detector_settings(args)
    if args.max_dets is not None:
        settings.setdefault("max_per_image", args.max_dets)
    results_target(args.out, args.data, args.overwrite)  # refuse a bad --out before loading anything
    detector = load_detector(args.weights, **runtime, **settings)
    result = evaluate(
        detector, args.data, image_root=args.image_root, max_images=args.max_images, results_path=args.out,
        overwrite=args.overwrite, context=context, max_dets=args.max_dets or COCO_MAX_DETS,
    )
    teardown(context)
    if not context.is_main:
        return 0
    print(result.table())
    for message in result.skipped:
        print(f"skipped: {message}")
    if result.results_path:
        print(f"detections written to {result.results_path}")
    if result.write_error:
        print(f"error: {result.write_error}", file=sys.stderr)
        return 1
    return 0
