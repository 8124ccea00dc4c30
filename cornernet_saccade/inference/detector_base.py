"""What both detectors share: the network they run, their settings resolved in one place, and the
final selection of an image's boxes.

:class:`DetectorBase` holds a :class:`~cornernet_saccade.model.protocol.DetectionNetwork` (the model,
the fast path or an ONNX network) and its class names; :func:`saccade_settings` and
:func:`tester_settings` turn a network's stored test settings and a caller's overrides into the
settings of :class:`~cornernet_saccade.inference.saccade_detector.SaccadeDetector` and of the
CornerNet tester; :func:`finish_detections` is the last step of both.
"""
from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from cornernet_saccade.config import config_with_overrides
from cornernet_saccade.errors import ConfigError, ImageError
from cornernet_saccade.image_windows import ImageWindows
from cornernet_saccade.images import ImageSource
from cornernet_saccade.inference.nms import best_per_image
from cornernet_saccade.inference.results import Detections
from cornernet_saccade.inference.settings import CornerNetTestConfig, DecodeMergeSettings, SaccadeConfig
from cornernet_saccade.inference.trace import DetectionTrace
from cornernet_saccade.inference.views import clip_to_image
from cornernet_saccade.model.protocol import DetectionNetwork

#: The settings of the saccade detector that the CornerNet tester has not (``mode``, ``full_size``,
#: ``att_max_crops``, ``tile_size``, ...): it runs the whole padded image at each of its test scales.
SACCADE_ONLY_SETTINGS = frozenset(SaccadeConfig.__dataclass_fields__) - frozenset(CornerNetTestConfig.__dataclass_fields__)


def saccade_settings(
    network: DetectionNetwork, config: SaccadeConfig | Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> SaccadeConfig:
    """The :class:`SaccadeConfig` of a saccade detector running ``network``: ``config`` (default: the
    test settings stored with the network's weights, else the official ones) with the single fields
    ``overrides`` on top. ``ConfigError`` for an unknown or invalid value."""
    return config_with_overrides(SaccadeConfig, network.test_settings if config is None else config, overrides,
                                 "saccade settings")


def tester_settings(
    network: DetectionNetwork, config: CornerNetTestConfig | Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> CornerNetTestConfig:
    """The :class:`CornerNetTestConfig` of the CornerNet tester running ``network``: ``config``
    (default: the original settings of the network, :meth:`CornerNetTestConfig.for_model` by output
    stride, with the test settings stored with its weights on top, less the saccade-only ones) with
    the single fields ``overrides`` on top. ``ConfigError`` naming them when ``overrides`` holds a
    setting only the saccade detector has (the tester would ignore it), or for an invalid value."""
    ignored = sorted(SACCADE_ONLY_SETTINGS & set(overrides or {}))
    if ignored:
        raise ConfigError(
            f"{', '.join(ignored)}: settings of the CornerNet-Saccade detector; these weights ({network.architecture} "
            f"network) run the CornerNet tester (the whole padded image at each of its test_scales), which has none "
            f"of them (its settings: {', '.join(CornerNetTestConfig.__dataclass_fields__)})"
        )
    if config is None:
        stored = {k: v for k, v in (network.test_settings or {}).items() if k not in SACCADE_ONLY_SETTINGS}
        config = {**dataclasses.asdict(CornerNetTestConfig.for_model(network.output_stride)), **stored}
    return config_with_overrides(CornerNetTestConfig, config, overrides, "tester settings")


def detector_settings(network: DetectionNetwork, overrides: Mapping[str, Any]) -> SaccadeConfig | CornerNetTestConfig:
    """The settings of the detector that runs ``network`` (:func:`saccade_settings` for a network with
    attention heads, else :func:`tester_settings`) from its stored ones and ``overrides``."""
    if network.has_attention:
        return saccade_settings(network, None, overrides)
    return tester_settings(network, None, overrides)


def finish_detections(
    boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, settings: DecodeMergeSettings,
    class_names: Sequence[str] | None, trace: DetectionTrace, clip_hw: tuple[int, int] | None = None,
) -> Detections:
    """An image's :class:`Detections` from its merged boxes: ``boxes`` ``[M,4]`` (image pixels),
    ``scores`` ``[M]`` and 0-based ``labels`` ``[M]``, in the merge's order. Keeps the
    ``settings.max_per_image`` best (ties kept) that score at least ``settings.score_threshold``, best
    first (the merge's order on ties), names them from ``class_names`` and clips their boxes to the
    ``clip_hw`` (height, width) image when given."""
    keep = best_per_image(torch.from_numpy(scores), settings.max_per_image).numpy() & (scores >= settings.score_threshold)
    order = np.argsort(-scores[keep], kind="stable")
    boxes, scores, labels = boxes[keep][order], scores[keep][order], labels[keep][order]
    names = [class_names[i] for i in labels] if class_names is not None else None
    return Detections(
        boxes=clip_to_image(boxes, clip_hw) if clip_hw is not None else boxes, scores=scores, labels=labels,
        class_names=names, trace=trace,
    )


class DetectorBase:
    """What every detector shares: the network in eval mode (any
    :class:`~cornernet_saccade.model.protocol.DetectionNetwork`), the class names (default: the
    network's, read from its weights file) and :meth:`detect_batch`. Subclasses set ``config`` and
    implement ``__call__(image) -> Detections``."""

    #: The detector's settings (a :class:`SaccadeConfig` or :class:`CornerNetTestConfig`).
    config: DecodeMergeSettings

    def __init__(self, network: DetectionNetwork, class_names: Sequence[str] | None = None):
        network.eval()
        self.model = network
        names = class_names if class_names is not None else network.class_names
        self.class_names = list(names) if names is not None else None
        self.device = network.device

    def __call__(self, image: ImageSource | ImageWindows) -> Detections:
        raise NotImplementedError

    def detect_batch(self, images: Iterable[ImageSource | ImageWindows], on_error: str = "skip") -> list[Detections | None]:
        """:meth:`__call__` for each image (each image's crops depend on its own attention).

        An image that cannot be read (:class:`~cornernet_saccade.errors.ImageError`) gives ``None``
        in its place and a warning naming it (``on_error="skip"``), or stops the batch
        (``on_error="raise"``); the other images' results are kept either way until then.
        """
        if on_error not in ("skip", "raise"):
            raise ValueError(f"on_error must be 'skip' or 'raise', got {on_error!r}")
        results: list[Detections | None] = []
        for index, image in enumerate(images):
            try:
                results.append(self(image))
            except ImageError as exc:
                if on_error == "raise":
                    raise
                warnings.warn(f"image {index} skipped: {exc}", stacklevel=2)
                results.append(None)
        return results
