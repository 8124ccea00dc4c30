"""What the three networks of the CornerNet-Lite family share: the configuration fields and the
corner heads on top of an hourglass backbone.

:class:`CornerNetBase` builds ``hg`` (:class:`~cornernet_saccade.model.hourglass.HourglassBackbone`)
and, per stack, the corner pooling modules and the heat / tag / offset heads, registered in the
official checkpoints' order (``hg``, ``tl_modules``, ``br_modules``, ``tl_heats``, ``br_heats``,
``tl_tags``, ``br_tags``, ``tl_offs``, ``br_offs``). Subclasses choose the hourglass block, the
upsampling, the stem depth and the head kernel with class attributes; CornerNet-Saccade adds its
attention heads after those.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor, nn

from cornernet_saccade.bounds import check_bounds
from cornernet_saccade.config import config_with_overrides
from cornernet_saccade.model.checkpoint import bundled_weights_path, model_from_checkpoint
from cornernet_saccade.model.geometry import output_stride
from cornernet_saccade.model.heads import PRIOR_BIAS, CornerPoolModule, HeadOutputs, prediction_head
from cornernet_saccade.model.hourglass import BlockKind, HourglassBackbone, UpsampleKind
from cornernet_saccade.model.layers import CornerPool
from cornernet_saccade.model.protocol import InputSizes


@dataclass(frozen=True)
class HourglassConfig:
    """Network hyperparameters shared by the three models (each model's config subclasses this
    with its own official defaults; the values here are those of CornerNet, Hourglass-104).

    ``dims``: widths of the hourglass levels, outermost first (the first is the feature width of the
    heads); ``modules``: blocks per level (the last entry: blocks at the bottom of the hourglass);
    ``stem_dim``: width of the 7x7 stem conv; ``pool_dim``: width of the corner-pool branches;
    ``head_dim``: hidden width of every prediction head.
    """

    num_classes: int = 80
    num_stacks: int = 2
    dims: tuple[int, ...] = (256, 256, 384, 384, 384, 512)
    modules: tuple[int, ...] = (2, 2, 2, 2, 2, 4)
    stem_dim: int = 128
    pool_dim: int = 128
    head_dim: int = 256

    def __post_init__(self) -> None:
        check_bounds(vars(self), MODEL_BOUNDS)
        if self.num_classes < 1 or self.num_stacks < 1:
            raise ValueError("num_classes and num_stacks must be >= 1")
        if len(self.dims) < 2 or len(self.dims) != len(self.modules):
            raise ValueError(
                f"dims and modules must have the same number of entries, at least 2 "
                f"(got {len(self.dims)} and {len(self.modules)})"
            )
        if min(self.dims) < 1 or min(self.modules) < 1 or min(self.stem_dim, self.pool_dim, self.head_dim) < 1:
            raise ValueError("widths and module counts must be >= 1")

    def min_tensor_count(self) -> int:
        """A lower bound on the number of ``state_dict`` tensors of this network, without building it:
        each stack holds at least ``sum(modules)`` blocks, each with its own weights."""
        return self.num_stacks * sum(self.modules)


#: Bounds of the network's size-like settings (:func:`~cornernet_saccade.bounds.check_bounds`; raised
#: on purpose with ``CORNERNET_SACCADE_LIMITS``): the official networks use 2 or 3 stacks, widths up
#: to 512 and 4 blocks per level; LVIS has 1,203 classes.
MODEL_BOUNDS: dict[str, float] = {"num_classes": 10_000, "num_stacks": 8, "dims": 2048, "modules": 16,
                                  "stem_dim": 2048, "pool_dim": 2048, "head_dim": 2048}
ModelT = TypeVar("ModelT", bound="CornerNetBase")


class CornerNetBase(nn.Module):
    """Hourglass backbone + per-stack corner pooling and heat / tag / offset heads.

    ``model(images)`` takes float ``[N,3,H,W]`` normalised BGR images (COCO mean/std, as the
    originals) and returns :class:`HeadOutputs` of raw logits at the backbone's output stride. In
    training mode every stack's heads run (intermediate supervision); in eval mode only the last
    stack's (``all_stacks=True`` overrides). ``with_attention`` matters only for models with
    attention heads (CornerNet-Saccade); the others always return empty ``attentions``.
    """

    # per-stack heads, set in __init__ by name (declared for type checkers)
    tl_heats: nn.ModuleList
    br_heats: nn.ModuleList
    tl_tags: nn.ModuleList
    br_tags: nn.ModuleList
    tl_offs: nn.ModuleList
    br_offs: nn.ModuleList

    #: The configuration dataclass of the model (a subclass of :class:`HourglassConfig`).
    config_class: ClassVar[type[HourglassConfig]] = HourglassConfig
    #: Name of the network (``saccade``, ``squeeze``, ``cornernet``), stored in the ``model_config``
    #: of the weights files it writes (:data:`~cornernet_saccade.model.registry.MODEL_CLASSES`).
    architecture: ClassVar[str] = ""
    #: Building block of the hourglass levels, their ``up2`` and the number of stride-2 residual
    #: blocks of the stem (1: output stride 4, 2: output stride 8).
    block: ClassVar[BlockKind] = "residual"
    upsample: ClassVar[UpsampleKind] = "nearest"
    stem_residuals: ClassVar[int] = 1
    #: Kernel of the first conv of every prediction head.
    head_kernel: ClassVar[int] = 3
    #: Whether the network predicts attention maps (CornerNet-Saccade): which detector runs it.
    has_attention: ClassVar[bool] = False

    def __init__(
        self,
        config: HourglassConfig | dict[str, Any] | None = None,
        *,
        class_names: list[str] | None = None,
        test_settings: Mapping[str, Any] | None = None,
        **overrides: Any,
    ):
        super().__init__()
        self.config = config = config_with_overrides(self.config_class, config, overrides, "model config")
        #: Names of the classes, index = label (the weights file's, see :meth:`from_checkpoint`).
        self.class_names = list(class_names) if class_names is not None else None
        #: Detector settings stored with the weights (a mapping for the detector's config), if any.
        self.test_settings = dict(test_settings) if test_settings is not None else None
        self.hg = HourglassBackbone(
            config.dims, config.modules, config.num_stacks, config.stem_dim,
            block=self.block, upsample=self.upsample, stem_residuals=self.stem_residuals,
        )
        self._build_corner_heads(config)

    def _per_stack(self, build: Callable[..., nn.Module], *args: Any) -> nn.ModuleList:
        """``build(*args)`` once per stack."""
        return nn.ModuleList([build(*args) for _ in range(self.config.num_stacks)])

    def _head(self, in_dim: int, out_dim: int, bias: float | None = None) -> nn.Sequential:
        return prediction_head(in_dim, self.config.head_dim, out_dim, bias, kernel=self.head_kernel)

    def _build_corner_heads(self, config: HourglassConfig) -> None:
        width = config.dims[0]
        self.tl_modules = self._per_stack(CornerPoolModule, width, config.pool_dim, "top", "left")
        self.br_modules = self._per_stack(CornerPoolModule, width, config.pool_dim, "bottom", "right")
        for name, channels, bias in (("heats", config.num_classes, PRIOR_BIAS), ("tags", 1, None), ("offs", 2, None)):
            for corner in ("tl", "br"):
                setattr(self, f"{corner}_{name}", self._per_stack(self._head, width, channels, bias))

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    @property
    def output_stride(self) -> int:
        """Input pixels per output-map cell (:func:`~cornernet_saccade.model.geometry.output_stride`)."""
        return output_stride(self.stem_residuals)

    @property
    def input_sizes(self) -> InputSizes | None:
        """``None``: the network takes every input side its detectors feed."""
        return None

    @property
    def device(self) -> torch.device:
        """The device of the network's weights."""
        return next(self.parameters()).device

    def forward(
        self, images: Tensor, *, with_attention: bool = True, all_stacks: bool | None = None
    ) -> HeadOutputs:
        features, merge_maps = self.hg(images)
        if all_stacks is None:
            all_stacks = self.training
        stacks = range(len(features)) if all_stacks else [len(features) - 1]
        out = HeadOutputs()
        for s in stacks:
            self._corner_outputs(s, features[s], out)
            if with_attention:
                self._attention_outputs(s, merge_maps[s], out)
        return out

    def _corner_outputs(self, stack: int, feature: Tensor, out: HeadOutputs) -> None:
        """Append the corner heads' logits of ``stack`` (on its ``[N,dims[0],h,w]`` feature) to ``out``."""
        tl = self.tl_modules[stack](feature)
        br = self.br_modules[stack](feature)
        out.tl_heats.append(self.tl_heats[stack](tl))
        out.br_heats.append(self.br_heats[stack](br))
        out.tl_tags.append(self.tl_tags[stack](tl))
        out.br_tags.append(self.br_tags[stack](br))
        out.tl_offs.append(self.tl_offs[stack](tl))
        out.br_offs.append(self.br_offs[stack](br))

    def _attention_outputs(self, stack: int, merge_maps: list[Tensor], out: HeadOutputs) -> None:
        """Append the attention heads' logits of ``stack`` to ``out.attentions`` (no attention heads here)."""

    def set_export_friendly_pooling(self: ModelT, enabled: bool = True, max_length: int | None = None) -> ModelT:
        """Switch every corner pool to the cummax-free implementation (identical forward values);
        ``max_length``: the longest pooled ray (output-map side) it must cover with a fixed number
        of steps, for a graph traced with a dynamic size (None: as many steps as each map needs)."""
        for module in self.modules():
            if isinstance(module, CornerPool):
                module.export_friendly = enabled
                module.max_length = max_length
        return self

    @classmethod
    def from_checkpoint(
        cls: type[ModelT], weights: str | Path, config: HourglassConfig | dict[str, Any] | None = None, **overrides: Any
    ) -> ModelT:
        """The model of a weights file (official ``.pkl``, our ``.pt`` checkpoint, ``.safetensors``),
        a training run folder or a bundled model name, in eval mode, carrying the file's
        ``class_names`` and ``test_settings``. See
        :func:`cornernet_saccade.model.checkpoint.model_from_checkpoint`."""
        return model_from_checkpoint(cls, weights, config, **overrides)

    @classmethod
    def from_pretrained(cls: type[ModelT], name: str) -> ModelT:
        """One of the project's bundled default models by name (no network access)."""
        return cls.from_checkpoint(bundled_weights_path(name))
