"""Per-image latency of the three CornerNet-Lite detectors side by side, in one run.

Each network is the official architecture with the reference fill (docs/reference.md §B2), in eval
mode; each detector runs with its original test settings: CornerNet-Saccade's saccade pipeline
(2 downsized views + up to 30 crops of 255x255), CornerNet-Squeeze's tester (the image at its own
size, padded, flip test off) and CornerNet's (the image at its own size, padded, with the flipped
copy: a batch of 2). Per model, backend and image the table gives the median seconds of
``--repeats`` detections after ``--warmup`` untimed ones, their spread (min-max), the GFLOP the
convolutions execute per detection (counted on the eager network) and the rate that makes against
the CPU's fp32 matrix-multiply rate measured at the start.

``fast`` is :class:`~cornernet_saccade.backends.fast.FastNetwork` for all three (BatchNorm folded,
fire modules included; Winograd for the dense 3x3 convolutions). ``onnxruntime`` exports the network
first (untimed; for the tester models with every canvas side up to 2047, which takes minutes for
CornerNet) and runs the graph with ``--threads`` intra-op threads.

    python benchmarks/family.py --repeats 3
    python benchmarks/family.py --models squeeze saccade --images examples/shapes_scene.jpg --repeats 1
"""
from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from common import (
    BACKEND_DTYPES,
    add_threads_argument,
    argument_parser,
    begin,
    conv_gflop,
    default_images,
    load_images,
    matmul_gflops,
    run_seconds,
)

from cornernet_saccade import CornerNet, CornerNetSaccade, CornerNetSqueeze
from cornernet_saccade.backends import make_backend, resolve_backend
from cornernet_saccade.inference.cornernet_tester import CornerNetDetector
from cornernet_saccade.inference.detector import SaccadeDetector
from cornernet_saccade.inference.settings import CornerNetTestConfig
from cornernet_saccade.model.base import CornerNetBase
from cornernet_saccade.tables import format_table
from cornernet_saccade.testing import fill_model

MODELS: dict[str, type[CornerNetBase]] = {"saccade": CornerNetSaccade, "squeeze": CornerNetSqueeze, "cornernet": CornerNet}
BACKENDS = ("eager", "auto", "fast", "fast-bf16", "onnxruntime")


@dataclass
class Measurement:
    model: str
    backend: str
    image: str
    seconds: list[float]
    gflop: float

    def row(self, peaks: dict[torch.dtype, float], eager_seconds: float | None) -> list[str]:
        median = statistics.median(self.seconds)
        rate = self.gflop / median
        backend = resolve_backend(self.backend, "cpu")[0]
        label = f"auto ({backend})" if self.backend == "auto" else backend
        ratio = "-" if eager_seconds is None else f"{eager_seconds / median:.2f}"
        return [self.model, label, self.image, f"{median:.3f}", ratio, f"{min(self.seconds):.3f}-{max(self.seconds):.3f}",
                f"{self.gflop:.1f}", f"{rate:.1f}", f"{rate / peaks[BACKEND_DTYPES[backend]]:.0%}"]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argument_parser(__doc__ or "")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=["eager", "fast"])
    parser.add_argument("--images", nargs="+", type=Path, help="images (default: demo.jpg if present, examples/)")
    parser.add_argument("--repeats", type=int, default=3, help="timed detections per image (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed detections first (default 1)")
    add_threads_argument(parser)
    return parser.parse_args(argv)


def filled_model(name: str) -> CornerNetBase:
    """The official architecture of ``name`` with the reference fill, in eval mode."""
    model = MODELS[name]()
    fill_model(model)
    return model.eval()


def detector_for(model: CornerNetBase, backend: str) -> Callable[[np.ndarray], object]:
    """The detector of ``model`` with its original test settings, its network run by ``backend``."""
    network = make_backend(model, backend)  # eager: the model itself
    if isinstance(model, CornerNetSaccade):
        return SaccadeDetector(network)
    return CornerNetDetector(network, CornerNetTestConfig.for_model(model.output_stride))


def measure(name: str, backends: Sequence[str], images: list[tuple[str, np.ndarray]], repeats: int,
            warmup: int) -> list[Measurement]:
    model = filled_model(name)
    eager = detector_for(model, "eager")
    with torch.inference_mode():  # the convolutions' work does not depend on the backend: count it once
        gflops = {image_name: conv_gflop(model, lambda: eager(pixels)) for image_name, pixels in images}
    results = []
    for backend in backends:
        detect = eager if backend == "eager" else detector_for(model, backend)
        for image_name, pixels in images:
            with torch.inference_mode():
                seconds = run_seconds(lambda: detect(pixels), repeats, warmup)
            results.append(Measurement(name, backend, image_name, seconds, gflops[image_name]))
            print(f"  {name} {backend} {image_name}: {statistics.median(seconds):.3f} s", file=sys.stderr)
    return results


HEADER = ("model", "backend", "image", "median s", "x eager", "spread s", "GFLOP", "GFLOP/s", "of matmul (its dtype)")


def table(measurements: Sequence[Measurement], peaks: dict[torch.dtype, float]) -> str:
    """One row per measurement; ``x eager``: eager's median of the same model and image in this run /
    this row's (``-`` without an eager row)."""
    eager = {(m.model, m.image): statistics.median(m.seconds) for m in measurements if m.backend == "eager"}
    rows = [m.row(peaks, eager.get((m.model, m.image))) for m in measurements]
    return format_table(HEADER, rows, (False, False, False, *[True] * 6))


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    begin(args.threads, "official architectures, reference fill", args.repeats, args.warmup)
    images = load_images(args.images or default_images(with_demo=True))
    peaks = {dtype: matmul_gflops(dtype) for dtype in (torch.float32, torch.bfloat16)}
    print("matrix-multiply rate: " + ", ".join(f"{dtype} {rate:.1f} GFLOP/s" for dtype, rate in peaks.items()))
    measurements = [m for name in args.models for m in measure(name, args.backends, images, args.repeats, args.warmup)]
    print(table(measurements, peaks))


if __name__ == "__main__":
    main()
