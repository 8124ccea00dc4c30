"""Shared pieces of the benchmarks: models, backends, images, timing, FLOP counting, machine facts.

Backends (``--backends``), each an :class:`~cornernet_saccade.model.protocol.DetectionNetwork`; the first four
are those of :mod:`cornernet_saccade.backends` (``--backend`` of ``detect`` and ``evaluate``):

=================  ==========================================================================
``eager``          the model itself, eval mode, ``torch.inference_mode``
``fast``           :class:`FastNetwork` fp32 (BatchNorm folded, channels-last, Winograd 3x3
                   convolutions on the CPU)
``fast-bf16``      :class:`FastNetwork` bf16 (weights and activations bf16, fp32 outputs)
``onnxruntime``    :class:`OnnxNetwork`: onnxruntime on the exported graph (exported once per input
                   size, ``--threads`` intra-op threads)
``fast-direct``    ``fast`` without Winograd: oneDNN's direct convolutions (what Winograd gains)
``fast-nchw``      ``fast-direct`` without channels-last (what channels-last gains)
``fast-compile``   ``fast`` through ``torch.compile`` (compiles on first call: minutes)
=================  ==========================================================================
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cornernet_saccade import CornerNetSaccade
from cornernet_saccade.backends import BACKENDS as DETECTOR_BACKENDS
from cornernet_saccade.backends import FAST_DTYPES, make_backend
from cornernet_saccade.backends.device import usable_cores
from cornernet_saccade.backends.fast import FastNetwork
from cornernet_saccade.backends.hardware import SPEED_FLAGS, choose_backend, cpu_flags, cpu_name, detect_capability
from cornernet_saccade.images import read_image
from cornernet_saccade.inference.settings import SaccadeConfig
from cornernet_saccade.model.geometry import CROP_SIZE
from cornernet_saccade.model.protocol import DetectionNetwork
from cornernet_saccade.testing import fill_model

ROOT = Path(__file__).resolve().parents[1]
#: Backends only the network benchmarks offer (variants of ``fast``).
EXTRA_BACKENDS = ("fast-direct", "fast-nchw", "fast-compile")
BACKENDS = (*DETECTOR_BACKENDS, *EXTRA_BACKENDS)
DEFAULT_BACKENDS = ("eager", "fast", "fast-direct", "fast-bf16", "onnxruntime")
#: Side of the square matrices timed for the matrix-multiply rate.
MATMUL_SIZE = 2048
#: Compute dtype of each backend, to compare it with the matching matrix-multiply rate.
BACKEND_DTYPES = {**{name: torch.float32 for name in BACKENDS}, **FAST_DTYPES}
#: Where the original's test photo may be: the repository's ``shared/`` or the one beside it.
DEMO_CANDIDATES = (ROOT / "shared/reference/demo.jpg", ROOT.parent / "shared/reference/demo.jpg",
                   ROOT / "tests/data/saccade_demo.jpg")  # the same picture
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


# ---------------------------------------------------------------- arguments, models, images


def argument_parser(doc: str) -> argparse.ArgumentParser:
    """A parser whose description is the first paragraph of a script's docstring ``doc`` and whose
    ``--help`` ends with the rest (the method and example invocations)."""
    summary, _, details = doc.partition("\n\n")
    return argparse.ArgumentParser(description=summary, epilog=details,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def add_backends_argument(parser: argparse.ArgumentParser, choices: Sequence[str], default: Sequence[str],
                          what: str = "backends") -> None:
    """``--backends``: one or more of ``choices`` (default ``default``); ``what`` starts the help."""
    parser.add_argument("--backends", nargs="+", choices=choices, default=list(default),
                        help=f"{what} (default: {' '.join(default)})")


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    """``--threads``: torch's and onnxruntime's thread count."""
    parser.add_argument("--threads", type=int, default=2,
                        help="torch CPU threads and onnxruntime intra-op threads (default 2, as the original's timings: docs/reference.md §B9)")


def add_common_arguments(parser: argparse.ArgumentParser, repeats: int) -> None:
    """The timing scripts' ``--repeats`` (default ``repeats``), ``--warmup``, ``--threads``,
    ``--init`` and ``--weights``."""
    parser.add_argument("--repeats", type=int, default=repeats,
                        help=f"timed runs per case; the median is shown (default {repeats})")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs before timing (default 1)")
    add_threads_argument(parser)
    parser.add_argument("--init", choices=("golden", "default"), default="golden",
                        help="weights without --weights: reference fill of docs/reference.md §B2 (default, as the original was timed) "
                             "or torch's initialisation")
    parser.add_argument("--weights", help="use this weights file or bundled model name (e.g. shapes) instead")


def load_weights(weights: str) -> CornerNetSaccade:
    """The model of a weights file or bundled model name, in eval mode."""
    return CornerNetSaccade.from_checkpoint(weights)


def official_model(init: str, weights: str | None = None) -> CornerNetSaccade:
    """The model in eval mode: from ``weights`` when given, else the official architecture with the
    reference fill of docs/reference.md §B2 (``init="golden"``, the weights the original was timed with) or torch's
    initialisation (seed 0)."""
    if weights:
        return load_weights(weights)
    torch.manual_seed(0)
    model = CornerNetSaccade()
    if init == "golden":
        fill_model(model)
    return model.eval()


def model_label(init: str, weights: str | None) -> str:
    """How :func:`official_model` chose the weights, for the printed header."""
    if weights:
        return f"weights {weights}"
    return "official architecture, " + ("reference fill" if init == "golden" else "torch init (seed 0)")


def default_images(with_demo: bool) -> list[Path]:
    """The bundled ``examples/`` images, after the original's demo.jpg when ``with_demo`` and present."""
    demo = [path for path in DEMO_CANDIDATES if path.is_file()][:1] if with_demo else []
    return demo + sorted(p for p in (ROOT / "examples").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def load_images(paths: Sequence[Path]) -> list[tuple[str, np.ndarray]]:
    """``(file name, HxWx3 uint8 RGB)`` of each path (decoded once, outside any timing)."""
    return [(path.name, read_image(path)) for path in paths]


# ---------------------------------------------------------------- backends


def mode_input_size(mode: str) -> int:
    """Side of the network input the detector feeds in ``mode`` (a 255 crop, or the full-image canvas)."""
    return CROP_SIZE if mode == "saccade" else SaccadeConfig().full_size


def build_backend(name: str, model: CornerNetSaccade, size: int) -> DetectionNetwork:
    """The backend ``name`` (see the module docstring) for ``[B,3,size,size]`` inputs; onnxruntime
    gets as many intra-op threads as torch (set by :func:`begin`)."""
    if name in EXTRA_BACKENDS:
        direct = name in ("fast-direct", "fast-nchw")
        return FastNetwork(model, channels_last=name != "fast-nchw", winograd=False if direct else None,
                           compile=name == "fast-compile")
    return make_backend(model, name, input_size=size)


# ---------------------------------------------------------------- timing and FLOPs


def run_seconds(fn: Callable[[], object], repeats: int, warmup: int) -> list[float]:
    """Wall-clock seconds of each of ``max(1, repeats)`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    seconds = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return seconds


def median_seconds(fn: Callable[[], object], repeats: int, warmup: int) -> float:
    """Median of :func:`run_seconds`."""
    return statistics.median(run_seconds(fn, repeats, warmup))


def conv_gflop(model: nn.Module, run: Callable[[], object]) -> float:
    """GFLOP (2 x multiply-accumulates / 1e9) of every ``Conv2d`` that ``run()`` executes on ``model``."""
    macs = 0

    def count(conv: nn.Conv2d, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal macs
        kernel = conv.kernel_size[0] * conv.kernel_size[1]
        macs += output.numel() * (conv.in_channels // conv.groups) * kernel

    handles = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, nn.Conv2d)]
    try:
        run()
    finally:
        for handle in handles:
            handle.remove()
    return 2 * macs / 1e9


def matmul_gflops(dtype: torch.dtype, n: int = MATMUL_SIZE, repeats: int = 5) -> float:
    """The CPU's practical peak: the best ``torch.mm`` rate (GFLOP/s) of two ``n x n`` matrices in
    ``repeats`` runs after a warm-up."""
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    return 2 * n**3 / 1e9 / min(run_seconds(lambda: torch.mm(a, b), repeats, warmup=1))


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A markdown table of ``rows`` under ``header`` (``|`` inside a cell escaped)."""
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(cell.replace("|", "\\|") for cell in line) + " |" for line in lines)


