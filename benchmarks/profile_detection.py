"""Where one saccade detection spends its time, and what the bf16 path tried to win it back.

Two tables for the whole saccade detector on one image (default: the original's demo.jpg, official
architecture with the reference fill, 2 + 30 crops), one run on one machine:

* **variants**: median seconds per detection of eager fp32 (the baseline of the ``x eager`` column)
  and of the default backend (``auto``: fast-bf16 on a CPU with AMX) with the changes issue 28 asked
  to try: crops per network call (``batch_size`` 4, the CPU default; 8; one call per saccade round),
  channels-first instead of channels-last, and ``torch.compile`` of the folded network (inductor fuses
  the ReLUs and adds into the convolutions' epilogues). ``network s`` is the mean time per detection
  inside the network's forward calls, ``outside s`` the rest of the mean (decoding, pasting, locations,
  soft-NMS);
* **operators**: ``torch.profiler``'s self CPU time per operator type of one detection with the
  default backend, and the convolutions' achieved rate (their multiply-accumulates x 2 over their
  time) against the machine's ``torch.mm`` rate in the same dtype.

    python benchmarks/profile_detection.py --threads 2 --repeats 3
    python benchmarks/profile_detection.py --variants eager default --repeats 1 --warmup 0   # quick
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from common import (
    BACKEND_DTYPES,
    add_common_arguments,
    argument_parser,
    begin,
    conv_gflop,
    default_images,
    load_images,
    matmul_gflops,
    model_label,
    official_model,
    run_seconds,
)
from torch import nn

from cornernet_saccade.backends import FAST_DTYPES, make_backend, resolve_backend
from cornernet_saccade.backends.fast import FastNetwork
from cornernet_saccade.inference.saccade_detector import SaccadeDetector
from cornernet_saccade.model.cornernet_saccade import CornerNetSaccade
from cornernet_saccade.tables import format_table

#: One crop batch for the whole round (the first views, then up to 30 crops per round).
ROUND_BATCH = 64
#: What each variant builds: (backend name or "default", FastNetwork options, SaccadeConfig.batch_size).
VARIANTS: dict[str, tuple[str, dict[str, bool], int | None]] = {
    "eager": ("eager", {}, None),
    "default": ("default", {}, None),
    "batch 8": ("default", {}, 8),
    "one batch per round": ("default", {}, ROUND_BATCH),
    "channels-first": ("default", {"channels_last": False}, None),
    "compiled": ("default", {"compile": True}, None),
}
OPERATOR_ROWS = 12


@dataclass
class NetworkClock:
    """Seconds spent inside a network's forward calls (forward pre-hook to forward hook)."""

    seconds: float = 0.0
    started: float = 0.0

    def attach(self, network: nn.Module) -> None:
        network.register_forward_pre_hook(self.start)
        network.register_forward_hook(self.stop)

    def start(self, *_: object) -> None:
        self.started = time.perf_counter()

    def stop(self, *_: object) -> None:
        self.seconds += time.perf_counter() - self.started


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argument_parser(__doc__)
    parser.add_argument("--variants", nargs="+", choices=tuple(VARIANTS), default=tuple(VARIANTS),
                        help="what to time (default: all; 'eager' is the x-eager baseline)")
    parser.add_argument("--image", help="image to detect on (default: the original's demo.jpg)")
    add_common_arguments(parser, repeats=3)
    return parser.parse_args(argv)


def build_network(model: CornerNetSaccade, variant: str) -> tuple[nn.Module, str]:
    """The network of ``variant`` and the backend it stands for."""
    backend, options, _ = VARIANTS[variant]
    name = resolve_backend("auto", "cpu")[0] if backend == "default" else backend
    if options:
        return FastNetwork(model, dtype=FAST_DTYPES[name], **options), name
    network = make_backend(model, name)
    assert isinstance(network, nn.Module)
    return network, name


