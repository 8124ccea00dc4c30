"""CornerNet-Saccade object detection in pure PyTorch.

The public names below are loaded on first use, so that importing one layer (``cornernet_saccade.model``)
does not load the ones above it.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cornernet_saccade.inference.cornernet_tester import CornerNetDetector
    from cornernet_saccade.inference.detector import Detector
    from cornernet_saccade.inference.saccade_detector import SaccadeDetector
    from cornernet_saccade.inference.settings import CornerNetTestConfig, SaccadeConfig
    from cornernet_saccade.model.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
    from cornernet_saccade.model.cornernet import CornerNet, CornerNetConfig
    from cornernet_saccade.model.cornernet_saccade import CornerNetSaccade, CornerNetSaccadeConfig
    from cornernet_saccade.model.cornernet_squeeze import CornerNetSqueeze, SqueezeConfig
    from cornernet_saccade.model.heads import HeadOutputs

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_EXPORTS = {
    "CornerNet": "cornernet_saccade.model.cornernet",
    "CornerNetConfig": "cornernet_saccade.model.cornernet",
    "CornerNetSqueeze": "cornernet_saccade.model.cornernet_squeeze",
    "SqueezeConfig": "cornernet_saccade.model.cornernet_squeeze",
    "CornerNetSaccade": "cornernet_saccade.model.cornernet_saccade",
    "HeadOutputs": "cornernet_saccade.model.heads",
    "CornerNetSaccadeConfig": "cornernet_saccade.model.cornernet_saccade",
    "SaccadeDetector": "cornernet_saccade.inference.saccade_detector",
    "Detector": "cornernet_saccade.inference.detector",
    "CornerNetDetector": "cornernet_saccade.inference.cornernet_tester",
    "CornerNetTestConfig": "cornernet_saccade.inference.settings",
    "SaccadeConfig": "cornernet_saccade.inference.settings",
    "load_checkpoint": "cornernet_saccade.model.checkpoint",
    "read_checkpoint": "cornernet_saccade.model.checkpoint",
    "save_checkpoint": "cornernet_saccade.model.checkpoint",
}

__all__ = [
    "CornerNet",
    "CornerNetConfig",
    "CornerNetDetector",
    "CornerNetTestConfig",
    "Detector",
    "CornerNetSaccade",
    "CornerNetSqueeze",
    "HeadOutputs",
    "CornerNetSaccadeConfig",
    "SaccadeConfig",
    "SaccadeDetector",
    "SqueezeConfig",
    "load_checkpoint",
    "read_checkpoint",
    "save_checkpoint",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'cornernet_saccade' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
