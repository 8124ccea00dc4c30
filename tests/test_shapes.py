"""Synthetic shapes: determinism, annotations against the drawn pixels, coverage, COCO output."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from cornernet_saccade.cli import main
from cornernet_saccade.data.coco import read_coco
from cornernet_saccade.datasets.shapes import (
    CLASS_NAMES,
    MIN_VISIBLE_FRACTION,
    Scene,
    SceneConfig,
    Sprite,
    compose,
    make_shapes_dataset,
    render_scene,
    sample_scene,
    visible_boxes,
)
from cornernet_saccade.errors import ConfigError

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SMALL = SceneConfig(min_width=160, max_width=240, min_height=120, max_height=180,
                    max_objects=8, min_object_size=6, max_object_size=80)


def _digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def _tight_box(mask: np.ndarray) -> list[int]:
    ys, xs = np.nonzero(mask)
    return [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def test_same_seed_same_scene_other_seed_differs() -> None:
    first = render_scene(np.random.default_rng(11))
    again = render_scene(np.random.default_rng(11))
    other = render_scene(np.random.default_rng(12))
    assert [_digest(a) for a in first] == [_digest(a) for a in again]
    assert _digest(first[0]) != _digest(other[0])


def test_occluded_box_hand_computed() -> None:
    """A 10x10 square at (2,3) half hidden by a later 8x20 bar at (7,0): visible part x 2..7."""
    square = Sprite(0, 2, 3, np.ones((10, 10), bool), np.full((10, 10, 3), 200, np.uint8), 100)
    bar = Sprite(1, 7, 0, np.ones((20, 8), bool), np.full((20, 8, 3), 90, np.uint8), 160)
    scene = Scene(np.zeros((20, 30, 3), np.uint8), (square, bar))
    image, owner = compose(scene)
    np.testing.assert_array_equal(visible_boxes(scene, owner), [[2, 3, 7, 13], [7, 0, 15, 20]])
    assert image[5, 6, 0] == 200 and image[5, 7, 0] == 90 and image[5, 1, 0] == 0


@pytest.mark.parametrize("seed", [3, 4])
def test_boxes_are_tight_around_the_pixels_each_object_changes(seed: int) -> None:
    """Removing object i changes exactly its visible pixels: their tight box is the annotation."""
    scene = sample_scene(np.random.default_rng(seed), SMALL)
    image, owner = compose(scene)
    boxes = visible_boxes(scene, owner)
    assert len(scene.sprites) >= 2
    for index in range(len(scene.sprites)):
        without = Scene(scene.background, scene.sprites[:index] + scene.sprites[index + 1:])
        changed = np.any(compose(without)[0] != image, axis=2)
        assert _tight_box(changed) == boxes[index].tolist()


def test_every_object_stays_visible_enough_and_boxes_lie_inside() -> None:
    crowded = SceneConfig(min_width=160, max_width=200, min_height=120, max_height=150,
                          max_objects=30, min_object_size=20, max_object_size=100)
    for seed in range(4):
        scene = sample_scene(np.random.default_rng(seed), crowded)
        image, owner = compose(scene)
        height, width = image.shape[:2]
        for index, sprite in enumerate(scene.sprites):
            assert (owner == index).sum() >= MIN_VISIBLE_FRACTION * sprite.full_area
        boxes = visible_boxes(scene, owner)
        assert np.all(boxes[:, :2] >= 0) and np.all(boxes[:, 2] <= width)
        assert np.all(boxes[:, 3] <= height) and np.all(boxes[:, 2:] > boxes[:, :2])


def test_default_scenes_cover_sizes_classes_and_object_counts() -> None:
    sizes, labels, counts, shapes = [], [], [], set()
    for seed in range(6):
        image, boxes, image_labels = render_scene(np.random.default_rng(seed))
        shapes.add(image.shape)
        assert image.dtype == np.uint8 and image.shape[2] == 3
        assert 640 <= image.shape[1] <= 1280 and 480 <= image.shape[0] <= 960
        assert boxes.dtype == np.float32 and image_labels.dtype == np.int64
        sizes.extend((boxes[:, 2:] - boxes[:, :2]).max(axis=1))
        labels.extend(image_labels)
        counts.append(len(boxes))
    assert min(sizes) < 32 and max(sizes) > 96
    assert set(labels) == set(range(len(CLASS_NAMES)))
    assert 1 <= min(counts) and max(counts) <= 30 and len(shapes) == 6


def test_dataset_files_are_deterministic_and_load_with_pycocotools(tmp_path: Path) -> None:
    paths = make_shapes_dataset(tmp_path / "a", seed=5, num_train=3, num_val=2, config=SMALL)
    make_shapes_dataset(tmp_path / "b", seed=5, num_train=3, num_val=2, config=SMALL)
    make_shapes_dataset(tmp_path / "c", seed=6, num_train=3, num_val=2, config=SMALL)

    def contents(root: Path) -> dict[str, bytes]:
        return {p.relative_to(root).as_posix(): p.read_bytes()
                for p in sorted(root.rglob("*")) if p.is_file()}

    assert contents(tmp_path / "a") == contents(tmp_path / "b")
    assert (tmp_path / "a" / "train.json").read_bytes() != (tmp_path / "c" / "train.json").read_bytes()
    assert len(contents(tmp_path / "a")) == 2 + 5

    coco = COCO(str(paths["train"]))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(CLASS_NAMES)
    for index, image_id in enumerate(sorted(coco.getImgIds())):
        info = coco.loadImgs(image_id)[0]
        _, boxes, labels = render_scene(np.random.default_rng([5, 0, index]), SMALL)
        annotations = coco.loadAnns(coco.getAnnIds(imgIds=image_id))
        xywh = np.array([a["bbox"] for a in annotations], dtype=np.float32).reshape(-1, 4)
        np.testing.assert_array_equal(np.hstack([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]]), boxes)
        assert [a["category_id"] - 1 for a in annotations] == labels.tolist()
        with Image.open(tmp_path / "a" / info["file_name"]) as written:
            assert written.size == (info["width"], info["height"])
    assert len(json.loads(paths["val"].read_text())["images"]) == 2
    ours = read_coco(paths["train"])
    assert not ours.issues and ours.class_names == list(CLASS_NAMES)
    _, boxes, _ = render_scene(np.random.default_rng([5, 0, 2]), SMALL)
    np.testing.assert_array_equal(ours.records[2].boxes, boxes)


def test_bundled_example_is_the_documented_scene() -> None:
    """examples/ATTRIBUTION.md says how shapes_scene.jpg was made; JPEG changes pixels a little."""
    image, _, _ = render_scene(np.random.default_rng([14, 2, 0]))
    with Image.open(EXAMPLES / "shapes_scene.jpg") as example:
        bundled = np.asarray(example.convert("RGB"), dtype=np.float32)
    assert bundled.shape == image.shape
    assert np.abs(bundled - image).mean() < 5.0


def test_cli_writes_dataset(tmp_path: Path) -> None:
    args = ["make-shapes", "--out", str(tmp_path), "--seed", "1", "--num", "1", "--val-num", "1",
            "--max-width", "200", "--min-width", "160", "--max-height", "150", "--min-height", "120",
            "--max-object-size", "60"]
    assert main(args) == 0
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == ["train_000000.jpg",
                                                                      "val_000000.jpg"]


def test_invalid_settings_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="min_width"):
        SceneConfig(min_width=800, max_width=700)
    with pytest.raises(ConfigError, match="seed"):
        make_shapes_dataset("unused", seed=-1, num_train=1)