def time_variant(model: CornerNetSaccade, variant: str, pixels: np.ndarray, args: argparse.Namespace) -> list[str]:
    """One row of the variants table (``x eager`` filled in later). ``network s`` and ``outside s``
    are means over the timed runs (``-`` for the compiled network, whose forward hooks dynamo would
    trace); ``median s`` is the median."""
    network, backend = build_network(model, variant)
    compiled = VARIANTS[variant][1].get("compile", False)
    clock = NetworkClock()
    if not compiled:
        clock.attach(network)
    detector = SaccadeDetector(network, batch_size=VARIANTS[variant][2])
    crops: list[int] = []

    def detect() -> None:
        crops[:] = [len(detector(pixels).trace.crops)]

    for _ in range(args.warmup):
        detect()
    clock.seconds = 0.0
    seconds = run_seconds(detect, args.repeats, warmup=0)
    mean = sum(seconds) / len(seconds)
    network_s = "-" if compiled else f"{clock.seconds / len(seconds):.3f}"
    outside_s = "-" if compiled else f"{mean - clock.seconds / len(seconds):.3f}"
    print(f"  {variant}: {statistics.median(seconds):.3f} s", file=sys.stderr, flush=True)
    return [variant, backend, str(VARIANTS[variant][2] or "4 (CPU default)"), str(crops[0]),
            f"{statistics.median(seconds):.3f}", f"{min(seconds):.3f}-{max(seconds):.3f}", network_s, outside_s]


def operator_table(model: CornerNetSaccade, pixels: np.ndarray) -> str:
    """Self CPU time per operator type of one detection with the default backend, and the
    convolutions' achieved rate against the matrix-multiply rate of the backend's dtype."""
    network, backend = build_network(model, "default")
    detector = SaccadeDetector(network)
    detector(pixels)  # warm-up
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        start = time.perf_counter()
        detector(pixels)
        total = time.perf_counter() - start
    events = sorted(profile.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    rows = [[e.key, str(e.count), f"{e.self_cpu_time_total / 1e6:.3f}", f"{100 * e.self_cpu_time_total / 1e6 / total:.1f}"]
            for e in events[:OPERATOR_ROWS]]
    conv_seconds = sum(e.self_cpu_time_total for e in events if "conv" in e.key.lower()) / 1e6
    gflop = conv_gflop(network, lambda: detector(pixels))
    peak = matmul_gflops(BACKEND_DTYPES[backend])
    rate = gflop / conv_seconds if conv_seconds else float("nan")
    return (format_table(("operator", "calls", "self s", "% of detection"), rows, (False, True, True, True))
            + f"\n\none detection with {backend}: {total:.3f} s (profiled); convolutions: {gflop:.1f} GFLOP (direct count) "
              f"in {conv_seconds:.3f} s = {rate:.0f} GFLOP/s, {100 * rate / peak:.0f} % of torch.mm's {peak:.0f} GFLOP/s "
              f"({BACKEND_DTYPES[backend]}, 2048x2048)")


def variants_table(model: CornerNetSaccade, pixels: np.ndarray, args: argparse.Namespace,
                   run: Callable[..., list[str]] = time_variant) -> str:
    rows = [run(model, variant, pixels, args) for variant in args.variants]
    eager = next((float(row[4]) for row in rows if row[0] == "eager"), None)
    for row in rows:
        row.append("-" if eager is None else f"{eager / float(row[4]):.2f}")
    header = ("variant", "backend", "crops per call", "views", "median s", "spread s", "network s", "outside s", "x eager")
    return format_table(header, rows, (False, False, True, True, True, True, True, True, True))


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    begin(args.threads, model_label(args.init, args.weights), args.repeats, args.warmup)
    model = official_model(args.init, args.weights)
    path = Path(args.image) if args.image else default_images(with_demo=True)[0]
    name, pixels = load_images([path])[0]
    print(f"image: {name} ({pixels.shape[1]}x{pixels.shape[0]})\n")
    print(variants_table(model, pixels, args))
    print()
    print(operator_table(model, pixels))


if __name__ == "__main__":
    main()
