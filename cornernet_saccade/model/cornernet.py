"""CornerNet (Law and Deng, 2018) with the Hourglass-104 backbone, as shipped with CornerNet-Lite.

``CornerNet()`` is the official COCO configuration (201,035,212 parameters): a stride-4 stem, two
stacks of a 5-level hourglass of residual blocks with nearest x2 upsampling, corner pooling and
3x3 prediction heads, no attention. Its ``state_dict()`` has the official checkpoint's names without
the ``module.`` prefix, so ``CornerNet_500000.pkl`` loads unchanged through
:meth:`~cornernet_saccade.model.base.CornerNetBase.from_checkpoint`.

For an input ``[N,3,H,W]`` with ``H = 128k - 1`` (511 -> 128) the output maps are ``(H+1)/4``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from cornernet_saccade.model.base import CornerNetBase, HourglassConfig


@dataclass(frozen=True)
class CornerNetConfig(HourglassConfig):
    """CornerNet hyperparameters; the defaults are the official Hourglass-104 (docs/reference.md §10):
    2 stacks, ``dims`` (256, 256, 384, 384, 384, 512), ``modules`` (2, 2, 2, 2, 2, 4)."""


class CornerNet(CornerNetBase):
    """CornerNet with the Hourglass-104 backbone (official config by default).

    ``CornerNet(num_classes=20, dims=(64, 64, 96, 128), modules=(1, 1, 1, 2))`` builds a smaller
    one. ``model(images)`` returns :class:`~cornernet_saccade.model.heads.HeadOutputs` (raw logits,
    output stride 4, empty ``attentions``); see :class:`~cornernet_saccade.model.base.CornerNetBase`.
    """

    config_class: ClassVar[type[HourglassConfig]] = CornerNetConfig
    architecture: ClassVar[str] = "cornernet"
