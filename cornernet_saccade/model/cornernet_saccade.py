"""The CornerNet-Saccade network: hourglass backbone + corner heads + attention heads.

``CornerNetSaccade()`` is the official COCO configuration (116,969,339 parameters); its
``state_dict()`` has the official checkpoint's names without the ``module.`` prefix, so
``CornerNet_Saccade_500000.pkl`` loads unchanged (see :mod:`cornernet_saccade.model.checkpoint`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from torch import Tensor, nn

from cornernet_saccade.config import config_from_dict
from cornernet_saccade.model.checkpoint import bundled_weights_path, model_from_checkpoint
from cornernet_saccade.model.heads import PRIOR_BIAS, CornerPoolModule, HeadOutputs, prediction_head
from cornernet_saccade.model.hourglass import HourglassBackbone
from cornernet_saccade.model.layers import CornerPool


@dataclass(frozen=True)
class ModelConfig:
    """Network hyperparameters; the defaults are the official CornerNet-Saccade (docs/reference.md §1).

    ``dims``: widths of the hourglass levels, outermost first (the first is the feature width of the
    heads); ``modules``: residual blocks per level; ``stem_dim``: width of the 7x7 stem conv;
    ``pool_dim``: width of the corner-pool branches; ``head_dim``: hidden width of every prediction
    head. The three attention heads read the merge maps of the three innermost-to-outermost levels
    (so ``len(dims)`` must be 4).
    """

    num_classes: int = 80
    num_stacks: int = 3
    dims: tuple[int, ...] = (256, 384, 384, 512)
    modules: tuple[int, ...] = (1, 1, 1, 1)
    stem_dim: int = 128
    pool_dim: int = 128
    head_dim: int = 256

    def __post_init__(self) -> None:
        if self.num_classes < 1 or self.num_stacks < 1:
            raise ValueError("num_classes and num_stacks must be >= 1")
        if len(self.dims) != 4 or len(self.modules) != 4:
            raise ValueError("dims and modules must have 4 entries (3 hourglass levels, 3 attention maps)")
        if min(self.dims) < 1 or min(self.modules) < 1 or min(self.stem_dim, self.pool_dim, self.head_dim) < 1:
            raise ValueError("widths and module counts must be >= 1")


class CornerNetSaccade(nn.Module):
    """CornerNet-Saccade (Law et al., CornerNet-Lite, 2019).

    ``CornerNetSaccade()`` builds the official network; pass a :class:`ModelConfig` or keyword
    overrides (``CornerNetSaccade(num_classes=20, dims=(64, 96, 96, 128))``) for other ones.

    ``model(images)`` takes float ``[N,3,H,W]`` normalised BGR images (COCO mean/std, as the
    original) and returns :class:`HeadOutputs` of raw logits. In training mode every stack's heads
    run (intermediate supervision); in eval mode only the last stack's (``all_stacks=True``
    overrides). ``with_attention=False`` skips the attention heads.
    """

    def __init__(self, config: ModelConfig | dict[str, Any] | None = None, **overrides: Any):
        super().__init__()
        config = config_from_dict(ModelConfig, config, "model config")
        if overrides:
            config = config_from_dict(ModelConfig, {**dataclasses.asdict(config), **overrides}, "model config")
        self.config: ModelConfig = config
        #: Names of the classes, index = label; set from the weights file by :meth:`from_checkpoint`.
        self.class_names: list[str] | None = None
        #: Detector settings stored with the weights (a mapping for the detector's config), if any.
        self.test_settings: dict[str, Any] | None = None
        width, stacks = config.dims[0], config.num_stacks
        self.hg = HourglassBackbone(config.dims, config.modules, stacks, config.stem_dim)

        def per_stack(build) -> nn.ModuleList:
            return nn.ModuleList([build() for _ in range(stacks)])

        self.tl_modules = per_stack(lambda: CornerPoolModule(width, config.pool_dim, "top", "left"))
        self.br_modules = per_stack(lambda: CornerPoolModule(width, config.pool_dim, "bottom", "right"))
        heat = lambda: prediction_head(width, config.head_dim, config.num_classes, PRIOR_BIAS)  # noqa: E731
        self.tl_heats, self.br_heats = per_stack(heat), per_stack(heat)
        tag = lambda: prediction_head(width, config.head_dim, 1)  # noqa: E731
        self.tl_tags, self.br_tags = per_stack(tag), per_stack(tag)
        offset = lambda: prediction_head(width, config.head_dim, 2)  # noqa: E731
        self.tl_offs, self.br_offs = per_stack(offset), per_stack(offset)
        # merge maps come coarse to fine: widths dims[2], dims[1], dims[0]
        attention_inputs = (config.dims[2], config.dims[1], config.dims[0])
        self.att_modules = per_stack(
            lambda: nn.ModuleList([prediction_head(d, config.head_dim, 1, PRIOR_BIAS) for d in attention_inputs])
        )

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    def forward(
        self, images: Tensor, *, with_attention: bool = True, all_stacks: bool | None = None
    ) -> HeadOutputs:
        features, merge_maps = self.hg(images)
        if all_stacks is None:
            all_stacks = self.training
        stacks = range(len(features)) if all_stacks else [len(features) - 1]
        out = HeadOutputs()
        for s in stacks:
            tl = self.tl_modules[s](features[s])
            br = self.br_modules[s](features[s])
            out.tl_heats.append(self.tl_heats[s](tl))
            out.br_heats.append(self.br_heats[s](br))
            out.tl_tags.append(self.tl_tags[s](tl))
            out.br_tags.append(self.br_tags[s](br))
            out.tl_offs.append(self.tl_offs[s](tl))
            out.br_offs.append(self.br_offs[s](br))
            if with_attention:
                out.attentions.append([head(m) for head, m in zip(cast(nn.ModuleList, self.att_modules[s]), merge_maps[s])])
        return out

    def set_export_friendly_pooling(self, enabled: bool = True) -> CornerNetSaccade:
        """Switch every corner pool to the cummax-free implementation (identical forward values)."""
        for module in self.modules():
            if isinstance(module, CornerPool):
                module.export_friendly = enabled
        return self

    @classmethod
    def from_checkpoint(
        cls, weights: str | Path, config: ModelConfig | dict[str, Any] | None = None, **overrides: Any
    ) -> CornerNetSaccade:
        """The model of a weights file (official ``.pkl``, our ``.pt`` checkpoint, ``.safetensors``),
        a training run folder or a bundled model name, in eval mode, carrying the file's
        ``class_names`` and ``test_settings``. See
        :func:`cornernet_saccade.model.checkpoint.model_from_checkpoint`."""
        return model_from_checkpoint(cls, weights, config, **overrides)

    @classmethod
    def from_pretrained(cls, name: str) -> CornerNetSaccade:
        """One of the project's bundled default models by name (no network access)."""
        return cls.from_checkpoint(bundled_weights_path(name))
