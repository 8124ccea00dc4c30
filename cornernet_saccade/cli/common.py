"""Options shared by the commands, defined once, with defaults read from the config objects.

``--weights``; the runtime (``--device``, ``--backend``, ``--threads``); the detector settings
(``--mode``, ``--full-size``, ``--tile-size``, ``--tile-overlap``, ``--score-threshold``, ``--max-crops``,
``--views``, ``--max-pixels`` and ``--set KEY=VALUE`` for any other setting), which default to the weights' stored test settings,
else :class:`~cornernet_saccade.inference.settings.SaccadeConfig`'s values.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

from cornernet_saccade.backends import BACKENDS, resolve_backend
from cornernet_saccade.backends.device import set_threads
from cornernet_saccade.config import apply_overrides
from cornernet_saccade.images import DEFAULT_MAX_PIXELS
from cornernet_saccade.inference.settings import SaccadeConfig
from cornernet_saccade.model.checkpoint import ONNX_SUFFIX, bundled_model_names

#: ``--option`` -> the :class:`SaccadeConfig` field it sets.
DETECTOR_OPTIONS = {"mode": "mode", "full_size": "full_size", "tile_size": "tile_size", "tile_overlap": "tile_overlap",
                    "score_threshold": "score_threshold", "max_crops": "att_max_crops", "views": "views",
                    "max_pixels": "max_pixels"}
#: Options that only one ``--mode`` reads -> that mode.
MODE_OPTIONS = {"full_size": "full", "tile_size": "tiled", "tile_overlap": "tiled"}
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(SaccadeConfig)}


def add_weights_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", required=True,
                        help="weights file (official .pkl, training checkpoint, .safetensors), training run "
                             f"folder (its last.pt) or bundled model name ({', '.join(bundled_model_names())})")


def add_dataset_options(parser: argparse.ArgumentParser, data_help: str) -> None:
    """``--data`` (annotations, described by ``data_help``), ``--image-root`` and ``--max-images``."""
    parser.add_argument("--data", required=True, help=data_help)
    parser.add_argument("--image-root", help="folder the image file names are relative to (default: per format, "
                                             "e.g. the JSON file's folder)")
    parser.add_argument("--max-images", type=int, default=0, help="use only the first N images (default: all)")


def add_max_pixels_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup, default: int | None) -> None:
    """``--max-pixels``: the largest image (width x height) decoded (``default``: this command's
    default, None to keep the detector's stored or default setting)."""
    parser.add_argument("--max-pixels", type=int, default=default, metavar="N",
                        help=f"largest image (width x height) to decode, a guard against decompression bombs; "
                             f"raise it for a larger image you trust (default: {DEFAULT_MAX_PIXELS})")


def add_runtime_options(parser: argparse.ArgumentParser) -> None:
    """``--device``, ``--backend`` and ``--threads``."""
    group = parser.add_argument_group("runtime")
    group.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N (default: auto)")
    group.add_argument("--backend", choices=BACKENDS, default="auto",
                       help="network implementation: auto (fast-bf16 on a CPU with AMX-BF16 or a GPU with bf16, "
                            "fast-fp16 on other GPUs, else fast; onnxruntime for a .onnx file), eager (the fp32 "
                            "reference), fast (BatchNorm folded, Winograd convolutions on the CPU; the same "
                            "detections), fast-bf16, fast-fp16 (CUDA), onnxruntime (default: auto; the start-up line "
                            "says what it picked and why)")
    group.add_argument("--threads", type=int, default=0,
                       help="CPU threads (default: 0 = the cores other work leaves free, at most torch's default; "
                            "the start-up line says how many and why)")


def probability(text: str) -> float:
    """argparse ``type`` of a score threshold: a number in ``[0, 1]`` (``nan``, ``inf`` refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a score in [0, 1]")
    return value


def positive_int(text: str) -> int:
    """argparse ``type`` of a count: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_detector_options(parser: argparse.ArgumentParser, score_threshold: float | None = None) -> None:
    """The detector settings a user most often changes; unset ones keep the weights' stored settings.
    ``score_threshold``: this command's own default for ``--score-threshold``."""
    group = parser.add_argument_group("detector settings (default: the weights' stored settings, else these)")
    group.add_argument("--mode", choices=("saccade", "full", "tiled"), default=None,
                       help="saccade crops, one pass over the whole image resized (full), or native-resolution "
                            f"tiles (tiled) (default: {_DEFAULTS['mode']})")
    group.add_argument("--full-size", type=int, default=None,
                       help=f"full mode: long side the image is resized to (default: {_DEFAULTS['full_size']})")
    group.add_argument("--tile-size", type=int, default=None,
                       help=f"tiled mode: tile side in image pixels; another side than 32k-1 is padded to the next "
                            f"network input side, e.g. DeepForest's 400 to 415 (default: {_DEFAULTS['tile_size']})")
    group.add_argument("--tile-overlap", type=int, default=None,
                       help=f"tiled mode: least overlap of neighbouring tiles, pixels (default: {_DEFAULTS['tile_overlap']})")
    shown = _DEFAULTS["score_threshold"] if score_threshold is None else score_threshold
    group.add_argument("--score-threshold", type=probability, default=score_threshold, metavar="SCORE",
                       help=f"keep detections scoring at least this (default: {shown}; the Python API's "
                            f"SaccadeDetector default is {_DEFAULTS['score_threshold']})")
    group.add_argument("--max-crops", type=int, default=None,
                       help=f"most zoomed crops per image; with --views auto, per 2048x2048 pixels of image "
                            f"(default: {_DEFAULTS['att_max_crops']})")
    group.add_argument("--views", choices=("fixed", "auto"), default=None,
                       help="saccade first views and crop budget: as the settings give them (fixed), or derived "
                            "from each image's size and --set min_object_size=PIXELS (auto) "
                            f"(default: {_DEFAULTS['views']})")
    add_max_pixels_option(group, None)
    group.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="settings",
                       help="any other test setting (a SaccadeConfig field for CornerNet-Saccade, a "
                            "CornerNetTestConfig one for Squeeze and CornerNet), e.g. --set init_sizes=[255,383] "
                            "--set top_k=50; repeatable; the options above win over it")


