"""CornerNet-Squeeze (Law et al., CornerNet-Lite, 2019): the real-time network of CornerNet-Lite.

``CornerNetSqueeze()`` is the official COCO configuration (31,771,852 parameters): a stride-8 stem
(7x7 conv and two stride-2 residual blocks), two stacks of a 4-level hourglass of fire modules
(depthwise 3x3) with transposed-convolution upsampling, corner pooling and 1x1 prediction heads,
no attention. Its ``state_dict()`` has the official checkpoint's names without the ``module.``
prefix, so ``CornerNet_Squeeze_500000.pkl`` loads unchanged through
:meth:`~cornernet_saccade.model.base.CornerNetBase.from_checkpoint`.

For an input ``[N,3,H,W]`` with ``H = 128k - 1`` (511 -> 64) the output maps are ``(H+1)/8``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from cornernet_saccade.model.base import CornerNetBase, HourglassConfig
from cornernet_saccade.model.hourglass import BlockKind, UpsampleKind


@dataclass(frozen=True)
class SqueezeConfig(HourglassConfig):
    """CornerNet-Squeeze hyperparameters; the defaults are the official ones (docs/reference.md §9):
    2 stacks, ``dims`` (256, 256, 384, 384, 512), ``modules`` (2, 2, 2, 2, 4). Fire modules split
    their width in two halves, so every entry of ``dims`` must be even."""

    dims: tuple[int, ...] = (256, 256, 384, 384, 512)
    modules: tuple[int, ...] = (2, 2, 2, 2, 4)

    def __post_init__(self) -> None:
        super().__post_init__()
        if any(d % 2 for d in self.dims):
            raise ValueError(f"fire modules need even widths; dims {self.dims} has odd entries")


class CornerNetSqueeze(CornerNetBase):
    """CornerNet-Squeeze (official config by default).

    ``CornerNetSqueeze(num_classes=3, dims=(32, 32, 48, 64), modules=(1, 1, 1, 2))`` builds a
    smaller one. ``model(images)`` returns :class:`~cornernet_saccade.model.heads.HeadOutputs` (raw
    logits, output stride 8, empty ``attentions``); see
    :class:`~cornernet_saccade.model.base.CornerNetBase`.
    """

    config_class: ClassVar[type[HourglassConfig]] = SqueezeConfig
    architecture: ClassVar[str] = "squeeze"
    block: ClassVar[BlockKind] = "fire"
    upsample: ClassVar[UpsampleKind] = "transposed"
    stem_residuals: ClassVar[int] = 2
    head_kernel: ClassVar[int] = 1
