"""Network cost of batches of 255x255 saccade crops per backend, beside the original's figures.

The saccade detector's zoomed round sends up to 30 crops through the network at once, without the
attention heads (the last round needs none). This times the network alone (no cropping, decoding or
NMS) on ``[B,3,255,255]`` batches, ``--warmup`` untimed runs then the median of ``--repeats``, per
batch and per crop. docs/reference.md §B9 gives the original's second-round batches of 30 crops (no attention) / 8 /
1 as 20.1 s (0.67 s per crop) / 4.4 s / 0.44 s (fp32, 2 threads). The whole detector is timed
by ``benchmarks/inference.py``.

    python benchmarks/fast_inference.py --repeats 3
    python benchmarks/fast_inference.py --batches 8 --backends fast onnxruntime --repeats 1
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import torch
from common import (
    BACKENDS,
    DEFAULT_BACKENDS,
    add_backends_argument,
    add_common_arguments,
    argument_parser,
    begin,
    build_backend,
    median_seconds,
    model_label,
    official_model,
)

from cornernet_saccade.model.geometry import CROP_SIZE
from cornernet_saccade.tables import format_table

#: The original's seconds per batch of crops (docs/reference.md §B9).
ORIGINAL_SECONDS = {30: 20.1, 8: 4.4, 1: 0.44}
HEADER = ("batch", "backend", "median s", "s/crop", "crops/s", "original s (other CPU: §B9)", "orig. s/crop (other CPU)")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argument_parser(__doc__)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 8, 30], help="crops per batch (default 1 4 8 30)")
    add_backends_argument(parser, BACKENDS, DEFAULT_BACKENDS)
    parser.add_argument("--attention", action="store_true", help="also compute the attention heads")
    add_common_arguments(parser, repeats=3)
    return parser.parse_args(argv)


def row(batch: int, backend: str, seconds: float) -> tuple[str, ...]:
    original = ORIGINAL_SECONDS.get(batch)
    return (str(batch), backend, f"{seconds:.3f}", f"{seconds / batch:.3f}", f"{batch / seconds:.2f}",
            "-" if original is None else f"{original:.2f}", "-" if original is None else f"{original / batch:.3f}")


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    begin(args.threads, model_label(args.init, args.weights), args.repeats, args.warmup)
    model = official_model(args.init, args.weights)
    rows = []
    for name in args.backends:
        network = build_backend(name, model, CROP_SIZE)
        for batch in args.batches:
            crops = torch.randn(batch, 3, CROP_SIZE, CROP_SIZE, generator=torch.Generator().manual_seed(batch))
            with torch.inference_mode():
                run = lambda: network(crops, with_attention=args.attention)  # noqa: E731, F821 (bound above; ruff misreads the later del)
                rows.append(row(batch, name, median_seconds(run, args.repeats, args.warmup)))
            print(" ", *rows[-1], file=sys.stderr)
        del network
    print(f"network only, {'with' if args.attention else 'without'} attention heads")
    print(format_table(HEADER, rows, (True, False, True, True, True, True, True)))
    print("original: docs/reference.md §B9, stage-2 batches of crops without attention, princeton-vl/CornerNet-Lite, fp32, 2 threads")


if __name__ == "__main__":
    main()
