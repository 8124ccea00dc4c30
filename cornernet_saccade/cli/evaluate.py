"""``cornernet-saccade evaluate --weights W --data VAL.json``: COCO AP of a model on a COCO-format set."""
from __future__ import annotations

import argparse
from typing import Any

from cornernet_saccade.backends import add_backend_argument


def register(subparsers: Any) -> None:
    """Add the ``evaluate`` parser to ``subparsers``."""
    parser = subparsers.add_parser(
        "evaluate",
        help="COCO evaluation (AP, AP50, AP75, AP small/medium/large) on a COCO JSON set",
        description="Detect on every image of a COCO-format annotation file with the saccade detector and "
                    "score the detections with pycocotools.",
    )
    parser.add_argument("--weights", required=True,
                        help="weights file (official .pkl, training checkpoint, .safetensors) or bundled model name")
    parser.add_argument("--data", required=True, help="COCO JSON annotation file of the evaluation images")
    parser.add_argument("--image-root", help="folder the image file names are relative to (default: the JSON's folder)")
    parser.add_argument("--mode", choices=("saccade", "full"), default="saccade",
                        help="saccade crops (default) or one pass over the whole image")
    parser.add_argument("--out", help="write the detections here (COCO results JSON)")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    parser.add_argument("--max-images", type=int, default=0, help="evaluate only the first N images (default: all)")
    add_backend_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate and print the COCO table."""
    from cornernet_saccade.engine.evaluate import evaluate

    result = evaluate(
        args.weights, args.data, args.image_root, args.mode, args.out, args.device, args.max_images,
        backend=args.backend, full_size=args.full_size,
    )
    print(result.table())
    for message in result.skipped:
        print(f"skipped: {message}")
    if result.results_path:
        print(f"detections written to {result.results_path}")
    return 0
