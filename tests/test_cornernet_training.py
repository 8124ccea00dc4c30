"""CornerNet-Squeeze / CornerNet sampler, targets and loss against the original's goldens
(golden_loss_{squeeze,cornernet}, extracted by tests/data/make_loss_cornernet_golden.py)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from engine_fixtures import one_thread, tiny_config_dict, write_box_dataset  # noqa: F401
from test_engine import assert_same_training_state

from cornernet_saccade.cli import main
from cornernet_saccade.data.samples import CornerNetSamplingConfig, build_cornernet_sample, crop_border
from cornernet_saccade.data.targets import build_cornernet_targets
from cornernet_saccade.engine.loss import CornerNetLoss
from cornernet_saccade.engine.train_config import train_config_from_dict
from cornernet_saccade.engine.trainer import run_training
from cornernet_saccade.errors import CheckpointError, ConfigError
from cornernet_saccade.model.checkpoint import read_checkpoint
from cornernet_saccade.model.cornernet_saccade import CornerNetSaccade
from cornernet_saccade.model.cornernet_squeeze import CornerNetSqueeze
from cornernet_saccade.model.heads import HeadOutputs

GOLDEN = Path(__file__).parent / "data" / "loss_cornernet_golden.npz"
OUTPUT_SIZES = {"squeeze": 64, "cornernet": 128}
TOTALS = {"squeeze": 4147.0815, "cornernet": 16547.262}
#: Input image sizes (H, W) of the two golden sampler images.
IMAGE_SIZES = ((480, 640), (360, 500))


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    return dict(np.load(GOLDEN))


def golden_targets(golden: dict[str, np.ndarray], model: str) -> dict[str, np.ndarray]:
    """The original sampler's batch-of-2 targets, heatmaps rebuilt from their nonzero entries."""
    shape = tuple(golden[f"{model}/heat/shape"])
    targets = {}
    for corner in ("tl", "br"):
        heat = np.zeros(int(np.prod(shape)), np.float32)
        heat[golden[f"{model}/heat/{corner}_index"]] = golden[f"{model}/heat/{corner}_value"]
        targets[f"{corner}_heat"] = heat.reshape(shape)
    for key in ("tag_mask", "tl_off", "br_off", "tl_ind", "br_ind"):
        targets[key] = golden[f"{model}/sample/gt_{key}"]
    return targets


def config(model: str) -> CornerNetSamplingConfig:
    return CornerNetSamplingConfig(output_size=OUTPUT_SIZES[model])


def own_targets(golden: dict[str, np.ndarray], model: str, b: int) -> dict[str, np.ndarray]:
    dets = golden[f"{model}/final_dets/b{b}"]
    cfg = config(model)
    return build_cornernet_targets(dets[:, :4], dets[:, 4].astype(np.int64) - 1, num_classes=80,
                                   input_size=511, output_size=cfg.output_size, gaussian_iou=0.3,
                                   max_objects=128)


@pytest.mark.parametrize("model", ["squeeze", "cornernet"])
@pytest.mark.parametrize("b", [0, 1])
def test_targets_equal_original(golden: dict[str, np.ndarray], model: str, b: int) -> None:
    expected = {k: v[b] for k, v in golden_targets(golden, model).items()}
    ours = own_targets(golden, model, b)
    assert set(ours) == set(expected)
    for key in ("tl_heat", "br_heat", "tl_ind", "br_ind"):
        np.testing.assert_array_equal(ours[key], expected[key], err_msg=key)
    np.testing.assert_array_equal(ours["tag_mask"], expected["tag_mask"].astype(bool))
    for key in ("tl_off", "br_off"):  # NumPy 1 / 2 float promotion: <= 4.4e-6 apart (GOLDEN.md)
        np.testing.assert_allclose(ours[key], expected[key], rtol=0, atol=1e-5, err_msg=key)


