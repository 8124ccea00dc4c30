"""Inference fast path: BatchNorm folded into the convolutions, reduced precision, compile, CUDA graphs.

:class:`FastNetwork` wraps a copy of a :class:`~cornernet_saccade.model.CornerNetSaccade` (the
original is left untouched) and is called like the model in eval mode::

    fast = FastNetwork(model, dtype=torch.bfloat16)
    out = fast(images, with_attention=True)      # HeadOutputs, last stack only, float32

Anything with that call signature is an :class:`InferenceNetwork`: the eager model in eval mode,
:class:`FastNetwork`, and :class:`cornernet_saccade.export.OnnxNetwork` (onnxruntime).

What the fast path changes, and why the outputs stay those of the eager fp32 model:

* **BatchNorm folding** (:func:`fold_batchnorm`): in eval mode ``bn(conv(x))`` is the affine map
  ``gamma * (conv(x) - mean) / sqrt(var + eps) + beta`` per output channel, so it is one convolution
  with the weights scaled by ``gamma / sqrt(var + eps)`` and a bias. Computed in float64, then stored
  in float32: outputs equal eager fp32 up to summation-order rounding.
* **Corner pooling** uses the cummax-free form (identical forward values; see :mod:`.layers`), which
  is what the ONNX graph runs too.
* **Reduced precision** (``dtype=torch.bfloat16``, or ``torch.float16`` on CUDA): the folded copy is
  converted to that dtype. With BatchNorm gone, every op of the network is a convolution, ReLU,
  addition, maximum or nearest upsampling, so this is what autocast would run, without re-casting
  the 117M weights at every call. Outputs are returned as float32.
* ``channels_last``: NHWC weights and activations (oneDNN / cuDNN prefer them for convolutions).
* ``compile=True``: ``torch.compile`` of the folded copy; if compiling fails (no compiler, an
  unsupported platform) a warning is issued and the eager folded copy is used instead.
* ``cuda_graphs=True`` (CUDA only): one CUDA graph captured per input shape (the crop batch is
  ``[B,3,255,255]``), replayed on later calls with that shape.
"""
from __future__ import annotations

import copy
import warnings
from typing import Callable, Protocol

import torch
from torch import Tensor, nn

from .heads import CornerPoolModule
from .layers import Convolution, Residual
from .model import CornerNetSaccade, HeadOutputs

#: (convolution, BatchNorm) attribute pairs that are folded, per module type. Sequential containers
#: (the residual skip projection, the inter-stack merge projections) are handled by position.
_BN_PAIRS: dict[type[nn.Module], tuple[tuple[str, str], ...]] = {
    Convolution: (("conv", "bn"),),
    Residual: (("conv1", "bn1"), ("conv2", "bn2")),
    CornerPoolModule: (("p_conv1", "p_bn1"), ("conv1", "bn1")),
}

#: Output dtypes allowed per device type.
_DTYPES = {"cpu": (torch.float32, torch.bfloat16), "cuda": (torch.float32, torch.bfloat16, torch.float16)}


class InferenceNetwork(Protocol):
    """A network backend for detection: the last stack's heads of CornerNet-Saccade.

    ``images``: float32 ``[B,3,H,W]`` normalised BGR (``[B,3,255,255]`` crops). Returns
    :class:`HeadOutputs` whose lists hold one element (the last stack), float32 logits;
    ``attentions`` is empty unless ``with_attention``.
    """

    def __call__(self, images: Tensor, *, with_attention: bool = True) -> HeadOutputs: ...


def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A convolution equal to ``bn(conv(x))`` with ``bn`` in eval mode (running statistics).

    Weights ``[Cout,Cin,k,k]`` scaled per output channel by ``gamma / sqrt(var + eps)``; the bias
    becomes ``(b - mean) * scale + beta``. Computed in float64, stored in ``conv``'s dtype.
    """
    scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
    fused = nn.Conv2d(
        conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
        dilation=conv.dilation, groups=conv.groups, bias=True, padding_mode=conv.padding_mode,
    ).to(device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        fused.weight.copy_(conv.weight.double() * scale.view(-1, 1, 1, 1))
        fused.bias.copy_((bias - bn.running_mean.double()) * scale + bn.bias.double())
    return fused


def _fold_sequential(seq: nn.Sequential) -> None:
    """Fold every ``Conv2d`` directly followed by a ``BatchNorm2d`` inside ``seq`` (in place)."""
    names = list(seq._modules)
    for first, second in zip(names, names[1:]):
        conv, bn = seq._modules[first], seq._modules[second]
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
            seq._modules[first] = fold_conv_bn(conv, bn)
            seq._modules[second] = nn.Identity()


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` with every BatchNorm folded into its convolution.

    ``model`` is not modified. Raises ``ValueError`` if a BatchNorm is left that no known
    (conv, bn) pair covers, so a new block type cannot silently keep unfused BatchNorms.
    """
    folded = copy.deepcopy(model).eval()
    for module in list(folded.modules()):
        if isinstance(module, nn.Sequential):
            _fold_sequential(module)
        for conv_name, bn_name in _BN_PAIRS.get(type(module), ()):
            bn = getattr(module, bn_name)
            if isinstance(bn, nn.BatchNorm2d):
                setattr(module, conv_name, fold_conv_bn(getattr(module, conv_name), bn))
                setattr(module, bn_name, nn.Identity())
    left = [name for name, m in folded.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if left:
        raise ValueError(f"BatchNorm layers not preceded by a foldable convolution: {left[:5]}")
    return folded.requires_grad_(False)
