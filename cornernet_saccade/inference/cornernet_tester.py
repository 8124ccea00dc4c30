"""The CornerNet tester (CornerNet-Squeeze and CornerNet, Hourglass-104): whole image, optional
flip, several scales, per-class soft-NMS, as the original ``cornernet_inference`` does.

Frames: **image pixels** of the input; **canvas pixels** (the resized image centred on a zero canvas
of ``(h | 127, w | 127)``, so the hourglass sizes fit); **output-map cells** (canvas / stride, 8
for Squeeze, 4 for CornerNet). Per scale ``s``: resize to ``(int(h*s), int(w*s))`` (OpenCV's uint8
bilinear), centre on the canvas, run the network on it (and on its mirror image when flipping),
decode, map back (``/ (out/inp)``, minus the border, clipped to the resized image, ``/ s``); then
all scales' boxes are merged per class by soft-NMS (:func:`~cornernet_saccade.inference.nms.soft_nms_rows`).
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from cornernet_saccade.errors import ImageError
from cornernet_saccade.image_windows import ImageWindows, whole_pixels
from cornernet_saccade.images import ImageSource
from cornernet_saccade.inference.decode import BOX, CANDIDATE_COLUMNS, LABEL, REJECTED_SCORE, SCORE, decode_heads
from cornernet_saccade.inference.detector_base import DetectorBase, finish_detections, tester_settings
from cornernet_saccade.inference.nms import soft_nms_rows
from cornernet_saccade.inference.preprocess import normalize_bgr
from cornernet_saccade.inference.results import Detections
from cornernet_saccade.inference.settings import NMS_METHODS, CornerNetTestConfig
from cornernet_saccade.inference.trace import PADDED_VIEWS, CropView, DetectionTrace
from cornernet_saccade.model.geometry import tester_canvas_size
from cornernet_saccade.model.protocol import DetectionNetwork

#: Fixed-point precision of OpenCV's uint8 bilinear resize weights.
_RESIZE_BITS = 11


@dataclass(frozen=True)
class PaddedView:
    """One scale's canvas: the resized image ``resized_hw`` pasted at canvas rows/columns
    ``border`` (y0, y1, x0, x1) of a ``canvas_hw`` zero canvas (the original ``crop_image``)."""

    scale: float
    resized_hw: tuple[int, int]
    canvas_hw: tuple[int, int]
    border: tuple[int, int, int, int]


def padded_view(image_hw: tuple[int, int], scale: float) -> PaddedView:
    """Geometry of scale ``scale`` for an ``image_hw`` image: the canvas is ``(h | 127, w | 127)``
    and the image is centred on it; when a resized side is already 127 mod 128 the canvas equals it
    and the last row/column is dropped, as in the original."""
    new_h, new_w = int(image_hw[0] * scale), int(image_hw[1] * scale)
    canvas_h, canvas_w = tester_canvas_size(new_h), tester_canvas_size(new_w)

    def axis(size: int, canvas: int) -> tuple[int, int]:
        centre, half = size // 2, canvas // 2
        low, high = max(0, centre - half), min(centre + half, size)
        return half - (centre - low), half + (high - centre)

    y0, y1 = axis(new_h, canvas_h)
    x0, x1 = axis(new_w, canvas_w)
    return PaddedView(scale, (new_h, new_w), (canvas_h, canvas_w), (y0, y1, x0, x1))


def _linear_taps(in_size: int, out_size: int, clamp_weights: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """OpenCV's INTER_LINEAR taps along one axis: source indices (low, high) and 11-bit weights.

    Both axes compute ``f = (i + 0.5) * in / out - 0.5`` in float32, ``low = floor(f)`` and the weights
    ``(1 - frac, frac)`` rounded from float32. Outside the image the columns (``clamp_weights``)
    take the edge pixel with weights ``(1, 0)``; the rows keep their weights and read the edge row
    twice (OpenCV clamps only the row index), which rounds differently in the first and last rows of
    an enlargement."""
    scale = 1.0 / (out_size / in_size)
    f = ((np.arange(out_size) + 0.5) * scale - 0.5).astype(np.float32)
    low = np.floor(f).astype(np.int64)
    f = f - low.astype(np.float32)
    if clamp_weights:
        f[low < 0] = 0
        low[low < 0] = 0
        last = low >= in_size - 1
        f[last] = 0
        low[last] = in_size - 1
    one = np.float32(1 << _RESIZE_BITS)
    w_high = np.rint(f * one).astype(np.int64)
    w_low = np.rint((np.float32(1) - f) * one).astype(np.int64)
    return np.clip(low, 0, in_size - 1), np.clip(low + 1, 0, in_size - 1), w_low, w_high


def resize_uint8(image: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """``cv2.resize(image, (w, h))`` with INTER_LINEAR for a uint8 ``[H,W,C]`` image: fixed-point
    weights, OpenCV's vectorised rounding; an exact halving is its 2x2 box average, as OpenCV does."""
    height, width = image.shape[:2]
    out_h, out_w = size_hw
    if (out_h, out_w) == (height, width):
        return image.copy()
    if height == 2 * out_h and width == 2 * out_w:
        blocks = image.astype(np.int32).reshape(out_h, 2, out_w, 2, -1).sum((1, 3))
        return ((blocks + 2) >> 2).astype(np.uint8)
    x_low, x_high, wx_low, wx_high = _linear_taps(width, out_w, clamp_weights=True)
    rows = image.astype(np.int64)
    horizontal = rows[:, x_low] * wx_low[None, :, None] + rows[:, x_high] * wx_high[None, :, None]
    y_low, y_high, wy_low, wy_high = _linear_taps(height, out_h, clamp_weights=False)
    top = ((horizontal[y_low] >> 4) * wy_low[:, None, None]) >> 16
    bottom = ((horizontal[y_high] >> 4) * wy_high[:, None, None]) >> 16
    return np.clip((top + bottom + 2) >> 2, 0, 255).astype(np.uint8)