# ---------------------------------------------------------------- machine facts


def machine_header(threads: int) -> str:
    """Date, CPU, cores, library versions and threads, with a warning when the machine was not idle."""
    import onnxruntime

    flags = ", ".join(cpu_flags()) or "none of " + ", ".join(SPEED_FLAGS)
    load = os.getloadavg()[0]
    lines = [
        f"date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"CPU: {cpu_name()}, {os.cpu_count()} logical CPUs ({usable_cores()} usable), "
        f"flags: {flags}; backend auto: {'{} ({})'.format(*choose_backend(detect_capability('cpu')))}",
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), onnxruntime {onnxruntime.__version__} "
        f"({threads} intra-op threads), python {platform.python_version()}",
        f"1-minute load average at start: {load:.2f}",
    ]
    if load > 0.5:
        lines.append("WARNING: the machine is busy; these timings are not comparable with the original's")
    return "\n".join(lines)


def begin(threads: int, model: str, repeats: int | None = None, warmup: int | None = None) -> None:
    """Set torch's thread count and print the machine header (and the timing method) first."""
    torch.set_num_threads(threads)
    print(machine_header(threads))
    print(f"model: {model}")
    if repeats is not None:
        print(f"median of {max(1, repeats)} run(s) after {warmup} warm-up run(s)")
    print(flush=True)
