"""``cornernet-saccade make-shapes``: write the synthetic multi-scale shapes dataset (COCO format)."""
from __future__ import annotations

import argparse
from typing import Any

#: The scene settings that have a command-line option (``--min-width`` etc.).
SCENE_OPTIONS = ("min_width", "max_width", "min_height", "max_height", "max_objects", "min_object_size",
                 "max_object_size")


def register(subparsers: Any) -> None:
    """Add the ``make-shapes`` parser to ``subparsers``."""
    from cornernet_saccade.datasets.shapes import SceneConfig

    defaults, large = SceneConfig(), SceneConfig.large()
    parser = subparsers.add_parser(
        "make-shapes",
        help="generate the synthetic shapes dataset (COCO JSON + JPEG images)",
        description="Render synthetic scenes (shapes of 5 classes, 10-400 px, on cluttered "
                    "backgrounds) into OUT/train.json, OUT/val.json and OUT/images/. The same seed "
                    "gives the same files.",
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--num", type=int, required=True, help="number of training images")
    parser.add_argument("--val-num", type=int, default=0, help="number of validation images")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the files of an earlier dataset in OUT (without it, they are kept and "
                             "the command stops)")
    parser.add_argument("--large", action="store_true",
                        help="large scenes: 2048-4096 x 1536-3072 px, the same object sizes and the same "
                             "object and clutter densities (up to 307 objects); the options below still "
                             "change single ranges")
    for name in SCENE_OPTIONS:
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=None,
                            help=f"default: {getattr(defaults, name)} (--large: {getattr(large, name)})")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write the dataset and print where it went."""
    import dataclasses

    from cornernet_saccade.datasets.shapes import SceneConfig, make_shapes_dataset

    base = SceneConfig.large() if args.large else SceneConfig()
    given = {name: getattr(args, name) for name in SCENE_OPTIONS if getattr(args, name) is not None}
    config = dataclasses.replace(base, **given)
    paths = make_shapes_dataset(args.out, args.seed, args.num, args.val_num, config, progress=True,
                                overwrite=args.overwrite)
    for split, path in paths.items():
        print(f"{split}: {path}")
    return 0
