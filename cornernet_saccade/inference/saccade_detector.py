"""The saccade detector: downsized views -> attention -> zoomed crops -> merged detections.

Image crops, network outputs and detections are torch tensors on the network's device until the final
merge; locations are numpy arrays (see :mod:`cornernet_saccade.inference.locations`). Detection rows
``[M,8]`` have the columns of :mod:`cornernet_saccade.inference.decode` (``BOX``, ``SCORE``, ``LABEL``).
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from cornernet_saccade.image_windows import ArrayWindows, ImageWindows, TiffWindows, open_windows
from cornernet_saccade.images import ImageSource
from cornernet_saccade.inference.decode import BOX, CANDIDATE_COLUMNS, LABEL, REJECTED_SCORE, SCORE, decode_heads
from cornernet_saccade.inference.detector_base import DetectorBase, finish_detections, saccade_settings
from cornernet_saccade.inference.locations import (
    FIRST_ROUND_MIN_SCORE,
    MAX_NEXT_SCALE,
    attention_peaks,
    decode_attention_locations,
    initial_locations,
    location_nms,
    reference_locations,
)
from cornernet_saccade.inference.nms import soft_nms
from cornernet_saccade.inference.preprocess import normalize_bgr
from cornernet_saccade.inference.results import Detections
from cornernet_saccade.inference.settings import CPU_BATCH_SIZE, GPU_TILE_BATCH_SIZE, NMS_METHODS, SaccadeConfig
from cornernet_saccade.inference.trace import VIEW_KINDS, CropView, DetectionTrace
from cornernet_saccade.inference.view_policy import view_plan
from cornernet_saccade.inference.views import (
    CropWindow,
    ViewSource,
    crop_to_image_pixels,
    full_image_window,
    location_windows,
    map_to_crop_pixels,
    paste_crops,
    source_hw,
    tile_grid,
    window_offsets,
)
from cornernet_saccade.model.geometry import CROP_SIZE, padded_input_size
from cornernet_saccade.model.protocol import DetectionNetwork

#: Views pasted and run at once on a GPU when ``SaccadeConfig.batch_size`` is None (all of a round,
#: up to this many: a round of the auto view policy may have hundreds).
GPU_MAX_BATCH_SIZE = 64

#: Called after each batch of views with the number of views it ran (``SaccadeDetector.on_views``).
ViewsCallback = Callable[[int], None]


class SaccadeDetector(DetectorBase):
    """Detect objects with a CornerNet-Saccade network, as the original test code does.

    ``SaccadeDetector(model, config=None, class_names=None, **overrides)``: ``model`` returns
    :class:`~cornernet_saccade.model.heads.HeadOutputs` for normalised BGR images (it is put in eval mode
    and run on its own device); ``config`` a :class:`SaccadeConfig` or mapping (default: the
    ``test_settings`` the model's weights file stored, else the official settings), ``overrides``
    single fields (``score_threshold=0.3``); unknown or invalid values raise ``ConfigError``.
    ``class_names`` default to the model's own (``model.class_names``, read from its weights file).
    ``detector(image)`` takes a path, an ``HxWx3`` uint8 RGB array, a PIL image or a ``[C, H, W]``
    tensor (see :func:`~cornernet_saccade.images.read_image`) and returns :class:`Detections`;
    ``detector.detect_batch(images)`` a list of them.
    """

    def __init__(
        self,
        model: DetectionNetwork,
        config: SaccadeConfig | Mapping[str, Any] | None = None,
        class_names: Sequence[str] | None = None,
        **overrides: Any,
    ):
        self.config: SaccadeConfig = saccade_settings(model, config, overrides)
        #: Whether :meth:`_warn_nothing_proposed` has spoken (it does once per detector).
        self._warned = False
        super().__init__(model, class_names)
        #: Called after each batch of views with their number (e.g. progress on large images).
        self.on_views: ViewsCallback | None = None

    def __call__(self, image: ImageSource | ImageWindows) -> Detections:
        # a large tiled TIFF is read by windows (image_windows.open_windows); anything else whole, as
        # uint8 [3,H,W] on the device: each crop converts only its own pixels to float64
        source = image if isinstance(image, ImageWindows) else open_windows(image, max_pixels=self.config.max_pixels)
        try:
            result = self._detect(self._view_source(source))
        finally:
            if source is not image and isinstance(source, TiffWindows):
                source.close()
        proposals = result.trace.proposals
        if self.config.mode == "saccade" and not len(result) and not len(proposals[0]) and not self._warned:
            self._warned = True  # once per detector: a batch of empty images would repeat it per image
            self._warn_nothing_proposed(result.trace)
        return result

    def _view_source(self, source: ImageWindows) -> ViewSource:
        """What views are cut from: an image held whole as a ``uint8 [3,H,W]`` tensor on the device,
        an image read by windows as it is (each view's pixels are read, then moved to the device)."""
        if isinstance(source, ArrayWindows):
            return torch.from_numpy(source.pixels).to(self.device).permute(2, 0, 1)
        return source

    def _detect(self, image: ViewSource) -> Detections:
        trace = DetectionTrace(view_kind=VIEW_KINDS[self.config.mode])
        with torch.inference_mode():
            if self.config.mode == "full":
                detections = self._detect_full(image, trace)
            elif self.config.mode == "tiled":
                detections = self._detect_tiled(image, trace)
            else:
                detections = self._detect_saccade(image, trace)
            trace.candidates = detections[:, CANDIDATE_COLUMNS].float().cpu().numpy()
            return self._merge(detections, trace, source_hw(image))

    def _warn_nothing_proposed(self, trace: DetectionTrace) -> None:
        """Say (once per detector) why saccade mode found nothing when no location was proposed after the first views:
        no attention peak reached its threshold and no first-view detection was confident enough
        to zoom on (an undertrained model, or one trained without attention targets)."""
        peak = max((float(att.max()) for att in trace.attention_maps if att.size), default=0.0)
        threshold = self.config.att_thresholds[0]
        attention = (f"no attention peak reached att_thresholds[0] = {threshold} (the highest was {peak:.3f})"
                     if peak <= threshold else
                     f"the attention peaks above att_thresholds[0] = {threshold} lie outside the image or would "
                     f"zoom in more than {MAX_NEXT_SCALE:g}x (a small image)")
        warnings.warn(
            f"saccade mode found nothing: {attention}, and no detection of the first views scored above "
            f"{FIRST_ROUND_MIN_SCORE}, so no crop was zoomed into; a model this unsure (early in training?) or "
            f"an image this small may still give detections with mode='full' (--mode full)",
            UserWarning, stacklevel=3,
        )

    def _detect_saccade(self, image: ViewSource, trace: DetectionTrace) -> Tensor:
        """All detections ``[M,8]`` (image pixels) of the saccade rounds, before the merge. The first
        views and the crop budget are :func:`~cornernet_saccade.inference.view_policy.view_plan`'s."""
        cfg = self.config
        rounds = len(cfg.att_thresholds)
        height, width = source_hw(image)
        plan = view_plan(height, width, cfg)
        locations = initial_locations(height, width, plan.init_sizes)
        dets, attentions, offsets = self._look(image, locations, 0, with_attention=True, trace=trace)
        trace.attention_maps = [att.cpu().numpy() for att in attentions]
        found = [dets[dets[:, SCORE] > FIRST_ROUND_MIN_SCORE]]
        proposals = self._propose((height, width), attentions, locations, offsets, found[-1], 0)
        trace.proposals.append(proposals)
        num_crops = 0
        for round_index in range(1, rounds + 1):
            locations = proposals[: plan.max_crops - num_crops]
            if len(locations) == 0:
                break
            num_crops += len(locations)
            last = round_index == rounds
            dets, attentions, offsets = self._look(image, locations, round_index, not last, trace)
            found.append(dets[dets[:, SCORE] > REJECTED_SCORE])
            if last or num_crops == plan.max_crops:
                break
            proposals = self._propose((height, width), attentions, locations, offsets, found[-1], round_index)
            trace.proposals.append(proposals)
        return torch.cat(found)

    def _detect_full(self, image: ViewSource, trace: DetectionTrace) -> Tensor:
        """Detections ``[M,8]`` (image pixels) of one pass over the whole padded image.

        The image is resized so its long side is ``full_size`` crop pixels and pasted at the
        top-left of a zero canvas of side :func:`padded_input_size` (``full_size`` itself for the
        official 511), so any ``full_size`` fits the hourglass; the padding holds no image."""
        cfg = self.config
        height, width = source_hw(image)
        window = full_image_window((height, width), cfg.full_size)
        scale = cfg.full_size / window.side
        trace.crops.append(CropView(0, (height / 2, width / 2), scale, window.region_xyxy))
        dets, _ = self._run_views(image, [window], padded_input_size(cfg.full_size), False, cfg.full_top_k,
                                  cfg.full_num_dets, no_border=False, trace=trace, step=1)
        dets = crop_to_image_pixels(dets, np.array([scale]), window_offsets([window]))
        dets = dets.reshape(-1, 8)
        return dets[dets[:, SCORE] > REJECTED_SCORE]

    def _detect_tiled(self, image: ViewSource, trace: DetectionTrace) -> Tensor:
        """Detections ``[M,8]`` (image pixels) of the native-resolution tiles, before the merge.

        Tiles of side ``tile_size`` (:func:`tile_grid`: row-major, overlapping by ``tile_overlap``
        or more, the last ones at the image edge), one image pixel per crop pixel, are pasted at the
        top-left of zero canvases of side :func:`padded_input_size` (``tile_size`` itself for a
        ``32k - 1`` side, 415 for DeepForest's 400 px tiles; the padding counts in the network
        pixels) and run :meth:`_tile_batch_size` at a time. A tile is a CornerNet pass over a whole region with
        any number of objects anywhere, as in full mode, so it is decoded with ``full_top_k`` /
        ``full_num_dets`` (the crop settings' 12 boxes are for a zoom on one object and its
        neighbours) and without ``no_border`` (it would drop the objects touching the image edge).
        A tile keeps only the boxes whose centre lies in its core
        (:func:`~cornernet_saccade.inference.views.tile_cores`): an object no longer than
        ``tile_overlap`` is then kept from the one tile that shows it whole, neither cut by a tile
        edge nor repeated by the overlapping neighbour; longer objects cut by every tile come in
        pieces. Each tile then keeps its ``max_per_image`` best boxes (the most a full-mode pass
        over it could return): soft-NMS takes time quadratic in its input, and 1000 boxes from each
        of the 88 tiles of a 4096x3072 image would take minutes. ``_merge`` then merges the tiles'
        boxes as it merges the crops'."""
        cfg = self.config
        windows, cores = tile_grid(source_hw(image), cfg.tile_size, cfg.tile_overlap)
        trace.crops += [CropView(0, (w.offset_y + w.side / 2, w.offset_x + w.side / 2), 1.0, w.region_xyxy)
                        for w in windows]
        found = []
        step = self._tile_batch_size()
        for start in range(0, len(windows), step):
            batch = windows[start : start + step]
            dets, _ = self._run_views(image, batch, padded_input_size(cfg.tile_size), False, cfg.full_top_k,
                                      cfg.full_num_dets, no_border=False, trace=trace, step=step)
            dets = crop_to_image_pixels(dets, np.ones(len(batch)), window_offsets(batch))
            kept = in_cores(dets, cores[start : start + step]) & (dets[..., SCORE] > REJECTED_SCORE)
            found.append(dets[kept & (kept.cumsum(dim=1) <= cfg.max_per_image)])  # rows are best first
        return torch.cat(found)

    def _tile_batch_size(self) -> int:
        """Tiles pasted and run at once: ``batch_size``, else :data:`GPU_TILE_BATCH_SIZE` on a GPU
        and :data:`CPU_BATCH_SIZE` on the CPU (tiles are pasted per batch, not all at once)."""
        return self.config.batch_size or (GPU_TILE_BATCH_SIZE if self.device.type == "cuda" else CPU_BATCH_SIZE)

    def _crop_batch_size(self) -> int:
        """Crops pasted and run at once: ``batch_size``, else :data:`GPU_MAX_BATCH_SIZE` on a GPU (all
        of a round up to that) and :data:`CPU_BATCH_SIZE` on the CPU."""
        return self.config.batch_size or (GPU_MAX_BATCH_SIZE if self.device.type == "cuda" else CPU_BATCH_SIZE)

    def _look(
        self, image: ViewSource, locations: np.ndarray, round_index: int, with_attention: bool, trace: DetectionTrace
    ) -> tuple[Tensor, list[Tensor], np.ndarray]:
        """Run the views of ``locations``: ``(detections [N*num_dets, 8] image pixels, attention
        probabilities (empty without attention), offsets [N,2])``; records the views in ``trace``."""
        windows = location_windows(locations, source_hw(image))
        offsets = window_offsets(windows)
        for (y, x, scale), w in zip(locations[:, :3].tolist(), windows):
            trace.crops.append(CropView(round_index, (y, x), scale, w.region_xyxy))
        dets, attentions = self._run_views(image, windows, CROP_SIZE, with_attention, self.config.top_k,
                                           self.config.num_dets, True, trace, self._crop_batch_size())
        dets = crop_to_image_pixels(dets, locations[:, 2], offsets)
        return dets.reshape(-1, 8), attentions, offsets

    def _run_views(
        self, image: ViewSource, windows: Sequence[CropWindow], canvas: int, with_attention: bool, k: int,
        num_dets: int, no_border: bool, trace: DetectionTrace, step: int,
    ) -> tuple[Tensor, list[Tensor]]:
        """Paste the views ``step`` at a time (``canvas`` crop pixels), run the network and decode:
        detections ``[N,num_dets,8]`` in crop pixels and, with attention, the sigmoid attention maps
        (coarse, middle, fine ``[N,1,h,w]``); counts the input in ``trace``, calls :attr:`on_views`."""
        cfg = self.config
        dets, attentions = [], []
        for start in range(0, len(windows), step):
            crops = paste_crops(image, windows[start : start + step], canvas, self.device)
            trace.count_input(crops)
            out = self.model(normalize_bgr(crops), with_attention=with_attention)
            decoded = decode_heads(out, k=k, kernel=cfg.nms_kernel, ae_threshold=cfg.ae_threshold, num_dets=num_dets,
                                   no_border=no_border)
            dets.append(map_to_crop_pixels(decoded, out.tl_heats[-1].shape[-1] / crops.shape[-1]))
            if with_attention:
                attentions.append([torch.sigmoid(att) for att in out.attentions[-1]])
            if self.on_views is not None:
                self.on_views(len(crops))
        merged_attentions = [torch.cat(maps) for maps in zip(*attentions)]
        return torch.cat(dets), merged_attentions

    def _propose(
        self,
        image_hw: tuple[int, int],
        attentions: list[Tensor],
        locations: np.ndarray,
        offsets: np.ndarray,
        detections: Tensor,
        round_index: int,
    ) -> np.ndarray:
        """Next locations after round ``round_index``: attention peaks, plus (``ref_dets``)
        reference locations of confident detections, merged by :func:`location_nms`."""
        cfg = self.config
        peaks = [att.cpu().numpy() for att in attention_peaks(attentions, cfg.att_nms_ks)]
        proposals = decode_attention_locations(
            peaks, cfg.att_scales[round_index], locations[:, 2], offsets, image_hw,
            cfg.att_thresholds[round_index], ignore_same=round_index > 0,
        )
        if cfg.ref_dets:
            references = reference_locations(detections.cpu().numpy())
            proposals = location_nms(np.concatenate((proposals, references)))
        return proposals

    def _merge(self, detections: Tensor, trace: DetectionTrace, image_hw: tuple[int, int]) -> Detections:
        """Per-class soft-NMS of ``detections`` ``[M,8]`` (image pixels), then
        :func:`~cornernet_saccade.inference.detector_base.finish_detections` (boxes clipped to the
        ``image_hw`` (height, width) image when ``clip_boxes``)."""
        cfg = self.config
        labels = detections[:, LABEL].long()
        keep, scores = soft_nms(
            detections[:, BOX], detections[:, SCORE], labels, method=NMS_METHODS[cfg.nms_method],
            sigma=cfg.nms_sigma, overlap_threshold=cfg.nms_overlap, score_threshold=cfg.nms_score_threshold,
        )
        return finish_detections(
            detections[keep, BOX].cpu().numpy(), scores.cpu().numpy(), labels[keep].cpu().numpy(), cfg,
            self.class_names, trace, image_hw if cfg.clip_boxes else None,
        )


def in_cores(detections: Tensor, cores: np.ndarray) -> Tensor:
    """``[N,K]`` bool: whether each box of ``detections`` ``[N,K,8]`` (image pixels) has its centre in
    the core ``cores[n]`` = (x start, x end, y start, y end) of its tile (start inclusive, image
    pixels, see :func:`~cornernet_saccade.inference.views.tile_cores`)."""
    bounds = torch.as_tensor(cores, dtype=torch.float64, device=detections.device).unsqueeze(1)  # [N,1,4]
    box = detections[..., BOX].double()
    centre_x = (box[..., 0] + box[..., 2]) / 2
    centre_y = (box[..., 1] + box[..., 3]) / 2
    return ((centre_x >= bounds[..., 0]) & (centre_x < bounds[..., 1])
            & (centre_y >= bounds[..., 2]) & (centre_y < bounds[..., 3]))
