"""Choosing the network a detector runs, and building a detector from a weights file.

Every backend is called like the model, ``net(images [B,3,S,S] normalised BGR, with_attention=...)``
-> last-stack :class:`~cornernet_saccade.model.heads.HeadOutputs`, so the detector takes any of them:

``auto``         the default of :func:`load_detector` and the commands: the fastest of the ones below that
                 the machine runs well (:func:`resolve_backend`): ``fast-bf16`` on a CPU with AMX-BF16 or a
                 GPU with bf16, ``fast-fp16`` on a GPU without bf16, ``fast`` on other CPUs, ``onnxruntime``
                 for a ``.onnx`` file;
``eager``        the model itself (fp32; the reference; what ``SaccadeDetector(model)`` runs);
``fast``         :class:`~cornernet_saccade.backends.fast.FastNetwork`: BatchNorm folded, channels-last, fp32,
                 3x3 convolutions as Winograd F(4x4, 3x3) on the CPU (:mod:`~cornernet_saccade.backends.winograd`);
``fast-bf16``    the same in bfloat16 (CPU with AVX512_BF16/AMX, or CUDA);
``fast-fp16``    the same in float16 (CUDA only);
``onnxruntime``  :class:`~cornernet_saccade.backends.onnx.OnnxNetwork` over a graph exported for input size
                 ``S`` (255 for saccade crops, ``full_size`` for full-image mode; for CornerNet-Squeeze and
                 CornerNet, whose tester pads each image to its own canvas, every ``128k-1`` up to 2047), CPU;
                 or over a ``.onnx`` file written by ``export-onnx``, given as the weights (:func:`load_detector`).
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch

from cornernet_saccade.backends.device import resolve_device
from cornernet_saccade.backends.fast import FastNetwork
from cornernet_saccade.backends.hardware import choose_backend, detect_capability
from cornernet_saccade.backends.onnx import OnnxNetwork, export_onnx
from cornernet_saccade.errors import ConfigError
from cornernet_saccade.inference.detector import Detector, DetectorBase
from cornernet_saccade.inference.detector_base import detector_settings
from cornernet_saccade.inference.labels import resolve_class_names
from cornernet_saccade.inference.settings import SaccadeConfig
from cornernet_saccade.model.base import CornerNetBase
from cornernet_saccade.model.checkpoint import ONNX_SUFFIX, resolve_weights_path
from cornernet_saccade.model.geometry import CROP_SIZE, padded_input_size
from cornernet_saccade.model.protocol import DetectionNetwork, InputSizes
from cornernet_saccade.model.registry import load_model

#: What ``--backend`` takes: ``auto`` and the backends it chooses from.
BACKENDS = ("auto", "eager", "fast", "fast-bf16", "fast-fp16", "onnxruntime")
#: The compute dtype of each ``fast`` backend.
FAST_DTYPES = {"fast": torch.float32, "fast-bf16": torch.bfloat16, "fast-fp16": torch.float16}


def resolve_backend(name: str, device: str | torch.device = "auto", weights: str | Path | None = None) -> tuple[str, str]:
    """The backend ``name`` stands for and why: an explicit name as given; ``auto`` onnxruntime for
    a ``.onnx`` ``weights`` file (the only backend that runs one), else the choice of
    :func:`~cornernet_saccade.backends.hardware.choose_backend` for ``device`` (``auto``: CUDA when
    available)."""
    if name != "auto":
        return name, "as asked"
    if weights is not None and Path(weights).suffix == ONNX_SUFFIX:
        return "onnxruntime", "the weights are an ONNX file"
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return choose_backend(detect_capability(device))


def make_backend(
    model: CornerNetBase,
    name: str,
    *,
    input_size: int = 255,
    onnx_path: str | Path | None = None,
) -> DetectionNetwork:
    """The network for backend ``name`` built from ``model`` (any network of the family, in eval
    mode, on its device).

    ``onnxruntime`` uses ``onnx_path`` when given, else exports the model to a temporary file, removed
    once the session is open (about half a minute for the official network): for ``input_size`` only,
    or, for a network without attention heads (run by the CornerNet tester, whose canvas varies per
    image), for every canvas side up to :data:`~cornernet_saccade.backends.onnx.DEFAULT_MAX_SIZE`. It
    runs with as many intra-op threads as torch (``torch.get_num_threads()``).

    Every backend is a :class:`~cornernet_saccade.model.protocol.DetectionNetwork` giving the model's
    answers (a :class:`~cornernet_saccade.backends.fast.FastNetwork` reads them from its copy of the
    model, an ``OnnxNetwork`` from the export's metadata), so a detector runs it as it would the model.
    """
    model = model.eval()
    name = resolve_backend(name, model.device)[0]
    if name == "eager":
        return model
    if name in FAST_DTYPES:
        return FastNetwork(model, dtype=FAST_DTYPES[name])
    if name == "onnxruntime":
        threads = torch.get_num_threads()
        if onnx_path is not None:
            return OnnxNetwork(onnx_path, intra_op_threads=threads)
        with tempfile.TemporaryDirectory(prefix="cornernet_saccade_") as folder:
            # the session holds the graph in memory once created: the file can go; the CornerNet
            # tester's canvas varies per image, so its graph takes every size
            path = export_onnx(model, Path(folder) / f"model_{input_size}.onnx", size=input_size,
                               dynamic_size=not model.has_attention)
            return OnnxNetwork(path, intra_op_threads=threads)
    raise ConfigError(f"unknown backend {name!r} (choose from {', '.join(BACKENDS)})")


def mode_input_size(mode: str, full_size: int | None = None, tile_size: int | None = None) -> int:
    """The network input side the detector feeds in ``mode``: 255 crops, the canvas
    :func:`~cornernet_saccade.model.geometry.padded_input_size` of ``full_size`` (by default
    :class:`~cornernet_saccade.inference.settings.SaccadeConfig`'s): 500 -> 511, 1000 -> 1023, or in
    tiled mode the canvas of the tiles of side ``tile_size`` (by default SaccadeConfig's, 511;
    400 -> 415)."""
    defaults = SaccadeConfig()
    if mode == "tiled":
        return padded_input_size(tile_size or defaults.tile_size)
    return CROP_SIZE if mode == "saccade" else padded_input_size(full_size or defaults.full_size)


def load_detector(
    weights: str | Path,
    *,
    backend: str = "auto",
    device: str = "auto",
    class_names_file: str | Path | None = None,
    **settings: Any,
) -> DetectorBase:
    """The detector of a weights file, run folder or bundled model name (see
    :meth:`~cornernet_saccade.model.cornernet_saccade.CornerNetSaccade.from_checkpoint`), its network
    built by backend ``backend`` on ``device`` (``auto``: CUDA when available). Backend ``auto`` (the
    default) is :func:`resolve_backend`'s choice for the device; ``SaccadeDetector(model)`` stays the
    eager fp32 reference. With backend ``onnxruntime`` (or ``auto``), ``weights`` may also be a
    ``.onnx`` file written by ``export-onnx``, run as it is (on the CPU) by the detector of the network
    it was exported from; other backends refuse one with a ``CheckpointError`` naming the backend that
    runs it.

    Two plain steps: the network (:func:`~cornernet_saccade.model.registry.load_model`, or the ONNX
    network), then its detector (:func:`~cornernet_saccade.inference.detector.Detector`) with settings
    resolved once (:func:`~cornernet_saccade.inference.detector_base.detector_settings`: the weights'
    stored test settings, else the official ones, with ``settings`` on top) and class names (one per
    line of ``class_names_file``, else the weights', else COCO's for an 80-class model). CornerNet-Saccade
    weights get a ``SaccadeDetector``, CornerNet-Squeeze / CornerNet weights the CornerNet tester
    (:class:`~cornernet_saccade.inference.settings.CornerNetTestConfig` settings; the saccade-only ones
    such as ``mode`` are refused with a ``ConfigError`` naming them; an image whose padded canvas an
    ONNX export does not take is refused with an ``ImageError`` naming it).
    """
    path = resolve_weights_path(weights)
    backend = resolve_backend(backend, device, path)[0]
    network: DetectionNetwork
    if backend == "onnxruntime" and path.suffix == ONNX_SUFFIX:
        network = OnnxNetwork(path, intra_op_threads=torch.get_num_threads())
        config = detector_settings(network, settings)
        if isinstance(config, SaccadeConfig):
            _check_exported_size(network.input_sizes, path, config)
    else:
        model = load_model(path).to(resolve_device(device))
        config = detector_settings(model, settings)
        size = CROP_SIZE  # the tester's ONNX export takes every canvas size
        if isinstance(config, SaccadeConfig):
            size = mode_input_size(config.mode, config.full_size, config.tile_size)
        network = make_backend(model, backend, input_size=size)
    return Detector(network, config, resolve_class_names(class_names_file, network.class_names, network.num_classes))


def _check_exported_size(sizes: InputSizes, path: Path, config: SaccadeConfig) -> None:
    """ConfigError unless an export (file ``path``) taking inputs of side ``sizes`` takes the inputs
    ``config``'s mode feeds it (:func:`mode_input_size`)."""
    size = mode_input_size(config.mode, config.full_size, config.tile_size)
    if not sizes.accepts(size):
        fed, option = {
            "full": (f"full mode's canvas for --full-size {config.full_size}", ", or choose a smaller --full-size"),
            "tiled": (f"tiled mode's tiles of --tile-size {config.tile_size}", ", or choose a --tile-size it takes"),
        }.get(config.mode, ("saccade crops", ""))
        raise ConfigError(
            f"{path}: this export takes inputs of side {sizes}, not {size} ({fed}); export it "
            f"again without --fixed-size and with --max-size {size} or more{option}"
        )
