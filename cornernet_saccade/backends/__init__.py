"""Choosing the network a :class:`~cornernet_saccade.inference.detector.SaccadeDetector` runs.

Every backend is called like the model, ``net(images [B,3,S,S] normalised BGR, with_attention=...)``
-> last-stack :class:`~cornernet_saccade.model.heads.HeadOutputs`, so the detector takes any of them:

``eager``        the model itself (fp32; the reference);
``fast``         :class:`~cornernet_saccade.backends.fast.FastNetwork`: BatchNorm folded, channels-last, fp32,
                 3x3 convolutions as Winograd F(4x4, 3x3) on the CPU (:mod:`~cornernet_saccade.backends.winograd`);
``fast-bf16``    the same in bfloat16 (CPU with AVX512_BF16/AMX, or CUDA);
``onnxruntime``  :class:`~cornernet_saccade.backends.onnx.OnnxNetwork` over a graph exported for input size
                 ``S`` (255 for saccade crops, ``full_size`` for full-image mode), CPU.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from torch import nn

from cornernet_saccade.errors import ConfigError
from cornernet_saccade.model.cornernet_saccade import CornerNetSaccade

BACKENDS = ("eager", "fast", "fast-bf16", "onnxruntime")


def make_backend(
    model: CornerNetSaccade, name: str, *, input_size: int = 255, onnx_path: str | Path | None = None
) -> nn.Module:
    """The network for backend ``name`` built from ``model`` (in eval mode, on its device).

    ``onnxruntime`` uses ``onnx_path`` when given, else exports the model to a temporary file,
    removed once the session is open (about half a minute for the official network); it runs with as many intra-op
    threads as torch (``torch.get_num_threads()``).
    """
    model = model.eval()
    if name == "eager":
        return model
    if name in ("fast", "fast-bf16"):
        from cornernet_saccade.backends.fast import FastNetwork

        return FastNetwork(model, dtype=torch.bfloat16 if name == "fast-bf16" else torch.float32)
    if name == "onnxruntime":
        from cornernet_saccade.backends.onnx import OnnxNetwork, export_onnx

        threads = torch.get_num_threads()
        if onnx_path is not None:
            return OnnxNetwork(onnx_path, intra_op_threads=threads)
        with tempfile.TemporaryDirectory(prefix="cornernet_saccade_") as folder:
            # the session holds the graph in memory once created: the file can go
            path = export_onnx(model, Path(folder) / f"model_{input_size}.onnx", size=input_size)
            return OnnxNetwork(path, intra_op_threads=threads)
    raise ConfigError(f"unknown backend {name!r} (choose from {', '.join(BACKENDS)})")


def network_for_mode(model: CornerNetSaccade, backend: str, mode: str, full_size: int | None = None) -> nn.Module:
    """:func:`make_backend` with the input size the detector mode feeds (255 crops, or
    ``full_size``, by default :class:`~cornernet_saccade.inference.settings.SaccadeConfig`'s)."""
    from cornernet_saccade.inference.settings import SaccadeConfig
    from cornernet_saccade.inference.views import CROP_SIZE

    size = CROP_SIZE if mode == "saccade" else (full_size or SaccadeConfig().full_size)
    return make_backend(model, backend, input_size=size)


def add_backend_argument(parser) -> None:
    """The ``--backend`` option of the commands that run the detector."""
    parser.add_argument(
        "--backend", choices=BACKENDS, default="eager",
        help="network implementation: eager (default), fast (BatchNorm folded, Winograd convolutions on the CPU; "
             "same detections, about 1.8x faster per crop on a 2-core CPU), fast-bf16, onnxruntime",
    )
    parser.add_argument(
        "--full-size", type=int, default=None,
        help="full mode: long side the image is resized to (default 511; 64k-1 sizes such as 1023 or 1279)",
    )
