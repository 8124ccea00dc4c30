"""``cornernet-saccade analyze --weights W --data VAL``: where the detector loses recall.

Prints, for all objects, each COCO size and each class, the fraction of ground-truth objects that a
view covered, a proposal would have covered, a crop detected, the merge kept and the final result
found (:mod:`cornernet_saccade.engine.analyze`); ``--caps`` adds what each test-time cap costs.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from cornernet_saccade.cli.common import (
    add_dataset_options,
    add_detector_options,
    add_runtime_options,
    add_weights_option,
    detector_settings,
    runtime_settings,
)


def register(subparsers: Any) -> None:
    """Add the ``analyze`` parser to ``subparsers``."""
    parser = subparsers.add_parser(
        "analyze",
        help="where recall is lost: objects covered, proposed, detected, kept, found (per size and class)",
        description="Run the detector on an annotated set and report, per object size and class, the fraction "
                    "of ground-truth objects that reached each stage of the saccade pipeline.",
    )
    add_weights_option(parser)
    add_dataset_options(parser, "annotations: COCO JSON, VOC folder or split file, or CSV")
    parser.add_argument("--caps", action="store_true",
                        help="also run with each cap (top_k, num_dets, att_max_crops, max_per_image) doubled")
    parser.add_argument("--out", help="folder for analysis.json (created if missing)")
    add_detector_options(parser)
    add_runtime_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cornernet_saccade.backends import load_detector
    from cornernet_saccade.data.load import load_dataset
    from cornernet_saccade.engine.analyze import analyze_records, cap_costs
    from cornernet_saccade.errors import ConfigError
    from cornernet_saccade.inference.detector import SaccadeDetector
    from cornernet_saccade.outputs import make_folder, write_text

    if args.out:
        make_folder(Path(args.out))
    detector = load_detector(args.weights, **runtime_settings(args), **detector_settings(args))
    if not isinstance(detector, SaccadeDetector):
        raise ConfigError(f"{args.weights}: analyze follows the saccade detector's stages; "
                          f"{type(detector.model).__name__} has no attention or crops")
    dataset = load_dataset(args.data, image_root=args.image_root, class_names=detector.class_names)
    records = dataset.records[: args.max_images] if args.max_images else dataset.records
    report = analyze_records(detector, records, dataset.class_names)
    if args.caps:
        report.cap_costs = cap_costs(detector, records)
    print(report.table())
    for message in report.skipped:
        print(f"skipped: {message}")
    if args.out:
        path = Path(args.out) / "analysis.json"
        write_text(path, json.dumps(report.as_dict(), indent=1) + "\n")
        print(f"analysis written to {path}")
    return 0
