"""ONNX export of the test network, and an onnxruntime backend that is called like the model.

The exported graph is what detection runs: the last stack's corner heads and the three attention
heads (``all_stacks=False``), BatchNorm folded into the convolutions by default, corner pooling in
its cummax-free form (ONNX has no cummax; forward values are identical). Input ``images``: float32
``[batch,3,S,S]`` normalised BGR, ``batch`` dynamic, ``S`` fixed at export (255 for saccade crops).
Outputs, float32, batch first, in this order: :data:`~cornernet_saccade.fast.HEAD_OUTPUT_NAMES`
(``tl_heat [B,C,S'/4..]``... see :class:`~cornernet_saccade.model.HeadOutputs`).

Exporter: ``torch.onnx.export(dynamo=True)`` (``torch.export`` + onnxscript, the recommended and
default exporter since torch 2.9; the TorchScript exporter is deprecated). Weights are stored inside
the ``.onnx`` file (the official model is about 470 MB, under protobuf's 2 GB limit).
"""
from __future__ import annotations

import contextlib
import copy
import io
from pathlib import Path

import torch
from torch import Tensor, nn

from .checkpoint import atomic_write
from .errors import CheckpointError
from .fast import HEAD_OUTPUT_NAMES, NUM_CORNER_OUTPUTS, check_images, fold_batchnorm, head_outputs_from_tensors, last_stack_tensors
from .model import CornerNetSaccade, HeadOutputs

INPUT_NAME = "images"


class TestNetwork(nn.Module):
    """``images [B,3,S,S] -> (tl_heat, br_heat, tl_tag, br_tag, tl_off, br_off, att_coarse, att_middle, att_fine)``.

    A CPU float32 copy of ``model`` in eval mode with export-friendly pooling, BatchNorm folded
    when ``fold_bn``; ``model`` is not modified.
    """

    def __init__(self, model: CornerNetSaccade, fold_bn: bool = True):
        super().__init__()
        network = fold_batchnorm(model) if fold_bn else copy.deepcopy(model).eval()
        self.network = network.set_export_friendly_pooling(True).to("cpu", torch.float32)

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        return last_stack_tensors(self.network(images, with_attention=True, all_stacks=False))


def export_onnx(
    model: CornerNetSaccade, path: str | Path, *, size: int = 255, opset: int | None = None, fold_bn: bool = True
) -> Path:
    """Write the test network of ``model`` for ``[batch,3,size,size]`` inputs to ``path`` (atomically).

    ``opset``: ONNX opset version (the exporter's default when None). Returns ``path``.
    """
    network = TestNetwork(model, fold_bn).eval()
    example = torch.zeros(1, 3, size, size)
    batch = torch.export.Dim("batch", min=1)

    def write(tmp: str) -> None:
        with contextlib.redirect_stdout(io.StringIO()):  # the exporter prints its progress
            torch.onnx.export(
                network, (example,), tmp, input_names=[INPUT_NAME], output_names=list(HEAD_OUTPUT_NAMES),
                opset_version=opset, dynamo=True, external_data=False, dynamic_shapes={INPUT_NAME: {0: batch}},
            )

    atomic_write(path, write)
    return Path(path)


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
            raise ValueError(f"this ONNX model takes [B,{','.join(map(str, self.input_shape[1:]))}] images, got {tuple(images.shape)}")
        names = list(HEAD_OUTPUT_NAMES if with_attention else HEAD_OUTPUT_NAMES[:NUM_CORNER_OUTPUTS])
        feed = {INPUT_NAME: images.detach().to("cpu", torch.float32).contiguous().numpy()}
        return head_outputs_from_tensors([torch.from_numpy(a) for a in self.session.run(names, feed)])
