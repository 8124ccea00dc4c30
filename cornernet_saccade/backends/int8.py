"""Static int8 backend for the CPU: the test network quantized after training and compiled.

:class:`Int8Network` is CornerNet-Saccade's test network (last stack, BatchNorm folded as in
:class:`~cornernet_saccade.backends.fast.FastNetwork`) quantized with torch's PT2E flow and the x86
inductor quantizer of ``torchao`` (an optional dependency: ``pip install torchao``; the
``cornernet-saccade[int8]`` extra): convolutions take uint8 activations (one scale per tensor, from
calibration) and int8 weights (one scale per output channel), computed by oneDNN's int8 kernels
(AVX512-VNNI / AMX-INT8) once ``torch.compile`` with frozen weights has fused the quantize /
dequantize steps into them. What needs more precision stays out of int8 (:data:`FLOAT_MODULES`): the
corner-pool modules (their maxima and the convolutions around them) run in ``float_dtype`` (bf16 on a
CPU that multiplies bf16 fast, else fp32), the heads (corner heatmaps, embeddings, offsets, attention
maps), whose outputs the decoder thresholds and compares, in fp32. The hourglass backbone, about 70 %
of the multiplications, runs in int8.

What this buys depends on the CPU (docs/benchmarks.md): on the AMX Xeon measured, the fp32 heads
(about 16 % of the multiplications, at the fp32 rate) take what int8 saves, and the network is no
faster than ``fast-bf16``; the heads in bf16 made it 2.7x faster but cost agreement with fp32
(recall 0.965 of eager's confident boxes against the 0.97 asked), so they stay fp32. Where the
CPU has VNNI but no AMX-BF16 (``auto`` runs fp32 ``fast`` there) it is to be measured.

Static quantization needs **calibration**: input batches like the ones the detector will feed,
from which each activation's range is taken. :func:`calibration_inputs` runs the fp32 detector on a
few representative images and keeps the crops it fed its network: the same views and zooms the
int8 detector will see. Images of the kind the model will be used on, never the evaluation split.

Cost: building it runs ``torch.export``, the calibration forwards and the compiler: tens of seconds
for the bundled models, one to two minutes for the official network, once per process (inductor
caches its kernels on disk, so later processes compile faster). Worth it for batch jobs, not for one
image; ``--backend auto`` never picks it.

Inputs: float ``[B,3,S,S]`` normalised BGR, ``S`` the size it was built for (255: saccade crops),
any ``B`` (the batch dimension is dynamic). Outputs: one-stack :class:`HeadOutputs`, float32.
"""
from __future__ import annotations

import contextlib
import importlib.util
import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from cornernet_saccade.backends.fast import (
    NUM_CORNER_OUTPUTS,
    FastNetwork,
    ModelBackedNetwork,
    check_images,
    head_outputs_from_tensors,
)
from cornernet_saccade.backends.hardware import choose_int8_float_dtype, detect_capability
from cornernet_saccade.errors import ConfigError
from cornernet_saccade.inference.detector import Detector
from cornernet_saccade.inference.settings import SaccadeConfig
from cornernet_saccade.model.base import CornerNetBase
from cornernet_saccade.model.geometry import CROP_SIZE
from cornernet_saccade.model.heads import HeadOutputs
from cornernet_saccade.model.protocol import InputSizes

#: Submodules of CornerNet-Saccade kept out of int8: the corner-pool modules and the heads (3x3 conv,
#: ReLU, 1x1 conv to the outputs). Quantizing them too cost the bundled shapes model 4-10 % of eager's
#: confident boxes (docs/benchmarks.md).
FLOAT_MODULES = ("tl_modules", "br_modules", "tl_heats", "br_heats", "tl_tags", "br_tags", "tl_offs", "br_offs",
                 "att_modules")
#: Those of :data:`FLOAT_MODULES` computed in the network's ``float_dtype`` (the heads stay fp32).
REDUCED_FLOAT_MODULES = FLOAT_MODULES[:2]
#: Largest batch the exported graph takes in one call (larger batches are run in pieces).
MAX_BATCH = 64
#: What to install when torchao is missing.
INSTALL_HINT = "pip install torchao  (or: pip install 'cornernet-saccade[int8]')"


