"""``cornernet-saccade export-weights``: a checkpoint's model weights as a safetensors file.

Keeps the model config, class names and test settings (as metadata) and drops the training state, so the file can
be shipped and loaded with ``CornerNetSaccade.from_checkpoint`` (no pickle involved).
"""
from __future__ import annotations

import argparse

from cornernet_saccade.errors import ConfigError
from cornernet_saccade.model.checkpoint import save_checkpoint
from cornernet_saccade.model.cornernet_saccade import CornerNetSaccade
from cornernet_saccade.outputs import check_new_output


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export-weights",
        help="write a checkpoint's weights, config and class names as .safetensors",
        description="Write the model weights of a checkpoint (official .pkl, training .pt, .safetensors) as a "
                    ".safetensors file that keeps the model config, class names and test settings and drops the "
                    "training state (optimizer, RNG), so it can be shipped and loaded with "
                    "CornerNetSaccade.from_checkpoint or --weights, with no pickle involved.",
    )
    parser.add_argument("--weights", required=True, help="checkpoint (official .pkl, training .pt, .safetensors)")
    parser.add_argument("--out", required=True, help="output .safetensors path")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not args.out.endswith(".safetensors"):
        raise ConfigError(f"{args.out}: --out must end with .safetensors")
    check_new_output(args.out, args.overwrite, inputs=(args.weights,))
    model = CornerNetSaccade.from_checkpoint(args.weights)
    save_checkpoint(args.out, model)
    print(f"wrote {args.out} ({sum(p.numel() for p in model.parameters()):,} parameters)")
    return 0
