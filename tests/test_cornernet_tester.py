"""The CornerNet tester (CornerNet-Squeeze, CornerNet) against the original ``cornernet_inference``,
recorded with crafted head weights (tests/cornernet_crafted.py, tests/data/make_tester_cases.py):
whole runs on demo.jpg and on a 383x511 image (a size already 127 mod 128: the original drops its
last row and column), single scale and multi-scale, and the multi-scale steps (canvas, map-back,
soft_nms_merge, merge) alone."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from cornernet_crafted import crafted_model

from cornernet_saccade import CornerNet, CornerNetSaccade, CornerNetSqueeze, Detector
from cornernet_saccade.images import read_image
from cornernet_saccade.inference.cornernet_tester import (
    CornerNetDetector,
    map_to_image_pixels,
    padded_canvas,
    padded_view,
)
from cornernet_saccade.inference.detector import SaccadeDetector
from cornernet_saccade.inference.nms import soft_nms_rows
from cornernet_saccade.inference.results import box_iou
from cornernet_saccade.inference.settings import CornerNetTestConfig
from cornernet_saccade.inference.trace import DetectionTrace

IMAGES = {"demo": "saccade_demo.jpg", "pad127": "tester_pad127.png"}
MULTI_SCALE = CornerNetTestConfig(test_scales=(0.5, 1.0, 1.5), merge_bbox=True, weight_exp=10.0)
DEMO_HW = (480, 640)


@pytest.fixture(scope="module")
def references(data_dir):
    return {name: dict(np.load(data_dir / f"tester_{name}.npz")) for name in ("squeeze", "cornernet")}


def as_rows(result) -> np.ndarray:
    """``[N,6]`` x1, y1, x2, y2, score, label of a :class:`Detections`."""
    return np.concatenate([result.boxes, result.scores[:, None], result.labels[:, None]], 1)


def assert_same_detections(reference: np.ndarray, mine: np.ndarray) -> None:
    """Every box matched one-to-one within its class: IoU >= 0.9 or every coordinate within 0.5
    pixel (the tester clips boxes to the image, so some are degenerate), scores within 0.02."""
    assert len(mine) == len(reference)
    for label in np.unique(np.concatenate([reference[:, 5], mine[:, 5]])):
        a, b = reference[reference[:, 5] == label], mine[mine[:, 5] == label]
        assert len(a) == len(b), f"class {label}: {len(a)} reference boxes, {len(b)} mine"
        iou = box_iou(a[:, :4], b[:, :4])
        coords = np.abs(a[:, None, :4] - b[None, :, :4]).max(2)
        admissible = ((iou >= 0.9) | (coords <= 0.5)) & (np.abs(a[:, None, 4] - b[None, :, 4]) <= 0.02)
        used: set[int] = set()
        for i in np.argsort(coords.min(1)):
            free = [j for j in np.flatnonzero(admissible[i]) if j not in used]
            assert free, f"class {label}: reference box {a[i]} unmatched"
            used.add(min(free, key=lambda j: coords[i, j]))


@pytest.fixture(scope="module")
def squeeze_model():
    return crafted_model(CornerNetSqueeze, "squeeze")


@pytest.mark.parametrize("image", list(IMAGES))
def test_squeeze_tester_matches_original(references, squeeze_model, data_dir, image):
    detector = Detector(squeeze_model)
    assert isinstance(detector, CornerNetDetector) and detector.config == CornerNetTestConfig.squeeze()
    result = detector(data_dir / IMAGES[image])
    assert_same_detections(references["squeeze"][f"{image}/default/final"], as_rows(result))
    assert [c.scale for c in result.trace.crops] == [1.0] and result.trace.attention_maps == []


@pytest.fixture(scope="module")
def cornernet_model():
    return crafted_model(CornerNet, "cornernet")


@pytest.mark.parametrize("image", list(IMAGES))
def test_cornernet_tester_with_flip_matches_original(references, cornernet_model, data_dir, image):
    """Hourglass-104 with the flipped canvas: two 511x767 canvases (demo.jpg), two 383x511 ones."""
    detector = Detector(cornernet_model)
    assert detector.config == CornerNetTestConfig() and detector.config.flip
    result = detector(data_dir / IMAGES[image])
    assert_same_detections(references["cornernet"][f"{image}/default/final"], as_rows(result))
    assert np.all(np.diff(result.scores) <= 0)


def test_cornernet_multi_scale_tester_matches_original(references, cornernet_model, data_dir):
    """The whole multi-scale run on demo.jpg: scales 0.5, 1, 1.5 with flip (canvases 255x383,
    511x767, 767x1023, two each), merged with soft_nms_merge (weight_exp 10)."""
    result = Detector(cornernet_model, MULTI_SCALE)(data_dir / IMAGES["demo"])
    assert_same_detections(references["cornernet"]["demo/multiscale/final"], as_rows(result))
    assert [c.scale for c in result.trace.crops] == [0.5, 1.0, 1.5]


@pytest.mark.parametrize("name", ["squeeze", "cornernet"])
def test_padding_geometry_matches_original(references, data_dir, name):
    for image, file in IMAGES.items():
        hw = read_image(data_dir / file).shape[:2]
        run = "default" if name == "squeeze" or image == "pad127" else "multiscale"
        scales = (1.0,) if run == "default" else MULTI_SCALE.test_scales
        for i, scale in enumerate(scales):
            view = padded_view(hw, scale)
            assert view.border == tuple(int(v) for v in references[name][f"{image}/{run}/scale{i}/border"])
    assert padded_view((383, 511), 1.0).border == (0, 382, 0, 510)  # the last row and column dropped


def test_scaled_canvas_is_opencv_resize(references, data_dir):
    """Scale 0.5 of demo.jpg: OpenCV's uint8 resize, centred, bit for bit (BGR as recorded)."""
    canvas = padded_canvas(read_image(data_dir / IMAGES["demo"]), padded_view(DEMO_HW, 0.5))[:, :, ::-1]
    digest = hashlib.sha256(np.ascontiguousarray(canvas).tobytes()).hexdigest()
    assert digest == str(references["cornernet"]["demo/multiscale/scale0/input_canvas_uint8_sha256"])


