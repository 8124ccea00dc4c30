"""Tiny generated datasets and configs for the training-engine tests (fast on 2 CPU cores)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from cornernet_saccade.engine.train_config import TrainConfig, train_config_from_dict

CLASS_NAMES = ("red", "green", "blue")
#: A 3-class, 2-stack network with 8 channels everywhere.
TINY_MODEL = {"num_classes": 3, "num_stacks": 2, "dims": [8, 8, 8, 8], "stem_dim": 8, "pool_dim": 8, "head_dim": 8}


def write_box_dataset(root: Path, num_images: int, seed: int = 0, size: int = 128, name: str = "train") -> Path:
    """``num_images`` ``size`` x ``size`` PNGs with 1-3 filled rectangles (class = colour) on noise,
    and their COCO file ``root/<name>.json`` (category ids 1..3, file names relative to ``root``).

    Rectangles are 10-32 px, so a training crop scales its reference object to 16-32 px: smaller
    than the tests' 127 px crops (the sampler's scale tiers assume 255 px crops).
    """
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for image_id in range(1, num_images + 1):
        pixels = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
        for _ in range(int(rng.integers(1, 4))):
            label = int(rng.integers(3))
            w, h = (int(v) for v in rng.integers(10, 33, 2))
            x, y = int(rng.integers(0, size - w)), int(rng.integers(0, size - h))
            pixels[y:y + h, x:x + w] = 0
            pixels[y:y + h, x:x + w, label] = 230
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": label + 1,
                                "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
        file_name = f"images/{name}_{image_id:03d}.png"
        Image.fromarray(pixels).save(root / file_name)
        images.append({"id": image_id, "file_name": file_name, "width": size, "height": size})
    categories = [{"id": i + 1, "name": n} for i, n in enumerate(CLASS_NAMES)]
    path = root / f"{name}.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


def tiny_config_dict(train: Path, out_dir: Path, **top: Any) -> dict[str, Any]:
    """Plain config of the tiny network on 127x127 crops, 6 iterations of batch 4, no validation, in
    fp32 (``amp: auto`` would make the tests' arithmetic depend on whether the CPU has AMX)."""
    config: dict[str, Any] = {
        "data": {"train": str(train)},
        "model": dict(TINY_MODEL),
        "sampling": {"input_size": 127, "output_size": 32, "num_classes": 3, "max_objects": 8},
        "optim": {"lr": 1e-3, "max_iter": 6, "decay_steps": [4]},
        "batch_size": 4, "workers": 0, "log_every": 1, "val_every": 0, "checkpoint_every": 3,
        "out_dir": str(out_dir), "device": "cpu", "amp": "none",
    }
    config.update(top)
    return config


def tiny_config(train: Path, out_dir: Path, **top: Any) -> TrainConfig:
    return train_config_from_dict(tiny_config_dict(train, out_dir, **top), "tiny test config")


@pytest.fixture(autouse=False)
def one_thread():
    """Run a test with one torch thread: on a shared 2-core machine two OpenMP threads competing
    with other processes make the tiny models 10x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write_csv_copy(coco_json: Path) -> Path:
    """The dataset of a :func:`write_box_dataset` COCO file as a CSV file beside it (same images and
    boxes, ``image_path,xmin,ymin,xmax,ymax,label``), written by hand from the JSON."""
    document = json.loads(coco_json.read_text())
    names = {c["id"]: c["name"] for c in document["categories"]}
    files = {image["id"]: image["file_name"] for image in document["images"]}
    rows = ["image_path,xmin,ymin,xmax,ymax,label"]
    for a in document["annotations"]:
        x, y, w, h = a["bbox"]
        rows.append(f"{files[a['image_id']]},{x},{y},{x + w},{y + h},{names[a['category_id']]}")
    path = coco_json.with_suffix(".csv")
    path.write_text("\n".join(rows) + "\n")
    return path
