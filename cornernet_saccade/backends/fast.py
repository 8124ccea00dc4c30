"""Inference fast path: BatchNorm folded into the convolutions, reduced precision, compile, CUDA graphs.

:class:`FastNetwork` wraps a copy of any network of the family, a
:class:`~cornernet_saccade.model.base.CornerNetBase` (CornerNet-Saccade, CornerNet-Squeeze, CornerNet;
the original is left untouched), and is called like the model in eval mode::

    fast = FastNetwork(model, dtype=torch.bfloat16)
    out = fast(images, with_attention=True)      # HeadOutputs, last stack only, float32

The eager model, :class:`FastNetwork` and :class:`cornernet_saccade.backends.onnx.OnnxNetwork`
(onnxruntime) are each a :class:`~cornernet_saccade.model.protocol.DetectionNetwork`.

What is folded, per network (:func:`fold_batchnorm`; a BatchNorm no rule covers is an error):

* all three: the stem (7x7 :class:`~.layers.Convolution`, stride-2 :class:`~.layers.Residual` blocks
  with their skip projections), the ``cnvs`` convolutions, the inter-stack merge (``inters``
  residuals, ``inters_`` / ``cnvs_`` 1x1 projections) and the corner-pool modules (``p_conv1``/
  ``p_bn1``, ``conv1``/``bn1`` and their :class:`~.layers.Convolution` branches). The prediction
  heads have no BatchNorm (a biased conv + ReLU, then a 1x1 conv) and are kept as they are.
* CornerNet-Saccade (Hourglass-54) and CornerNet (Hourglass-104): the hourglass levels are residual
  blocks, ``conv1``/``bn1`` and ``conv2``/``bn2`` each folded; nearest upsampling has no weights.
  Saccade's attention heads have no BatchNorm either.
* CornerNet-Squeeze: every :class:`~.layers.Fire` module folds ``bn1`` into its squeeze ``conv1``
  (which gains a bias), and ``bn2``, which normalises the concatenation ``[conv_1x1 | conv_3x3]``,
  by halves: its first ``Cout/2`` channels into ``conv_1x1``, the rest into the depthwise
  ``conv_3x3`` (a per-output-channel scale is valid for a grouped convolution too). The transposed
  convolutions of ``up2`` have no BatchNorm and are kept as they are.

What the fast path changes, and why the outputs stay those of the eager fp32 model:

* **BatchNorm folding** (:func:`fold_batchnorm`): in eval mode ``bn(conv(x))`` is the affine map
  ``gamma * (conv(x) - mean) / sqrt(var + eps) + beta`` per output channel, so it is one convolution
  with the weights scaled by ``gamma / sqrt(var + eps)`` and a bias. Computed in float64, then stored
  in float32: outputs equal eager fp32 up to summation-order rounding.
* **Corner pooling** uses the cummax-free form (identical forward values; see :mod:`.layers`), which
  is what the ONNX graph runs too.
* **Reduced precision** (``dtype=torch.bfloat16``, or ``torch.float16`` on CUDA): the folded copy is
  converted to that dtype. With BatchNorm gone, every op of the network is a convolution (plain,
  depthwise or transposed), ReLU, addition, concatenation, maximum or nearest upsampling, so this is
  what autocast would run, without re-casting the weights (117M for Saccade) at every call. Outputs
  are returned as float32. bf16 is faster on a CPU only where it multiplies bf16 faster than fp32
  (AMX; on the AVX512_BF16-without-AMX development VM a bf16 ``torch.mm`` ran at half the fp32
  rate, and so did this network): see docs/benchmarks.md.
* **Winograd convolutions** (``winograd``, on by default for float32 on the CPU): every dense 3x3
  stride-1 convolution with at least 96 input and output channels runs as Winograd F(4x4, 3x3)
  (:mod:`.winograd`), 4x fewer multiplications; grouped (Squeeze's depthwise), strided and
  transposed convolutions are left to the direct algorithm. Outputs stay within 1e-4 x abs max of
  eager (about 1e-5 measured on the official Saccade network). On CUDA cuDNN chooses its own
  algorithms, and in bf16 the transforms lose too much precision, so it is off there. The
  transformed filters take 4x the memory of the 3x3 weights (1.6 GB for the official Saccade
  network): ``winograd=False`` where memory matters more than speed.
* ``channels_last``: NHWC weights and activations (oneDNN / cuDNN prefer them for convolutions; on
  the development CPU the fp32 network ran a few per cent faster than in NCHW).
* ``compile=True``: ``torch.compile`` of the folded copy with static shapes, so every new input shape
  compiles anew (a minute or more for the official network on 2 cores; torch's recompile limit then
  applies); with a dynamic batch dimension the CPU kernels ran far slower. If compiling fails (no
  C compiler, an unsupported platform) a warning is issued and the eager folded copy is used.
* ``cuda_graphs=True`` (CUDA only): one CUDA graph captured per input shape (the crop batch is
  ``[B,3,255,255]``), replayed on later calls with that shape.
"""
from __future__ import annotations

