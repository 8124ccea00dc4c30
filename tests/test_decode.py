"""Corner decoding against the original ``_decode`` goldens (tests/data/decode_cases.npz) and hand cases."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cornernet_saccade.inference.decode import REJECTED_SCORE, decode_detections, keep_peaks, top_corners

CASES = ("saccade_default", "saccade_dense", "saccade_kwargs_no_border_False", "squeeze_kwargs",
         "decode_signature_defaults")
SIDES = ("tl", "br")
NAMES = ("tl_heat", "br_heat", "tl_tag", "br_tag", "tl_off", "br_off")


@pytest.fixture(scope="module")
def golden(data_dir) -> dict[str, np.ndarray]:
    return dict(np.load(data_dir / "decode_cases.npz"))


def case_inputs(golden: dict[str, np.ndarray], case: str) -> tuple[list[torch.Tensor], dict]:
    """The decoder inputs (heatmaps rebuilt from their sparse form) and kwargs of a golden case."""
    source = str(golden[f"{case}/source"])
    tensors = []
    for name in NAMES:
        if name.endswith("heat"):
            shape = tuple(golden[f"{source}/{name}_shape"])
            heat = np.full(int(np.prod(shape)), golden[f"{source}/{name}_fill"], dtype=np.float32)
            heat[golden[f"{source}/{name}_inds"]] = golden[f"{source}/{name}_values"]
            tensors.append(torch.from_numpy(heat.reshape(shape)))
        else:
            tensors.append(torch.from_numpy(golden[f"{source}/{name}"]))
    prefix = f"{case}/kwargs/"
    kwargs = {k[len(prefix):]: golden[k].item() for k in golden if k.startswith(prefix)}
    return tensors, kwargs


@pytest.mark.parametrize("case", CASES)
def test_valid_rows_match_original(golden, case):
    inputs, kwargs = case_inputs(golden, case)
    got = decode_detections(*inputs, **kwargs).numpy()
    ref = golden[f"{case}/detections"]
    assert got.shape == ref.shape
    for image in range(ref.shape[0]):
        ref_valid = ref[image][ref[image, :, 4] > REJECTED_SCORE]
        got_valid = got[image][got[image, :, 4] > REJECTED_SCORE]
        assert len(ref_valid) > 0
        assert got_valid.shape == ref_valid.shape
        np.testing.assert_allclose(got_valid, ref_valid, rtol=0, atol=1e-5)


@pytest.mark.parametrize("case", CASES)
def test_top_corners_match_original(golden, case):
    inputs, kwargs = case_inputs(golden, case)
    for side, heat in zip(SIDES, inputs[:2]):
        peaks = top_corners(heat, kwargs["k"], kwargs["kernel"])
        np.testing.assert_array_equal(peaks.inds.numpy(), golden[f"{case}/{side}_inds"])
        np.testing.assert_array_equal(peaks.classes.numpy(), golden[f"{case}/{side}_classes"])
        np.testing.assert_allclose(peaks.scores.numpy(), golden[f"{case}/{side}_scores"], rtol=0, atol=1e-6)
        width = heat.shape[-1]
        np.testing.assert_array_equal(peaks.ys.numpy(), golden[f"{case}/{side}_inds"] // width)
        np.testing.assert_array_equal(peaks.xs.numpy(), golden[f"{case}/{side}_inds"] % width)


def planted_maps(size: int = 8, classes: int = 2) -> list[torch.Tensor]:
    """Logit maps (batch 1) with one object of class 1: tl corner at cell (y2, x1), br at (y5, x6)."""
    tl_heat = torch.full((1, classes, size, size), -8.0)
    br_heat = torch.full((1, classes, size, size), -8.0)
    tl_heat[0, 1, 2, 1] = 2.0
    br_heat[0, 1, 5, 6] = 1.0
    tl_tag = torch.zeros(1, 1, size, size)
    br_tag = torch.zeros(1, 1, size, size)
    tl_off = torch.zeros(1, 2, size, size)
    br_off = torch.zeros(1, 2, size, size)
    tl_off[0, :, 2, 1] = torch.tensor([0.25, 0.5])  # x, y
    br_off[0, :, 5, 6] = torch.tensor([0.75, 0.125])
    return [tl_heat, br_heat, tl_tag, br_tag, tl_off, br_off]


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def decode_planted(maps: list[torch.Tensor], no_border: bool = False) -> list[float]:
    """The single pair of the top-1 corners of each type."""
    return decode_detections(*maps, k=1, kernel=3, ae_threshold=0.5, num_dets=1, no_border=no_border)[0, 0].tolist()


def test_hand_computed_box():
    row = decode_planted(planted_maps())
    assert row[:4] == pytest.approx([1.25, 2.5, 6.75, 5.125])
    assert row[4:] == pytest.approx([(sigmoid(2.0) + sigmoid(1.0)) / 2, sigmoid(2.0), sigmoid(1.0), 1.0], abs=1e-6)


@pytest.mark.parametrize("change", ["class", "tag", "inverted"])
def test_rejections(change):
    maps = planted_maps()
    if change == "class":
        maps[1][0, 1, 5, 6], maps[1][0, 0, 5, 6] = -8.0, 1.0
    elif change == "tag":
        maps[3][0, 0, 5, 6] = 0.6
    else:
        maps[1][0, 1, 5, 6], maps[1][0, 1, 1, 0] = -8.0, 1.0
    assert decode_planted(maps)[4] == REJECTED_SCORE


def test_no_border_rejects_corner_on_the_map_edge():
    maps = planted_maps()
    maps[1][0, 1, 5, 6], maps[1][0, 1, 5, 7] = -8.0, 1.0  # br corner on the last column
    assert decode_planted(maps)[4] > 0.5
    assert decode_planted(maps, no_border=True)[4] == REJECTED_SCORE
    maps = planted_maps()
    maps[0][0, 1, 2, 1], maps[0][0, 1, 0, 1] = -8.0, 2.0  # tl corner on the first row
    assert decode_planted(maps)[4] > 0.5
    assert decode_planted(maps, no_border=True)[4] == REJECTED_SCORE


def test_keep_peaks_keeps_window_maxima_and_ties():
    heat = torch.tensor([[1.0, 3.0, 0.0, 0.0], [2.0, 0.5, 0.0, 2.0], [0.0, 0.0, 0.0, 2.0], [5.0, 0.0, 0.0, 0.0]])
    expected = torch.tensor([[0.0, 3.0, 0.0, 0.0], [0.0, 0.0, 0.0, 2.0], [0.0, 0.0, 0.0, 2.0], [5.0, 0.0, 0.0, 0.0]])
    heat, expected = heat.reshape(1, 1, 4, 4), expected.reshape(1, 1, 4, 4)
    assert torch.equal(keep_peaks(heat, 3), expected)
    assert torch.equal(keep_peaks(heat, 1), heat)


def test_too_many_detections_for_k_raise():
    with pytest.raises(ValueError, match="num_dets"):
        decode_detections(*planted_maps(), k=2, num_dets=5)