@pytest.mark.parametrize("name", ["squeeze", "cornernet"])
def test_map_back_to_image_pixels_matches_original(references, name):
    ref = references[name]
    run = "demo/multiscale" if name == "cornernet" else "demo/default"
    for i in range(3 if name == "cornernet" else 1):
        key = f"{run}/scale{i}"
        view = padded_view(DEMO_HW, float(ref[f"{key}/scale"]))
        mine = map_to_image_pixels(torch.from_numpy(ref[f"{key}/dets_after_flip_merge_valid"]), view,
                                   tuple(int(v) for v in ref[f"{key}/output_hw"]))
        np.testing.assert_array_equal(mine.numpy(), ref[f"{key}/dets_image_coords_valid"])


@pytest.mark.parametrize("run", ["squeeze:demo/default", "cornernet:demo/default", "cornernet:demo/multiscale"])
def test_in_place_soft_nms_rows_match_original(references, run):
    """Every row the original's in-place soft-NMS (and soft_nms_merge) leaves, bit for bit."""
    name, run = run.split(":")
    ref = references[name]
    inputs = sorted(k for k in ref if k.startswith(f"{run}/softnms_input/"))
    assert inputs
    for key in inputs:
        mine = soft_nms_rows(ref[key], sigma=0.5, merge_weight_exp=10.0 if "multiscale" in run else None)
        np.testing.assert_array_equal(mine, ref[key.replace("softnms_input", "softnms_after_inplace")][:, :5], key)


def test_multi_scale_merge_matches_original(references):
    """The merge alone: the three scales' detections as recorded give the original's final boxes."""
    ref = references["cornernet"]
    detections = np.concatenate([ref[f"demo/multiscale/scale{i}/dets_image_coords_valid"] for i in range(3)])
    network = CornerNet(num_stacks=1, dims=(8, 8), modules=(1, 1), stem_dim=4, pool_dim=4, head_dim=4)
    detector = CornerNetDetector(network, MULTI_SCALE)  # only its merge runs
    result = detector._merge(detections, DetectionTrace())
    assert_same_detections(ref["demo/multiscale/final"], as_rows(result))