import copy
import functools
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from cornernet_saccade.backends.winograd import use_winograd
from cornernet_saccade.model.base import CornerNetBase
from cornernet_saccade.model.heads import CornerPoolModule, HeadOutputs
from cornernet_saccade.model.layers import Convolution, Fire, Residual
from cornernet_saccade.model.protocol import InputSizes

#: The BatchNorms folded per module type, each as (the convolutions it follows, its attribute name):
#: one convolution for a plain conv-BN pair, several when the BatchNorm normalises their outputs
#: concatenated along channels in that order (each convolution takes the next ``out_channels`` of
#: its channels). Sequential containers (the residual skip projection, the inter-stack merge
#: projections) are handled by position.
_BN_FOLDS: dict[type[nn.Module], tuple[tuple[tuple[str, ...], str], ...]] = {
    Convolution: ((("conv",), "bn"),),
    Residual: ((("conv1",), "bn1"), (("conv2",), "bn2")),
    CornerPoolModule: ((("p_conv1",), "p_bn1"), (("conv1",), "bn1")),
    Fire: ((("conv1",), "bn1"), (("conv_1x1", "conv_3x3"), "bn2")),
}

ModuleT = TypeVar("ModuleT", bound=nn.Module)

#: Compute dtypes allowed per device type.
_DTYPES = {"cpu": (torch.float32, torch.bfloat16), "cuda": (torch.float32, torch.bfloat16, torch.float16)}


def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d, first_channel: int = 0) -> nn.Conv2d:
    """A convolution equal to ``bn(conv(x))`` with ``bn`` in eval mode (running statistics); with
    ``first_channel``, to ``bn``'s channels ``first_channel .. first_channel + Cout - 1`` applied to
    ``conv(x)`` (``conv``'s output is that slice of a concatenation ``bn`` normalises).

    Weights ``[Cout,Cin/groups,k,k]`` scaled per output channel by ``gamma / sqrt(var + eps)`` (so
    grouped and depthwise convolutions fold too); the bias becomes ``(b - mean) * scale + beta``.
    Computed in float64, stored in ``conv``'s dtype.
    """
    assert bn.weight is not None and bn.bias is not None, "fold_conv_bn needs an affine BatchNorm"
    assert bn.running_mean is not None and bn.running_var is not None, "fold_conv_bn needs running statistics"
    channels = slice(first_channel, first_channel + conv.out_channels)
    if channels.stop > bn.num_features:
        raise ValueError(f"{conv} takes BatchNorm channels {channels.start}-{channels.stop - 1} of {bn.num_features}")
    mean, var = bn.running_mean[channels].double(), bn.running_var[channels].double()
    scale = bn.weight[channels].double() / torch.sqrt(var + bn.eps)
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
    # the stubs type Conv2d's kernel_size, stride, padding, dilation as _ConvNd's tuple[int, ...] (always 2 here)
    fused = nn.Conv2d(
        conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,  # type: ignore[arg-type]
        dilation=conv.dilation, groups=conv.groups, bias=True, padding_mode=conv.padding_mode,  # type: ignore[arg-type]
    ).to(device=conv.weight.device, dtype=conv.weight.dtype)
    assert fused.bias is not None  # built with bias=True
    with torch.no_grad():
        fused.weight.copy_(conv.weight.double() * scale.view(-1, 1, 1, 1))
        fused.bias.copy_((bias - mean) * scale + bn.bias[channels].double())
    return fused


