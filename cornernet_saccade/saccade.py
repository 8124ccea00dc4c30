"""Saccade inference (SPEC §5): downsized views -> attention -> zoomed crops -> merged detections.

Frames: **image pixels** (x right, y down, of the input image); **crop pixels** (the 255x255 canvas a
view is pasted into); **output-map cells** (64x64 for 255, ratio 64/255); **attention cells** (16, 8
and 4 crop pixels per cell for the coarse, middle and fine maps).

A *location* is a row ``y, x, scale, score`` (image pixels; ``scale`` = zoom, crop pixels per image
pixel). Locations are small host-side numpy arrays and keep the original's dtypes on purpose: the
initial locations are float32 (so a crop side ``int(255 / scale)`` is computed in float32 there, as
in the original) and the attention/reference ones float64. Image crops, network outputs and
detections are torch tensors on the model's device until the final merge.
"""
from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field
from typing import Any, Iterable, Literal, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import config_from_dict
from .decode import REJECTED_SCORE, decode_detections, keep_peaks
from .io import ImageSource, read_image
from .nms import SoftNMSMethod, best_per_image, soft_nms
from .preprocess import normalize_bgr

#: Side of the square network input of a saccade crop (crop pixels).
CROP_SIZE = 255
#: Crop pixels per attention cell of the coarse, middle and fine attention maps.
ATTENTION_RATIOS = (16, 8, 4)
#: First-round detections with a score above this are kept (the rest are left to the zoomed crops).
FIRST_ROUND_MIN_SCORE = 0.3
#: Detections above this score propose a reference location (zoom on the object itself).
REFERENCE_MIN_SCORE = 0.5
#: A crop zoomed by more than this proposes no further locations ...
MAX_PROPOSING_SCALE = 2.0
#: ... nor does a location that would need a zoom above this.
MAX_NEXT_SCALE = 4.0
#: Distance (crop pixels at the kept location's zoom) within which ``location_nms`` merges locations.
LOCATION_NMS_DISTANCE = 16.0
#: Zoom ratios that ``location_nms`` treats as the same scale (inclusive).
SAME_SCALE_RATIOS = (0.8, 1.2)
#: Crops per network call on the CPU when ``SaccadeConfig.batch_size`` is None.
CPU_BATCH_SIZE = 4

NMS_METHODS = {"hard": SoftNMSMethod.HARD, "linear": SoftNMSMethod.LINEAR, "gaussian": SoftNMSMethod.GAUSSIAN}


@dataclass(frozen=True)
class SaccadeConfig:
    """Test-time settings; the defaults are the official CornerNet-Saccade ones (SPEC §5).

    ``mode="saccade"`` runs the attention-driven crops; ``mode="full"`` resizes the whole image so its
    long side is ``full_size``, pads it to a square and decodes one pass with ``full_top_k`` /
    ``full_num_dets`` (CornerNet's values). Saccade rounds: one per entry of ``att_thresholds``
    (attention probability a cell needs to propose a location) with the matching ``att_scales``
    (zoom multipliers for the coarse, middle, fine maps); at most ``att_max_crops`` zoomed crops over
    all rounds (the ``init_sizes`` views do not count). Decoding: ``top_k`` corners per type,
    ``nms_kernel`` peak window, ``ae_threshold`` tag distance, ``num_dets`` boxes per crop. Merge:
    soft-NMS ``nms_method`` with ``nms_sigma`` / ``nms_overlap`` (linear and hard) and
    ``nms_score_threshold``, then the ``max_per_image`` best (ties kept). Output: boxes scoring below
    ``score_threshold`` are dropped. ``batch_size`` crops go through the network at once; batching
    changes no result. ``None`` (default): all crops of a round in one batch on a GPU (the original
    batched up to 32), batches of :data:`CPU_BATCH_SIZE` on the CPU, where large batches spill the
    caches (official network, fast path: 0.33 s per crop in batches of 4, 0.38 s in batches of 8;
    benchmarks/fast_inference.py).
    """

    mode: Literal["saccade", "full"] = "saccade"
    init_sizes: tuple[int, ...] = (192, 255)
    att_thresholds: tuple[float, ...] = (0.3,)
    att_scales: tuple[tuple[float, float, float], ...] = ((1.0, 2.0, 4.0),)
    att_max_crops: int = 30
    att_nms_ks: tuple[int, int, int] = (3, 3, 3)
    ref_dets: bool = True
    top_k: int = 12
    nms_kernel: int = 3
    ae_threshold: float = 0.3
    num_dets: int = 12
    nms_method: Literal["gaussian", "linear", "hard"] = "gaussian"
    nms_sigma: float = 0.7
    nms_overlap: float = 0.5
    nms_score_threshold: float = 0.001
    max_per_image: int = 100
    batch_size: int | None = None
    full_size: int = 511
    full_top_k: int = 100
    full_num_dets: int = 1000
    score_threshold: float = 0.0

    def __post_init__(self) -> None:
        if not self.init_sizes or min(self.init_sizes) < 1:
            raise ValueError("init_sizes must list at least one positive size")
        if not self.att_thresholds or len(self.att_scales) != len(self.att_thresholds):
            raise ValueError("att_scales needs one (coarse, middle, fine) triple per att_thresholds entry")
        if any(k < 1 or k % 2 == 0 for k in (*self.att_nms_ks, self.nms_kernel)):
            raise ValueError("att_nms_ks and nms_kernel must be odd and positive")
        if self.att_max_crops < 0 or min(self.max_per_image, self.batch_size or 1, self.full_size) < 1:
            raise ValueError("att_max_crops must be >= 0; max_per_image, batch_size, full_size >= 1")
        for k, num in ((self.top_k, self.num_dets), (self.full_top_k, self.full_num_dets)):
            if k < 1 or not 1 <= num <= k * k:
                raise ValueError(f"top-k {k} and num_dets {num}: need k >= 1 and 1 <= num_dets <= k*k")
        if self.nms_sigma <= 0:
            raise ValueError("nms_sigma must be positive")


