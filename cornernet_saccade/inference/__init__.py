"""Inference: views and locations, decoding, soft-NMS, the detectors, their results and pictures."""
from __future__ import annotations

from cornernet_saccade.inference.detector import CornerNetDetector, Detector, SaccadeDetector
from cornernet_saccade.inference.results import Detections
from cornernet_saccade.inference.settings import CornerNetTestConfig, SaccadeConfig
from cornernet_saccade.inference.trace import DetectionTrace

__all__ = ["CornerNetDetector", "CornerNetTestConfig", "Detections", "DetectionTrace", "Detector", "SaccadeConfig",
           "SaccadeDetector"]