def test_detector_picks_the_inference_of_the_model():
    tiny = {"num_classes": 2, "dims": (8, 8, 8, 8), "modules": (1, 1, 1, 1), "stem_dim": 4, "pool_dim": 4, "head_dim": 4}
    assert isinstance(Detector(CornerNetSaccade(num_stacks=1, **tiny)), SaccadeDetector)
    squeeze = Detector(CornerNetSqueeze(num_stacks=1, **tiny), top_k=5, num_dets=10)
    assert isinstance(squeeze, CornerNetDetector) and squeeze.config.top_k == 5 and not squeeze.config.flip
    cornernet = Detector(CornerNet(num_stacks=1, **tiny))
    assert cornernet.config.flip and cornernet.config.num_dets == 1000
    result = cornernet(np.zeros((40, 50, 3), np.uint8))
    assert result.boxes.shape[1] == 4 and (result.boxes[:, [2]] <= 50).all() and (result.boxes[:, [3]] <= 40).all()


def test_weights_of_a_squeeze_model_load_as_its_detector(tmp_path):
    """``load_detector`` (detect, evaluate) builds the class a weights file is for: stored
    ``model_config["architecture"]``, or the tensor names of an official state_dict."""
    from cornernet_saccade.backends import load_detector
    from cornernet_saccade.model.checkpoint import read_checkpoint, save_checkpoint, stored_architecture
    from cornernet_saccade.model.registry import load_model

    tiny = {"num_classes": 2, "num_stacks": 1, "dims": (8, 8, 8, 8), "modules": (1, 1, 1, 1), "stem_dim": 4,
            "pool_dim": 4, "head_dim": 4}
    model = CornerNetSqueeze(**tiny)
    save_checkpoint(tmp_path / "squeeze.safetensors", model, class_names=["a", "b"])
    assert stored_architecture(read_checkpoint(tmp_path / "squeeze.safetensors")) == "squeeze"
    detector = load_detector(tmp_path / "squeeze.safetensors", device="cpu", score_threshold=0.2)
    assert isinstance(detector, CornerNetDetector) and detector.config.score_threshold == 0.2
    assert detector.config.top_k == 20 and detector.class_names == ["a", "b"]
    found = detector(np.zeros((30, 40, 3), np.uint8))  # runs, and its boxes are well formed and clipped
    assert found.boxes.shape == (len(found.scores), 4) and (found.scores >= 0.2).all()
    assert (found.boxes[:, [0, 2]] <= 40).all() and (found.boxes[:, [1, 3]] <= 30).all() and (found.boxes >= 0).all()
    torch.save({"module." + k: v for k, v in CornerNet(**tiny).state_dict().items()}, tmp_path / "official.pkl")
    assert stored_architecture(read_checkpoint(tmp_path / "official.pkl")) == "cornernet"
    torch.save(CornerNetSaccade(**{**tiny, "dims": (8, 8, 8, 8)}).state_dict(), tmp_path / "saccade.pt")
    assert stored_architecture(read_checkpoint(tmp_path / "saccade.pt")) == "saccade"
    assert isinstance(load_model(tmp_path / "squeeze.safetensors"), CornerNetSqueeze)


def test_saccade_only_settings_are_refused_for_squeeze_weights(tmp_path, capsys):
    """--mode, --full-size, --max-crops, --mode tiled have no meaning for the CornerNet tester: they
    are refused naming them (evaluate --mode tiled reported the tester's AP as if it had tiled)."""
    from engine_fixtures import CLASS_NAMES, write_box_dataset

    from cornernet_saccade.backends import load_detector
    from cornernet_saccade.cli import main
    from cornernet_saccade.errors import ConfigError
    from cornernet_saccade.model.checkpoint import save_checkpoint

    tiny = {"num_classes": 3, "num_stacks": 1, "dims": (8, 8, 8, 8), "modules": (1, 1, 1, 1), "stem_dim": 4,
            "pool_dim": 4, "head_dim": 4}
    weights = tmp_path / "squeeze.safetensors"
    save_checkpoint(weights, CornerNetSqueeze(**tiny), class_names=list(CLASS_NAMES))
    with pytest.raises(ConfigError, match=r"att_max_crops, full_size, mode: settings of the CornerNet-Saccade "
                                          r"detector; these weights \(squeeze network\) run the CornerNet tester"):
        load_detector(weights, device="cpu", mode="full", full_size=255, att_max_crops=3)
    val_json = write_box_dataset(tmp_path / "data", 1, seed=3, name="val")
    assert main(["evaluate", "--weights", str(weights), "--data", str(val_json), "--mode", "tiled"]) == 1
    err = capsys.readouterr().err
    assert "mode: settings of the CornerNet-Saccade detector" in err and "Traceback" not in err
    assert load_detector(weights, device="cpu", top_k=11, max_pixels=10**6).config.top_k == 11  # its own settings


