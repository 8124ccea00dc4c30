"""The bundled default models: loadable by name, offline, and they find objects in unseen scenes."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cornernet_saccade import CornerNetSaccade, CornerNetSqueeze, Detector
from cornernet_saccade.datasets.shapes import CLASS_NAMES, SceneConfig, render_scene
from cornernet_saccade.inference.detector import DetectorBase
from cornernet_saccade.model.checkpoint import bundled_weights_path, read_checkpoint

#: Seeds never used by the training data (make-shapes --seed 1) nor by the bundled example.
UNSEEN_SEEDS = (9001, 9002, 9003)
SCENES = SceneConfig(min_width=640, max_width=800, min_height=480, max_height=600, max_objects=12,
                     min_object_size=24, max_object_size=200)


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    return inter / (area(box) + area(boxes) - inter)


def recall(detector: DetectorBase, min_score: float = 0.3, min_iou: float = 0.5) -> float:
    """Share of ground-truth objects found by a same-class detection scoring >= ``min_score``."""
    found = total = 0
    for seed in UNSEEN_SEEDS:
        image, boxes, labels = render_scene(np.random.default_rng(seed), SCENES)
        result = detector(image)
        keep = result.scores >= min_score
        for box, label in zip(boxes, labels):
            same = keep & (result.labels == label)
            found += bool(same.any() and iou(box, result.boxes[same]).max() >= min_iou)
        total += len(boxes)
    return found / total


BUNDLED = {"shapes": (CornerNetSaccade, list(CLASS_NAMES)), "trees": (CornerNetSaccade, ["tree"]),
           "shapes-squeeze": (CornerNetSqueeze, list(CLASS_NAMES))}


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_models_load_by_name_with_class_names(name):
    cls, classes = BUNDLED[name]
    model = cls.from_pretrained(name)
    assert model.num_classes == len(classes) and not model.training
    assert json.loads(read_checkpoint(bundled_weights_path(name)).metadata["class_names"]) == classes


@pytest.mark.parametrize("name, floor", [("shapes", 0.3), ("shapes-squeeze", 0.3)])
def test_shapes_models_find_objects_a_random_model_misses(name, floor):
    cls = BUNDLED[name][0]
    trained = Detector(cls.from_pretrained(name))
    torch.manual_seed(0)
    untrained = Detector(cls(trained.model.config).eval())
    trained_recall, untrained_recall = recall(trained), recall(untrained)
    assert untrained_recall < 0.05
    assert trained_recall >= floor, trained_recall


def test_bundled_squeeze_carries_its_test_settings():
    """shapes-squeeze was exported with ``--set top_k=50`` (scenes hold up to 30 objects, more than
    the official Squeeze K of 20 corners): its detector uses it, the rest stays official."""
    model = CornerNetSqueeze.from_pretrained("shapes-squeeze")
    assert model.test_settings == {"top_k": 50}
    detector = Detector(model)
    assert detector.config.top_k == 50 and detector.config.num_dets == 100 and not detector.config.flip
