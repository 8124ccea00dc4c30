"""One optimizer step split over processes (DDP, gloo on CPU) or micro-batches equals one step on
the whole batch.

The reference is computed here, independently of the trainer: the first global batch of the data
stream through the network, the *default* loss (counts of this batch, as the original) and one
backward pass. Adam's first moment after one step is ``(1 - beta1) * gradient``, so comparing the
moments stored in the checkpoints compares gradients, including their scale (Adam's weight update
alone would hide a wrong overall factor).

BatchNorm is ``frozen`` in these runs: with batch statistics each process (or micro-batch)
normalises with the statistics of its own images, which differs from the whole batch's by
construction (``batchnorm: sync`` removes that on CUDA).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from engine_fixtures import one_thread, tiny_config, tiny_config_dict, write_box_dataset  # noqa: F401

from cornernet_saccade.backends.distributed import DistContext
from cornernet_saccade.data.load import load_dataset
from cornernet_saccade.data.samples import TrainingSampleDataset, collate
from cornernet_saccade.engine.loader import IndexStream
from cornernet_saccade.engine.loss import CornerNetSaccadeLoss, loss_normalizers
from cornernet_saccade.engine.train_config import TrainConfig
from cornernet_saccade.engine.trainer import build_model, run_training
from cornernet_saccade.model.checkpoint import read_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")
REPO = Path(__file__).resolve().parents[1]
BETA1 = 0.9


@pytest.fixture(scope="module")
def train_json(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_box_dataset(tmp_path_factory.mktemp("boxes"), 8, seed=3)


def one_step_config(train_json: Path, out: Path, **top) -> TrainConfig:
    return tiny_config(train_json, out, batchnorm="frozen", optim={"lr": 1e-3, "max_iter": 1, "decay_steps": []}, **top)


def first_batch(config: TrainConfig) -> dict[str, torch.Tensor]:
    """The first global batch of the data stream."""
    samples = TrainingSampleDataset(load_dataset(config.data.train), config.sampling, seed=config.seed)
    items = []
    for epoch, index in IndexStream(config.seed, len(samples)).keys(0, config.batch_size):
        samples.set_epoch(epoch)
        items.append(samples[index])
    return collate(items)


def reference_gradients(config: TrainConfig) -> list[torch.Tensor]:
    """Gradients of the trainable parameters for the first global batch, on one process."""
    model = build_model(config, DistContext(0, 1, torch.device("cpu")), init_weights=False)
    batch = first_batch(config)
    CornerNetSaccadeLoss()(model(batch["image"]), batch).total.backward()
    return [p.grad for p in model.parameters() if p.requires_grad]


def stored_first_moments(checkpoint: Path) -> list[torch.Tensor]:
    state = read_checkpoint(checkpoint).training_state["optimizer"]["state"]
    return [state[i]["exp_avg"] for i in sorted(state)]


def assert_same_gradients(checkpoint: Path, expected: list[torch.Tensor]) -> None:
    moments = stored_first_moments(checkpoint)
    assert len(moments) == len(expected)
    for moment, gradient in zip(moments, expected):
        scale = float(gradient.abs().max())
        torch.testing.assert_close(moment / (1 - BETA1), gradient, rtol=1e-4, atol=1e-5 * scale + 1e-12)


@pytest.fixture(scope="module")
def reference(train_json: Path, tmp_path_factory: pytest.TempPathFactory) -> list[torch.Tensor]:
    gradients = reference_gradients(one_step_config(train_json, tmp_path_factory.mktemp("unused")))
    assert sum(float(g.abs().sum()) for g in gradients) > 0
    return gradients


def test_loss_parts_with_whole_batch_counts_add_up(train_json: Path, tmp_path: Path) -> None:
    """Each component of the whole batch's loss is the sum of its halves' losses computed with the
    whole batch's counts; without counts the loss is the original's (its own batch's counts)."""
    config = one_step_config(train_json, tmp_path)
    model = build_model(config, DistContext(0, 1, torch.device("cpu")), init_weights=False)
    batch = first_batch(config)
    loss = CornerNetSaccadeLoss()
    with torch.no_grad():
        outputs = model(batch["image"])
        whole = loss(outputs, batch).components
        counts = loss_normalizers(batch)
        assert loss(outputs, batch, counts).components == whole
        assert int(counts["objects"]) == int(batch["tag_mask"].sum()) > 0
        halves = [{k: v[part] for k, v in batch.items()} for part in (slice(0, 1), slice(1, 4))]
        parts = [loss(model(half["image"]), half, counts).components for half in halves]
        alone = loss(model(halves[0]["image"]), halves[0]).components
    for name, value in whole.items():
        torch.testing.assert_close(parts[0][name] + parts[1][name], value, rtol=1e-5, atol=1e-6)
    assert alone["offset"] != parts[0]["offset"] or alone["focal"] != parts[0]["focal"]


def test_single_process_batch_matches_reference(train_json: Path, tmp_path: Path, reference) -> None:
    result = run_training(one_step_config(train_json, tmp_path / "run"))
    assert_same_gradients(result.checkpoint, reference)


def test_gradient_accumulation_matches_whole_batch(train_json: Path, tmp_path: Path, reference) -> None:
    """batch 4 as 2 micro-batches of 2 (and as 4 of 1)."""
    for accum in (2, 4):
        result = run_training(one_step_config(train_json, tmp_path / f"accum{accum}", grad_accum=accum))
        assert_same_gradients(result.checkpoint, reference)


def test_two_processes_match_whole_batch(train_json: Path, tmp_path: Path, reference) -> None:
    """torchrun with 2 processes x 2 images (DDP, gloo) == 1 process x 4 images, and the same weights."""
    config_path = tmp_path / "ddp.yaml"
    config = tiny_config_dict(train_json, tmp_path / "ddp", batchnorm="frozen")
    config["optim"] = {"lr": 1e-3, "max_iter": 1, "decay_steps": []}
    config_path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "cornernet_saccade", "train", "--config", str(config_path)]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    checkpoint = tmp_path / "ddp" / "checkpoint_0000001.pt"
    assert_same_gradients(checkpoint, reference)
    single = run_training(one_step_config(train_json, tmp_path / "single"))
    ddp_weights, single_weights = read_checkpoint(checkpoint).state_dict, read_checkpoint(single.checkpoint).state_dict
    for key, value in single_weights.items():
        torch.testing.assert_close(ddp_weights[key], value, rtol=1e-5, atol=1e-7)
    assert done.stdout.count("finished at iteration 1") == 1  # only rank 0 reports
