"""Saccade inference: each step against the original's goldens (tests/data/postproc_cases.npz), the
whole pipeline with a stand-in network whose outputs are known, and the official model on demo.jpg."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from detect_fixtures import tiny_model
from torch import Tensor, nn

from cornernet_saccade import HeadOutputs, SaccadeDetector
from cornernet_saccade.errors import ConfigError, ImageError
from cornernet_saccade.images import read_image
from cornernet_saccade.inference.locations import (
    attention_peaks,
    decode_attention_locations,
    initial_locations,
    location_nms,
    reference_locations,
)
from cornernet_saccade.inference.preprocess import COCO_MEAN_BGR, COCO_STD_BGR, normalize_bgr
from cornernet_saccade.inference.settings import CPU_BATCH_SIZE, SaccadeConfig
from cornernet_saccade.inference.views import (
    crop_to_image_pixels,
    location_windows,
    map_to_crop_pixels,
    paste_crops,
    window_offsets,
)
from cornernet_saccade.model.geometry import ATTENTION_RATIOS, padded_input_size

DEMO_HW = (480, 640)


@pytest.fixture(scope="module")
def golden(data_dir) -> dict[str, np.ndarray]:
    return dict(np.load(data_dir / "postproc_cases.npz"))


# ---------------------------------------------------------------- steps against the original


def test_location_nms_matches_original(golden):
    np.testing.assert_array_equal(location_nms(golden["location_nms/input"]), golden["location_nms/output_thresh16"])


def test_location_nms_breaks_ties_like_numpy_argsort():
    # equal scores: the original's reversed default argsort keeps the later of two tied rows first
    locations = np.array([[10.0, 10.0, 1.0, 1.0], [12.0, 12.0, 1.0, 1.0], [200.0, 200.0, 1.0, 0.5]])
    kept = location_nms(locations)
    np.testing.assert_array_equal(kept, locations[[1, 2]])  # a stable descending sort would keep row 0
    # zoom ratios within [0.8, 1.2] are the same scale; beyond, both locations stay
    assert len(location_nms(np.array([[10.0, 10.0, 1.0, 1.0], [10.0, 10.0, 1.25, 0.9]]))) == 1
    assert len(location_nms(np.array([[10.0, 10.0, 1.0, 1.0], [10.0, 10.0, 1.3, 0.9]]))) == 2


def test_reference_locations_match_original(golden):
    np.testing.assert_array_equal(reference_locations(golden["get_ref_locs/input_dets"]), golden["get_ref_locs/output"])


def test_attention_peaks_and_locations_match_original(golden):
    maps = [torch.from_numpy(golden[f"decode_atts/att_in/scale{i}"]) for i in range(3)]
    peaks = [p.numpy() for p in attention_peaks(maps, (3, 3, 3))]
    for i, peak in enumerate(peaks):
        np.testing.assert_array_equal(peak, golden[f"decode_atts/att_after_att_nms/scale{i}"])
    scales, offsets = golden["decode_atts/scales"], golden["decode_atts/offsets"]
    first = decode_attention_locations(peaks, (1, 2, 4), scales, offsets, DEMO_HW, 0.3)
    np.testing.assert_array_equal(first, golden["decode_atts/output_first_iter"])
    later = decode_attention_locations(
        peaks, (1, 2, 4), golden["decode_atts/ignore_same_scales"], offsets, DEMO_HW, 0.3, ignore_same=True
    )
    np.testing.assert_array_equal(later, golden["decode_atts/output_ignore_same"])


def test_attention_cell_corner_maps_to_image_pixels():
    fine = np.zeros((1, 1, 64, 64), np.float32)
    fine[0, 0, 10, 20] = 0.9
    coarse, middle = np.zeros((1, 1, 16, 16), np.float32), np.zeros((1, 1, 32, 32), np.float32)
    got = decode_attention_locations([coarse, middle, fine], (1, 2, 4), np.array([0.5]), np.array([[-3.0, 7.0]]),
                                     (1000, 1000), 0.3)
    np.testing.assert_allclose(got, [[10 * ATTENTION_RATIOS[2] / 0.5 - 3, 20 * 4 / 0.5 + 7, 2.0, 0.9]], rtol=1e-7)


def test_rescale_and_remap_match_original(golden):
    dets = torch.from_numpy(golden["rescale_remap/input_dets"])
    in_crop = map_to_crop_pixels(dets, 64 / 255)
    np.testing.assert_array_equal(in_crop.numpy(), golden["rescale_remap/after_rescale"])
    in_image = crop_to_image_pixels(in_crop, golden["prepare_images/locations"][:, 2], golden["prepare_images/offsets"])
    np.testing.assert_array_equal(in_image.numpy(), golden["rescale_remap/after_remap"])


def test_initial_locations_are_float32_like_original(data_dir):
    locations = initial_locations(*DEMO_HW, (192, 255))
    assert locations.dtype == np.float32  # float32 zoom: int(255 / zoom) is computed in float32 too
    np.testing.assert_array_equal(locations[:, :3], np.load(data_dir / "saccade_demo.npz")["prepare_images_call0/locs"])


def test_initial_size_above_the_canvas_is_a_grid_covering_the_image():
    # 1000x2000 at 1020: zoom 0.51, windows of int(255 / 0.51) = 500 image pixels, 2 rows x 4 columns
    locations = initial_locations(1000, 2000, (255, 1020))
    expected = [[500, 1000, 255 / 2000, 1]] + [[y, x, 0.51, 1] for y in (250, 750) for x in (250, 750, 1250, 1750)]
    np.testing.assert_allclose(locations, np.array(expected, np.float32), rtol=1e-7)
    assert locations.dtype == np.float32


@pytest.mark.parametrize("hw, size", [((1035, 1249), 383), ((3072, 4096), 1023), ((600, 601), 511), ((200, 5000), 700)])
def test_initial_grid_covers_every_pixel_with_the_fewest_views(hw, size):
    height, width = hw
    locations = initial_locations(height, width, (size,))
    windows = location_windows(locations, hw)
    covered = np.zeros(hw, bool)
    for window in windows:
        x0, y0, x1, y1 = window.region_xyxy
        covered[max(0, y0):y1, max(0, x0):x1] = True
        assert not window.is_empty
    assert covered.all()
    side = windows[0].side
    assert len(windows) == -(-height // side) * -(-width // side)
    np.testing.assert_allclose(locations[:, 2], size / max(hw), rtol=1e-6)


def test_crops_match_original(golden, data_dir):
    image = read_image(data_dir / "saccade_demo.jpg")
    image01 = torch.from_numpy(image).permute(2, 0, 1).to(torch.float64) / 255
    windows = location_windows(golden["prepare_images/locations"], DEMO_HW)
    np.testing.assert_array_equal(window_offsets(windows), golden["prepare_images/offsets"])
    crops_bgr = paste_crops(image01, windows).flip(1).numpy()  # the goldens are BGR
    stride = int(golden["prepare_images/crop_stride"])
    np.testing.assert_allclose(crops_bgr[:, :, ::stride, ::stride], golden["prepare_images/crops_strided"], atol=1e-6)
    as64 = crops_bgr.astype(np.float64)
    np.testing.assert_allclose(as64.sum(axis=(2, 3)), golden["prepare_images/crops_sum"], rtol=1e-9)
    np.testing.assert_allclose((as64**2).sum(axis=(2, 3)), golden["prepare_images/crops_sumsq"], rtol=1e-9)


def test_normalize_bgr_flips_and_standardises():
    pixel = torch.tensor([1.0, 0.5, 0.0]).reshape(1, 3, 1, 1)  # RGB
    expected = [(b - m) / s for b, m, s in zip((0.0, 0.5, 1.0), COCO_MEAN_BGR, COCO_STD_BGR)]
    np.testing.assert_allclose(normalize_bgr(pixel).flatten().numpy(), expected, rtol=1e-6)
    with pytest.raises(ValueError):
        normalize_bgr(torch.zeros(4, 4, 3))


# ---------------------------------------------------------------- stand-in network


class RectangleFinder(nn.Module):
    """Stand-in network: each pure red / green / blue rectangle in a crop is an object of class
    0 / 1 / 2. It puts logit ``+10`` at the rectangle's corners (exact sub-cell offsets) and at its
    centre in the attention map of its size (docs/reference.md §3), ``-10`` elsewhere. Object corners have tag 0,
    background corners +5 (top-left) / -5 (bottom-right), so no pair with a background corner
    survives decoding. With ``attend_everywhere`` every attention cell is on. A
    :class:`~cornernet_saccade.model.protocol.DetectionNetwork` of a 3-class saccade network."""

    architecture, has_attention, output_stride, num_classes = "saccade", True, 4, 3
    class_names: list[str] | None = None
    test_settings: dict | None = None
    input_sizes = None
    device = torch.device("cpu")

    def __init__(self, attend_everywhere: bool = False):
        super().__init__()
        self.attend_everywhere = attend_everywhere

    def forward(self, images: Tensor, *, with_attention: bool = True) -> HeadOutputs:
        n, _, size, _ = images.shape
        cells = (size + 3) // 4  # 64 for 255, 128 for 511, like the real stem
        mean = torch.tensor(COCO_MEAN_BGR).reshape(1, 3, 1, 1)
        std = torch.tensor(COCO_STD_BGR).reshape(1, 3, 1, 1)
        rgb = (images * std + mean).flip(1)
        heats = [torch.full((n, 3, cells, cells), -10.0) for _ in range(2)]
        offs = [torch.zeros(n, 2, cells, cells) for _ in range(2)]
        tags = [torch.full((n, 1, cells, cells), tag) for tag in (5.0, -5.0)]
        fill = 10.0 if self.attend_everywhere else -10.0
        atts = [torch.full((n, 1, cells * 4 // r, cells * 4 // r), fill) for r in ATTENTION_RATIOS]
        for i in range(n):
            for cls in range(3):
                ys, xs = torch.nonzero(rgb[i, cls] > 0.5, as_tuple=True)
                if len(ys) == 0:
                    continue
                box = (xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1)  # crop px
                for heat, tag, off, (x, y) in zip(heats, tags, offs, (box[:2], box[2:])):
                    cx, cy = min(int(x * cells / size), cells - 1), min(int(y * cells / size), cells - 1)
                    heat[i, cls, cy, cx] = 10.0
                    tag[i, 0, cy, cx] = 0.0
                    off[i, :, cy, cx] = torch.tensor([x * cells / size - cx, y * cells / size - cy])
                longest = max(box[2] - box[0], box[3] - box[1])
                level = 0 if longest > 96 else (1 if longest > 32 else 2)
                ratio = ATTENTION_RATIOS[level]
                atts[level][i, 0, int((box[1] + box[3]) / 2 / ratio), int((box[0] + box[2]) / 2 / ratio)] = 10.0
        return HeadOutputs(
            [heats[0]], [heats[1]], [tags[0]], [tags[1]], [offs[0]], [offs[1]], [atts] if with_attention else []
        )


#: Objects of the test scene: class -> box x1, y1, x2, y2 (image pixels, x2/y2 exclusive).
SCENE = {0: (100, 60, 140, 90), 1: (200, 120, 270, 180)}
CLASS_NAMES = ["red", "green", "blue"]


def scene(height: int = 200, width: int = 300) -> np.ndarray:
    image = np.zeros((height, width, 3), np.uint8)
    for cls, (x1, y1, x2, y2) in SCENE.items():
        image[y1:y2, x1:x2, cls] = 255
    return image


def best_box_per_class(result) -> dict[int, np.ndarray]:
    best = {}
    for box, label in zip(result.boxes, result.labels):  # best score first
        best.setdefault(int(label), box)
    return best


@pytest.mark.parametrize("mode", ["saccade", "full"])
def test_pipeline_finds_the_objects_in_image_pixels(mode):
    result = SaccadeDetector(RectangleFinder(), class_names=CLASS_NAMES, mode=mode)(scene())
    assert set(result.labels.tolist()) == set(SCENE)
    best = best_box_per_class(result)
    for cls, box in SCENE.items():
        np.testing.assert_allclose(best[cls], box, atol=2.0)
    assert result.boxes.dtype == np.float32 and result.labels.dtype == np.int64
    assert result.class_names == [CLASS_NAMES[i] for i in result.labels]
    assert np.all(np.diff(result.scores) <= 0)
    assert result.scores[0] == pytest.approx(1 / (1 + np.exp(-10)), abs=1e-6)


def test_saccade_zooms_on_the_objects():
    result = SaccadeDetector(RectangleFinder(), nms_method="hard")(scene())
    rounds = [c.round for c in result.trace.crops]
    assert rounds.count(0) == 2 and rounds.count(1) >= 2
    assert [m.shape for m in result.trace.attention_maps] == [(2, 1, 16, 16), (2, 1, 32, 32), (2, 1, 64, 64)]
    # hard NMS leaves one box per object; every zoomed crop contains an object centre
    assert len(result) == len(SCENE)
    centres = [((x1 + x2) / 2, (y1 + y2) / 2) for x1, y1, x2, y2 in SCENE.values()]
    for crop in result.trace.crops[2:]:
        x1, y1, x2, y2 = crop.region_xyxy
        assert any(x1 <= cx <= x2 and y1 <= cy <= y2 for cx, cy in centres)


@pytest.mark.parametrize("max_crops", [30, 5, 0])
def test_zoomed_crops_never_exceed_att_max_crops(max_crops):
    result = SaccadeDetector(RectangleFinder(attend_everywhere=True), att_max_crops=max_crops)(scene())
    assert len(result.trace.proposals[0]) > 30
    assert sum(c.round > 0 for c in result.trace.crops) == max_crops


def test_later_rounds_zoom_further_and_share_the_crop_budget():
    config = dict(att_thresholds=(0.3, 0.3), att_scales=((1, 2, 4), (1, 2, 4)), ref_dets=False, att_max_crops=30)
    result = SaccadeDetector(RectangleFinder(), **config)(scene(300, 400))
    by_round = {r: [c for c in result.trace.crops if c.round == r] for r in (0, 1, 2)}
    assert by_round[1] and by_round[2]
    assert len(by_round[1]) + len(by_round[2]) <= 30
    assert len(result.trace.proposals) == 2
    # round 2 comes from round-1 crops with ignore_same: zoom x2 or x4 of a round-1 crop, never x1
    round1_scales = {c.scale for c in by_round[1]}
    for crop in by_round[2]:
        assert any(np.isclose(crop.scale, f * s) for s in round1_scales for f in (2, 4))


def test_results_are_deterministic_and_independent_of_batch_size():
    detector = SaccadeDetector(RectangleFinder())
    first = detector(scene())
    for again in (detector(scene()), SaccadeDetector(RectangleFinder(), batch_size=1)(scene())):
        np.testing.assert_array_equal(first.boxes, again.boxes)
        np.testing.assert_array_equal(first.scores, again.scores)
        np.testing.assert_array_equal(first.labels, again.labels)


def test_cpu_batches_hold_at_most_cpu_batch_size_crops():
    batches = []

    class Recording(RectangleFinder):
        def forward(self, images: Tensor, *, with_attention: bool = True) -> HeadOutputs:
            batches.append(len(images))
            return super().forward(images, with_attention=with_attention)

    crops = SaccadeDetector(Recording(attend_everywhere=True), att_max_crops=9)(scene()).trace.crops
    assert len(crops) == 9 + len(SaccadeConfig().init_sizes)
    assert sum(batches) == len(crops) and max(batches) == CPU_BATCH_SIZE


@pytest.mark.parametrize("shape", [(200, 300), (1, 1), (3, 500), (500, 3)])
@pytest.mark.parametrize("mode", ["saccade", "full"])
def test_empty_and_tiny_images(shape, mode):
    result = SaccadeDetector(RectangleFinder(), mode=mode)(np.zeros((*shape, 3), np.uint8))
    assert len(result) == 0
    assert result.boxes.shape == (0, 4) and result.scores.shape == (0,) and result.labels.shape == (0,)


@pytest.mark.parametrize("full_size", [500, 1000, 300, 511])
def test_full_mode_takes_any_full_size(full_size):
    """Sizes not of the form 32k-1 used to crash the hourglass (63 vs 64 cells); the canvas is now
    padded to the next such size and the boxes keep their image-pixel meaning."""
    inputs = []

    class Recording(RectangleFinder):
        def forward(self, images: Tensor, *, with_attention: bool = True) -> HeadOutputs:
            inputs.append(tuple(images.shape[-2:]))
            return super().forward(images, with_attention=with_attention)

    result = SaccadeDetector(Recording(), mode="full", full_size=full_size)(scene())
    assert inputs == [(padded_input_size(full_size),) * 2]
    best = best_box_per_class(result)
    for cls, box in SCENE.items():
        np.testing.assert_allclose(best[cls], box, atol=2.0)


def test_full_mode_any_full_size_with_a_real_network():
    result = SaccadeDetector(tiny_model(), mode="full", full_size=500)(scene())
    assert len(result) > 0 and np.isfinite(result.boxes).all()


class Overshooting(RectangleFinder):
    """:class:`RectangleFinder` whose corner offsets push every box 3 cells outwards."""

    def forward(self, images: Tensor, *, with_attention: bool = True) -> HeadOutputs:
        out = super().forward(images, with_attention=with_attention)
        out.tl_offs[0] -= 3.0
        out.br_offs[0] += 3.0
        return out


def test_boxes_are_clipped_to_the_image_unless_clip_boxes_is_off():
    image = np.zeros((200, 300, 3), np.uint8)
    image[:40, :50, 0] = 255  # touches the top-left corner
    image[150:, 240:, 1] = 255  # touches the bottom-right corner
    raw = best_box_per_class(SaccadeDetector(Overshooting(), mode="full", clip_boxes=False)(image))
    assert raw[0][0] < 0 and raw[0][1] < 0 and raw[1][2] > 300 and raw[1][3] > 200
    clipped = best_box_per_class(SaccadeDetector(Overshooting(), mode="full")(image))
    np.testing.assert_allclose(clipped[0][:2], [0, 0])
    np.testing.assert_allclose(clipped[1][2:], [300, 200])
    np.testing.assert_allclose(clipped[0][2:], raw[0][2:])
    assert clipped[0].dtype == np.float32


@pytest.mark.parametrize("value", [1.5, -0.1, float("nan")])
def test_score_threshold_must_be_a_probability(value):
    with pytest.raises(ConfigError, match="score_threshold"):
        SaccadeDetector(RectangleFinder(), score_threshold=value)


def test_detect_batch_equals_single_calls():
    detector = SaccadeDetector(RectangleFinder(), class_names=CLASS_NAMES)
    images = [scene(), scene(240, 260)]
    for batch_result, image in zip(detector.detect_batch(images), images):
        single = detector(image)
        np.testing.assert_array_equal(batch_result.boxes, single.boxes)
        assert batch_result is not None and batch_result.class_names == single.class_names


def test_detect_batch_keeps_the_other_results_of_a_bad_image(tmp_path):
    detector = SaccadeDetector(RectangleFinder(), class_names=CLASS_NAMES)
    missing = tmp_path / "missing.png"
    with pytest.warns(UserWarning, match=f"image 1 skipped: .*{missing.name}"):
        first, bad, last = detector.detect_batch([scene(), missing, scene(240, 260)])
    assert bad is None and first is not None and last is not None
    np.testing.assert_array_equal(last.boxes, detector(scene(240, 260)).boxes)
    with pytest.raises(ImageError):
        detector.detect_batch([missing], on_error="raise")


def test_detections_convert_and_filter():
    detections = SaccadeDetector(RectangleFinder(), class_names=CLASS_NAMES)(scene())
    assert len(detections) >= 2
    dicts = detections.to_dicts()
    assert [d["label"] for d in dicts] == detections.labels.tolist()
    assert [d["class_name"] for d in dicts] == detections.class_names
    np.testing.assert_allclose([d["box"] for d in dicts], detections.boxes)
    coco = detections.to_coco(7)
    assert coco[0]["image_id"] == 7 and coco[0]["category_id"] == int(detections.labels[0]) + 1
    label = int(detections.labels[-1])
    only = detections.filter([label], max_detections=1)
    assert len(only) == 1 and only.labels.tolist() == [label] and only.class_names == [CLASS_NAMES[label]]
    assert only.scores[0] == detections.scores[detections.labels == label].max()
    picture = detections.draw(scene())
    assert picture.width > scene().shape[1]


def test_config_defaults_overrides_and_errors():
    config = SaccadeConfig()
    assert (config.init_sizes, config.att_thresholds, config.att_scales) == ((192, 255), (0.3,), ((1, 2, 4),))
    assert (config.att_max_crops, config.top_k, config.num_dets, config.ae_threshold) == (30, 12, 12, 0.3)
    assert (config.nms_method, config.max_per_image, config.batch_size) == ("gaussian", 100, None)
    detector = SaccadeDetector(RectangleFinder(), {"top_k": 20}, num_dets=50)
    assert (detector.config.top_k, detector.config.num_dets) == (20, 50)
    with pytest.raises(ConfigError, match="unknown"):
        SaccadeDetector(RectangleFinder(), topk=3)
    with pytest.raises(ConfigError, match="att_scales"):
        SaccadeDetector(RectangleFinder(), att_thresholds=(0.3, 0.4))
    with pytest.raises(ConfigError, match="num_dets"):
        SaccadeDetector(RectangleFinder(), top_k=3, num_dets=10)


# ---------------------------------------------------------------- the official network


def test_official_model_reproduces_original_trace_on_demo(filled_official_model, data_dir):
    """The original's run on demo.jpg with the filled weights: 2 views, 43 proposals, 30 crops, 0 boxes.
    (32 crops through the full network: about 20 s on 2 cores.)"""
    golden = dict(np.load(data_dir / "saccade_demo.npz"))
    result = SaccadeDetector(filled_official_model, clip_boxes=False)(data_dir / "saccade_demo.jpg")
    np.testing.assert_array_equal(result.trace.proposals[0], golden["next_locations_after_stage1"])
    for call, round_index in (("call0", 0), ("call1", 1)):
        crops = [c for c in result.trace.crops if c.round == round_index]
        locations = np.array([[*c.center_yx, c.scale] for c in crops])
        offsets = np.array([[c.region_xyxy[1], c.region_xyxy[0]] for c in crops])
        np.testing.assert_array_equal(locations, golden[f"prepare_images_{call}/locs"])
        np.testing.assert_array_equal(offsets, golden[f"prepare_images_{call}/offsets"])
    assert len(result) == int(golden["num_final_boxes"]) == 0


def test_crops_from_uint8_pixels_equal_crops_from_the_float64_image():
    """The detector keeps the image as uint8 and converts each crop's pixels (no float64 copy of a
    whole large image): the crops are the same values."""
    image = np.random.default_rng(5).integers(0, 256, (97, 131, 3), dtype=np.uint8)
    locations = np.array([[40.0, 60.0, 2.0, 1.0], [10.0, 120.0, 0.7, 1.0]])
    windows = location_windows(locations, image.shape[:2])
    chw = torch.from_numpy(image).permute(2, 0, 1)
    torch.testing.assert_close(paste_crops(chw, windows), paste_crops(chw.to(torch.float64) / 255, windows),
                               rtol=0, atol=0)


def test_saccade_mode_says_why_it_found_nothing_when_nothing_was_proposed():
    """An unsure model (attention far below its threshold, weak corners) proposes no crop: the empty
    result comes with a warning naming the threshold and the highest attention, and pointing to full
    mode, which does give its boxes; a model whose attention proposes crops gets no warning."""

    unsure = tiny_model()
    with torch.no_grad():
        for attention in unsure.att_modules[0]:
            attention[1].bias.fill_(-20.0)
        for heat in (unsure.tl_heats[0][1], unsure.br_heats[0][1]):
            heat.bias.fill_(-10.0)
    image = np.random.default_rng(0).integers(0, 255, (90, 120, 3), dtype=np.uint8)
    with pytest.warns(UserWarning, match=r"no attention peak reached att_thresholds\[0\] = 0.3 \(the highest was "
                                         r"0\.000\).*mode='full'"):
        detector = SaccadeDetector(unsure)
        assert len(detector(image)) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(detector(image)) == 0  # said once per detector, not once per image of a batch
        warnings.simplefilter("error")
        assert len(SaccadeDetector(unsure, mode="full")(image)) > 0
        assert len(SaccadeDetector(tiny_model())(image).trace.proposals[0]) > 0
