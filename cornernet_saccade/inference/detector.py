"""Where callers find the detectors: :func:`Detector` picks the one that runs a network.

``SaccadeDetector`` (:mod:`~cornernet_saccade.inference.saccade_detector`) runs CornerNet-Saccade
networks, ``CornerNetDetector`` (:mod:`~cornernet_saccade.inference.cornernet_tester`) CornerNet-Squeeze
and CornerNet; both build on :class:`~cornernet_saccade.inference.detector_base.DetectorBase`.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cornernet_saccade.inference.cornernet_tester import CornerNetDetector
from cornernet_saccade.inference.detector_base import DetectorBase
from cornernet_saccade.inference.saccade_detector import SaccadeDetector
from cornernet_saccade.inference.settings import CornerNetTestConfig, SaccadeConfig
from cornernet_saccade.model.protocol import DetectionNetwork

__all__ = ["CornerNetDetector", "Detector", "DetectorBase", "SaccadeDetector"]


def Detector(  # noqa: N802 - a factory named like the class it stands for
    model: DetectionNetwork,
    config: SaccadeConfig | CornerNetTestConfig | Mapping[str, Any] | None = None,
    class_names: Sequence[str] | None = None,
    **overrides: Any,
) -> DetectorBase:
    """The detector for ``model`` (any :class:`~cornernet_saccade.model.protocol.DetectionNetwork`):
    a network with attention heads (CornerNet-Saccade) gets :class:`SaccadeDetector` (attention-driven
    crops), the others (CornerNet-Squeeze, CornerNet) the whole-image CornerNet tester
    (:class:`CornerNetDetector`). Arguments as those classes; both return ``Detections``."""
    if model.has_attention:
        if isinstance(config, CornerNetTestConfig):
            raise TypeError("a CornerNet-Saccade network takes a SaccadeConfig, not a CornerNetTestConfig")
        return SaccadeDetector(model, config, class_names, **overrides)
    if isinstance(config, SaccadeConfig):
        raise TypeError(f"a {model.architecture} network runs the CornerNet tester: it takes a CornerNetTestConfig, "
                        f"not a SaccadeConfig")
    return CornerNetDetector(model, config, class_names, **overrides)