@contextlib.contextmanager
def _quiet_torchao_import() -> Iterator[None]:
    """Silence the log lines importing torchao writes on a CPU-only machine (its CUDA kernels fail to
    load; nothing here uses them)."""
    loggers = [logging.getLogger(name) for name in ("torchao", "torch.utils._pytree")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def int8_available() -> bool:
    """Whether the int8 backend can be built here: torchao is importable."""
    return importlib.util.find_spec("torchao") is not None


def check_int8_model(model: CornerNetBase) -> None:
    """ConfigError unless ``model`` can become an :class:`Int8Network`: torchao is installed, it is a
    CornerNet-Saccade network (the CornerNet tester feeds canvases of varying size) on the CPU."""
    if not int8_available():
        raise ConfigError(f"the int8 backend needs torchao, which is not installed: {INSTALL_HINT}")
    if not model.has_attention:
        raise ConfigError(f"the int8 backend runs CornerNet-Saccade networks only, not {model.architecture!r}")
    if model.device.type != "cpu":
        raise ConfigError(f"the int8 backend runs on the CPU, the model is on {model.device}")


def calibrated_int8_network(model: CornerNetBase, images: Sequence[Any], settings: SaccadeConfig,
                            input_size: int = CROP_SIZE) -> Int8Network:
    """:class:`Int8Network` of ``model`` calibrated on the crops a fp32 saccade detector with
    ``settings`` feeds its network while detecting ``images`` (:func:`calibration_inputs`), its
    corner-pool modules in the dtype :func:`~cornernet_saccade.backends.hardware.choose_int8_float_dtype`
    picks for this CPU. ConfigError when there are no images or the model cannot be quantized."""
    check_int8_model(model)
    if not images:
        raise ConfigError("backend int8 needs calibration images (--calibration): a few images like the ones "
                          "to detect, not the evaluation split")
    batches = calibration_inputs(FastNetwork(model), settings, images)
    float_dtype = choose_int8_float_dtype(detect_capability("cpu"))[0]
    return Int8Network(model, batches, input_size=input_size, float_dtype=float_dtype)


def calibration_inputs(network: FastNetwork, settings: SaccadeConfig, images: Iterable[Any]) -> list[Tensor]:
    """The network input batches (float ``[B,3,S,S]``) a saccade detector with ``settings`` feeds
    ``network`` (fp32) while detecting ``images`` (anything the detector takes: paths or HxWx3 uint8
    RGB arrays)."""
    batches: list[Tensor] = []

    def keep(_module: nn.Module, args: tuple[Any, ...]) -> None:
        batches.append(args[0].detach().to("cpu", torch.float32).clone())

    handle = network.register_forward_pre_hook(keep)
    try:
        Detector(network, settings).detect_batch(images, on_error="raise")
    finally:
        handle.remove()
    return batches


class Int8Network(ModelBackedNetwork):
    """CornerNet-Saccade's test network in static int8 on the CPU (see the module docstring).

    ``Int8Network(model, calibration, input_size=255, float_dtype=torch.float32)``: ``model`` a
    CornerNet-Saccade network on the CPU (eval mode is taken), ``calibration`` a sequence of float
    ``[B,3,S,S]`` batches with ``S = input_size`` (e.g. from :func:`calibration_inputs`),
    ``float_dtype`` what :data:`REDUCED_FLOAT_MODULES` compute in (``torch.float32`` or ``torch.bfloat16``).
    ``ConfigError`` when torchao is not installed, the model has no attention heads (the CornerNet
    tester feeds canvases of varying size), it is not on the CPU, or there is no calibration input.
    """

    def __init__(self, model: CornerNetBase, calibration: Sequence[Tensor], *, input_size: int = CROP_SIZE,
                 float_dtype: torch.dtype = torch.float32):
        super().__init__()
        check_int8_model(model)
        if not calibration:
            raise ConfigError("the int8 backend needs calibration images (no network input was given)")
        self.network = model.eval()
        self.input_size = input_size
        self.float_dtype = float_dtype
        self.program = _quantized_program(model, calibration, input_size, float_dtype)

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    @property
    def input_sizes(self) -> InputSizes | None:
        return InputSizes(0, self.input_size)

    def forward(self, images: Tensor, *, with_attention: bool = True) -> HeadOutputs:
        check_images(images)
        if tuple(images.shape[2:]) != (self.input_size, self.input_size):
            raise ValueError(f"this int8 network takes [B,3,{self.input_size},{self.input_size}] images, "
                             f"got {tuple(images.shape)}")
        from torch._inductor import config as inductor_config

        # int8 weights are prepacked and the quantize steps fused into the convolutions only with frozen
        # weights; set for these calls (where compiling happens), not for the process
        with torch.no_grad(), inductor_config.patch(freezing=True):
            pieces = [self.program(piece.contiguous()) for piece in images.to("cpu", torch.float32).split(MAX_BATCH)]
        tensors = [torch.cat(outputs) if len(pieces) > 1 else outputs[0] for outputs in zip(*pieces)]
        kept = tensors if with_attention else tensors[:NUM_CORNER_OUTPUTS]
        return head_outputs_from_tensors([t.contiguous() for t in kept])


def _quantized_program(model: CornerNetBase, calibration: Sequence[Tensor], size: int, float_dtype: torch.dtype) -> Any:
    """The folded last-stack network, its :data:`REDUCED_FLOAT_MODULES` in ``float_dtype``, exported with a
    dynamic batch, quantized after calibration on ``calibration``, compiled."""
    from cornernet_saccade.backends.onnx import LastStackNetwork

    with _quiet_torchao_import():
        from torchao.quantization.pt2e import allow_exported_model_train_eval
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    network = LastStackNetwork(model).eval()  # BatchNorm folded, export-friendly pooling
    if float_dtype != torch.float32:
        for name in REDUCED_FLOAT_MODULES:
            _in_dtype(getattr(network.network, name), float_dtype)
    example = torch.zeros(2, 3, size, size)
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    with torch.no_grad():
        exported = torch.export.export(network, (example,), dynamic_shapes=({0: batch},)).module()
        prepared = prepare_pt2e(exported, _quantizer(network))
        for images in calibration:
            prepared(images)
        quantized = allow_exported_model_train_eval(convert_pt2e(prepared))  # detectors call .eval()
    return torch.compile(quantized, dynamic=True)


def _quantizer(network: nn.Module) -> Any:
    """torchao's x86 inductor quantizer with its default static config, :data:`FLOAT_MODULES` of
    ``network`` (a :class:`LastStackNetwork`) left in fp32."""
    with _quiet_torchao_import():
        from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as x86

    class Quantizer(x86.X86InductorQuantizer):
        # its conv + add + ReLU pattern fails on the residual blocks' shared skip ("more than one
        # output node"); conv + add and conv + ReLU are still annotated and fused
        def _annotate_conv2d_binary_unary(self, *args: Any, **kwargs: Any) -> None:
            return None

    quantizer = Quantizer()
    quantizer.set_global(x86.get_default_x86_inductor_quantization_config())
    for name in FLOAT_MODULES:
        for called in _called_modules(getattr(network.network, name), f"network.{name}"):
            quantizer.set_module_name_qconfig(called, None)
    return quantizer


class _InDtype(nn.Module):
    """``module`` computed in ``dtype``: the input cast to it, the output back to float32."""

    def __init__(self, module: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.module, self.dtype = module.to(dtype), dtype

    def forward(self, x: Tensor) -> Tensor:
        return self.module(x.to(self.dtype)).float()


def _in_dtype(modules: nn.ModuleList, dtype: torch.dtype) -> None:
    """Replace every called module of ``modules`` (nested lists included) by itself computed in ``dtype``."""
    for index, module in enumerate(modules):
        if isinstance(module, nn.ModuleList):
            _in_dtype(module, dtype)
        else:
            modules[index] = _InDtype(module, dtype)


def _called_modules(module: nn.Module, name: str) -> Iterator[str]:
    """Names of the modules of ``module`` (named ``name``) that are called: a ModuleList is not, so
    an exported graph knows its elements (``tl_heats.1``), not the list."""
    if not isinstance(module, nn.ModuleList):
        yield name
        return
    for index, child in enumerate(module):
        yield from _called_modules(child, f"{name}.{index}")
