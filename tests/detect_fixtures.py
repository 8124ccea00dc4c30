"""The tiny 3-class model, its weights file and a folder of test images, shared by the ``detect``
tests (the fixtures are made available through conftest.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cornernet_saccade import CornerNetSaccade
from cornernet_saccade.cli import main
from cornernet_saccade.model.checkpoint import save_checkpoint

NAMES = ["circle", "star", "square"]


def tiny_model() -> CornerNetSaccade:
    """A 3-class 8-channel network whose random outputs still give boxes and zoomed crops: equal
    tags (every corner pair matches), class 0 always the top heat, attention above the threshold."""
    torch.manual_seed(0)
    model = CornerNetSaccade(num_classes=3, num_stacks=1, dims=(8, 8, 8, 8), stem_dim=8, pool_dim=8, head_dim=8)
    with torch.no_grad():
        for tag in (model.tl_tags[0][1], model.br_tags[0][1]):
            tag.weight.zero_()
            tag.bias.zero_()
        for heat in (model.tl_heats[0][1], model.br_heats[0][1]):
            heat.weight.copy_(heat.weight[:1].expand_as(heat.weight) * 3)
            heat.bias.copy_(torch.tensor([0.0, -0.5, -1.0]))
        for attention in model.att_modules[0]:
            attention[1].bias.fill_(0.5)
    return model.eval()


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "tiny.pt"
    save_checkpoint(path, tiny_model(), class_names=NAMES)
    return path


@pytest.fixture
def folder(tmp_path) -> Path:
    root = tmp_path / "images"
    root.mkdir()
    rng = np.random.default_rng(0)
    for name, size in (("first.png", (120, 160)), ("second.jpg", (150, 100))):
        pixels = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
        pixels[20:70, 30:90] = (230, 40, 40)
        Image.fromarray(pixels).save(root / name)
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg" + bytes(200))
    (root / "notes.txt").write_text("not an image")
    return root


def detect(*args: str) -> int:
    return main(["detect", *map(str, args)])
