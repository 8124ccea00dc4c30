"""The int8 backend: what it refuses (with the reason), the calibration it takes from the detector's own
crops, and that the bundled shapes model in int8 finds what eager fp32 finds. The quantized network
needs torchao (the ``int8`` extra, installed by ``make test``); its tests skip with that reason where it
is missing."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_backend_auto import matched, scenes

from cornernet_saccade import CornerNetSaccade, CornerNetSqueeze
from cornernet_saccade.backends import int8, load_detector, make_backend
from cornernet_saccade.backends.fast import FastNetwork
from cornernet_saccade.backends.int8 import Int8Network, calibration_inputs, int8_available
from cornernet_saccade.cli import main
from cornernet_saccade.datasets.shapes import render_scene
from cornernet_saccade.errors import ConfigError
from cornernet_saccade.inference.detector_base import detector_settings
from cornernet_saccade.model.geometry import CROP_SIZE

needs_torchao = pytest.mark.skipif(not int8_available(), reason="torchao is not installed (pip install torchao)")


def calibration_scenes(count: int = 3) -> list[np.ndarray]:
    """Generated shapes scenes of a seed that neither training, tuning nor the agreement check uses."""
    rng = np.random.default_rng(4711)
    return [render_scene(rng)[0] for _ in range(count)]


def test_calibration_takes_the_crops_the_detector_feeds() -> None:
    model = CornerNetSaccade.from_pretrained("shapes").eval()
    fast = FastNetwork(model)
    fed: list[tuple[int, ...]] = []
    fast.register_forward_pre_hook(lambda module, args: fed.append(tuple(args[0].shape)))
    batches = calibration_inputs(fast, detector_settings(model, {}), calibration_scenes(1))
    assert [tuple(b.shape) for b in batches] == fed and fed  # every network call, in order
    assert all(b.dtype == torch.float32 and b.shape[1:] == (3, CROP_SIZE, CROP_SIZE) for b in batches)
    assert sum(b.shape[0] for b in batches) > 2  # the two first views and zoomed crops


def test_int8_refuses_what_it_cannot_run(monkeypatch: pytest.MonkeyPatch) -> None:
    model = CornerNetSaccade.from_pretrained("shapes").eval()
    with pytest.raises(ConfigError, match="needs calibration images"):
        make_backend(model, "int8")
    batch = [torch.zeros(1, 3, CROP_SIZE, CROP_SIZE)]
    with pytest.raises(ConfigError, match="CornerNet-Saccade networks only"):
        Int8Network(CornerNetSqueeze.from_pretrained("shapes-squeeze"), batch)
    with pytest.raises(ConfigError, match="needs calibration images"):
        Int8Network(model, [])
    monkeypatch.setattr(int8, "int8_available", lambda: False)
    with pytest.raises(ConfigError, match="pip install torchao"):
        Int8Network(model, batch)


def test_detect_int8_without_calibration_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    image = tmp_path / "scene.png"
    Image.fromarray(calibration_scenes(1)[0]).save(image)
    code = main(["detect", "--weights", "shapes", str(image), "--out", str(tmp_path / "out"), "--backend", "int8",
                 "--threads", "1"])
    err = capsys.readouterr().err
    assert code != 0 and "needs calibration images: --calibration" in err and "Traceback" not in err


@needs_torchao
def test_int8_finds_what_eager_finds(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bundled shapes model, int8 calibrated on scenes of another seed: recall and precision of
    its confident boxes against eager fp32's on the agreement scenes, pooled: >= 0.97 each. A batch
    larger than the graph takes runs in pieces with the same outputs."""
    torch.set_num_threads(2)
    eager_detector = load_detector("shapes", backend="eager")
    int8_detector = load_detector("shapes", backend="int8", calibration=calibration_scenes(16))
    assert isinstance(int8_detector.model, Int8Network)
    counts = np.zeros(4, dtype=int)
    for pixels in scenes("shapes_scene.jpg"):
        eager, quantized = eager_detector(pixels), int8_detector(pixels)
        counts += [*matched(eager, quantized), *matched(quantized, eager)]
    assert counts[0] >= 10
    recall, precision = counts[1] / counts[0], counts[3] / max(counts[2], 1)
    assert recall >= 0.97 and precision >= 0.97, (recall, precision, counts)
    network = int8_detector.model
    crops = torch.randn(3, 3, CROP_SIZE, CROP_SIZE, generator=torch.Generator().manual_seed(0))
    whole = network(crops)
    monkeypatch.setattr(int8, "MAX_BATCH", 2)
    pieces = network(crops)
    for name in ("tl_heats", "br_tags", "attentions"):
        first, second = getattr(whole, name)[0], getattr(pieces, name)[0]
        for a, b in zip(first if name == "attentions" else [first], second if name == "attentions" else [second]):
            assert a.shape == b.shape and torch.allclose(a, b, rtol=1e-4, atol=1e-4 * float(a.abs().max()))