def _fold_sequential(seq: nn.Sequential) -> None:
    """Fold every ``Conv2d`` directly followed by a ``BatchNorm2d`` inside ``seq`` (in place)."""
    names = list(seq._modules)
    for first, second in zip(names, names[1:]):
        conv, bn = seq._modules[first], seq._modules[second]
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
            seq._modules[first] = fold_conv_bn(conv, bn)
            seq._modules[second] = nn.Identity()


def _fold_into(module: nn.Module, conv_names: Sequence[str], bn_name: str) -> None:
    """Fold ``module``'s BatchNorm ``bn_name`` into the convolutions ``conv_names``, whose outputs
    it normalises concatenated in that order (one name: a plain conv-BN pair), and replace it by an
    identity (in place; nothing happens if it is not a BatchNorm)."""
    bn = getattr(module, bn_name)
    if not isinstance(bn, nn.BatchNorm2d):
        return
    first_channel = 0
    for name in conv_names:
        conv = getattr(module, name)
        setattr(module, name, fold_conv_bn(conv, bn, first_channel))
        first_channel += conv.out_channels
    if first_channel != bn.num_features:
        raise ValueError(f"{type(module).__name__}.{bn_name} has {bn.num_features} channels, "
                         f"its convolutions {list(conv_names)} give {first_channel}")
    setattr(module, bn_name, nn.Identity())


