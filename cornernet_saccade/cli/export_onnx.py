"""``cornernet-saccade export-onnx --weights W --out model.onnx``: the test network as an ONNX graph."""
from __future__ import annotations

import argparse
from typing import Any

from cornernet_saccade.backends.onnx import DEFAULT_MAX_SIZE
from cornernet_saccade.cli.common import add_weights_option


def register(subparsers: Any) -> None:
    """Add the ``export-onnx`` parser to ``subparsers``."""
    parser = subparsers.add_parser(
        "export-onnx",
        help="export the detection network (last stack; CornerNet-Saccade: + attention heads) to ONNX",
        description="Write the network that detection runs (last stack's corner heads and, for CornerNet-Saccade, "
                    "the attention heads; BatchNorm folded, cummax-free corner pooling) as an ONNX graph, for "
                    "CornerNet-Saccade, CornerNet-Squeeze or CornerNet weights; input 'images' [batch,3,H,W] "
                    "normalised BGR with a dynamic batch and, unless --fixed-size, dynamic H and W up to "
                    "--max-size: every side the detector feeds (CornerNet-Saccade: 32k-1, 255, 511, ..., which "
                    "covers full mode's padded canvas for any --full-size up to --max-size; CornerNet-Squeeze "
                    "and CornerNet: 128k-1, 127, 255, 383, ..., the tester's canvas of any image and scale up to "
                    "--max-size); outputs tl_heat, br_heat, tl_tag, br_tag, tl_off, br_off (and att_coarse, "
                    "att_middle, att_fine for CornerNet-Saccade). The file carries the network, class names, "
                    "model config, test settings and input sizes in its metadata: 'detect --weights model.onnx "
                    "--backend onnxruntime' runs it with that network's detector. An existing --out file is "
                    "replaced only with --overwrite.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_weights_option(parser)
    parser.add_argument("--out", required=True, help="output .onnx file")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    parser.add_argument("--size", type=int, default=255,
                        help="input height and width the graph is traced and checked at (CornerNet-Saccade's crop size)")
    parser.add_argument("--fixed-size", action="store_true", help="take only SIZE x SIZE inputs (no dynamic H, W)")
    parser.add_argument("--max-size", type=int, default=DEFAULT_MAX_SIZE,
                        help="largest input height and width of a dynamic-size graph")
    parser.add_argument("--opset", type=int, help="ONNX opset version (default: the exporter's)")
    parser.add_argument("--verify", action="store_true",
                        help="run the graph with onnxruntime on random input and compare it with torch")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Export, optionally verify, and print where the file went; exit code 1 if verification fails."""
    from cornernet_saccade.backends import load_model
    from cornernet_saccade.backends.onnx import VERIFY_TOLERANCE, export_input_sizes, export_onnx, verify_export
    from cornernet_saccade.outputs import check_new_output

    check_new_output(args.out, args.overwrite, inputs=(args.weights,))
    model = load_model(args.weights)
    shape = {"size": args.size, "dynamic_size": not args.fixed_size, "max_size": args.max_size}
    path = export_onnx(model, args.out, opset=args.opset, **shape)
    print(f"wrote {path} ({type(model).__name__}, {path.stat().st_size / 1e6:.1f} MB; input [batch,3,H,W], "
          f"H, W = {export_input_sizes(model, **shape)})")
    if not args.verify:
        return 0
    error = verify_export(model, path)
    print(f"onnxruntime vs torch: max abs diff / abs max = {error:.2e} (tolerance {VERIFY_TOLERANCE:.0e})")
    return 0 if error <= VERIFY_TOLERANCE else 1
