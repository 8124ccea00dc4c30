"""Shared pieces of the network benchmarks: models, backends, timing, FLOP counting, machine facts.

Backends (``--backends``), each an :class:`~cornernet_saccade.fast.InferenceNetwork`:

=================  ==========================================================================
``eager``          the model itself, eval mode, ``torch.inference_mode``
``fast-fp32``      :class:`FastNetwork` fp32 (BatchNorm folded, channels-last)
``fast-fp32-nchw``  the same without channels-last (to check that channels-last helps)
``fast-bf16``      :class:`FastNetwork` bf16 (weights and activations bf16, fp32 outputs)
``fast-compile``   :class:`FastNetwork` fp32 through ``torch.compile`` (compiles on first call: minutes)
``onnx``           :class:`OnnxNetwork`: onnxruntime on the exported graph (exported per input size)
=================  ==========================================================================
"""
from __future__ import annotations

import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from cornernet_saccade import CornerNetSaccade
from cornernet_saccade.fast import FastNetwork, InferenceNetwork

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = ("eager", "fast-fp32", "fast-fp32-nchw", "fast-bf16", "fast-compile", "onnx")
DEFAULT_BACKENDS = ("eager", "fast-fp32", "fast-bf16", "onnx")
#: Side of the square matrices timed for the matrix-multiply rate.
MATMUL_SIZE = 2048
#: Compute dtype of each backend, to compare it with the matching matrix-multiply rate.
BACKEND_DTYPES = {name: torch.bfloat16 if name == "fast-bf16" else torch.float32 for name in BACKENDS}


def official_model(init: str, weights: str | None = None) -> CornerNetSaccade:
    """The official architecture in eval mode: from ``weights`` when given, else with the GOLDEN.md
    fill (``init="golden"``, the weights the original was timed with) or torch's initialisation."""
    if weights:
        from cornernet_saccade.engine.checkpoints import resolve_weights_path

        return CornerNetSaccade.from_checkpoint(resolve_weights_path(weights))
    torch.manual_seed(0)
    model = CornerNetSaccade()
    if init == "golden":
        sys.path.insert(0, str(ROOT / "tests"))
        from reference_fill import fill_model

        fill_model(model)
    return model.eval()


def build_backend(name: str, model: CornerNetSaccade, size: int, threads: int, workdir: Path) -> InferenceNetwork:
    """The backend ``name`` (see the module docstring) for ``[B,3,size,size]`` inputs."""
    if name == "eager":
        return model.eval()
    if name.startswith("fast-"):
        dtype = torch.bfloat16 if name == "fast-bf16" else torch.float32
        return FastNetwork(model, dtype=dtype, channels_last=name != "fast-fp32-nchw", compile=name == "fast-compile")
    if name == "onnx":
        from cornernet_saccade.export import OnnxNetwork, export_onnx

        return OnnxNetwork(export_onnx(model, workdir / f"model_{size}.onnx", size=size), intra_op_threads=threads)
    raise ValueError(f"unknown backend {name!r} (choose from {BACKENDS})")


def temporary_workdir() -> tempfile.TemporaryDirectory:
    """A folder for exported graphs, removed at exit."""
    return tempfile.TemporaryDirectory(prefix="cornernet_bench_")


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


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (or the platform's processor string)."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_header(threads: int, repeats: int, warmup: int) -> str:
    """What the numbers were measured on, and a warning when the machine was not idle."""
    import onnxruntime

    load = os.getloadavg()[0]
    lines = [
        f"CPU: {cpu_name()} ({os.cpu_count()} logical CPUs), torch {torch.__version__}, "
        f"onnxruntime {onnxruntime.__version__}, {threads} threads",
        f"median of {max(1, repeats)} run(s) after {warmup} warm-up run(s); 1-minute load average at start {load:.2f}",
    ]
    if load > 0.5:
        lines.append("WARNING: the machine is busy; these timings are not comparable with the original's")
    return "\n".join(lines)
