"""Whole-detector latency per image and backend, saccade and full-image modes, with ratios to eager.

Each backend (``--backends``: those of ``detect --backend`` and the variants of ``fast`` in
benchmarks/common.py) is built once per mode, outside the
timing (the onnxruntime graph is exported once per input size: 255 for saccade crops, 511 for
full-image mode). For each image the detector then runs ``--warmup`` times untimed and ``--repeats``
times; the table gives per image and backend:

* ``median s``: the median seconds of one detection (image decoding not timed);
* ``crops``: the views the network processed (saccade: the 2 downsized views + the zoomed crops;
  full: the one 511x511 canvas), and ``Mpixels``: their network input (255x255 or 511x511 each);
* ``s/crop``: median seconds / crops;
* ``x eager``: eager's median seconds on that image and mode in this run / this backend's, and
  ``x eager/crop`` the same per crop (``-`` without an eager row in the run). Ratios are only ever
  taken between rows of one run on one machine (the header names its CPU and flags).

``auto`` is the backend ``detect`` runs by default; its row says which backend it picked here.
The original's own CPU timing (docs/reference.md §B9) was taken on another machine: it is printed
below the table as that, never as a ratio.

Random weights (the default ``--init golden``, as the original was timed, so demo.jpg gets its
2 + 30 crops) make the number of zoomed crops follow attention noise, and backends may differ in
it: compare seconds per crop.

    python benchmarks/inference.py --repeats 3
    python benchmarks/inference.py --backends eager auto --modes saccade
    python benchmarks/inference.py --images examples/shapes_scene.jpg --modes saccade --backends eager fast \\
        --repeats 1 --warmup 0
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from common import (
    BACKENDS,
    add_backends_argument,
    add_common_arguments,
    argument_parser,
    begin,
    build_backend,
    default_images,
    load_images,
    median_seconds,
    mode_input_size,
    model_label,
    official_model,
)

from cornernet_saccade import CornerNetSaccade
from cornernet_saccade.backends import resolve_backend
from cornernet_saccade.inference.detector import SaccadeDetector
from cornernet_saccade.inference.results import Detections
from cornernet_saccade.tables import format_table

DEFAULT_BACKENDS = ("eager", "fast", "fast-direct", "onnxruntime")
MODES = ("saccade", "full")
#: The original's CPU figure (docs/reference.md §B9: demo.jpg, 2 threads, torch 2.13 CPU, fp32), measured
#: on another machine: printed for context only.
ORIGINAL_DEMO = "20.97 s for demo.jpg (2 + 30 crops), fp32, 2 threads, on an AMD EPYC Zen 5 VM (docs/reference.md §B9)"
HEADER = ("image", "HxW", "mode", "backend", "crops", "Mpixels", "median s", "s/crop", "x eager", "x eager/crop")


@dataclass(frozen=True)
class Measurement:
    """One (image, mode, backend) timing: median seconds of a detection and the crops it processed."""

    image: str
    size_hw: tuple[int, int]
    mode: str
    backend: str
    seconds: float
    crops: int

    @property
    def mpixels(self) -> float:
        """Network input processed, in millions of pixels: each view's square canvas."""
        return self.crops * mode_input_size(self.mode) ** 2 / 1e6

    @property
    def seconds_per_crop(self) -> float:
        return self.seconds / max(self.crops, 1)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argument_parser(__doc__)
    parser.add_argument("--images", nargs="+", type=Path,
                        help="images (default: the original's demo.jpg when present, then examples/*)")
    add_backends_argument(parser, BACKENDS, DEFAULT_BACKENDS, "backends (eager gives the 'x eager/crop' column)")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES), help="detector modes (default: both)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda (onnxruntime always runs on the CPU)")
    add_common_arguments(parser, repeats=5)
    return parser.parse_args(argv)


def time_detection(detector: SaccadeDetector, pixels: np.ndarray, repeats: int, warmup: int) -> tuple[float, int]:
    """Median seconds of a detection on ``pixels`` and the crops the last run processed."""
    last: list[Detections] = []

    def detect() -> None:
        last[:] = [detector(pixels)]

    seconds = median_seconds(detect, repeats, warmup)
    return seconds, len(last[0].trace.crops)


def time_backend(
    model: CornerNetSaccade, backend: str, mode: str, images: Sequence[tuple[str, np.ndarray]],
    args: argparse.Namespace,
) -> list[Measurement]:
    """Build ``backend`` once for ``mode`` and time the detector on every image."""
    network = build_backend(backend, model, mode_input_size(mode))
    detector = SaccadeDetector(network, mode=mode)
    label = f"auto ({resolve_backend(backend, args.device)[0]})" if backend == "auto" else backend
    measurements = []
    for name, pixels in images:
        seconds, crops = time_detection(detector, pixels, args.repeats, args.warmup)
        measurements.append(Measurement(name, pixels.shape[:2], mode, label, seconds, crops))
        print(f"  {name} / {mode} / {label}: {seconds:.3f} s, {crops} crops", file=sys.stderr)
    return measurements


def speedup(reference_seconds: float | None, seconds: float) -> str:
    return "-" if reference_seconds is None else f"{reference_seconds / seconds:.2f}"


def table(measurements: Sequence[Measurement]) -> str:
    eager = {(m.image, m.mode): m for m in measurements if m.backend == "eager"}
    rows = []
    for m in sorted(measurements, key=lambda m: (m.image, MODES.index(m.mode))):
        reference = eager.get((m.image, m.mode))
        rows.append((m.image, f"{m.size_hw[0]}x{m.size_hw[1]}", m.mode, m.backend, str(m.crops), f"{m.mpixels:.2f}",
                     f"{m.seconds:.3f}", f"{m.seconds_per_crop:.3f}",
                     speedup(reference.seconds if reference else None, m.seconds),
                     speedup(reference.seconds_per_crop if reference else None, m.seconds_per_crop)))
    return format_table(HEADER, rows, (False, True, False, False, *[True] * 6))


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    begin(args.threads, model_label(args.init, args.weights), args.repeats, args.warmup)
    images = load_images(args.images or default_images(with_demo=True))
    model = official_model(args.init, args.weights).to(args.device)
    measurements = []
    for backend in args.backends:
        for mode in args.modes:
            measurements += time_backend(model, backend, mode, images, args)
    print(f"device {args.device}; whole detector per image (decoding of the image file not timed)")
    print(table(measurements))
    print(f"context, not a ratio: the original (princeton-vl/CornerNet-Lite) took {ORIGINAL_DEMO}; "
          f"for a ratio, time it beside ours on this machine with benchmarks/original.py")


if __name__ == "__main__":
    main()
