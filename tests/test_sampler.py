"""Training-sample invariants: where a known object lands, flips, empty images, scales, the dataset."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cornernet_saccade.data.records import AnnotatedImage, DetectionDataset
from cornernet_saccade.data.samples import (
    SamplingConfig,
    TrainingSampleDataset,
    build_training_sample,
    choose_crop_centre,
    choose_scale,
    collate,
    crop_window,
    flip_and_turn,
    resize_window,
)
from cornernet_saccade.engine.loss import CornerNetSaccadeLoss
from cornernet_saccade.errors import ConfigError, ImageError
from cornernet_saccade.model.heads import HeadOutputs

CFG = SamplingConfig()
NO_AUG = CFG.without_augmentation()
MEAN, STD = np.array(CFG.mean, np.float32), np.array(CFG.std, np.float32)


def object_image(box: tuple[int, int, int, int], height: int = 700, width: int = 800) -> np.ndarray:
    """Black BGR image with a white rectangle covering pixels ``[x1, x2) x [y1, y2)``."""
    image = np.zeros((height, width, 3), np.float32)
    x1, y1, x2, y2 = box
    image[y1:y2, x1:x2] = 1
    return image


def target_boxes(sample: dict[str, np.ndarray]) -> np.ndarray:
    """Boxes ``[K, 4]`` in crop pixels read back from the tag indices and offsets of a sample."""
    mask = sample["tag_mask"]
    corners = []
    for corner in ("tl", "br"):
        ind, off = sample[f"{corner}_ind"][mask], sample[f"{corner}_off"][mask]
        corners.append(np.stack([ind % 64 + off[:, 0], ind // 64 + off[:, 1]], axis=1) * 255 / 64)
    return np.concatenate(corners, axis=1)


@pytest.mark.parametrize("seed", range(4))
def test_known_object_lands_where_expected(seed: int) -> None:
    box = (300, 280, 380, 340)  # long side 80: scaled to an integer length in [32, 96]
    # the scale is >= 32/80, so the scaled image stays larger than the crop and the crop is centred on the object
    sample = build_training_sample(object_image(box), np.array([box], np.float32), np.array([3]),
                                   np.random.default_rng(seed), NO_AUG)
    assert sample["tag_mask"].sum() == 1
    (x1, y1, x2, y2), = target_boxes(sample)
    long_side = max(x2 - x1, y2 - y1)
    assert 32 <= round(long_side) <= 96 and abs(long_side - round(long_side)) < 1e-3
    assert (x2 - x1) / (y2 - y1) == pytest.approx(80 / 60, rel=1e-3)
    # the crop is centred on the object (no jitter): centre in [127, 128) (1e-3: read back from float32 cells)
    assert 127 - 1e-3 <= (x1 + x2) / 2 < 128 and 127 - 1e-3 <= (y1 + y2) / 2 < 128
    # the white pixels are where the targets say (up to the bilinear edge)
    white = (1 - MEAN[0]) / STD[0]
    ys, xs = np.nonzero(sample["image"][0] > white / 2)
    np.testing.assert_allclose([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], [x1, y1, x2, y2], atol=1.5)
    assert sample["tl_heat"][3].reshape(-1)[sample["tl_ind"][0]] == 1
    assert sample["br_heat"][3].reshape(-1)[sample["br_ind"][0]] == 1
    assert np.delete(sample["tl_heat"], 3, axis=0).max() == 0
    assert sample["att_middle"][0, int((y1 + y2) / 2 / 8), int((x1 + x2) / 2 / 8)] == 1


def test_flip_mirrors_image_and_targets() -> None:
    boxes = np.array([[30, 40, 150, 200], [160, 20, 220, 90], [60, 210, 110, 250]], np.float32)
    image = np.random.default_rng(0).random((260, 240, 3)).astype(np.float32)
    labels = np.array([0, 1, 2])
    kept = build_training_sample(image, boxes, labels, np.random.default_rng(11), SamplingConfig(flip_prob=0.0))
    flipped = build_training_sample(image, boxes, labels, np.random.default_rng(11), SamplingConfig(flip_prob=1.0))
    np.testing.assert_allclose(flipped["image"], kept["image"][:, :, ::-1], atol=1e-5)
    np.testing.assert_array_equal(flipped["tag_mask"], kept["tag_mask"])
    assert kept["tag_mask"].any()
    a, b = target_boxes(kept), target_boxes(flipped)
    np.testing.assert_allclose(b[:, [0, 2]], 254 - a[:, [2, 0]], atol=1e-3)
    np.testing.assert_allclose(b[:, [1, 3]], a[:, [1, 3]], atol=1e-3)
    for key in ("att_coarse", "att_middle", "att_fine"):
        assert flipped[key].sum() == kept[key].sum()


@pytest.mark.parametrize("seed", range(3))
def test_image_without_boxes(seed: int) -> None:
    image = np.random.default_rng(seed).random((200, 330, 3)).astype(np.float32)
    sample = build_training_sample(image, np.zeros((0, 4), np.float32), np.zeros(0, np.int64),
                                   np.random.default_rng(seed), CFG)
    assert not sample["tag_mask"].any() and sample["tl_heat"].sum() == 0 and sample["br_heat"].sum() == 0
    assert sample["tl_valid"].all() and sample["br_valid"].all()
    assert all(sample[k].sum() == 0 for k in ("att_coarse", "att_middle", "att_fine"))
    assert np.isfinite(sample["image"]).all() and sample["image"].std() > 0.1


def test_boxes_outside_the_image_are_dropped() -> None:
    boxes = np.array([[500, 500, 600, 600], [10, 10, 60, 60]], np.float32)
    sample = build_training_sample(object_image((10, 10, 60, 60)), boxes, np.array([7, 2]),
                                   np.random.default_rng(0), NO_AUG)
    assert sample["tag_mask"].sum() == 1 and sample["tl_heat"][2].max() == 1 and sample["tl_heat"][7].max() == 0


def test_output_shapes_dtypes_and_determinism() -> None:
    image = np.random.default_rng(0).random((480, 640, 3)).astype(np.float32)
    boxes = np.array([[10, 20, 300, 400], [400, 100, 430, 120], [500, 300, 510, 309]], np.float32)
    labels = np.array([0, 79, 5])
    first = build_training_sample(image, boxes, labels, np.random.default_rng(3), CFG)
    second = build_training_sample(image, boxes, labels, np.random.default_rng(3), CFG)
    other = build_training_sample(image, boxes, labels, np.random.default_rng(4), CFG)
    expected = {"image": ((3, 255, 255), np.float32), "tl_heat": ((80, 64, 64), np.float32),
                "br_heat": ((80, 64, 64), np.float32), "tl_valid": ((80, 64, 64), np.float32),
                "br_valid": ((80, 64, 64), np.float32), "tag_mask": ((128,), np.bool_),
                "tl_ind": ((128,), np.int64), "br_ind": ((128,), np.int64), "tl_off": ((128, 2), np.float32),
                "br_off": ((128, 2), np.float32), "att_coarse": ((1, 16, 16), np.float32),
                "att_middle": ((1, 32, 32), np.float32), "att_fine": ((1, 64, 64), np.float32)}
    assert {k: (v.shape, v.dtype) for k, v in first.items()} == expected
    assert all(np.array_equal(first[k], second[k]) for k in expected)
    assert not np.array_equal(first["image"], other["image"])


@pytest.mark.parametrize("long_side, low, high", [(20, 16, 32), (32, 16, 32), (50, 32, 96), (96, 32, 96),
                                                  (97, 96, 254), (700, 96, 254)])
def test_reference_long_side_lands_in_spec_range(long_side: float, low: int, high: int) -> None:
    boxes = np.array([[5, 5, 5 + long_side, 5 + long_side / 2]], np.float32)
    rng = np.random.default_rng(0)
    lengths = []
    for _ in range(200):
        scale, ref = choose_scale(boxes, rng, CFG)
        assert ref == 0
        lengths.append(float(scale) * long_side)
    lengths = np.array(lengths)
    np.testing.assert_allclose(lengths, np.round(lengths), atol=1e-3)
    assert lengths.min() >= low - 1e-3 and lengths.max() <= high + 1e-3
    assert len(np.unique(np.round(lengths))) > 10


def test_empty_image_scale_is_one_of_the_listed() -> None:
    rng = np.random.default_rng(0)
    scales = {float(choose_scale(np.zeros((0, 4), np.float32), rng, CFG)[0]) for _ in range(100)}
    assert scales == set(CFG.empty_image_scales)


def test_crop_window_by_hand() -> None:
    window, region, offset = crop_window((6, 10), 3, 5, 5)  # rows 1..4, columns 3..6; last row/column empty
    assert window == (1, 5, 3, 7) and region == (0, 4, 0, 4) and offset == (1, 3)
    window, region, offset = crop_window((6, 10), 0, 0, 5)  # corner: zero padding above and left
    assert window == (0, 2, 0, 2) and region == (2, 4, 2, 4) and offset == (-2, -2)


@pytest.mark.parametrize("out_size, window", [((37, 53), (0, 37, 0, 53)), ((90, 70), (10, 60, 5, 70)),
                                              ((9, 11), (2, 8, 0, 11))])
def test_resize_window_equals_full_bilinear_resize(out_size, window) -> None:
    image = np.random.default_rng(0).random((23, 31, 3)).astype(np.float32)
    full = torch.nn.functional.interpolate(torch.from_numpy(image.transpose(2, 0, 1))[None], size=out_size,
                                           mode="bilinear", align_corners=False)[0].numpy().transpose(1, 2, 0)
    y0, y1, x0, x1 = window
    np.testing.assert_allclose(resize_window(image, out_size, window), full[y0:y1, x0:x1], atol=1e-6)


def test_crop_centre_choices() -> None:
    rng = np.random.default_rng(0)
    assert choose_crop_centre(200, (10.0, 50.0), False, rng, CFG) == 100
    for _ in range(100):
        start = choose_crop_centre(1000, (300.0, 500.0), False, rng, CFG) - 127
        assert start <= 300 and start + 255 >= 500
        centre = choose_crop_centre(1000, (300.0, 500.0), True, rng, CFG)
        assert 400 - 14 <= centre <= 400 + 14
    assert choose_crop_centre(1000, (300.0, 500.0), True, rng, NO_AUG) == 400


def write_png(path, rgb: np.ndarray) -> str:
    Image.fromarray(rgb).save(path)
    return str(path)


def make_dataset(tmp_path) -> DetectionDataset:
    rgb = np.zeros((120, 160, 3), np.uint8)
    rgb[30:90, 40:120] = (255, 0, 0)  # a red object
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    records = [AnnotatedImage(1, write_png(tmp_path / "red.png", rgb), 160, 120, [[40, 30, 120, 90]], [4]),
               AnnotatedImage(2, str(bad), 160, 120, np.zeros((0, 4)), np.zeros(0))]
    return DetectionDataset(records, [f"c{i}" for i in range(80)], str(tmp_path))


def test_dataset_items_are_reproducible_bgr_and_collate(tmp_path) -> None:
    dataset = TrainingSampleDataset(make_dataset(tmp_path), NO_AUG, seed=5)
    first, again = dataset[0], dataset[0]
    assert all(np.array_equal(first[k], again[k]) for k in first)
    dataset.set_epoch(1)
    assert not np.array_equal(dataset[0]["tl_ind"], first["tl_ind"]) or \
        not np.array_equal(dataset[0]["image"], first["image"])
    # red in RGB is the last BGR channel
    y, x = first["tl_ind"][0] // 64 * 4 + 8, first["tl_ind"][0] % 64 * 4 + 8
    np.testing.assert_allclose(first["image"][:, y, x], (np.array([0, 0, 1]) - MEAN) / STD, atol=1e-5)
    assert first["tl_heat"][4].max() == 1

    batch = collate([first, again])
    assert batch["image"].shape == (2, 3, 255, 255) and batch["tag_mask"].dtype == torch.bool
    assert batch["tl_ind"].dtype == torch.int64 and batch["att_fine"].shape == (2, 1, 64, 64)


def test_dataset_bad_image_and_class_mismatch(tmp_path) -> None:
    data = make_dataset(tmp_path)
    with pytest.raises(ImageError, match="bad.png"):
        TrainingSampleDataset(data)[1]
    with pytest.raises(ConfigError, match="classes"):
        TrainingSampleDataset(data, SamplingConfig(num_classes=20))


def test_collated_samples_feed_the_loss() -> None:
    image = np.random.default_rng(0).random((300, 300, 3)).astype(np.float32)
    boxes = np.array([[20, 30, 200, 220], [210, 40, 260, 90]], np.float32)
    batch = collate([build_training_sample(image, boxes, np.array([1, 2]), np.random.default_rng(s), CFG)
                     for s in range(2)])
    gen = torch.Generator().manual_seed(0)
    logits = lambda *shape: torch.randn(2, *shape, generator=gen)  # noqa: E731
    outputs = HeadOutputs(tl_heats=[logits(80, 64, 64)], br_heats=[logits(80, 64, 64)],
                          tl_tags=[logits(1, 64, 64)], br_tags=[logits(1, 64, 64)],
                          tl_offs=[logits(2, 64, 64)], br_offs=[logits(2, 64, 64)],
                          attentions=[[logits(1, 16, 16), logits(1, 32, 32), logits(1, 64, 64)]])
    result = CornerNetSaccadeLoss()(outputs, batch)
    assert torch.isfinite(result.total) and result.components["pull"] > 0


def test_reference_box_longer_than_a_small_crop_does_not_crash():
    """With 127-pixel crops a reference object can be longer than the crop (tiers assume 255)."""
    small = SamplingConfig(input_size=127, output_size=32, num_classes=1)
    rng = np.random.default_rng(0)
    for _ in range(50):
        start = choose_crop_centre(1000, (300.0, 600.0), False, rng, small) - 63
        assert 300 <= start <= 600 - 127  # the crop lies inside the box, between its two ends


@pytest.mark.parametrize("seed", range(6))
def test_flips_and_quarter_turns_move_boxes_with_their_pixels(seed: int) -> None:
    """With every flip and turn on, each box still frames exactly the pixels it framed (a marked
    rectangle per box, found again after the change), for each draw of the turns."""
    side = 31
    crop = np.zeros((side, side, 3), np.float32)
    boxes = np.array([[2, 3, 9, 20], [15, 1, 29, 6]], np.float32)  # x1, y1, x2, y2, inclusive pixels
    for index, (x1, y1, x2, y2) in enumerate(boxes.astype(int)):
        crop[y1:y2 + 1, x1:x2 + 1, index] = 1.0
    cfg = SamplingConfig(flip_prob=0.5, vflip_prob=0.5, rotate90_prob=1.0)
    turned, moved = flip_and_turn(crop, boxes.copy(), np.random.default_rng(seed), cfg)
    for index, (x1, y1, x2, y2) in enumerate(moved.astype(int)):
        ys, xs = np.nonzero(turned[:, :, index])
        assert (xs.min(), ys.min(), xs.max(), ys.max()) == (x1, y1, x2, y2)
    assert turned.sum() == crop.sum()


def test_orientation_options_off_draw_nothing_more() -> None:
    """vflip_prob and rotate90_prob at 0 (the original's) leave the draws, and so the samples, as before."""
    crop = np.random.default_rng(1).random((15, 15, 3)).astype(np.float32)
    boxes = np.array([[1, 2, 5, 9]], np.float32)
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    flip_and_turn(crop, boxes.copy(), rng_a, SamplingConfig())
    rng_b.random()  # the horizontal flip's one draw
    assert rng_a.random() == rng_b.random()