def padded_canvas(image: np.ndarray, view: PaddedView) -> np.ndarray:
    """The uint8 ``[canvas_h, canvas_w, 3]`` canvas of ``view`` for ``image`` ``[H,W,3]``."""
    resized = resize_uint8(image, view.resized_hw)
    y0, y1, x0, x1 = view.border
    canvas = np.zeros((*view.canvas_hw, image.shape[2]), dtype=np.uint8)
    centre_y, centre_x = view.resized_hw[0] // 2, view.resized_hw[1] // 2
    half_y, half_x = view.canvas_hw[0] // 2, view.canvas_hw[1] // 2
    canvas[y0:y1, x0:x1] = resized[y0 - half_y + centre_y : y1 - half_y + centre_y,
                                   x0 - half_x + centre_x : x1 - half_x + centre_x]
    return canvas


def unflip(detections: Tensor, map_width: int) -> Tensor:
    """``[2,K,8]`` detections of (canvas, mirrored canvas) -> ``[2K,8]``, the mirrored image's boxes
    mapped back: ``x1' = W - x2``, ``x2' = W - x1`` with ``W`` the map width (output-map cells)."""
    mirrored = detections[1].clone()
    mirrored[:, 0], mirrored[:, 2] = map_width - detections[1, :, 2], map_width - detections[1, :, 0]
    return torch.cat((detections[0], mirrored))


def map_to_image_pixels(detections: Tensor, view: PaddedView, map_hw: tuple[int, int]) -> Tensor:
    """Box columns of ``detections`` ``[N,8]`` from output-map cells to image pixels (the
    original ``rescale_dets_``): ``/ float32(out / inp)``, minus the border, clipped to the resized
    image ``[0, size]``, ``/ scale``; float32 results."""
    ratios = (np.float32(map_hw[1] / view.canvas_hw[1]), np.float32(map_hw[0] / view.canvas_hw[0]))
    boxes = detections[:, BOX].double() / torch.tensor([ratios[0], ratios[1]] * 2, dtype=torch.float64,
                                                       device=detections.device)
    boxes = boxes.float()
    y0, _, x0, _ = view.border
    boxes = boxes - torch.tensor([x0, y0, x0, y0], dtype=torch.float32, device=boxes.device)
    height, width = view.resized_hw
    upper = torch.tensor([width, height, width, height], dtype=torch.float32, device=boxes.device)
    boxes = torch.minimum(boxes.clamp(min=0), upper)
    boxes = (boxes.double() / float(np.float32(view.scale))).float()
    return torch.cat((boxes, detections[:, 4:]), dim=1)


