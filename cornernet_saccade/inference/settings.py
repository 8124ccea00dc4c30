"""Test-time settings of the detector (:class:`SaccadeConfig`), the official values as defaults."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from cornernet_saccade.bounds import check_bounds
from cornernet_saccade.images import DEFAULT_MAX_PIXELS
from cornernet_saccade.inference.nms import SoftNMSMethod

#: Crops per network call on the CPU when ``SaccadeConfig.batch_size`` is None.
CPU_BATCH_SIZE = 4
#: Tiles per network call on a GPU in tiled mode when ``SaccadeConfig.batch_size`` is None: 8 tiles
#: of 511 px are the pixels of the original's 32-crop batches of 255 px.
GPU_TILE_BATCH_SIZE = 8


#: Bounds of the size-like test settings (:func:`~cornernet_saccade.bounds.check_bounds`; raised on
#: purpose with ``CORNERNET_SACCADE_LIMITS``): pixels of a network input or first view, corners,
#: boxes and crops per image, crops per network call, zoom and test scales, pooling windows.
TEST_SETTING_BOUNDS: dict[str, float] = {
    "init_sizes": 4096, "full_size": 4096, "tile_size": 4096, "att_max_crops": 1000, "att_scales": 16,
    "test_scales": 4, "top_k": 1000, "full_top_k": 1000, "num_dets": 10_000, "full_num_dets": 10_000,
    "max_per_image": 10_000, "batch_size": 256, "nms_kernel": 63, "att_nms_ks": 63,
}


NMS_METHODS = {"hard": SoftNMSMethod.HARD, "linear": SoftNMSMethod.LINEAR, "gaussian": SoftNMSMethod.GAUSSIAN}


def check_decode_caps(top_k: int, num_dets: int) -> None:
    """ValueError unless decoding ``top_k`` corners per type can give ``num_dets`` boxes
    (``top_k >= 1``, ``1 <= num_dets <= top_k ** 2``)."""
    if top_k < 1 or not 1 <= num_dets <= top_k * top_k:
        raise ValueError(f"top-k {top_k} and num_dets {num_dets}: need k >= 1 and 1 <= num_dets <= k*k")

@dataclass(frozen=True)
class DecodeMergeSettings:
    """The settings both detectors share: how corners become boxes and how boxes are merged.

    Decoding: ``top_k`` corners per type, ``nms_kernel`` peak window, ``ae_threshold`` tag distance,
    ``num_dets`` boxes per network image. Merge: per-class soft-NMS ``nms_method`` with
    ``nms_sigma`` / ``nms_overlap`` (linear and hard) and ``nms_score_threshold``, then the
    ``max_per_image`` best (ties kept). Output: boxes scoring below ``score_threshold`` (a
    probability in ``[0, 1]``) are dropped. ``max_pixels``: the largest image file (width x height)
    the detector decodes (:func:`~cornernet_saccade.images.read_image`; a guard against decompression
    bombs, 100 megapixels by default); raise it for a larger image you trust. Arrays and tensors are
    not limited. The defaults are the original CornerNet's; :class:`SaccadeConfig` changes four.
    """

    top_k: int = 100
    nms_kernel: int = 3
    ae_threshold: float = 0.5
    num_dets: int = 1000
    nms_method: Literal["gaussian", "linear", "hard"] = "gaussian"
    nms_sigma: float = 0.5
    nms_overlap: float = 0.5
    nms_score_threshold: float = 0.001
    max_per_image: int = 100
    score_threshold: float = 0.0
    max_pixels: int = DEFAULT_MAX_PIXELS

    def __post_init__(self) -> None:
        check_bounds(vars(self), TEST_SETTING_BOUNDS)
        if not 0.0 <= self.score_threshold <= 1.0:  # also refuses NaN
            raise ValueError(f"score_threshold must be a probability in [0, 1], got {self.score_threshold}")
        if self.nms_kernel < 1 or self.nms_kernel % 2 == 0:
            raise ValueError("nms_kernel must be odd and positive")
        check_decode_caps(self.top_k, self.num_dets)
        if min(self.max_per_image, self.max_pixels) < 1 or not self.nms_sigma > 0:
            raise ValueError("max_per_image and max_pixels must be >= 1, nms_sigma > 0")


@dataclass(frozen=True)
class SaccadeConfig(DecodeMergeSettings):
    """Test-time settings; the defaults are the official CornerNet-Saccade ones (docs/reference.md §5).

    ``mode="saccade"`` runs the attention-driven crops; ``mode="full"`` resizes the whole image so its
    long side is ``full_size``, pads it to a square and decodes one pass with ``full_top_k`` /
    ``full_num_dets`` (CornerNet's values); ``mode="tiled"`` cuts the image at native resolution (one
    image pixel per crop pixel) into square tiles of side ``tile_size`` image pixels, each at the
    top-left of a zero canvas of the network input side
    :func:`~cornernet_saccade.model.geometry.padded_input_size` (``32k - 1``: 511 -> 511, DeepForest's
    400 -> 415), overlapping by at least
    ``tile_overlap`` pixels, decodes each with ``full_top_k`` / ``full_num_dets`` and merges them as the
    other modes (see ``SaccadeDetector._detect_tiled``). Saccade rounds: one per entry of
    ``att_thresholds`` (attention probability a cell needs to propose a location) with the matching
    ``att_scales`` (zoom multipliers for the coarse, middle, fine maps); at most ``att_max_crops``
    zoomed crops over all rounds (the ``init_sizes`` views do not count; a size above the 255 px crop
    is a grid of first views covering the whole image at that zoom,
    :func:`~cornernet_saccade.inference.locations.initial_locations`). ``views="auto"`` adds to the
    ``init_sizes`` views and raises the ``att_max_crops`` cap as each image's size needs
    (:func:`~cornernet_saccade.inference.view_policy.view_plan`): a grid of first views whose zoom
    lets the attention maps find objects of long side ``min_object_size`` image pixels, and a crop
    budget that grows with the image area; ``"fixed"`` (default) uses them as given. Decoding and merge
    as :class:`DecodeMergeSettings` (``num_dets`` boxes per crop), with the saccade tester's
    ``top_k`` 12, ``ae_threshold`` 0.3, ``num_dets`` 12 and ``nms_sigma`` 0.7. The Python API's
    ``score_threshold`` default is the
    original's ``0.0`` (every box the merge keeps, as COCO evaluation wants); the ``detect`` command
    defaults to ``--score-threshold 0.3`` instead (``evaluate`` keeps ``0.0``); a weights file's stored
    ``test_settings`` replace these defaults in both. ``clip_boxes`` (default, as torchvision) clips the
    final boxes to the image (``0 <= x <= width``, ``0 <= y <= height``); ``False`` gives the original's
    unclipped boxes, which the exactness tests use. ``batch_size`` crops go through the network at once;
    batching changes no result. ``None`` (default): all crops of a round in one batch on a GPU (the
    original batched up to 32; tiles: :data:`GPU_TILE_BATCH_SIZE` at once), batches of
    :data:`CPU_BATCH_SIZE` on the CPU, where large batches spill the caches (official network, fast
    path: 0.33 s per crop in batches of 4, 0.38 s in batches of 8; benchmarks/fast_inference.py).
    """

    mode: Literal["saccade", "full", "tiled"] = "saccade"
    init_sizes: tuple[int, ...] = (192, 255)
    att_thresholds: tuple[float, ...] = (0.3,)
    att_scales: tuple[tuple[float, float, float], ...] = ((1.0, 2.0, 4.0),)
    att_max_crops: int = 30
    views: Literal["fixed", "auto"] = "fixed"
    min_object_size: float = 16.0
    att_nms_ks: tuple[int, int, int] = (3, 3, 3)
    ref_dets: bool = True
    top_k: int = 12
    ae_threshold: float = 0.3
    num_dets: int = 12
    nms_sigma: float = 0.7
    batch_size: int | None = None
    full_size: int = 511
    full_top_k: int = 100
    full_num_dets: int = 1000
    tile_size: int = 511
    tile_overlap: int = 128
    clip_boxes: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.init_sizes or min(self.init_sizes) < 1:
            raise ValueError("init_sizes must list at least one positive size")
        if not self.att_thresholds or len(self.att_scales) != len(self.att_thresholds):
            raise ValueError("att_scales needs one (coarse, middle, fine) triple per att_thresholds entry")
        if any(k < 1 or k % 2 == 0 for k in self.att_nms_ks):
            raise ValueError("att_nms_ks must be odd and positive")
        if self.att_max_crops < 0 or min(self.batch_size or 1, self.full_size) < 1:
            raise ValueError("att_max_crops must be >= 0; batch_size, full_size >= 1")
        check_decode_caps(self.full_top_k, self.full_num_dets)
        if self.tile_size < 1:
            raise ValueError(f"tile_size must be >= 1 image pixels, got {self.tile_size}")
        if not 0 <= self.tile_overlap < self.tile_size:
            raise ValueError(f"tile_overlap must be in [0, tile_size) = [0, {self.tile_size}), got {self.tile_overlap}")
        if not self.min_object_size > 0:  # also refuses NaN
            raise ValueError(f"min_object_size must be a positive long side in image pixels, got {self.min_object_size}")


@dataclass(frozen=True)
class CornerNetTestConfig(DecodeMergeSettings):
    """Test-time settings of the CornerNet tester (CornerNet-Squeeze and CornerNet, Hourglass-104).

    The defaults are the original CornerNet (Hourglass-104) ones; :meth:`squeeze` gives the
    CornerNet-Squeeze ones and :meth:`for_model` picks by the network's output stride. Per entry of
    ``test_scales`` the image is resized by that factor, padded to ``(h | 127, w | 127)`` and centred;
    ``flip`` adds the mirrored canvas (its corners are mapped back and pooled with the others).
    Decoding and merge as :class:`DecodeMergeSettings` (its defaults; ``num_dets`` boxes per network
    image); ``merge_bbox`` averages near-duplicate boxes with weights ``(1 - decay) ** weight_exp`` (the
    original's multi-scale setting: ``merge_bbox=True, weight_exp=10``). Boxes are always clipped to
    the image, as the original does.
    """

    test_scales: tuple[float, ...] = (1.0,)
    flip: bool = True
    merge_bbox: bool = False
    weight_exp: float = 8.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.test_scales or not all(s > 0 for s in self.test_scales):
            raise ValueError("test_scales must list at least one positive scale")
        if self.weight_exp < 0:
            raise ValueError(f"weight_exp must be >= 0, got {self.weight_exp}")

    @classmethod
    def squeeze(cls) -> CornerNetTestConfig:
        """The original CornerNet-Squeeze settings: top-20 corners, 100 boxes, no flip."""
        return cls(flip=False, top_k=20, num_dets=100)

    @classmethod
    def multi_scale(cls) -> CornerNetTestConfig:
        """The original ``CornerNet-multi_scale`` settings: five scales, flip, merged boxes."""
        return cls(test_scales=(0.5, 0.75, 1.0, 1.25, 1.5), merge_bbox=True, weight_exp=10.0)

    @classmethod
    def for_model(cls, output_stride: int) -> CornerNetTestConfig:
        """The original defaults of the network with this output stride (8: Squeeze, 4: CornerNet)."""
        return cls.squeeze() if output_stride == 8 else cls()
