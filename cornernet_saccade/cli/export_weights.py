"""``cornernet-saccade export-weights``: a checkpoint's model weights as a safetensors file.

Keeps the model config, class names and test settings (as metadata; ``--set`` changes the test
settings) and drops the training state, so the file can be shipped and loaded with
``from_checkpoint`` of its network's class or ``--weights`` (no pickle involved). Works for every
network (CornerNet-Saccade, CornerNet-Squeeze, CornerNet).
"""
from __future__ import annotations

import argparse

from cornernet_saccade.backends import load_model
from cornernet_saccade.config import apply_overrides
from cornernet_saccade.errors import ConfigError
from cornernet_saccade.inference.detector import Detector
from cornernet_saccade.model.checkpoint import save_checkpoint
from cornernet_saccade.outputs import check_new_output


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export-weights",
        help="write a checkpoint's weights, config and class names as .safetensors",
        description="Write the model weights of a checkpoint (official .pkl, training .pt, .safetensors) as a "
                    ".safetensors file that keeps the model config, class names and test settings and drops the "
                    "training state (optimizer, RNG), so it can be shipped and loaded with "
                    "from_checkpoint of its network's class or --weights, with no pickle involved.",
    )
    parser.add_argument("--weights", required=True, help="checkpoint (official .pkl, training .pt, .safetensors)")
    parser.add_argument("--out", required=True, help="output .safetensors path")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="settings",
                        help="store a test setting with the weights (a SaccadeConfig field for CornerNet-Saccade, a "
                             "CornerNetTestConfig one for Squeeze and CornerNet), e.g. --set test_scales=[1,1.5]; "
                             "repeatable, on top of the checkpoint's own")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not args.out.endswith(".safetensors"):
        raise ConfigError(f"{args.out}: --out must end with .safetensors")
    check_new_output(args.out, args.overwrite, inputs=(args.weights,))
    model = load_model(args.weights)
    settings = apply_overrides(model.test_settings or {}, args.settings)
    Detector(model, **settings)  # ConfigError naming a setting the detector does not have or refuses
    save_checkpoint(args.out, model, test_settings=settings or None)
    print(f"wrote {args.out} ({sum(p.numel() for p in model.parameters()):,} parameters)")
    return 0
