"""The Detections a detector returns, as a user handles them: filtering by class name or label,
indexing, iterating, printing, and pictures that draw only confident detections."""
from __future__ import annotations

import numpy as np
import pytest

from cornernet_saccade.inference.results import Detections
from cornernet_saccade.inference.trace import CropView, DetectionTrace

NAMES = ["square", "circle", "square", "star", "circle", "square", "star"]
LABELS = [2, 0, 2, 1, 0, 2, 1]


def sample(names: list[str] | None = NAMES) -> Detections:
    """Seven detections, best first (scores 0.9 .. 0.3), boxes ``[10i, 0, 10i + 5, 5]``."""
    boxes = np.array([[10 * i, 0, 10 * i + 5, 5] for i in range(7)], np.float32)
    trace = DetectionTrace(crops=[CropView(0, (8.0, 8.0), 1.0, (0, 0, 16, 16))] * 3)
    return Detections(boxes, np.linspace(0.9, 0.3, 7).astype(np.float32), np.array(LABELS), names, trace)


def test_filter_takes_class_names_labels_or_both():
    found = sample()
    assert found.filter(["square"]).class_names == ["square", "square", "square"]
    np.testing.assert_array_equal(found.filter(["square"]).boxes[:, 0], [0, 20, 50])
    assert found.filter(["star", 0]).class_names == ["circle", "star", "circle", "star"]
    assert found.filter(["square"], max_detections=2).scores.tolist() == pytest.approx([0.9, 0.7])
    assert len(found.filter(["tree"])) == 0  # a class with no detection in this image
    with pytest.raises(ValueError, match=r"\['square'\] given by name, but these detections have no class names"):
        sample(names=None).filter(["square"])
    assert len(sample(names=None).filter([2])) == 3


def test_detections_index_iterate_and_len():
    found = sample()
    assert len(found) == 7
    assert found[0] == {"box": [0.0, 0.0, 5.0, 5.0], "score": pytest.approx(0.9), "label": 2, "class_name": "square"}
    assert found[-1]["class_name"] == "star" and found[np.int64(1)]["label"] == 0
    with pytest.raises(IndexError):
        found[7]
    assert [entry["class_name"] for entry in found] == NAMES
    assert list(found) == found.to_dicts()
    assert found[1:3].class_names == ["circle", "square"] and isinstance(found[1:3], Detections)
    assert found[found.scores > 0.65].class_names == ["square", "circle", "square"]
    assert found[[6, 0]].class_names == ["star", "square"] and len(found[[]]) == 0


def test_repr_is_a_short_summary_not_the_arrays():
    text = repr(sample())
    assert text == ("Detections(7 boxes: square 0.90, circle 0.80, square 0.70, star 0.60, circle 0.50, "
                    "... (2 more); 3 views looked at)")
    assert str(sample()) == text
    empty = sample()[[]]
    assert repr(empty) == "Detections(0 boxes; 3 views looked at)"
    assert repr(sample(names=None)[:1]) == "Detections(1 boxes: class 2 0.90; 3 views looked at)"


def test_pictures_draw_only_confident_detections_unless_told_otherwise(tmp_path):
    """The API keeps every box (score_threshold 0.0, for COCO evaluation); its pictures draw those
    scoring at least 0.3, as ``detect``'s, so a hundred weak labels do not hide the image."""
    image = np.full((60, 80, 3), 128, np.uint8)
    found = sample()
    weak = Detections(found.boxes, found.scores - 0.25, found.labels, found.class_names, found.trace)
    confident = weak[weak.scores >= 0.3]
    assert len(confident) == 4
    assert np.array_equal(np.asarray(weak.draw(image)), np.asarray(confident.draw(image, score_threshold=0.0)))
    assert not np.array_equal(np.asarray(weak.draw(image, score_threshold=0.0)), np.asarray(weak.draw(image)))
    weak.save(str(tmp_path / "picture.png"), image, score_threshold=0.5)
    assert (tmp_path / "picture.png").stat().st_size > 0
