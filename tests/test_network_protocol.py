"""The network contract (model/protocol.py): the eager models, the fast path and the ONNX network each
give a detector the same answers, and building a detector changes nothing on the network."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cornernet_saccade import CornerNet, CornerNetSaccade, CornerNetSqueeze, Detector
from cornernet_saccade.backends.fast import FastNetwork
from cornernet_saccade.backends.onnx import OnnxNetwork, export_onnx
from cornernet_saccade.inference.cornernet_tester import CornerNetDetector
from cornernet_saccade.inference.saccade_detector import SaccadeDetector
from cornernet_saccade.inference.settings import SaccadeConfig
from cornernet_saccade.model.protocol import DetectionNetwork

TINY = dict(num_classes=2, num_stacks=1, dims=(8, 8, 8, 8), modules=(1, 1, 1, 1), stem_dim=4, pool_dim=4, head_dim=4)
NAMES = ["cat", "dog"]
STORED = {"top_k": 7, "num_dets": 5}
#: architecture name, attention heads, output stride: the facts of each network class.
EXPECTED = {CornerNetSaccade: ("saccade", True, 4), CornerNetSqueeze: ("squeeze", False, 8), CornerNet: ("cornernet", False, 4)}


def answers(network: DetectionNetwork) -> tuple:
    settings = dict(network.test_settings) if network.test_settings is not None else None
    return (network.architecture, network.has_attention, network.output_stride, network.num_classes,
            network.class_names, settings, network.device)


@pytest.mark.parametrize("model_class", list(EXPECTED))
def test_model_fast_path_and_onnx_network_give_the_same_answers(model_class, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = model_class(**TINY, class_names=NAMES, test_settings=STORED).eval()
    size = 255 if model.has_attention else 127  # a side each network's detector feeds
    onnx_network = OnnxNetwork(export_onnx(model, tmp_path / "m.onnx", size=size, dynamic_size=False))
    expected = (*EXPECTED[model_class], 2, NAMES, STORED, torch.device("cpu"))
    for network in (model, FastNetwork(model), onnx_network):
        assert isinstance(network, DetectionNetwork)
        assert answers(network) == expected, type(network).__name__
    assert model.input_sizes is None and onnx_network.input_sizes is not None and onnx_network.input_sizes.accepts(size)


def test_building_a_detector_leaves_the_network_as_it_was() -> None:
    """Class names and settings given to a detector are the detector's, not written back to the
    network (load_detector once set the model's class names as a side effect)."""
    model = CornerNetSaccade(**TINY, class_names=NAMES, test_settings=STORED).eval()
    detector = Detector(model, class_names=["a", "b"], top_k=9, num_dets=9)
    assert isinstance(detector, SaccadeDetector) and detector.class_names == ["a", "b"]
    assert (detector.config.top_k, detector.config.num_dets) == (9, 9)
    assert model.class_names == NAMES and model.test_settings == STORED


def test_settings_are_resolved_once() -> None:
    """A resolved settings object is taken as it is (not merged again); stored settings are the
    defaults that keyword overrides go on top of."""
    model = CornerNetSaccade(**TINY, test_settings=STORED).eval()
    settings = SaccadeConfig(top_k=3, num_dets=3)
    assert SaccadeDetector(model, settings).config is settings
    assert (SaccadeDetector(model, score_threshold=0.5).config.top_k, SaccadeDetector(model).config.num_dets) == (7, 5)
    squeeze = CornerNetSqueeze(**TINY).eval()
    tester = Detector(squeeze)
    assert isinstance(tester, CornerNetDetector) and (tester.config.top_k, tester.config.flip) == (20, False)  # Squeeze's
    with pytest.raises(TypeError, match="CornerNetTestConfig"):
        Detector(squeeze, SaccadeConfig())
