"""What a detector needs of a network, declared once: :class:`DetectionNetwork`.

Three kinds of network implement it: the PyTorch models (:class:`~cornernet_saccade.model.base.CornerNetBase`
and its three subclasses), the fast path (:class:`~cornernet_saccade.backends.fast.FastNetwork`) and the
onnxruntime network of an exported file (:class:`~cornernet_saccade.backends.onnx.OnnxNetwork`). A
detector (:mod:`cornernet_saccade.inference`) reads only what this protocol declares, so it runs any of them
the same way.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from cornernet_saccade.model.heads import HeadOutputs


@dataclass(frozen=True)
class InputSizes:
    """The input heights and widths a network takes: every ``multiple * k - 1`` (k >= 1) up to
    ``largest`` when ``multiple`` > 0, else ``largest`` only (a fixed-size ONNX export)."""

    multiple: int
    largest: int

    def accepts(self, side: int) -> bool:
        if self.multiple == 0:
            return side == self.largest
        return 0 < side <= self.largest and (side + 1) % self.multiple == 0

    def __str__(self) -> str:
        if self.multiple == 0:
            return str(self.largest)
        return f"{self.multiple}k-1 up to {self.largest} ({self.multiple - 1}, {2 * self.multiple - 1}, ...)"


@runtime_checkable
class DetectionNetwork(Protocol):
    """A network a detector runs: ``net(images, with_attention=...)`` takes float ``[B,3,H,W]``
    normalised BGR images (COCO mean/std) and returns the last stack's
    :class:`~cornernet_saccade.model.heads.HeadOutputs` (logits at :attr:`output_stride`; ``attentions``
    empty unless :attr:`has_attention` and ``with_attention``).

    - ``architecture``: ``saccade``, ``squeeze`` or ``cornernet`` (the weights file's network);
    - ``has_attention``: whether it predicts attention maps (CornerNet-Saccade): the one answer to
      "which detector runs it", :class:`~cornernet_saccade.inference.saccade_detector.SaccadeDetector`
      or the CornerNet tester;
    - ``output_stride``: input pixels per output-map cell (4, or 8 for CornerNet-Squeeze);
    - ``num_classes`` and ``class_names`` (index = label; read from the weights file, ``None`` when
      it has none); ``test_settings``: the detector settings stored with the weights, if any;
    - ``input_sizes``: the input sides it takes, ``None`` for every side its architecture takes (the
      PyTorch networks); ``device``: where its inputs go.
    """

    @property
    def architecture(self) -> str: ...

    @property
    def has_attention(self) -> bool: ...

    @property
    def output_stride(self) -> int: ...

    @property
    def num_classes(self) -> int: ...

    @property
    def class_names(self) -> list[str] | None: ...

    @property
    def test_settings(self) -> Mapping[str, Any] | None: ...

    @property
    def input_sizes(self) -> InputSizes | None: ...

    @property
    def device(self) -> torch.device: ...

    def eval(self) -> Any: ...

    def __call__(self, images: Tensor, *, with_attention: bool = True) -> HeadOutputs: ...