class CornerNetDetector(DetectorBase):
    """Detect objects with CornerNet-Squeeze or CornerNet, as the original ``cornernet_inference``.

    ``CornerNetDetector(model, config=None, class_names=None, **overrides)``: ``model`` returns
    :class:`~cornernet_saccade.model.heads.HeadOutputs` for normalised BGR images; ``config`` a
    :class:`CornerNetTestConfig` or mapping (default: the weights file's ``test_settings``, else the
    original settings of the model: :meth:`CornerNetTestConfig.for_model` by output stride).
    ``detector(image)`` -> :class:`Detections` (boxes in image pixels, best score first); its trace
    holds one :class:`CropView` per scale (the image region the padded canvas covers) and the
    detections before the merge.
    """

    def __init__(
        self,
        model: DetectionNetwork,
        config: CornerNetTestConfig | Mapping[str, Any] | None = None,
        class_names: Sequence[str] | None = None,
        **overrides: Any,
    ):
        self.config: CornerNetTestConfig = tester_settings(model, config, overrides)
        super().__init__(model, class_names)

    def __call__(self, image: ImageSource | ImageWindows) -> Detections:
        pixels = whole_pixels(image, max_pixels=self.config.max_pixels)
        views = [padded_view(pixels.shape[:2], s) for s in self.config.test_scales]
        self._check_canvases(views, pixels.shape[:2], image)
        trace = DetectionTrace(view_kind=PADDED_VIEWS)
        with torch.inference_mode():
            found = [self._detect_scale(pixels, view, trace) for view in views]
            detections = torch.cat(found)
            detections = detections[detections[:, SCORE] > REJECTED_SCORE]
        trace.candidates = detections[:, CANDIDATE_COLUMNS].float().cpu().numpy()
        return self._merge(detections.cpu().numpy(), trace)

    def _check_canvases(self, views: Sequence[PaddedView], image_hw: tuple[int, ...], image: object) -> None:
        """ImageError (naming ``image`` when it is a path; callers that read the file name it) when a
        canvas of ``views`` has a side the network does not take. Only a network with ``input_sizes``
        (an ONNX export: sides ``128k-1`` up to its max size, or one fixed size) limits them; the
        models take every canvas."""
        sizes = self.model.input_sizes
        if sizes is None:
            return
        for view in views:
            if not all(sizes.accepts(side) for side in view.canvas_hw):
                (height, width), (canvas_h, canvas_w) = image_hw[:2], view.canvas_hw
                named = f"{image}: " if isinstance(image, (str, os.PathLike)) else ""
                raise ImageError(
                    f"{named}at scale {view.scale:g} the {height}x{width} image is padded to a "
                    f"{canvas_h}x{canvas_w} canvas, which this ONNX export does not take (it takes sides {sizes}); export the "
                    f"network again without --fixed-size and with --max-size {max(canvas_h, canvas_w)} or more, "
                    f"choose smaller test scales, or use another backend"
                )

    def _detect_scale(self, image: np.ndarray, view: PaddedView, trace: DetectionTrace) -> Tensor:
        """Detections ``[B*num_dets, 8]`` (image pixels, rejected rows included) of one scale."""
        cfg = self.config
        canvas = torch.from_numpy(padded_canvas(image, view)).to(self.device).permute(2, 0, 1)
        batch = canvas.unsqueeze(0).to(torch.float64) / 255.0
        if cfg.flip:
            batch = torch.cat((batch, batch.flip(-1)))
        trace.count_input(batch)
        out = self.model(normalize_bgr(batch), with_attention=False)
        dets = decode_heads(out, k=cfg.top_k, kernel=cfg.nms_kernel, ae_threshold=cfg.ae_threshold, num_dets=cfg.num_dets)
        map_hw = (out.tl_heats[-1].shape[-2], out.tl_heats[-1].shape[-1])
        dets = unflip(dets, map_hw[1]) if cfg.flip else dets.reshape(-1, 8)
        y0, _, x0, _ = view.border
        region = (round(-x0 / view.scale), round(-y0 / view.scale),
                  round((view.canvas_hw[1] - x0) / view.scale), round((view.canvas_hw[0] - y0) / view.scale))
        trace.crops.append(CropView(0, (image.shape[0] / 2, image.shape[1] / 2), view.scale, region))
        return map_to_image_pixels(dets, view, map_hw)

    def _merge(self, detections: np.ndarray, trace: DetectionTrace) -> Detections:
        """Per-class soft-NMS of ``detections`` ``[M,8]`` (every row the in-place algorithm leaves), in
        class order, then :func:`~cornernet_saccade.inference.detector_base.finish_detections`."""
        cfg = self.config
        labels = detections[:, LABEL].astype(np.int64)
        rows, row_labels = [np.zeros((0, 5), np.float32)], [np.zeros(0, np.int64)]
        for label in np.unique(labels):
            merged = soft_nms_rows(
                detections[labels == label, :7], method=NMS_METHODS[cfg.nms_method], sigma=cfg.nms_sigma,
                overlap_threshold=cfg.nms_overlap, score_threshold=cfg.nms_score_threshold,
                merge_weight_exp=cfg.weight_exp if cfg.merge_bbox else None,
            )
            rows.append(merged)
            row_labels.append(np.full(len(merged), label, np.int64))
        boxes = np.concatenate(rows)
        return finish_detections(boxes[:, BOX], boxes[:, SCORE], np.concatenate(row_labels), cfg, self.class_names, trace)