def fold_batchnorm(model: ModuleT) -> ModuleT:
    """An eval-mode copy of ``model`` with every BatchNorm folded into the convolution(s) it follows.

    ``model`` is not modified. Raises ``ValueError`` if a BatchNorm is left that no known rule
    (:data:`_BN_FOLDS`, conv-BN pairs in a Sequential) covers, so a new block type cannot silently
    keep unfused BatchNorms.
    """
    folded = copy.deepcopy(model).eval()
    for module in list(folded.modules()):
        if isinstance(module, nn.Sequential):
            _fold_sequential(module)
        for conv_names, bn_name in _BN_FOLDS.get(type(module), ()):
            _fold_into(module, conv_names, bn_name)
    left = [name for name, m in folded.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if left:
        raise ValueError(f"BatchNorm layers not preceded by a foldable convolution: {left[:5]}")
    return folded.requires_grad_(False)


#: Names of the last stack's outputs, in the order of :func:`last_stack_tensors` (and of the ONNX graph).
HEAD_OUTPUT_NAMES = (
    "tl_heat", "br_heat", "tl_tag", "br_tag", "tl_off", "br_off", "att_coarse", "att_middle", "att_fine",
)
#: How many of :data:`HEAD_OUTPUT_NAMES` are corner outputs (the rest are attention maps).
NUM_CORNER_OUTPUTS = 6


def last_stack_tensors(out: HeadOutputs) -> tuple[Tensor, ...]:
    """The last stack's outputs as a flat tuple in :data:`HEAD_OUTPUT_NAMES` order (6 or 9 tensors)."""
    corners = (out.tl_heats, out.br_heats, out.tl_tags, out.br_tags, out.tl_offs, out.br_offs)
    attentions = tuple(out.attentions[-1]) if out.attentions else ()
    return tuple(field[-1] for field in corners) + attentions


def head_outputs_from_tensors(tensors: Sequence[Tensor]) -> HeadOutputs:
    """Inverse of :func:`last_stack_tensors`: one-stack :class:`HeadOutputs` from 6 or 9 tensors."""
    if len(tensors) not in (NUM_CORNER_OUTPUTS, len(HEAD_OUTPUT_NAMES)):
        raise ValueError(f"expected {NUM_CORNER_OUTPUTS} or {len(HEAD_OUTPUT_NAMES)} tensors, got {len(tensors)}")
    tl_heat, br_heat, tl_tag, br_tag, tl_off, br_off, *attentions = tensors
    return HeadOutputs(
        [tl_heat], [br_heat], [tl_tag], [br_tag], [tl_off], [br_off], [list(attentions)] if attentions else []
    )


def check_images(images: Tensor) -> None:
    """Raise ``ValueError`` unless ``images`` is a ``[B,3,H,W]`` batch."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images [B,3,H,W], got shape {tuple(images.shape)}")


FlatForward = Callable[[Tensor], tuple[Tensor, ...]]


class _CapturedForward:
    """A forward pass captured as a CUDA graph for one input shape.

    The input is copied into a static buffer, the graph replayed, and the static outputs cloned (the
    next replay of any graph sharing the memory pool may overwrite them).
    """

    def __init__(self, forward: FlatForward, example: Tensor, pool: torch.cuda._POOL_HANDLE, warmup: int = 3):
        self.static_input = example.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up (cuDNN autotuning, allocator) outside the capture
            for _ in range(warmup):
                forward(self.static_input)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph, pool=pool):
            self.static_outputs = forward(self.static_input)

    def __call__(self, images: Tensor) -> tuple[Tensor, ...]:
        self.static_input.copy_(images)
        self.graph.replay()
        return tuple(t.clone() for t in self.static_outputs)


class FastNetwork(nn.Module):
    """Inference-only network of the family (CornerNet-Saccade, CornerNet-Squeeze, CornerNet): a
    BatchNorm-folded copy of ``model`` (see the module docstring).

    ``FastNetwork(model, dtype=torch.float32, channels_last=True, winograd=None, compile=False,
    cuda_graphs=False)``;
    ``fast(images, with_attention=True)`` takes float ``[B,3,H,W]`` normalised BGR images (any device
    or dtype; moved to the network's) and returns one-stack :class:`HeadOutputs` of float32
    contiguous logits, as ``model.eval()(images)`` does. ``dtype``: ``torch.float32`` or
    ``torch.bfloat16``; ``torch.float16`` on CUDA only. ``winograd``: 3x3 convolutions as Winograd
    F(4x4, 3x3); ``None`` (default) turns it on for float32 on the CPU; float32 only.
    ``cuda_graphs`` needs a CUDA model.
    It has no training mode. It implements :class:`~cornernet_saccade.model.protocol.DetectionNetwork`
    with the model's answers (architecture, attention, output stride, classes, stored test
    settings), so ``Detector(fast)`` is the detector ``Detector(model)`` would be.
    """

    def __init__(
        self,
        model: CornerNetBase,
        *,
        dtype: torch.dtype = torch.float32,
        channels_last: bool = True,
        winograd: bool | None = None,
        compile: bool = False,
        cuda_graphs: bool = False,
    ):
        super().__init__()
        device = next(model.parameters()).device
        if dtype not in _DTYPES.get(device.type, ()):
            allowed = _DTYPES.get(device.type)
            raise ValueError(f"dtype {dtype} is not supported on {device.type} (choose from {allowed})")
        if winograd is None:
            winograd = device.type == "cpu" and dtype == torch.float32
        if winograd and dtype != torch.float32:
            raise ValueError(f"winograd convolutions run in float32 only, not {dtype}")
        if cuda_graphs and device.type != "cuda":
            raise ValueError("cuda_graphs needs the model on a CUDA device")
        self.dtype = dtype
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        network = fold_batchnorm(model)
        network.set_export_friendly_pooling(True)
        # Module.to takes memory_format (documented) but its stub overloads lack it
        self.network = network.to(dtype=dtype, memory_format=self.memory_format)  # type: ignore[call-overload]
        self.winograd_convolutions = use_winograd(self.network) if winograd else 0
        self._compiled = _try_compile(self._run) if compile else None
        self._graphs: dict[tuple[tuple[int, ...], bool], _CapturedForward] | None = {} if cuda_graphs else None
        self._graph_pool: torch.cuda._POOL_HANDLE | None = None

    @property
    def device(self) -> torch.device:
        return next(self.network.parameters()).device

    @property
    def architecture(self) -> str:
        return self.network.architecture

    @property
    def has_attention(self) -> bool:
        return self.network.has_attention

    @property
    def output_stride(self) -> int:
        return self.network.output_stride

    @property
    def num_classes(self) -> int:
        return self.network.num_classes

    @property
    def class_names(self) -> list[str] | None:
        return self.network.class_names

    @property
    def test_settings(self) -> Mapping[str, Any] | None:
        return self.network.test_settings

    @property
    def input_sizes(self) -> InputSizes | None:
        return None

    @property
    def compiled(self) -> bool:
        """Whether calls go through ``torch.compile`` (False if not requested or if compiling failed)."""
        return self._compiled is not None

    def forward(self, images: Tensor, *, with_attention: bool = True) -> HeadOutputs:
        check_images(images)
        with torch.inference_mode():
            x = images.to(device=self.device, dtype=self.dtype, memory_format=self.memory_format)
            if self._graphs is None:
                tensors = self._forward_tensors(x, with_attention)
            else:
                tensors = self._replay(x, with_attention)
        return head_outputs_from_tensors(tensors)

    def _run(self, x: Tensor, with_attention: bool) -> tuple[Tensor, ...]:
        """The folded network on a prepared input; flat float32 contiguous outputs."""
        out = self.network(x, with_attention=with_attention, all_stacks=False)
        return tuple(t.to(torch.float32, memory_format=torch.contiguous_format) for t in last_stack_tensors(out))

    def _forward_tensors(self, x: Tensor, with_attention: bool) -> tuple[Tensor, ...]:
        """:meth:`_run` through ``torch.compile`` when enabled; falls back to eager for good if it fails."""
        if self._compiled is not None:
            try:
                return self._compiled(x, with_attention)
            except Exception as exc:  # compiler missing or unsupported: the eager path gives the same values
                _warn_eager("torch.compile failed", exc)
                self._compiled = None
        return self._run(x, with_attention)

    def _replay(self, x: Tensor, with_attention: bool) -> tuple[Tensor, ...]:
        """Replay (capturing on first use) the CUDA graph for this input shape."""
        assert self._graphs is not None
        key = (tuple(x.shape), with_attention)
        if key not in self._graphs:
            if self._graph_pool is None:
                self._graph_pool = torch.cuda.graph_pool_handle()
            forward = functools.partial(self._forward_tensors, with_attention=with_attention)
            self._graphs[key] = _CapturedForward(forward, x, self._graph_pool)
        return self._graphs[key](x)


def _try_compile(fn: Callable[..., tuple[Tensor, ...]]) -> Callable[..., tuple[Tensor, ...]] | None:
    """``torch.compile(fn)`` with static shapes, or None with a warning where torch.compile is unavailable."""
    try:
        return torch.compile(fn, dynamic=False)
    except Exception as exc:
        _warn_eager("torch.compile is unavailable", exc)
        return None


def _warn_eager(problem: str, exc: Exception) -> None:
    warnings.warn(f"{problem}, using the eager network: {type(exc).__name__}: {exc}", RuntimeWarning, stacklevel=3)
