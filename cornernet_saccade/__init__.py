"""CornerNet-Saccade object detection in pure PyTorch."""
from __future__ import annotations

from .checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from .model import CornerNetSaccade, HeadOutputs, ModelConfig
from .saccade import SaccadeDetector

__version__ = "0.1.0"

__all__ = [
    "CornerNetSaccade",
    "HeadOutputs",
    "ModelConfig",
    "SaccadeDetector",
    "load_checkpoint",
    "read_checkpoint",
    "save_checkpoint",
]
