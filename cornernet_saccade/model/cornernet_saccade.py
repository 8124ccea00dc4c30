"""The CornerNet-Saccade network: hourglass backbone + corner heads + attention heads.

``CornerNetSaccade()`` is the official COCO configuration (116,969,339 parameters); its
``state_dict()`` has the official checkpoint's names without the ``module.`` prefix, so
``CornerNet_Saccade_500000.pkl`` loads unchanged (see :mod:`cornernet_saccade.model.checkpoint`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor, nn

from cornernet_saccade.model.base import CornerNetBase, HourglassConfig
from cornernet_saccade.model.heads import PRIOR_BIAS, HeadOutputs


@dataclass(frozen=True)
class CornerNetSaccadeConfig(HourglassConfig):
    """CornerNet-Saccade hyperparameters; the defaults are the official ones (docs/reference.md §1).

    Fields as :class:`~cornernet_saccade.model.base.HourglassConfig`. The three attention heads
    read the merge maps of the three innermost-to-outermost levels (so ``len(dims)`` must be 4).
    """

    num_stacks: int = 3
    dims: tuple[int, ...] = (256, 384, 384, 512)
    modules: tuple[int, ...] = (1, 1, 1, 1)

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.dims) != 4:
            raise ValueError("dims and modules must have 4 entries (3 hourglass levels, 3 attention maps)")


class CornerNetSaccade(CornerNetBase):
    """CornerNet-Saccade (Law et al., CornerNet-Lite, 2019).

    ``CornerNetSaccade()`` builds the official network; pass a :class:`CornerNetSaccadeConfig` or keyword
    overrides (``CornerNetSaccade(num_classes=20, dims=(64, 96, 96, 128))``) for other ones.

    ``model(images)`` takes float ``[N,3,H,W]`` normalised BGR images (COCO mean/std, as the
    original) and returns :class:`HeadOutputs` of raw logits. In training mode every stack's heads
    run (intermediate supervision); in eval mode only the last stack's (``all_stacks=True``
    overrides). ``with_attention=False`` skips the attention heads.
    """

    config_class: ClassVar[type[HourglassConfig]] = CornerNetSaccadeConfig
    architecture: ClassVar[str] = "saccade"
    has_attention: ClassVar[bool] = True

    def __init__(self, config: CornerNetSaccadeConfig | dict[str, Any] | None = None, **overrides: Any):
        super().__init__(config, **overrides)
        dims = self.config.dims
        # merge maps come coarse to fine: widths dims[2], dims[1], dims[0]
        attention_inputs = (dims[2], dims[1], dims[0])
        self.att_modules = self._per_stack(
            lambda: nn.ModuleList([self._head(d, 1, PRIOR_BIAS) for d in attention_inputs])
        )

    def _attention_outputs(self, stack: int, merge_maps: list[Tensor], out: HeadOutputs) -> None:
        """Append ``[coarse, middle, fine]`` attention logits of ``stack`` to ``out.attentions``."""
        out.attentions.append([head(m) for head, m in zip(self.att_modules[stack].children(), merge_maps)])
