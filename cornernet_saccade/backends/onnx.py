"""ONNX export of the test network, and an onnxruntime backend that is called like the model.

The exported graph is what detection runs: the last stack's corner heads and the three attention
heads (``all_stacks=False``), BatchNorm folded into the convolutions (in float64, by
:func:`~cornernet_saccade.backends.fast.fold_batchnorm`; the exporter's optimiser would fold it too), corner
pooling in its cummax-free form (ONNX has no cummax; forward values are identical). Input
``images``: float32 ``[batch,3,S,S]`` normalised BGR, ``batch`` dynamic, ``S`` fixed at export (255
for saccade crops).
Outputs, float32, batch first, in this order: :data:`~cornernet_saccade.backends.fast.HEAD_OUTPUT_NAMES`
(``tl_heat [B,C,S'/4..]``... see :class:`~cornernet_saccade.model.heads.HeadOutputs`).

Exporter: ``torch.onnx.export(dynamo=True)`` (``torch.export`` + onnxscript, the recommended and
default exporter since torch 2.9; the TorchScript exporter is deprecated). Weights are stored inside
the ``.onnx`` file (the official model is about 470 MB, under protobuf's 2 GB limit).
"""
from __future__ import annotations

import contextlib
import io
import logging
import math
import warnings
from collections.abc import Iterator
from pathlib import Path

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
from cornernet_saccade.model.cornernet_saccade import CornerNetSaccade
from cornernet_saccade.model.heads import HeadOutputs
from cornernet_saccade.outputs import atomic_write

INPUT_NAME = "images"
#: Largest accepted ``max |onnxruntime - torch| / max |torch|`` (over the outputs) in :func:`verify_export`.
VERIFY_TOLERANCE = 1e-4
#: Oldest opset the exporter writes (``torch.onnx.export(dynamo=True)`` has no lower implementations).
MIN_OPSET = 18


class LastStackNetwork(nn.Module):
    """``images [B,3,S,S] -> (tl_heat, br_heat, tl_tag, br_tag, tl_off, br_off, att_coarse, att_middle, att_fine)``.

    A CPU float32 copy of ``model`` in eval mode with BatchNorm folded and export-friendly pooling;
    ``model`` is not modified.
    """

    def __init__(self, model: CornerNetSaccade):
        super().__init__()
        network = fold_batchnorm(model)
        self.network = network.set_export_friendly_pooling(True).to("cpu", torch.float32)

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        return last_stack_tensors(self.network(images, with_attention=True, all_stacks=False))


def export_onnx(model: CornerNetSaccade, path: str | Path, *, size: int = 255, opset: int | None = None) -> Path:
    """Write the test network of ``model`` for ``[batch,3,size,size]`` inputs to ``path`` (atomically).

    ``opset``: ONNX opset version (the exporter's default when None). Returns ``path``.
    ``ConfigError`` if the backbone cannot take ``size`` (see :func:`check_input_size`).
    """
    check_input_size(model, size)
    if opset is not None and opset < MIN_OPSET:
        raise ConfigError(f"opset {opset}: the ONNX exporter writes opset {MIN_OPSET} or later")
    network = LastStackNetwork(model).eval()
    example = torch.zeros(1, 3, size, size)
    batch = torch.export.Dim("batch", min=1)

    def write(tmp: str) -> None:
        with _quiet_exporter():
            torch.onnx.export(
                network, (example,), tmp, input_names=[INPUT_NAME], output_names=list(HEAD_OUTPUT_NAMES),
                opset_version=opset, dynamo=True, external_data=False, dynamic_shapes={INPUT_NAME: {0: batch}},
            )

    atomic_write(path, write)
    return Path(path)


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


def check_input_size(model: CornerNetSaccade, size: int) -> None:
    """``ConfigError`` unless the output map of a ``size`` input (two stride-2 stem steps) can be
    halved by every hourglass level (255 -> 64 and 511 -> 128 can)."""
    levels = len(model.config.dims) - 1
    out = math.ceil(math.ceil(size / 2) / 2)
    if size < 1 or out % 2**levels:
        raise ConfigError(
            f"input size {size}: its {out}x{out} output map is not divisible by {2**levels} (use e.g. 255 or 511)"
        )


class OnnxNetwork(nn.Module):
    """onnxruntime backend for a graph written by :func:`export_onnx`, called like the model.

    ``OnnxNetwork(path, intra_op_threads=None, providers=("CPUExecutionProvider",))``;
    ``net(images, with_attention=True)`` takes ``[B,3,S,S]`` float images (any device; run on the
    CPU) and returns one-stack :class:`HeadOutputs` of float32 CPU tensors. ``intra_op_threads``:
    onnxruntime's thread count (None: its default, one per physical core). An ``nn.Module`` without
    parameters, so code written for the model (``.eval()``, device from its parameters) accepts it.
    """

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
        outputs = [o.name for o in self.session.get_outputs()]
        inputs = self.session.get_inputs()
        if outputs != list(HEAD_OUTPUT_NAMES) or [i.name for i in inputs] != [INPUT_NAME]:
            raise CheckpointError(
                f"{path}: not a CornerNet-Saccade export (inputs {[i.name for i in inputs]}, outputs {outputs})"
            )
        self.input_shape = tuple(inputs[0].shape)  # ("batch", 3, S, S)

    def forward(self, images: Tensor, *, with_attention: bool = True) -> HeadOutputs:
        check_images(images)
        if tuple(images.shape[1:]) != self.input_shape[1:]:
            expected = ",".join(map(str, self.input_shape[1:]))
            raise ValueError(f"this ONNX model takes [B,{expected}] images, got {tuple(images.shape)}")
        names = list(HEAD_OUTPUT_NAMES if with_attention else HEAD_OUTPUT_NAMES[:NUM_CORNER_OUTPUTS])
        feed = {INPUT_NAME: images.detach().to("cpu", torch.float32).contiguous().numpy()}
        return head_outputs_from_tensors([torch.from_numpy(a) for a in self.session.run(names, feed)])


def verify_export(model: CornerNetSaccade, path: str | Path, batch: int = 2, seed: int = 0) -> float:
    """``max |onnxruntime - torch| / max |torch|`` over the outputs of ``path`` and ``model`` (eval
    mode, its own device) on a seeded standard-normal ``[batch,3,S,S]`` input."""
    onnx_network = OnnxNetwork(path)
    size = onnx_network.input_shape[-1]
    images = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))
    was_training = model.training
    device = next(model.parameters()).device
    with torch.inference_mode():
        expected = last_stack_tensors(model.eval()(images.to(device)))
    model.train(was_training)
    got = last_stack_tensors(onnx_network(images))
    return max(float((g - e.cpu()).abs().max() / e.abs().max()) for g, e in zip(got, expected))
