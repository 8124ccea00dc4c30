"""The CornerNet tester's uint8 resize against OpenCV's ``cv2.resize(INTER_LINEAR)``, as the original
resizes each test image (outputs recorded with OpenCV 4.10.0: docs/reference.md §B12)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cornernet_saccade.inference.cornernet_tester import resize_uint8

RECORDED = np.load(Path(__file__).parent / "data" / "opencv_resize.npz")


@pytest.mark.parametrize("index", range(len(RECORDED["sizes"])))
def test_resize_equals_opencv(index: int) -> None:
    """Enlargements by 1.5x and 2x, halving, and sizes with non-integer factors in each axis: every
    value equal (OpenCV rounds the first and last rows of an enlargement its own way)."""
    height, width = (int(v) for v in RECORDED["sizes"][index])
    expected = RECORDED[f"resized_{index}"]
    ours = resize_uint8(RECORDED["image"], (height, width))
    assert ours.dtype == np.uint8 and ours.shape == expected.shape == (height, width, 3)
    np.testing.assert_array_equal(ours, expected)