def detector_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The :class:`SaccadeConfig` fields the detector options set (only those given). An option of
    one mode (:data:`MODE_OPTIONS`: ``--full-size`` of full mode, ``--tile-size`` / ``--tile-overlap``
    of tiled mode) given without that ``--mode`` gets a warning on stderr: the other modes ignore it.
    ``--set KEY=VALUE`` items (values parsed as YAML) come first, the named options on top."""
    mode = getattr(args, "mode", None)
    for option, wanted in MODE_OPTIONS.items():
        value = getattr(args, option, None)
        if value is not None and mode != wanted:
            print(f"warning: --{option.replace('_', '-')} {value} only applies to {wanted} mode (--mode {wanted}); "
                  f"{mode or _DEFAULTS['mode']} mode ignores it", file=sys.stderr)
    named = {field: getattr(args, option) for option, field in DETECTOR_OPTIONS.items()
             if getattr(args, option, None) is not None}
    return {**apply_overrides({}, getattr(args, "settings", [])), **named}


def runtime_settings(args: argparse.Namespace) -> dict[str, Any]:
    """``backend`` and ``device`` for :func:`~cornernet_saccade.backends.load_detector`; applies
    ``--threads`` and reports the thread count on stderr, and the ONNX export the onnxruntime
    backend makes of torch weights before it starts."""
    choice = set_threads(args.threads)
    if choice.warning:
        print(f"warning: {choice.warning}", file=sys.stderr)
    backend, why = resolve_backend(args.backend, args.device, args.weights)
    chosen = f"{backend} (auto: {why})" if args.backend == "auto" else backend
    plural = "s" * (choice.threads != 1)
    print(f"device {args.device}, backend {chosen}, {choice.threads} CPU thread{plural} ({choice.why})",
          file=sys.stderr)
    if backend == "onnxruntime" and not str(args.weights).endswith(ONNX_SUFFIX):
        print(f"backend onnxruntime: exporting {args.weights} to an ONNX graph first (about half a minute for the "
              f"official network; export-onnx once and pass the .onnx file as --weights to skip this)",
              file=sys.stderr, flush=True)
    return {"backend": backend, "device": args.device}
