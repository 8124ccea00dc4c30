"""The recall analysis on a hand-built case whose answer is known: the stand-in network of
test_saccade finds pure red / green / blue rectangles exactly."""
from __future__ import annotations

import numpy as np
import pytest
from test_saccade import CLASS_NAMES, SCENE, RectangleFinder, scene

from cornernet_saccade.engine.analyze import STAGES, RecallReport, object_stages
from cornernet_saccade.inference.detector import SaccadeDetector
from cornernet_saccade.inference.results import box_iou

PRESENT = np.array([SCENE[0], SCENE[1]], np.float64)
#: A blue object in the ground truth that the image does not show.
ABSENT = np.array([[20.0, 20.0, 60.0, 50.0]])


def stages_of(detector: SaccadeDetector, boxes: np.ndarray, labels: list[int], threshold: float = 0.0) -> np.ndarray:
    return object_stages(detector(scene()), boxes, np.array(labels), threshold)


def test_iou_by_hand():
    iou = box_iou(np.array([[0.0, 0, 10, 10]]), np.array([[0.0, 0, 10, 10], [5.0, 0, 15, 10], [20.0, 20, 30, 30]]))
    np.testing.assert_allclose(iou, [[1.0, 50 / 150, 0.0]])


def test_objects_in_the_image_pass_every_stage_and_a_missing_one_none_after_coverage():
    detector = SaccadeDetector(RectangleFinder(), class_names=CLASS_NAMES, score_threshold=0.0)
    flags = stages_of(detector, np.concatenate([PRESENT, ABSENT]), [0, 1, 2])
    assert flags[:2].all(), dict(zip(STAGES, flags[:2].T))
    assert flags[2, 0], "the first views cover the whole image at a zoom that shows a 40x30 object"
    assert not flags[2, 2:].any(), "nothing detects an object that is not there"


def test_an_object_too_small_for_any_zoom_is_not_covered():
    """Zooms reach at most 4x here, so a 3x3-pixel object never shows at the trained 16 px and up."""
    detector = SaccadeDetector(RectangleFinder(), class_names=CLASS_NAMES, score_threshold=0.0)
    flags = stages_of(detector, np.array([[150.0, 20.0, 153.0, 23.0], SCENE[0]]), [2, 0])
    assert not flags[0, STAGES.index("covered")] and not flags[0, STAGES.index("proposed")]
    assert flags[1, STAGES.index("covered")] and flags[1, STAGES.index("proposed")]


def test_score_threshold_drops_at_found_only():
    detector = SaccadeDetector(RectangleFinder(), class_names=CLASS_NAMES, score_threshold=0.0)
    flags = stages_of(detector, PRESENT, [0, 1], threshold=1.01)
    assert flags[:, STAGES.index("kept")].all() and not flags[:, STAGES.index("found")].any()


def test_wrong_class_is_not_a_detection():
    detector = SaccadeDetector(RectangleFinder(), class_names=CLASS_NAMES, score_threshold=0.0)
    flags = stages_of(detector, PRESENT, [1, 0])
    assert not flags[:, STAGES.index("detected"):].any()


def test_report_rows_by_size_and_class():
    report = RecallReport(["a", "b"])
    stages = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], bool)
    boxes = np.array([[0, 0, 10, 10], [0, 0, 50, 50], [0, 0, 200, 100]], np.float64)
    report.add(stages, boxes, np.array([0, 1, 1]))
    rows = {name: (count, values) for name, count, values in report.rows()}
    assert rows["all"] == (3, [1.0, pytest.approx(2 / 3), pytest.approx(2 / 3), pytest.approx(1 / 3),
                               pytest.approx(1 / 3)])
    assert rows["small"] == (1, [1.0] * 5) and rows["medium"][0] == 1 and rows["large"] == (1, [1.0, 0, 0, 0, 0])
    assert rows["class b"] == (2, [1.0, 0.5, 0.5, 0.0, 0.0])
    assert "class a" in report.table()
