"""The networks and their weights: layers, hourglass backbones, heads, checkpoint reading/writing."""
from __future__ import annotations

from cornernet_saccade.model.base import CornerNetBase, HourglassConfig
from cornernet_saccade.model.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from cornernet_saccade.model.cornernet import CornerNet, CornerNetConfig
from cornernet_saccade.model.cornernet_saccade import CornerNetSaccade, CornerNetSaccadeConfig
from cornernet_saccade.model.cornernet_squeeze import CornerNetSqueeze, SqueezeConfig
from cornernet_saccade.model.heads import HeadOutputs

__all__ = [
    "CornerNet",
    "CornerNetBase",
    "CornerNetConfig",
    "CornerNetSaccade",
    "CornerNetSqueeze",
    "HeadOutputs",
    "HourglassConfig",
    "CornerNetSaccadeConfig",
    "SqueezeConfig",
    "load_checkpoint",
    "read_checkpoint",
    "save_checkpoint",
]
