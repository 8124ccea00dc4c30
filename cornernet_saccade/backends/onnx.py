"""ONNX export of the test network, and an onnxruntime backend that is called like the model.

Any of the three networks exports (CornerNet-Saccade, CornerNet-Squeeze, CornerNet). The graph is
what detection runs: the last stack's corner heads and, for CornerNet-Saccade, its three attention
heads (``all_stacks=False``), BatchNorm folded into the convolutions (in float64, by
:func:`~cornernet_saccade.backends.fast.fold_batchnorm`; fire modules included), corner pooling
in its cummax-free form (ONNX has no cummax; forward values are identical). Input ``images``:
float32 ``[batch,3,H,W]`` normalised BGR. ``batch`` is dynamic; so are ``H`` and ``W``
(independently) unless exported with ``dynamic_size=False``: they take every side the network's
detector feeds (:func:`size_step`), up to ``max_size``:

* CornerNet-Saccade: ``32k - 1`` (:func:`~cornernet_saccade.model.geometry.is_input_size`: 31, 63,
  ..., 255, ..., 511, ...), so 255 crops and full mode's padded canvas
  :func:`~cornernet_saccade.model.geometry.padded_input_size` for a ``full_size`` up to ``max_size``;
* CornerNet-Squeeze and CornerNet: ``128k - 1`` (127, 255, 383, 511, ...), the CornerNet tester's
  canvases (:func:`~cornernet_saccade.model.geometry.tester_canvas_size`), which vary per image and
  scale (output maps ``(H+1)/8`` at Squeeze's stride 8, ``(H+1)/4`` at CornerNet's stride 4).

A fixed-size graph takes ``size`` only. Outputs, float32, batch first, in this order:
:data:`~cornernet_saccade.backends.fast.HEAD_OUTPUT_NAMES` (``tl_heat [B,C,H',W']``... see
:class:`~cornernet_saccade.model.heads.HeadOutputs`), the six corner outputs only for the networks
without attention heads (the CornerNet tester reads no more).

The file's ``metadata_props`` carry what detection needs besides the graph (:func:`export_metadata`):
``format`` (``cornernet_saccade``), ``architecture`` (``saccade``, ``squeeze`` or ``cornernet``:
which detector runs it; files without it are CornerNet-Saccade exports), ``model_config``,
``class_names`` and ``test_settings`` (JSON, as a safetensors file of the project stores them),
``input_size`` (the size it was exported and checked at), ``input_size_multiple`` (``M``; 0 for a
fixed-size graph) and ``input_size_max``.

Exporter: ``torch.onnx.export(dynamo=True)`` (``torch.export`` + onnxscript, the recommended and
default exporter since torch 2.9; the TorchScript exporter is deprecated). Weights are stored inside
the ``.onnx`` file (the official model is about 470 MB, under protobuf's 2 GB limit).
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from cornernet_saccade.backends.fast import (
    HEAD_OUTPUT_NAMES,
    NUM_CORNER_OUTPUTS,
    check_images,
    fold_batchnorm,
    head_outputs_from_tensors,
    last_stack_tensors,
)
from cornernet_saccade.errors import CheckpointError, ConfigError
from cornernet_saccade.model.base import CornerNetBase
from cornernet_saccade.model.checkpoint import FORMAT_TAG
from cornernet_saccade.model.cornernet_saccade import CornerNetSaccade
from cornernet_saccade.model.geometry import INPUT_SIZE_STEP, TESTER_SIZE_STEP, output_size, output_stride
from cornernet_saccade.model.heads import HeadOutputs
from cornernet_saccade.model.protocol import InputSizes
from cornernet_saccade.model.registry import MODEL_CLASSES
from cornernet_saccade.outputs import atomic_write

INPUT_NAME = "images"
#: Largest accepted ``max |onnxruntime - torch| / max |torch|`` (over the outputs) in :func:`verify_export`.
VERIFY_TOLERANCE = 1e-4
#: Oldest opset the exporter writes (``torch.onnx.export(dynamo=True)`` has no lower implementations).
MIN_OPSET = 18
#: Largest input height and width of a dynamic-size export unless told otherwise.
DEFAULT_MAX_SIZE = 2047


def output_names(network: type[CornerNetBase]) -> list[str]:
    """The outputs of an export of a ``network`` class: :data:`HEAD_OUTPUT_NAMES`, without the
    attention maps for a network without attention heads."""
    return list(HEAD_OUTPUT_NAMES if network.has_attention else HEAD_OUTPUT_NAMES[:NUM_CORNER_OUTPUTS])


def size_step(network: type[CornerNetBase]) -> int:
    """``M`` of the input sides ``Mk - 1`` an export of a ``network`` class takes: the sides its
    detector feeds (:data:`~cornernet_saccade.model.geometry.INPUT_SIZE_STEP` for CornerNet-Saccade's
    crops and full mode's canvas, :data:`~cornernet_saccade.model.geometry.TESTER_SIZE_STEP` for the
    CornerNet tester's canvases)."""
    return INPUT_SIZE_STEP if network.has_attention else TESTER_SIZE_STEP


class LastStackNetwork(nn.Module):
    """``images [B,3,H,W] -> (tl_heat, br_heat, tl_tag, br_tag, tl_off, br_off[, att_coarse, att_middle, att_fine])``.

    A CPU float32 copy of ``model`` in eval mode with BatchNorm folded and export-friendly pooling;
    ``model`` is not modified; the attention maps only for a model with attention heads.
    ``max_size``: the largest input side a dynamic-size trace must cover (the pooling then takes a
    fixed number of steps), None for a fixed-size trace.
    """

    def __init__(self, model: CornerNetBase, max_size: int | None = None):
        super().__init__()
        network = fold_batchnorm(model)
        max_length = None if max_size is None else output_size(max_size, 1 + model.stem_residuals)
        self.network = network.set_export_friendly_pooling(True, max_length).to("cpu", torch.float32)
        self.with_attention = model.has_attention

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        return last_stack_tensors(self.network(images, with_attention=self.with_attention, all_stacks=False))


def export_onnx(
    model: CornerNetBase,
    path: str | Path,
    *,
    size: int = 255,
    opset: int | None = None,
    dynamic_size: bool = True,
    max_size: int = DEFAULT_MAX_SIZE,
) -> Path:
    """Write the test network of ``model`` to ``path`` (atomically), traced on a ``[1,3,size,size]``
    input, with a dynamic batch and, when ``dynamic_size``, dynamic ``H, W`` (the sizes of
    :class:`InputSizes` up to ``max_size``), else fixed at ``size``; the model's config, class
    names and test settings go into the file's metadata (:func:`export_metadata`).

    ``opset``: ONNX opset version (the exporter's default when None). Returns ``path``.
    ``ConfigError`` if the network's detector does not feed ``size`` (see :func:`check_input_size`)
    or, for a dynamic-size export, ``size`` is not one of its sizes.
    """
    check_input_size(size, size_step(type(model)))
    if opset is not None and opset < MIN_OPSET:
        raise ConfigError(f"opset {opset}: the ONNX exporter writes opset {MIN_OPSET} or later")
    sizes = export_input_sizes(model, size, dynamic_size, max_size)
    network = LastStackNetwork(model, max_size if dynamic_size else None).eval()
    program = _export_program(network, size, sizes, opset, output_names(type(model)))
    program.model.metadata_props.update(export_metadata(model, size, sizes))
    atomic_write(path, lambda tmp: program.save(tmp, external_data=False))
    return Path(path)


def export_input_sizes(model: CornerNetBase, size: int, dynamic_size: bool, max_size: int) -> InputSizes:
    """The input sides :func:`export_onnx` gives the graph (:func:`size_step`); ``ConfigError`` unless
    they include ``size``."""
    sizes = InputSizes(size_step(type(model)), max_size) if dynamic_size else InputSizes(0, size)
    if not sizes.accepts(size):
        raise ConfigError(f"input size {size}: a dynamic-size export takes sizes {sizes} (or use a fixed size)")
    return sizes


def _export_program(network: LastStackNetwork, size: int, sizes: InputSizes, opset: int | None, outputs: list[str]) -> Any:
    """The ``torch.onnx.ONNXProgram`` of ``network`` for ``images [batch,3,H,W]``, its outputs named ``outputs``."""
    axes: dict[int, Any] = {0: torch.export.Dim("batch", min=1)}
    if sizes.multiple:
        most = (sizes.largest + 1) // sizes.multiple
        axes[2] = sizes.multiple * torch.export.Dim("kh", min=1, max=most) - 1
        axes[3] = sizes.multiple * torch.export.Dim("kw", min=1, max=most) - 1
    with _quiet_exporter():
        return torch.onnx.export(
            network, (torch.zeros(1, 3, size, size),), input_names=[INPUT_NAME],
            output_names=outputs, opset_version=opset, dynamo=True, dynamic_shapes={INPUT_NAME: axes},
        )


def export_metadata(model: CornerNetBase, size: int, sizes: InputSizes) -> dict[str, str]:
    """The ``metadata_props`` of an export (see the module docstring): strings, JSON where structured."""
    return {
        "format": FORMAT_TAG,
        "architecture": model.architecture,
        "model_config": json.dumps(dataclasses.asdict(model.config)),
        "class_names": json.dumps(model.class_names),
        "test_settings": json.dumps(model.test_settings),
        "input_size": str(size),
        "input_size_multiple": str(sizes.multiple),
        "input_size_max": str(sizes.largest),
    }


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's progress lines, its log notes on absent torchvision ops and its
    deprecation warnings about its own internals; errors still raise."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        logger.setLevel(level)


def check_input_size(size: int, step: int = INPUT_SIZE_STEP) -> None:
    """``ConfigError`` unless ``size`` is a side ``step * k - 1`` (:func:`size_step`; for the saccade
    network :func:`~cornernet_saccade.model.geometry.is_input_size`: 255, 511, ...)."""
    if not InputSizes(step, size).accepts(size):
        padded = "full mode pads its canvas to one" if step == INPUT_SIZE_STEP else "the CornerNet tester pads images to one"
        raise ConfigError(f"input size {size}: the network takes sides {step}k-1 (e.g. 255 or 511; {padded})")


class OnnxNetwork(nn.Module):
    """onnxruntime backend for a graph written by :func:`export_onnx`, called like the model.

    ``OnnxNetwork(path, intra_op_threads=None, providers=("CPUExecutionProvider",))``;
    ``net(images, with_attention=True)`` takes ``[B,3,H,W]`` float images (any device; run on the
    CPU; ``H, W`` among :attr:`input_sizes`) and returns one-stack :class:`HeadOutputs` of float32 CPU
    tensors (``attentions`` empty for a network without attention heads, as the model's).
    ``intra_op_threads``: onnxruntime's thread count (None: its default, one per physical core). It
    implements :class:`~cornernet_saccade.model.protocol.DetectionNetwork` from the export's
    metadata (``class_names``, ``test_settings``, ``num_classes``, ``input_sizes``) and its network
    class (``architecture``, ``has_attention``, ``output_stride``), so it is run by the detector of
    the network it was exported from; ``input_size`` is the side it was exported at. A file without
    the metadata (written before it existed) is a CornerNet-Saccade export that takes its graph's
    fixed input size and has no class names or test settings.
    """

    architecture: str
    has_attention: bool
    output_stride: int
    output_names: list[str]
    num_classes: int
    class_names: list[str] | None
    test_settings: dict[str, Any] | None
    input_size: int
    input_sizes: InputSizes

    def __init__(
        self,
        path: str | Path,
        *,
        intra_op_threads: int | None = None,
        providers: tuple[str, ...] = ("CPUExecutionProvider",),
    ):
        super().__init__()
        import onnxruntime as ort

        options = ort.SessionOptions()
        # no busy-waiting between runs: the detector runs torch ops (decoding) in the same process
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if intra_op_threads is not None:
            options.intra_op_num_threads = intra_op_threads
        try:
            self.session = ort.InferenceSession(str(path), sess_options=options, providers=list(providers))
        except Exception as exc:  # onnxruntime raises its own exception types for missing / invalid files
            raise CheckpointError(f"{path}: not a loadable ONNX model ({exc})") from None
        metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        self._check_interface(Path(path), metadata.get("architecture", CornerNetSaccade.architecture))
        self._read_metadata(Path(path), metadata)

    def _check_interface(self, path: Path, architecture: str) -> None:
        """Set ``architecture``, ``has_attention``, ``output_stride`` and ``output_names``;
        ``CheckpointError`` unless the graph takes ``images`` and returns what an export of
        ``architecture`` returns."""
        outputs = [o.name for o in self.session.get_outputs()]
        inputs = [i.name for i in self.session.get_inputs()]
        model_class = MODEL_CLASSES.get(architecture)
        if model_class is None or outputs != output_names(model_class) or inputs != [INPUT_NAME]:
            raise CheckpointError(
                f"{path}: not a CornerNet-Saccade export (network {architecture!r}, inputs {inputs}, outputs {outputs})"
            )
        self.architecture, self.output_names = architecture, outputs
        self.has_attention, self.output_stride = model_class.has_attention, output_stride(model_class.stem_residuals)

    def _read_metadata(self, path: Path, metadata: dict[str, str]) -> None:
        """Set ``input_size``, ``input_sizes``, ``class_names``, ``test_settings``, ``num_classes``."""
        num_classes = self.session.get_outputs()[0].shape[1]
        if metadata.get("format") != FORMAT_TAG:  # an export without metadata: its graph's fixed size
            self.input_size = int(self.session.get_inputs()[0].shape[-1])
            self.input_sizes = InputSizes(0, self.input_size)
            self.class_names, self.test_settings, self.num_classes = None, None, int(num_classes)
            return
        try:
            self.input_size = int(metadata["input_size"])
            self.input_sizes = InputSizes(int(metadata["input_size_multiple"]), int(metadata["input_size_max"]))
            self.class_names = json.loads(metadata["class_names"])
            self.test_settings = json.loads(metadata["test_settings"])
            self.num_classes = int(json.loads(metadata["model_config"])["num_classes"])
        except (KeyError, ValueError, TypeError) as exc:
            raise CheckpointError(f"{path}: malformed export metadata ({type(exc).__name__}: {exc})") from None

    @property
    def device(self) -> torch.device:
        """Where inputs go: onnxruntime runs on the CPU."""
        return torch.device("cpu")

    def forward(self, images: Tensor, *, with_attention: bool = True) -> HeadOutputs:
        check_images(images)
        if not all(self.input_sizes.accepts(side) for side in images.shape[2:]):
            raise ValueError(f"this ONNX model takes [B,3,H,W] images with H, W = {self.input_sizes}, "
                             f"got {tuple(images.shape)}")
        names = self.output_names if with_attention else self.output_names[:NUM_CORNER_OUTPUTS]
        feed = {INPUT_NAME: images.detach().to("cpu", torch.float32).contiguous().numpy()}
        return head_outputs_from_tensors([torch.from_numpy(a) for a in self.session.run(names, feed)])


def verify_export(model: CornerNetBase, path: str | Path, batch: int = 2, seed: int = 0) -> float:
    """``max |onnxruntime - torch| / max |torch|`` over the outputs of ``path`` and ``model`` (eval
    mode, its own device) on seeded standard-normal inputs: ``[batch,3,S,S]`` at the export size
    ``S`` and, for a dynamic-size graph that takes it, ``[1,3,S,S+M]`` too (``M``: its size multiple)."""
    onnx_network = OnnxNetwork(path)
    size, multiple = onnx_network.input_size, onnx_network.input_sizes.multiple
    wider = multiple and onnx_network.input_sizes.accepts(size + multiple)
    shapes = [(batch, 3, size, size)] + ([(1, 3, size, size + multiple)] if wider else [])
    generator = torch.Generator().manual_seed(seed)
    was_training = model.training
    device = next(model.parameters()).device
    errors = []
    for shape in shapes:
        images = torch.randn(*shape, generator=generator)
        with torch.inference_mode():
            expected = last_stack_tensors(model.eval()(images.to(device)))
        got = last_stack_tensors(onnx_network(images))
        errors += [float((g - e.cpu()).abs().max() / e.abs().max()) for g, e in zip(got, expected)]
    model.train(was_training)
    return max(errors)
