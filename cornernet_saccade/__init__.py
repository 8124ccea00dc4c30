"""CornerNet-Saccade object detection in pure PyTorch."""
from __future__ import annotations

from cornernet_saccade.inference.detector import SaccadeDetector
from cornernet_saccade.model.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from cornernet_saccade.model.cornernet import CornerNet, CornerNetConfig
from cornernet_saccade.model.cornernet_saccade import CornerNetSaccade, ModelConfig
from cornernet_saccade.model.cornernet_squeeze import CornerNetSqueeze, SqueezeConfig
from cornernet_saccade.model.heads import HeadOutputs

__version__ = "0.1.0"

__all__ = [
    "CornerNet",
    "CornerNetConfig",
    "CornerNetSaccade",
    "CornerNetSqueeze",
    "HeadOutputs",
    "ModelConfig",
    "SaccadeDetector",
    "SqueezeConfig",
    "load_checkpoint",
    "read_checkpoint",
    "save_checkpoint",
]