class ReplayRng:
    """Stands for ``numpy.random.Generator`` in :func:`build_cornernet_sample`, giving the original's
    recorded draws: the crop scale, the centre x then y, the flip (the original flips when its
    uniform draw is > 0.5, ours when ``random() < 0.5``); no colour change."""

    def __init__(self, scale: float, ctx: int, cty: int, flip_uniform: float) -> None:
        self.scale, self.centres, self.flip = scale, [ctx, cty], 1.0 - flip_uniform

    def choice(self, values: tuple[float, ...]) -> float:
        return min(values, key=lambda v: abs(v - self.scale))

    def integers(self, low: int, high: int) -> int:
        value = self.centres.pop(0)
        assert low <= value < high
        return value

    def random(self) -> float:
        return self.flip

    def permutation(self, n: int) -> np.ndarray:
        return np.arange(n)

    def uniform(self, low: float, high: float) -> float:
        return 0.0

    def normal(self, loc: float, scale: float, size: int) -> np.ndarray:
        return np.zeros(size)


@pytest.mark.parametrize("b", [0, 1])
def test_sampler_boxes_equal_original(golden: dict[str, np.ndarray], b: int) -> None:
    """The crop, resize, clip and flip of the original, replaying its random draws."""
    in_dets = golden[f"squeeze/crop_in_dets/b{b}"]
    image = np.zeros((*IMAGE_SIZES[b], 3), np.float32)
    rng = ReplayRng(*golden["draws"][b])
    sample = build_cornernet_sample(image, in_dets[:, :4], in_dets[:, 4].astype(np.int64) - 1, rng,  # type: ignore[arg-type]
                                    config("squeeze"))
    expected = own_targets(golden, "squeeze", b)
    for key in ("tl_heat", "br_heat", "tl_ind", "br_ind", "tag_mask"):
        np.testing.assert_array_equal(sample[key], expected[key], err_msg=key)
    assert sample["image"].shape == (3, 511, 511)


def test_crop_border_halves_until_it_fits() -> None:
    assert crop_border(128, 640) == 128
    assert crop_border(128, 256) == 64
    assert crop_border(128, 100) == 32


def golden_outputs(model: str, shas: list[str]) -> HeadOutputs:
    """The golden network outputs from ``default_rng(2024)`` (2 stacks, drawing order of GOLDEN.md),
    each checked against its recorded sha256."""
    rng = np.random.default_rng(2024)
    size = OUTPUT_SIZES[model]
    out = HeadOutputs()
    recipe = (("tl_heats", 80, 1.0, -2.0), ("br_heats", 80, 1.0, -2.0), ("tl_tags", 1, 1.0, 0.0),
              ("br_tags", 1, 1.0, 0.0), ("tl_offs", 2, 0.5, 0.5), ("br_offs", 2, 0.5, 0.5))
    for _ in range(2):
        for field, channels, scale, shift in recipe:
            values = (rng.standard_normal((2, channels, size, size)) * scale + shift).astype(np.float32)
            assert hashlib.sha256(values.tobytes()).hexdigest() == shas.pop(0), field
            getattr(out, field).append(torch.from_numpy(values))
    return out


@pytest.mark.parametrize("model", ["squeeze", "cornernet"])
def test_loss_equals_original(golden: dict[str, np.ndarray], model: str) -> None:
    outputs = golden_outputs(model, [str(s) for s in golden[f"{model}/outputs_sha256"]])
    targets = {k: torch.from_numpy(v) for k, v in golden_targets(golden, model).items()}
    result = CornerNetLoss()(outputs, targets)
    meta = {name: golden[f"{model}/meta/{name}"] for name in (
        "focal_tl_per_stack", "focal_br_per_stack", "pull_per_stack_unweighted", "push_per_stack_unweighted",
        "off_tl_per_stack", "off_br_per_stack")}
    expected = {
        "focal": (meta["focal_tl_per_stack"].sum() + meta["focal_br_per_stack"].sum()) / 2,
        "pull": 0.1 * meta["pull_per_stack_unweighted"].sum() / 2,
        "push": 0.1 * meta["push_per_stack_unweighted"].sum() / 2,
        "offset": (meta["off_tl_per_stack"].sum() + meta["off_br_per_stack"].sum()) / 2,
    }
    assert set(result.components) == set(expected)
    for name, value in expected.items():
        assert result.components[name].item() == pytest.approx(value, rel=1e-5), name
    assert result.total.item() == pytest.approx(float(golden[f"{model}/loss/total"][0]), rel=1e-5)
    assert result.total.item() == pytest.approx(TOTALS[model], rel=1e-6)


