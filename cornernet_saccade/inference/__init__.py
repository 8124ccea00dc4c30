"""Inference: views and locations, decoding, soft-NMS, the detector, its results and pictures."""
from __future__ import annotations

from cornernet_saccade.inference.detector import SaccadeDetector
from cornernet_saccade.inference.results import Detections, SaccadeTrace
from cornernet_saccade.inference.settings import SaccadeConfig

__all__ = ["Detections", "SaccadeConfig", "SaccadeDetector", "SaccadeTrace"]
