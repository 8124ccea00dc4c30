"""Choosing the network a :class:`~cornernet_saccade.inference.detector.SaccadeDetector` runs.

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
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from cornernet_saccade.backends.device import resolve_device
from cornernet_saccade.backends.hardware import choose_backend, detect_capability
from cornernet_saccade.config import config_from_dict
from cornernet_saccade.errors import CheckpointError, ConfigError
from cornernet_saccade.inference.cornernet_tester import SACCADE_ONLY_SETTINGS, tester_settings
from cornernet_saccade.inference.detector import Detector, DetectorBase, SaccadeDetector
from cornernet_saccade.inference.labels import resolve_class_names
from cornernet_saccade.inference.settings import CornerNetTestConfig, SaccadeConfig
from cornernet_saccade.model.base import MODEL_CLASSES, CornerNetBase
from cornernet_saccade.model.checkpoint import (
    ONNX_SUFFIX,
    model_from_stored,
    read_checkpoint,
    resolve_weights_path,
    stored_architecture,
)
from cornernet_saccade.model.cornernet import CornerNet  # noqa: F401  (registers its architecture)
from cornernet_saccade.model.cornernet_saccade import CornerNetSaccade
from cornernet_saccade.model.cornernet_squeeze import CornerNetSqueeze  # noqa: F401  (registers its architecture)
from cornernet_saccade.model.geometry import CROP_SIZE, padded_input_size

if TYPE_CHECKING:
    from cornernet_saccade.backends.onnx import OnnxNetwork

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
    model: CornerNetBase, name: str, *, input_size: int = 255, onnx_path: str | Path | None = None
) -> nn.Module:
    """The network for backend ``name`` built from ``model`` (any network of the family, in eval
    mode, on its device).

    ``onnxruntime`` uses ``onnx_path`` when given, else exports the model to a temporary file, removed
    once the session is open (about half a minute for the official network): for ``input_size`` only,
    or, for a network without attention heads (run by the CornerNet tester, whose canvas varies per
    image), for every canvas side up to :data:`~cornernet_saccade.backends.onnx.DEFAULT_MAX_SIZE`. It
    runs with as many intra-op threads as torch (``torch.get_num_threads()``).

    Every backend carries the model's ``class_names``, ``test_settings`` and ``num_classes`` (a
    :class:`~cornernet_saccade.backends.fast.FastNetwork` reads them from its copy of the model, an
    ``OnnxNetwork`` from the export's metadata), so the detector runs it as it would the model.
    """
    model = model.eval()
    name = resolve_backend(name, next(model.parameters()).device)[0]
    if name == "eager":
        return model
    if name in FAST_DTYPES:
        from cornernet_saccade.backends.fast import FastNetwork

        return FastNetwork(model, dtype=FAST_DTYPES[name])
    if name == "onnxruntime":
        from cornernet_saccade.backends.onnx import OnnxNetwork, export_onnx, has_attention

        threads = torch.get_num_threads()
        if onnx_path is not None:
            return OnnxNetwork(onnx_path, intra_op_threads=threads)
        fixed = has_attention(type(model))  # the CornerNet tester's canvas varies per image
        with tempfile.TemporaryDirectory(prefix="cornernet_saccade_") as folder:
            # the session holds the graph in memory once created: the file can go
            path = export_onnx(model, Path(folder) / f"model_{input_size}.onnx", size=input_size, dynamic_size=not fixed)
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


def network_for_mode(
    model: CornerNetSaccade, backend: str, mode: str, full_size: int | None = None, tile_size: int | None = None
) -> nn.Module:
    """:func:`make_backend` with the input size the detector mode feeds (:func:`mode_input_size`)."""
    return make_backend(model, backend, input_size=mode_input_size(mode, full_size, tile_size))


def load_model(weights: str | Path) -> CornerNetBase:
    """The network of a weights file, run folder or bundled name, of the class the file is for
    (:func:`~cornernet_saccade.model.checkpoint.stored_architecture`: stored, or read from the
    tensor names of an official ``.pkl``)."""
    path = resolve_weights_path(weights)
    stored = read_checkpoint(path)  # read once: it names the network and holds its weights
    architecture = stored_architecture(stored)
    if architecture not in MODEL_CLASSES:
        raise CheckpointError(f"{path}: unknown network {architecture!r} (known: {', '.join(MODEL_CLASSES)})")
    return model_from_stored(MODEL_CLASSES[architecture], stored)


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

    Settings: the weights' stored test settings, else the official ones, with ``settings`` (fields of
    :class:`~cornernet_saccade.inference.settings.SaccadeConfig`) on top. Class names: one per line of
    ``class_names_file``, else the weights', else COCO's for an 80-class model. The network is of
    the class the file is for (:func:`load_model`): CornerNet-Saccade weights get a
    :class:`SaccadeDetector`, CornerNet-Squeeze / CornerNet weights the CornerNet tester
    (:class:`~cornernet_saccade.inference.settings.CornerNetTestConfig` settings; the saccade-only
    ones such as ``mode`` are refused with a ``ConfigError`` naming them; an image whose padded canvas an ONNX
    export does not take is refused with an ``ImageError`` naming it).
    """
    path = resolve_weights_path(weights)
    backend = resolve_backend(backend, device, path)[0]
    if backend == "onnxruntime" and path.suffix == ONNX_SUFFIX:
        exported = _exported_network(path)
        if not exported.has_attention:
            return Detector(exported, _tester_settings(exported, class_names_file, settings))
        config = _detector_settings(exported, class_names_file, settings)
        _check_exported_size(exported, path, config)
        return SaccadeDetector(exported, config)
    model = load_model(path).to(resolve_device(device))
    if isinstance(model, CornerNetSaccade):
        config = _detector_settings(model, class_names_file, settings)
        network = network_for_mode(model, backend, config.mode, config.full_size, config.tile_size)
        return SaccadeDetector(network, config)
    tester = _tester_settings(model, class_names_file, settings)
    return Detector(make_backend(model, backend), tester)


