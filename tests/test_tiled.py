"""Tiled mode: tile origins and cores by hand, the stand-in network of test_saccade finding objects
that lie across tile borders once and in image pixels, what the trace counts, the settings and the
onnxruntime size check, ``evaluate --mode tiled`` and ``make-shapes --large``."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from engine_fixtures import one_thread, write_box_dataset  # noqa: F401
from PIL import Image
from test_saccade import CLASS_NAMES, SCENE, RectangleFinder, scene

from cornernet_saccade.backends import _check_exported_size, mode_input_size
from cornernet_saccade.cli import main
from cornernet_saccade.cli.common import detector_settings
from cornernet_saccade.datasets.shapes import SceneConfig
from cornernet_saccade.engine.analyze import STAGES, object_stages
from cornernet_saccade.errors import ConfigError
from cornernet_saccade.inference.detector import SaccadeDetector
from cornernet_saccade.inference.settings import SaccadeConfig
from cornernet_saccade.inference.views import tile_cores, tile_grid, tile_origins
from cornernet_saccade.model.protocol import InputSizes

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize(("length", "tile", "overlap", "origins"), [
    (300, 511, 128, [0]),  # smaller than a tile: one tile, padded
    (511, 511, 128, [0]),
    (512, 511, 128, [0, 1]),
    (800, 511, 128, [0, 289]),  # step 289 <= 511 - 128
    (1200, 511, 128, [0, 344, 689]),  # 689 / 383 -> 2 steps of 344.5, floored
    (1000, 255, 0, [0, 248, 496, 745]),  # 745 / 255 -> 3 steps of 248.3
])
def test_tile_origins_by_hand(length, tile, overlap, origins):
    assert tile_origins(length, tile, overlap) == origins


@pytest.mark.parametrize("length", [512, 600, 1023, 2048, 4095])
@pytest.mark.parametrize(("tile", "overlap"), [(255, 64), (511, 128), (511, 0)])
def test_tiles_cover_the_axis_evenly_ending_at_the_edge(length, tile, overlap):
    origins = tile_origins(length, tile, overlap)
    steps = np.diff(origins)
    assert origins[0] == 0 and origins[-1] + tile == length
    assert steps.max() <= tile - overlap and steps.max() - steps.min() <= 1
    assert len(tile_origins(length, tile, overlap)) - 1 == -(-(length - tile) // (tile - overlap))  # the fewest


def test_tile_cores_split_the_overlaps_at_their_middle():
    np.testing.assert_array_equal(tile_cores([0, 344, 689], 511), [[-np.inf, 427.5], [427.5, 772.0], [772.0, np.inf]])
    np.testing.assert_array_equal(tile_cores([0], 511), [[-np.inf, np.inf]])


def test_tile_grid_is_row_major_at_native_resolution():
    windows, cores = tile_grid((300, 600), 255, 100)  # rows [0, 45], columns [0, 115, 230, 345]
    assert [(w.offset_y, w.offset_x) for w in windows] == [(y, x) for y in (0, 45) for x in (0, 115, 230, 345)]
    last = windows[-1]
    assert (last.src_y0, last.src_y1, last.src_x0, last.src_x1) == (45, 300, 345, 600)
    assert (last.dst_y1, last.dst_x1, last.side) == (255, 255, 255)
    np.testing.assert_array_equal(cores[6], [(115 + 230 + 255) / 2, (230 + 345 + 255) / 2, 150.0, np.inf])


#: Objects lying across tile borders of a 300x600 image cut into tiles of 255 overlapping by 100
#: (rows [0, 45], columns [0, 115, 230, 345]): red across the first column's right edge (x 255),
#: green across the first row's bottom edge (y 255) and the third column's left edge (x 345).
BORDER_SCENE = {0: (230, 60, 300, 110), 1: (320, 200, 400, 280)}


def border_scene() -> np.ndarray:
    image = np.zeros((300, 600, 3), np.uint8)
    for cls, (x1, y1, x2, y2) in BORDER_SCENE.items():
        image[y1:y2, x1:x2, cls] = 255
    return image


class Recording(RectangleFinder):
    """The stand-in network, recording the shape of every batch it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, images, *, with_attention=True):
        self.shapes.append(tuple(images.shape))
        return super().forward(images, with_attention=with_attention)


def tiled(network: torch.nn.Module, **settings) -> SaccadeDetector:
    return SaccadeDetector(network, class_names=CLASS_NAMES, mode="tiled", tile_size=255, tile_overlap=100, **settings)


def test_objects_across_tile_borders_are_found_once_in_image_pixels():
    network = Recording()
    result = tiled(network, batch_size=3)(border_scene())
    assert sorted(result.labels.tolist()) == [0, 1]  # once each after the merge
    for box, label in zip(result.boxes, result.labels):
        np.testing.assert_allclose(box, BORDER_SCENE[int(label)], atol=1.0)
    # before the merge too: the cut copies and the whole copy of the overlapping neighbour are
    # dropped by the core filter (every tile seeing green sees some of it)
    assert sorted(result.trace.candidates[:, 5].tolist()) == [0.0, 1.0]
    assert network.shapes == [(3, 3, 255, 255)] * 2 + [(2, 3, 255, 255)]  # 8 tiles in batches of 3
    assert result.trace.network_pixels == 8 * 255 * 255
    assert [view.region_xyxy for view in result.trace.crops[:2]] == [(0, 0, 255, 255), (115, 0, 370, 255)]
    assert all(view.scale == 1.0 and view.round == 0 for view in result.trace.crops)