@dataclass(frozen=True)
class CropWindow:
    """One view: image pixels ``[src_y0:src_y1, src_x0:src_x1]`` resized into crop pixels
    ``[dst_y0:dst_y1, dst_x0:dst_x1]`` of the canvas. The canvas shows the image square of side
    ``side`` whose top-left corner is image pixel ``(offset_y, offset_x)``."""

    src_y0: int
    src_y1: int
    src_x0: int
    src_x1: int
    dst_y0: int
    dst_y1: int
    dst_x0: int
    dst_x1: int
    offset_y: int
    offset_x: int
    side: int

    @property
    def is_empty(self) -> bool:
        """True when no image pixel lands on the canvas (location outside the image, tiny image)."""
        return min(self.src_y1 - self.src_y0, self.src_x1 - self.src_x0,
                   self.dst_y1 - self.dst_y0, self.dst_x1 - self.dst_x0) <= 0


@dataclass(frozen=True)
class CropView:
    """A view the detector looked at: ``round`` (0 = the downsized initial views), its location
    ``center_yx`` / ``scale``, and ``region_xyxy``, the image-pixel square the canvas covers (may
    reach outside the image)."""

    round: int
    center_yx: tuple[float, float]
    scale: float
    region_xyxy: tuple[int, int, int, int]


@dataclass
class SaccadeTrace:
    """What the detector looked at: every view (``crops``), the first round's attention
    probabilities ``attention_maps`` (coarse, middle, fine, each ``[views, 1, h, w]``), and the
    locations each proposing round produced (``proposals``, ``[P, 4]`` y, x, scale, score)."""

    crops: list[CropView] = field(default_factory=list)
    attention_maps: list[np.ndarray] = field(default_factory=list)
    proposals: list[np.ndarray] = field(default_factory=list)