TINY_SQUEEZE = {"num_classes": 3, "num_stacks": 2, "dims": [8, 8, 8, 8], "modules": [1, 1, 1, 1],
                "stem_dim": 8, "pool_dim": 8, "head_dim": 8}


@pytest.mark.usefixtures("one_thread")
def test_tiny_squeeze_trains_resumes_and_names_its_architecture(tmp_path: Path) -> None:
    """4 iterations straight == 2, then --resume for 2 more; the checkpoint rebuilds a Squeeze
    network and refuses to load as a saccade one."""
    train = write_box_dataset(tmp_path / "boxes", 4)
    settings = {"architecture": "squeeze", "model": TINY_SQUEEZE, "sampling": {"input_size": 127, "border": 32,
                "max_objects": 8}, "optim": {"lr": 1e-3, "max_iter": 4, "decay_steps": [3]},
                "checkpoint_every": 2, "batch_size": 2}
    config = tiny_config_dict(train, tmp_path / "straight")
    config.update(settings)
    straight = run_training(train_config_from_dict(config, "tiny squeeze"))
    assert straight.iteration == 4 and set(straight.loss) >= {"focal", "pull", "push", "offset"}
    middle = tmp_path / "straight" / "checkpoint_0000002.pt"
    out = tmp_path / "resumed"
    assert main(["train", "--resume", str(middle), "--out", str(out)]) == 0
    assert_same_training_state(straight.checkpoint, out / "checkpoint_0000004.pt")
    assert read_checkpoint(straight.checkpoint).model_config["architecture"] == "squeeze"
    model = CornerNetSqueeze.from_checkpoint(straight.checkpoint)
    assert model.config.dims == (8, 8, 8, 8) and model.class_names == ["red", "green", "blue"]
    with pytest.raises(CheckpointError, match="'squeeze' network"):
        CornerNetSaccade.from_checkpoint(straight.checkpoint)


@pytest.mark.usefixtures("one_thread")
def test_tiny_squeeze_is_evaluated_during_training(tmp_path: Path) -> None:
    """eval_every with a Squeeze network runs the CornerNet tester on data.val (a saccade
    detector would need attention maps the network does not have)."""
    train = write_box_dataset(tmp_path / "boxes", 2)
    val = write_box_dataset(tmp_path / "boxes", 2, seed=3, name="val")
    config = tiny_config_dict(train, tmp_path / "run")
    config.update({"architecture": "squeeze", "model": TINY_SQUEEZE, "data": {"train": str(train), "val": str(val)},
                   "sampling": {"input_size": 127, "border": 32, "max_objects": 8}, "batch_size": 2,
                   "optim": {"lr": 1e-3, "max_iter": 2, "decay_steps": []}, "eval_every": 2, "val_every": 0})
    run_training(train_config_from_dict(config, "tiny squeeze"))
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    evaluations = [r for r in records if r["kind"] == "eval"]
    assert [r["iteration"] for r in evaluations] == [2] and evaluations[0]["images"] == 2
    assert 0 <= evaluations[0]["AP"] <= 1


def test_config_architecture_must_match_its_sections(tmp_path: Path) -> None:
    config = tiny_config_dict(tmp_path / "train.json", tmp_path / "run", architecture="squeeze",
                              sampling={"input_size": 127})
    with pytest.raises(ConfigError, match="cfg: model: fire modules need even widths"):
        train_config_from_dict({**config, "model": {**TINY_SQUEEZE, "dims": [8, 8, 9, 8]}}, "cfg")
    with pytest.raises(ConfigError, match="cfg: sampling.output_size is 32, but the model gives 16"):
        train_config_from_dict({**config, "model": TINY_SQUEEZE, "sampling": {"input_size": 127, "output_size": 32}},
                               "cfg")