def test_a_tile_of_another_side_than_32k_minus_1_is_padded_to_the_next():
    """DeepForest-style tiles (here 240 px, overlap 100: rows [0, 60], columns [0, 120, 240, 360]) sit at
    the top-left of 255 px canvases; the objects across their borders are found once, in image pixels."""
    network = Recording()
    result = SaccadeDetector(network, class_names=CLASS_NAMES, mode="tiled", tile_size=240, tile_overlap=100,
                             batch_size=8)(border_scene())
    assert network.shapes == [(8, 3, 255, 255)] and result.trace.network_pixels == 8 * 255 * 255
    assert [view.region_xyxy for view in result.trace.crops[:2]] == [(0, 0, 240, 240), (120, 0, 360, 240)]
    assert sorted(result.labels.tolist()) == [0, 1]
    for box, label in zip(result.boxes, result.labels):
        np.testing.assert_allclose(box, BORDER_SCENE[int(label)], atol=1.0)
    assert mode_input_size("tiled", tile_size=400) == 415 and mode_input_size("tiled", tile_size=511) == 511


def test_an_image_smaller_than_a_tile_is_one_padded_tile():
    network = Recording()
    result = SaccadeDetector(network, class_names=CLASS_NAMES, mode="tiled")(scene())  # 200x300, tile 511
    assert network.shapes == [(1, 3, 511, 511)] and result.trace.network_pixels == 511 * 511
    assert [view.region_xyxy for view in result.trace.crops] == [(0, 0, 511, 511)]
    assert sorted(result.labels.tolist()) == sorted(SCENE)
    for box, label in zip(result.boxes, result.labels):
        np.testing.assert_allclose(box, SCENE[int(label)], atol=1.0)


def test_analyze_counts_an_object_anywhere_in_a_tile_as_covered():
    """A 40x30 object near the tile's corner lies inside the tile (the view is the whole tile, not
    a 255 px square around its centre)."""
    result = SaccadeDetector(RectangleFinder(), class_names=CLASS_NAMES, mode="tiled")(scene())
    flags = object_stages(result, np.array([SCENE[0], [5.0, 5.0, 45.0, 35.0]]), np.array([0, 2]), 0.0)
    assert flags[:, STAGES.index("covered")].all()
    assert not flags[:, STAGES.index("proposed")].any()  # tiles propose nothing
    assert flags[0, STAGES.index("found")] and not flags[1, STAGES.index("detected")]


@pytest.mark.parametrize(("settings", "message"), [
    ({"tile_size": 0}, "tile_size must be >= 1"),
    ({"tile_overlap": 255}, r"tile_overlap must be in \[0, tile_size\)"),
    ({"tile_overlap": -1}, "tile_overlap"),
])
def test_bad_tile_settings_are_config_errors(settings, message):
    with pytest.raises(ConfigError, match=message):
        SaccadeDetector(RectangleFinder(), mode="tiled", tile_size=settings.pop("tile_size", 255), **settings)


def test_onnxruntime_size_check_takes_the_tile_size():
    assert mode_input_size("tiled") == 511 and mode_input_size("tiled", 1000, 767) == 767

    sizes = InputSizes(32, 511)  # an export of a saccade network up to 511
    _check_exported_size(sizes, Path("m.onnx"), SaccadeConfig(mode="tiled"))
    with pytest.raises(ConfigError, match=r"m\.onnx: .* not 767 \(tiled mode's tiles of --tile-size 767\).*--tile-size"):
        _check_exported_size(sizes, Path("m.onnx"), SaccadeConfig(mode="tiled", tile_size=767))


def test_tile_options_outside_tiled_mode_are_reported(capsys):
    args = argparse.Namespace(mode="full", full_size=None, tile_size=255, tile_overlap=None, score_threshold=None,
                              max_crops=None)
    assert detector_settings(args) == {"mode": "full", "tile_size": 255}
    assert "--tile-size 255 only applies to tiled mode (--mode tiled); full mode ignores it" in capsys.readouterr().err
    args.mode = "tiled"
    assert detector_settings(args) == {"mode": "tiled", "tile_size": 255}
    assert capsys.readouterr().err == ""


def test_evaluate_in_tiled_mode(tmp_path: Path, capsys):
    from detect_fixtures import tiny_model

    from cornernet_saccade.model.checkpoint import save_checkpoint

    weights = tmp_path / "tiny.pt"
    save_checkpoint(weights, tiny_model())
    val_json = write_box_dataset(tmp_path / "data", 2, seed=3, size=300, name="val")
    out = tmp_path / "results.json"
    assert main(["evaluate", "--weights", str(weights), "--data", str(val_json), "--mode", "tiled", "--tile-size",
                 "255", "--tile-overlap", "64", "--device", "cpu", "--threads", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "COCO bbox evaluation: 2 images" in printed
    assert f"network input per image {4 * 255 * 255 / 1e6:.2f} Mpixels" in printed  # 2 x 2 tiles of 255
    assert {d["image_id"] for d in json.loads(out.read_text())} == {1, 2}


def test_make_shapes_large_scenes(tmp_path: Path, capsys):
    large = SceneConfig.large()
    assert (large.min_width, large.max_width, large.min_height, large.max_height) == (2048, 4096, 1536, 3072)
    assert (large.min_object_size, large.max_object_size, large.max_objects) == (10, 400, 307)
    # few objects keep the test fast; the sizes are the large ones
    assert main(["make-shapes", "--out", str(tmp_path), "--num", "1", "--val-num", "1", "--large",
                 "--max-objects", "3"]) == 0
    for split in ("train", "val"):
        document = json.loads((tmp_path / f"{split}.json").read_text())
        (image,) = document["images"]
        assert 2048 <= image["width"] <= 4096 and 1536 <= image["height"] <= 3072
        assert Image.open(tmp_path / image["file_name"]).size == (image["width"], image["height"])
        assert 1 <= len(document["annotations"]) <= 3
