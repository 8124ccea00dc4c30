"""Whole-detector latency per image: saccade vs full-image mode, beside the original's figures.

For each model, image and mode, the detector runs ``--warmup`` times untimed, then ``--repeats``
times; the table gives the median seconds, the views the detector looked at, the network input it
processed (each view's canvas: 255x255 per saccade crop, ``full_size``\\ :sup:`2` = 511x511 in
full-image mode) and the cost per view, beside the original's CPU figures from GOLDEN.md (20.97 s
for demo.jpg with 2 + 30 crops; 0.67 s per crop in a batch of 30; 1.96 s for one 511x511 forward
without NMS). Image decoding is not timed.

Models: the official architecture with the GOLDEN.md weight fill (``--init golden``, the weights
the original was timed with, so demo.jpg gets the same 2 + 30 crops) or torch's own random
initialisation (``--init default``), and the ``--weights`` file or bundled model when given.
Random weights make the number of zoomed crops depend on attention noise: compare times per crop.

    python benchmarks/inference.py --repeats 3 --threads 2
    python benchmarks/inference.py --images examples/shapes_scene.jpg --modes saccade --repeats 1 --warmup 0
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from cornernet_saccade import CornerNetSaccade
from cornernet_saccade.cli.detect import format_table
from cornernet_saccade.io import read_image
from cornernet_saccade.saccade import CROP_SIZE, SaccadeConfig, SaccadeDetector

ROOT = Path(__file__).resolve().parents[1]
#: Where the reference photo may be: the repository's ``shared/`` or the one beside it.
DEMO_CANDIDATES = (ROOT / "shared/reference/demo.jpg", ROOT.parent / "shared/reference/demo.jpg")
DEMO_NAME = "demo.jpg"
#: The original's CPU figures (GOLDEN.md "Timings": 2 threads, torch 2.13 CPU, fp32).
ORIGINAL_DEMO_SECONDS = 20.97
ORIGINAL_DEMO_CROPS = 32
ORIGINAL_SECONDS_PER_CROP = 0.67
ORIGINAL_FULL_FORWARD_SECONDS = 1.957


@dataclass(frozen=True)
class Measurement:
    """One (model, image, mode) timing: median seconds and the views looked at."""

    model: str
    image: str
    size_hw: tuple[int, int]
    mode: str
    seconds: float
    views: int

    @property
    def pixels(self) -> int:
        """Network input processed: each view's square canvas."""
        canvas = SaccadeConfig().full_size if self.mode == "full" else CROP_SIZE
        return self.views * canvas * canvas


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per case; the median is shown (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs before timing (default 1)")
    parser.add_argument("--images", nargs="+", type=Path, help="images (default: demo.jpg when present, examples/*)")
    parser.add_argument("--weights", help="also time this weights file or bundled model name")
    parser.add_argument("--modes", nargs="+", choices=("saccade", "full"), default=["saccade", "full"])
    parser.add_argument("--init", choices=("golden", "default", "none"), default="golden",
                        help="weights of the official architecture: GOLDEN.md fill (default), torch's random "
                             "initialisation, or none (time only --weights)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2, as GOLDEN.md)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    return parser.parse_args(argv)


def default_images() -> list[Path]:
    """demo.jpg when one of :data:`DEMO_CANDIDATES` exists, then the bundled examples."""
    demo = [path for path in DEMO_CANDIDATES if path.is_file()][:1]
    examples = sorted(p for p in (ROOT / "examples").iterdir() if p.suffix.lower() in (".jpg", ".png"))
    return demo + examples


def official_model(init: str) -> tuple[str, CornerNetSaccade]:
    """The official architecture with the GOLDEN.md fill or torch's initialisation (seed 0)."""
    torch.manual_seed(0)
    model = CornerNetSaccade()
    if init == "default":
        return "official arch, torch init", model.eval()
    sys.path.insert(0, str(ROOT / "tests"))
    from reference_fill import fill_model

    return "official arch, GOLDEN fill", fill_model(model).eval()


def models(args: argparse.Namespace) -> list[tuple[str, CornerNetSaccade]]:
    """The models to time, named."""
    chosen = [] if args.init == "none" else [official_model(args.init)]
    if args.weights:
        from cornernet_saccade.engine.evaluate import load_model

        chosen.append((f"weights {args.weights}", load_model(args.weights)[0]))
    return chosen


def measure(detector: SaccadeDetector, pixels: np.ndarray, repeats: int, warmup: int) -> tuple[float, int]:
    """Median seconds of ``repeats`` detections after ``warmup`` untimed ones, and the views seen."""
    for _ in range(warmup):
        detector(pixels)
    seconds = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        detections = detector(pixels)
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), len(detections.trace.crops)


def original_columns(measurement: Measurement) -> tuple[str, str]:
    """The original's seconds per image (where GOLDEN.md has the case) and seconds per view."""
    if measurement.mode == "full":
        return f"{ORIGINAL_FULL_FORWARD_SECONDS:.2f} (fwd only)", f"{ORIGINAL_FULL_FORWARD_SECONDS:.2f}"
    total = f"{ORIGINAL_DEMO_SECONDS:.2f} ({ORIGINAL_DEMO_CROPS} crops)" if measurement.image == DEMO_NAME else "-"
    return total, f"{ORIGINAL_SECONDS_PER_CROP:.2f}"


def table(measurements: Sequence[Measurement]) -> str:
    header = ("model", "image", "HxW", "mode", "views", "Mpixels", "median s", "s/view", "original s", "orig. s/view")
    rows = []
    for m in measurements:
        rows.append((m.model, m.image, f"{m.size_hw[0]}x{m.size_hw[1]}", m.mode, str(m.views), f"{m.pixels / 1e6:.2f}",
                     f"{m.seconds:.3f}", f"{m.seconds / max(m.views, 1):.3f}", *original_columns(m)))
    return format_table(header, rows, (False, False, True, False, True, True, True, True, True, True))


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    images = [(path.name, read_image(path)) for path in (args.images or default_images())]
    measurements = []
    for model_name, model in models(args):
        model.to(args.device)
        for mode in args.modes:
            detector = SaccadeDetector(model, mode=mode)
            for image_name, pixels in images:
                seconds, views = measure(detector, pixels, args.repeats, args.warmup)
                measurements.append(Measurement(model_name, image_name, pixels.shape[:2], mode, seconds, views))
                print(f"  {model_name} / {image_name} / {mode}: {seconds:.3f} s, {views} views", file=sys.stderr)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}, "
          f"median of {max(1, args.repeats)} after {args.warmup} warm-up run(s)")
    print(table(measurements))
    print("original: GOLDEN.md (princeton-vl/CornerNet-Lite on CPU, 2 threads); views = crops (saccade) or the "
          "511x511 canvas (full); random weights: crop counts follow attention noise")


if __name__ == "__main__":
    main()