@dataclass(frozen=True)
class Detections:
    """Detections of one image, best score first.

    ``boxes`` float32 ``[M,4]`` x1, y1, x2, y2 in input-image pixels (not clipped to the image, as
    the original); ``scores`` float32 ``[M]``; ``labels`` int64 ``[M]`` 0-based; ``class_names``
    the name of each detection's class (``None`` without names); ``trace`` how they were found.
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    class_names: list[str] | None
    trace: SaccadeTrace

    def __len__(self) -> int:
        return len(self.scores)


def initial_locations(height: int, width: int, sizes: Sequence[int]) -> np.ndarray:
    """The first-round views ``[len(sizes), 4]`` float32: image centre ``(H // 2, W // 2)``, zoom
    ``size / max(H, W)`` (the long side becomes ``size`` crop pixels), score 1."""
    return np.array([[height // 2, width // 2, size / max(height, width), 1.0] for size in sizes], dtype=np.float32)


def crop_window(center_y: int, center_x: int, side: int, image_hw: tuple[int, int], canvas: int) -> CropWindow:
    """The original ``crop_image_gpu`` geometry: the ``side x side`` image square centred on the
    (integer) image pixel, cut to the image, resized by ``canvas / side`` and centred on the canvas."""
    height, width = image_hw
    half = side // 2
    y0, y1 = max(0, center_y - half), min(center_y + half, height)
    x0, x1 = max(0, center_x - half), min(center_x + half, width)
    resize = canvas / side
    mid = canvas // 2
    return CropWindow(
        src_y0=y0, src_y1=y1, src_x0=x0, src_x1=x1,
        dst_y0=mid - int((center_y - y0) * resize), dst_y1=mid + int((y1 - center_y) * resize),
        dst_x0=mid - int((center_x - x0) * resize), dst_x1=mid + int((x1 - center_x) * resize),
        offset_y=center_y - half, offset_x=center_x - half, side=side,
    )


def location_windows(locations: np.ndarray, image_hw: tuple[int, int], canvas: int = CROP_SIZE) -> list[CropWindow]:
    """Crop windows of ``locations`` ``[N, >=3]`` (y, x, scale): side ``int(canvas / scale)``
    computed in the locations' dtype (float32 for the initial views, as the original)."""
    return [
        crop_window(int(y), int(x), max(1, int(canvas / scale)), image_hw, canvas)
        for y, x, scale in locations[:, :3]
    ]


def full_image_window(image_hw: tuple[int, int], canvas: int) -> CropWindow:
    """The whole image resized so its long side fills ``canvas``, at the canvas's top-left corner."""
    height, width = image_hw
    side = max(height, width)
    return CropWindow(
        src_y0=0, src_y1=height, src_x0=0, src_x1=width,
        dst_y0=0, dst_y1=max(1, round(height * canvas / side)),
        dst_x0=0, dst_x1=max(1, round(width * canvas / side)),
        offset_y=0, offset_x=0, side=side,
    )


def paste_crops(image01: Tensor, windows: Sequence[CropWindow], canvas: int = CROP_SIZE) -> Tensor:
    """Cut and resize the views out of ``image01`` ``[3,H,W]`` (float64, values in [0, 1]).

    Returns float32 ``[N,3,canvas,canvas]`` in crop pixels, zero outside the pasted part. Bilinear
    resizing (``align_corners=False``) is done in ``image01``'s float64, like the original.
    """
    crops = torch.zeros((len(windows), 3, canvas, canvas), dtype=torch.float32, device=image01.device)
    for crop, w in zip(crops, windows):
        if w.is_empty:
            continue
        part = image01[:, w.src_y0 : w.src_y1, w.src_x0 : w.src_x1].unsqueeze(0)
        size = (w.dst_y1 - w.dst_y0, w.dst_x1 - w.dst_x0)
        resized = F.interpolate(part, size=size, mode="bilinear", align_corners=False)[0]
        crop[:, w.dst_y0 : w.dst_y1, w.dst_x0 : w.dst_x1] = resized
    return crops


def window_offsets(windows: Sequence[CropWindow]) -> np.ndarray:
    """``[N,2]`` float32 image pixel (y, x) of each canvas's top-left corner (the original ``offsets``)."""
    return np.array([(w.offset_y, w.offset_x) for w in windows], dtype=np.float32).reshape(-1, 2)


def attention_peaks(attentions: Sequence[Tensor], kernels: Sequence[int]) -> list[Tensor]:
    """The original ``att_nms``: keep only local maxima (``k x k`` windows) of each attention map."""
    return [keep_peaks(att, k) for att, k in zip(attentions, kernels)]


def decode_attention_locations(
    attentions: Sequence[np.ndarray],
    att_scales: Sequence[float],
    scales: np.ndarray,
    offsets: np.ndarray,
    image_hw: tuple[int, int],
    threshold: float,
    ignore_same: bool = False,
) -> np.ndarray:
    """Attention peaks -> next locations (the original ``decode_atts``).

    ``attentions``: coarse, middle, fine probabilities after peak keeping, ``[N,1,h,w]`` each, for
    views of zoom ``scales`` ``[N]`` and ``offsets`` ``[N,2]`` (y, x). A cell above ``threshold``
    maps its corner (not centre) to image pixels ``cell * ratio / scale + offset`` and proposes zoom
    ``att_scale * scale``; cells outside the image are dropped, and nothing is proposed by views
    zoomed over :data:`MAX_PROPOSING_SCALE`, for zooms over :data:`MAX_NEXT_SCALE`, or (``ignore_same``)
    by maps whose ``att_scale <= 1``. Returns float64 ``[M,4]`` y, x, scale, score, ordered by view,
    then map, then row-major cell.
    """
    height, width = image_hw
    rows = [np.zeros((0, 4))]
    for view, (scale, (offset_y, offset_x)) in enumerate(zip(scales, offsets)):
        for att, ratio, att_scale in zip(attentions, ATTENTION_RATIOS, att_scales):
            next_scale = att_scale * scale
            if (ignore_same and att_scale <= 1) or scale > MAX_PROPOSING_SCALE or next_scale > MAX_NEXT_SCALE:
                continue
            cell_ys, cell_xs = np.nonzero(att[view, 0] > threshold)
            scores = att[view, 0, cell_ys, cell_xs]
            ys = cell_ys * ratio / scale + offset_y
            xs = cell_xs * ratio / scale + offset_x
            inside = (ys >= 0) & (ys < height) & (xs >= 0) & (xs < width)
            count = int(inside.sum())
            rows.append(np.stack((ys[inside], xs[inside], np.full(count, next_scale), scores[inside]), axis=1))
    return np.concatenate(rows).astype(np.float64)


def reference_locations(detections: np.ndarray) -> np.ndarray:
    """Zoom on confident detections (the original ``get_ref_locs``).

    ``detections`` ``[N, >=5]`` image pixels. Each one scoring above :data:`REFERENCE_MIN_SCORE`
    gives ``[centre y, centre x, zoom, 1]`` with zoom making its long side 192 (long side > 96),
    64 (32 < side <= 96) or 24 crop pixels; computed in the detections' dtype. ``[M,4]``.
    """
    dets = detections[detections[:, 4] > REFERENCE_MIN_SCORE]
    centre_x = (dets[:, 0] + dets[:, 2]) / 2
    centre_y = (dets[:, 1] + dets[:, 3]) / 2
    longest = np.maximum(dets[:, 2] - dets[:, 0], dets[:, 3] - dets[:, 1])
    target = np.where(longest > 96, 192, np.where(longest > 32, 64, 24)).astype(longest.dtype)
    with np.errstate(divide="ignore"):
        scales = target / longest
    return np.stack((centre_y, centre_x, scales, np.ones_like(scales)), axis=1)


def location_nms(locations: np.ndarray, distance: float = LOCATION_NMS_DISTANCE) -> np.ndarray:
    """Greedy merge of nearby locations at similar zoom (the original ``location_nms``).

    Highest score first, in the order of numpy's default (unstable) ``argsort`` reversed, exactly
    as the original (its tie order among equal scores decides which location survives). A location
    is dropped when ``min(|dy|, |dx|) <= distance / kept_scale`` and
    ``0.8 <= kept_scale / scale <= 1.2`` for a kept one. ``[N,4]`` -> ``[M,4]``.
    """
    ordered = locations[np.argsort(locations[:, 3])[::-1]]
    ys, xs, scales = ordered[:, 0], ordered[:, 1], ordered[:, 2]
    near = np.minimum(np.abs(ys[:, None] - ys[None]), np.abs(xs[:, None] - xs[None]))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = scales[:, None] / scales[None]
    low, high = SAME_SCALE_RATIOS
    alive = np.ones(len(ordered), dtype=bool)
    kept = []
    for i in range(len(ordered)):
        if alive[i]:
            kept.append(i)
            alive &= (near[i] > distance / scales[i]) | (ratios[i] > high) | (ratios[i] < low)
    return ordered[kept].reshape(-1, 4)


def map_to_crop_pixels(detections: Tensor, map_to_crop_ratio: float) -> Tensor:
    """Box columns of ``detections`` ``[..., 8]`` from output-map cells to crop pixels (the original
    ``rescale_dets_``: float32 division by ``float32(map_size / crop_size)``); other columns kept."""
    ratio = float(np.float32(map_to_crop_ratio))
    boxes = (detections[..., :4].double() / ratio).to(detections.dtype)
    return torch.cat((boxes, detections[..., 4:]), dim=-1)


def crop_to_image_pixels(detections: Tensor, scales: np.ndarray, offsets: np.ndarray) -> Tensor:
    """Box columns of ``detections`` ``[N,K,8]`` from crop pixels of view ``n`` to image pixels:
    ``/ scales[n] + offsets[n]`` (the original ``remap_dets_``: nominal zoom, float32 results)."""
    device = detections.device
    scale = torch.as_tensor(np.asarray(scales, dtype=np.float64), device=device).reshape(-1, 1, 1)
    shift = torch.as_tensor(offsets[:, [1, 0, 1, 0]], dtype=torch.float32, device=device).unsqueeze(1)
    boxes = (detections[..., :4].double() / scale).to(detections.dtype) + shift
    return torch.cat((boxes, detections[..., 4:]), dim=-1)


class SaccadeDetector:
    """Detect objects with a CornerNet-Saccade network, as the original test code does.

    ``SaccadeDetector(model, config=None, class_names=None, **overrides)``: ``model`` returns
    :class:`~cornernet_saccade.model.HeadOutputs` for normalised BGR images (it is put in eval mode
    and run on its own device); ``config`` a :class:`SaccadeConfig` or mapping, ``overrides`` single
    fields (``score_threshold=0.3``); unknown or invalid values raise ``ConfigError``.
    ``detector(image)`` takes a path or an ``HxWx3`` uint8 RGB array and returns
    :class:`Detections`; ``detector.detect_batch(images)`` a list of them.
    """

    def __init__(
        self,
        model: nn.Module,
        config: SaccadeConfig | Mapping[str, Any] | None = None,
        class_names: Sequence[str] | None = None,
        **overrides: Any,
    ):
        config = config_from_dict(SaccadeConfig, config, "saccade config")
        if overrides:
            config = config_from_dict(SaccadeConfig, {**dataclasses.asdict(config), **overrides}, "saccade config")
        self.config: SaccadeConfig = config
        self.model = model.eval()
        self.class_names = list(class_names) if class_names is not None else None
        first = next(itertools.chain(model.parameters(), model.buffers()), None)
        self.device = first.device if first is not None else torch.device("cpu")

    def __call__(self, image: ImageSource) -> Detections:
        pixels = read_image(image)
        image01 = torch.from_numpy(pixels).to(self.device).permute(2, 0, 1).to(torch.float64) / 255.0
        trace = SaccadeTrace()
        with torch.inference_mode():
            if self.config.mode == "full":
                detections = self._detect_full(image01, trace)
            else:
                detections = self._detect_saccade(image01, trace)
            return self._merge(detections, trace)

    def detect_batch(self, images: Iterable[ImageSource]) -> list[Detections]:
        """:meth:`__call__` for each image (each image's crops depend on its own attention)."""
        return [self(image) for image in images]

    def _detect_saccade(self, image01: Tensor, trace: SaccadeTrace) -> Tensor:
        """All detections ``[M,8]`` (image pixels) of the saccade rounds, before the merge."""
        cfg = self.config
        rounds = len(cfg.att_thresholds)
        locations = initial_locations(image01.shape[1], image01.shape[2], cfg.init_sizes)
        dets, attentions, offsets = self._look(image01, locations, 0, with_attention=True, trace=trace)
        trace.attention_maps = [att.cpu().numpy() for att in attentions]
        found = [dets[dets[:, 4] > FIRST_ROUND_MIN_SCORE]]
        proposals = self._propose(image01, attentions, locations, offsets, found[-1], 0)
        trace.proposals.append(proposals)
        num_crops = 0
        for round_index in range(1, rounds + 1):
            locations = proposals[: cfg.att_max_crops - num_crops]
            if len(locations) == 0:
                break
            num_crops += len(locations)
            last = round_index == rounds
            dets, attentions, offsets = self._look(image01, locations, round_index, not last, trace)
            found.append(dets[dets[:, 4] > REJECTED_SCORE])
            if last or num_crops == cfg.att_max_crops:
                break
            proposals = self._propose(image01, attentions, locations, offsets, found[-1], round_index)
            trace.proposals.append(proposals)
        return torch.cat(found)

    def _detect_full(self, image01: Tensor, trace: SaccadeTrace) -> Tensor:
        """Detections ``[M,8]`` (image pixels) of one pass over the whole padded image."""
        cfg = self.config
        height, width = image01.shape[1:]
        window = full_image_window((height, width), cfg.full_size)
        scale = cfg.full_size / window.side
        trace.crops.append(CropView(0, (height / 2, width / 2), scale, (0, 0, window.side, window.side)))
        crops = paste_crops(image01, [window], cfg.full_size)
        dets, _ = self._run_network(crops, False, cfg.full_top_k, cfg.full_num_dets, no_border=False)
        dets = crop_to_image_pixels(dets, np.array([scale]), window_offsets([window]))
        dets = dets.reshape(-1, 8)
        return dets[dets[:, 4] > REJECTED_SCORE]

    def _look(
        self, image01: Tensor, locations: np.ndarray, round_index: int, with_attention: bool, trace: SaccadeTrace
    ) -> tuple[Tensor, list[Tensor], np.ndarray]:
        """Run the views of ``locations``: ``(detections [N*num_dets, 8] image pixels, attention
        probabilities (empty without attention), offsets [N,2])``; records the views in ``trace``."""
        windows = location_windows(locations, (image01.shape[1], image01.shape[2]))
        offsets = window_offsets(windows)
        for (y, x, scale), w in zip(locations[:, :3].tolist(), windows):
            region = (w.offset_x, w.offset_y, w.offset_x + w.side, w.offset_y + w.side)
            trace.crops.append(CropView(round_index, (y, x), scale, region))
        crops = paste_crops(image01, windows)
        dets, attentions = self._run_network(crops, with_attention, self.config.top_k, self.config.num_dets, True)
        dets = crop_to_image_pixels(dets, locations[:, 2], offsets)
        return dets.reshape(-1, 8), attentions, offsets

    def _run_network(
        self, crops: Tensor, with_attention: bool, k: int, num_dets: int, no_border: bool
    ) -> tuple[Tensor, list[Tensor]]:
        """Network + decoding in batches: detections ``[N,num_dets,8]`` in crop pixels and, with
        attention, the sigmoid attention maps (coarse, middle, fine ``[N,1,h,w]``)."""
        cfg = self.config
        dets, attentions = [], []
        batch_size = cfg.batch_size or (len(crops) if crops.is_cuda else CPU_BATCH_SIZE)
        for batch in crops.split(batch_size):
            out = self.model(normalize_bgr(batch), with_attention=with_attention)
            decoded = decode_detections(
                out.tl_heats[-1], out.br_heats[-1], out.tl_tags[-1], out.br_tags[-1], out.tl_offs[-1], out.br_offs[-1],
                k=k, kernel=cfg.nms_kernel, ae_threshold=cfg.ae_threshold, num_dets=num_dets, no_border=no_border,
            )
            dets.append(map_to_crop_pixels(decoded, out.tl_heats[-1].shape[-1] / crops.shape[-1]))
            if with_attention:
                attentions.append([torch.sigmoid(att) for att in out.attentions[-1]])
        merged_attentions = [torch.cat(maps) for maps in zip(*attentions)]
        return torch.cat(dets), merged_attentions

    def _propose(
        self,
        image01: Tensor,
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
            peaks, cfg.att_scales[round_index], locations[:, 2], offsets, (image01.shape[1], image01.shape[2]),
            cfg.att_thresholds[round_index], ignore_same=round_index > 0,
        )
        if cfg.ref_dets:
            references = reference_locations(detections.cpu().numpy())
            proposals = location_nms(np.concatenate((proposals, references)))
        return proposals

    def _merge(self, detections: Tensor, trace: SaccadeTrace) -> Detections:
        """Per-class soft-NMS, ``max_per_image``, ``score_threshold``; best score first."""
        cfg = self.config
        labels = detections[:, 7].long()
        keep, scores = soft_nms(
            detections[:, :4], detections[:, 4], labels, method=NMS_METHODS[cfg.nms_method],
            sigma=cfg.nms_sigma, overlap_threshold=cfg.nms_overlap, score_threshold=cfg.nms_score_threshold,
        )
        selected = best_per_image(scores, cfg.max_per_image) & (scores >= cfg.score_threshold)
        keep, scores = keep[selected], scores[selected]
        order = torch.argsort(scores, descending=True, stable=True)
        keep, scores = keep[order], scores[order]
        labels = labels[keep].cpu().numpy()
        names = [self.class_names[i] for i in labels] if self.class_names is not None else None
        return Detections(
            boxes=detections[keep, :4].cpu().numpy(),
            scores=scores.cpu().numpy(),
            labels=labels,
            class_names=names,
            trace=trace,
        )