def _detector_settings(
    source: CornerNetSaccade | OnnxNetwork, class_names_file: str | Path | None, settings: dict[str, Any]
) -> SaccadeConfig:
    """Set ``source.class_names`` (see :func:`load_detector`) and return its detector settings:
    its stored test settings with ``settings`` on top."""
    source.class_names = resolve_class_names(class_names_file, source.class_names, source.num_classes)
    return config_from_dict(SaccadeConfig, {**(source.test_settings or {}), **settings}, "detector settings")


def _tester_settings(
    source: CornerNetBase | OnnxNetwork, class_names_file: str | Path | None, settings: dict[str, Any]
) -> CornerNetTestConfig:
    """Set ``source.class_names`` (see :func:`load_detector`) and return its CornerNet tester settings:
    its stored test settings with ``settings`` on top (:func:`~cornernet_saccade.inference.cornernet_tester.tester_settings`).
    ConfigError when ``settings`` holds a setting only the saccade detector has (``mode``,
    ``att_max_crops``, ...): the tester would ignore it."""
    ignored = sorted(SACCADE_ONLY_SETTINGS & set(settings))
    if ignored:
        network = getattr(source, "architecture", "")
        raise ConfigError(
            f"{', '.join(ignored)}: settings of the CornerNet-Saccade detector; these weights ({network} network) run the "
            f"CornerNet tester (the whole padded image at each of its test_scales), which has none of them "
            f"(its settings: {', '.join(CornerNetTestConfig.__dataclass_fields__)})"
        )
    source.class_names = resolve_class_names(class_names_file, source.class_names, source.num_classes)
    merged = tester_settings(source, {**(source.test_settings or {}), **settings})
    return config_from_dict(CornerNetTestConfig, merged, "detector settings")


def _exported_network(path: Path) -> OnnxNetwork:
    """The onnxruntime network of an ``export-onnx`` file, with as many threads as torch."""
    from cornernet_saccade.backends.onnx import OnnxNetwork

    return OnnxNetwork(path, intra_op_threads=torch.get_num_threads())


def _check_exported_size(network: OnnxNetwork, path: Path, config: SaccadeConfig) -> None:
    """ConfigError unless the exported ``network`` (of file ``path``) takes the inputs ``config``'s
    mode feeds it (:func:`mode_input_size`)."""
    size = mode_input_size(config.mode, config.full_size, config.tile_size)
    if not network.input_sizes.accepts(size):
        fed, option = {
            "full": (f"full mode's canvas for --full-size {config.full_size}", ", or choose a smaller --full-size"),
            "tiled": (f"tiled mode's tiles of --tile-size {config.tile_size}", ", or choose a --tile-size it takes"),
        }.get(config.mode, ("saccade crops", ""))
        raise ConfigError(
            f"{path}: this export takes inputs of side {network.input_sizes}, not {size} ({fed}); export it "
            f"again without --fixed-size and with --max-size {size} or more{option}"
        )