def test_picture_of_a_cornernet_result_shows_the_padded_view(data_dir):
    from cornernet_saccade.inference.visualize import render_panel

    tiny = {"num_classes": 2, "num_stacks": 1, "dims": (8, 8, 8, 8), "modules": (1, 1, 1, 1), "stem_dim": 4,
            "pool_dim": 4, "head_dim": 4}
    image = read_image(data_dir / IMAGES["pad127"])[:100, :150]
    result = Detector(CornerNetSqueeze(**tiny), test_scales=(1.0, 0.5))(image)
    assert [c.region_xyxy for c in result.trace.crops] == [(-52, -13, 203, 114), (-52, -76, 202, 178)]
    picture = render_panel(image, result)
    assert picture.width > 150 and picture.height >= 100


def test_detect_and_evaluate_commands_take_squeeze_weights(tmp_path, capsys):
    from engine_fixtures import CLASS_NAMES, write_box_dataset

    from cornernet_saccade.cli import main
    from cornernet_saccade.model.checkpoint import save_checkpoint

    tiny = {"num_classes": 2, "num_stacks": 1, "dims": (8, 8, 8, 8), "modules": (1, 1, 1, 1), "stem_dim": 4,
            "pool_dim": 4, "head_dim": 4}
    weights = tmp_path / "squeeze.safetensors"
    save_checkpoint(weights, CornerNetSqueeze(**{**tiny, "num_classes": len(CLASS_NAMES)}),
                    class_names=list(CLASS_NAMES))
    val_json = write_box_dataset(tmp_path / "data", 2, seed=3, name="val")
    assert main(["detect", str(tmp_path / "data" / "images"), "--weights", str(weights), "--out",
                 str(tmp_path / "out"), "--device", "cpu"]) == 0
    assert (tmp_path / "out" / "detections.json").is_file()
    assert main(["evaluate", "--weights", str(weights), "--data", str(val_json), "--device", "cpu"]) == 0
    assert "AP" in capsys.readouterr().out  # the onnxruntime backend on such weights: tests/test_export.py


def test_trace_counts_the_network_input_pixels(tmp_path):
    """The tester's input is the padded canvas (100x150 -> 127x255, the original's ``| 127`` rule),
    twice with flip; evaluate reports the mean per image (it reported 0 for the tester before)."""
    from engine_fixtures import CLASS_NAMES, write_box_dataset

    from cornernet_saccade.engine.evaluate import evaluate

    tiny = {"num_classes": 3, "num_stacks": 1, "dims": (8, 8, 8, 8), "modules": (1, 1, 1, 1), "stem_dim": 4,
            "pool_dim": 4, "head_dim": 4}
    model = CornerNetSqueeze(**tiny)
    image = np.zeros((100, 150, 3), np.uint8)
    assert Detector(model)(image).trace.network_pixels == 127 * 255
    assert Detector(model, flip=True, test_scales=(1.0, 0.5))(image).trace.network_pixels == 2 * (127 * 255 + 127 * 127)
    saccade = CornerNetSaccade(**tiny)
    assert Detector(saccade, mode="full", full_size=255)(image).trace.network_pixels == 255 * 255
    val_json = write_box_dataset(tmp_path / "data", 2, seed=3, name="val")  # 128x128 -> 255x255
    result = evaluate(Detector(model, class_names=list(CLASS_NAMES)), val_json, progress=False)
    assert result.pixels_per_image == 255 * 255


def test_trace_names_the_first_views_as_the_picture_titles_them():
    """The picture's legend said "initial views" for the tester's padded canvases and for tiles."""
    tiny = {"num_classes": 3, "num_stacks": 1, "dims": (8, 8, 8, 8), "modules": (1, 1, 1, 1), "stem_dim": 4,
            "pool_dim": 4, "head_dim": 4}
    image = np.zeros((100, 150, 3), np.uint8)
    assert Detector(CornerNetSqueeze(**tiny))(image).trace.view_kind == "padded views"
    saccade = CornerNetSaccade(**tiny)
    kinds = {mode: Detector(saccade, mode=mode, full_size=255, tile_size=127, tile_overlap=32)(image).trace.view_kind
             for mode in ("saccade", "full", "tiled")}
    assert kinds == {"saccade": "initial views", "full": "whole image", "tiled": "tiles"}
