"""Memory each backend holds: its weights, and the process's resident memory when built and after a forward.

Each backend is measured in a fresh Python process (``--backend NAME`` runs one), so that memory one
backend's allocator kept cannot count for the next. The child builds the model (official architecture,
reference fill of docs/reference.md §B2, or ``--weights``), builds the backend from it, drops the model when the backend is a
copy (``fast*``, ``onnxruntime``), and reports:

* ``weights MB``: bytes of the backend's parameters and buffers (for onnxruntime: the exported
  graph's size);
* ``RSS built MB``: resident memory (``VmRSS``) once the backend is built;
* ``RSS run MB``: after ``--runs`` forwards of a ``[--batch,3,255,255]`` batch (with attention);
* ``peak MB``: the process's peak resident memory (``VmHWM``), building included.

The fast path's Winograd convolutions keep their filters transformed to 6x6 (:mod:`cornernet_saccade.backends.winograd`),
4x the 3x3 weights; ``fast-direct`` shows the fast path without them.

    python benchmarks/memory.py
    python benchmarks/memory.py --backends eager fast --batch 8
"""
from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch
from common import (
    BACKENDS,
    add_backends_argument,
    add_threads_argument,
    argument_parser,
    begin,
    build_backend,
    model_label,
    official_model,
)

from cornernet_saccade import CornerNetSaccade
from cornernet_saccade.backends import make_backend
from cornernet_saccade.model.geometry import CROP_SIZE
from cornernet_saccade.tables import format_table

DEFAULT_BACKENDS = ("eager", "fast", "fast-direct", "fast-bf16", "onnxruntime")
HEADER = ("backend", "weights MB", "RSS built MB", "RSS run MB", "peak MB")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argument_parser(__doc__)
    add_backends_argument(parser, BACKENDS, DEFAULT_BACKENDS)
    parser.add_argument("--batch", type=int, default=4, help="crops per forward (default 4, the CPU detector's batch)")
    parser.add_argument("--runs", type=int, default=2, help="forwards before the last reading (default 2)")
    parser.add_argument("--init", choices=("golden", "default"), default="golden", help="weights without --weights")
    parser.add_argument("--weights", help="a weights file or bundled model name instead of the official architecture")
    parser.add_argument("--backend", help=argparse.SUPPRESS)  # internal: measure this one backend, print JSON
    add_threads_argument(parser)
    return parser.parse_args(argv)


def status_mb(field: str) -> float:
    """A ``/proc/self/status`` memory field (``VmRSS``, ``VmHWM``) in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1e3
    raise RuntimeError(f"{field} not in /proc/self/status (this script needs Linux)")


def held_mb(network: torch.nn.Module) -> float:
    """MB of the parameters and buffers ``network`` holds."""
    tensors = [*network.parameters(), *network.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors) / 1e6


def build_with_weights(name: str, model: CornerNetSaccade) -> tuple[torch.nn.Module, float]:
    """The backend ``name`` for 255x255 crops and the MB of weights it holds (for onnxruntime, whose
    weights live in the session, the size of the exported graph)."""
    if name != "onnxruntime":
        network = build_backend(name, model, CROP_SIZE)
        return network, held_mb(network)
    from cornernet_saccade.backends.onnx import export_onnx

    with tempfile.TemporaryDirectory() as folder:
        path = export_onnx(model, Path(folder) / "model.onnx", size=CROP_SIZE)
        return make_backend(model, name, onnx_path=path), path.stat().st_size / 1e6


def measure(args: argparse.Namespace) -> dict[str, float]:
    """Build ``args.backend``, run it, and read the process's memory (in this process)."""
    torch.set_num_threads(args.threads)
    model = official_model(args.init, args.weights)
    network, weights = build_with_weights(args.backend, model)
    if network is not model:
        del model
    gc.collect()
    built = status_mb("VmRSS")
    images = torch.randn(args.batch, 3, CROP_SIZE, CROP_SIZE)
    with torch.inference_mode():
        for _ in range(args.runs):
            network(images, with_attention=True)
    return {"weights": weights, "built": built, "run": status_mb("VmRSS"), "peak": status_mb("VmHWM")}


def measure_in_child(backend: str, args: argparse.Namespace) -> dict[str, float] | None:
    """:func:`measure` for ``backend`` in a fresh interpreter; None (with the error shown) if it fails."""
    command = [sys.executable, __file__, "--backend", backend, "--batch", str(args.batch), "--runs", str(args.runs),
               "--init", args.init, "--threads", str(args.threads)]
    if args.weights:
        command += ["--weights", args.weights]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        print(f"  {backend}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.backend:
        print(json.dumps(measure(args)))
        return
    begin(args.threads, model_label(args.init, args.weights))
    print(f"forward: {args.runs} x [{args.batch},3,{CROP_SIZE},{CROP_SIZE}] with attention; one process per backend\n")
    rows = []
    for backend in args.backends:
        result = measure_in_child(backend, args)
        if result is not None:
            rows.append((backend, *(f"{result[key]:.0f}" for key in ("weights", "built", "run", "peak"))))
            print("  " + " ".join(rows[-1]), flush=True)
    print(format_table(HEADER, rows, (False, True, True, True, True)))


if __name__ == "__main__":
    main()
