"""The training recipe's options: ``amp: auto`` chosen from the device's capability, the moving
average of the weights (hand-computed, and exact across ``--resume``), and the cosine schedule."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from engine_fixtures import one_thread, tiny_config, write_box_dataset  # noqa: F401
from torch import nn

from cornernet_saccade.backends.distributed import DistContext
from cornernet_saccade.backends.hardware import Capability, choose_amp, choose_backend
from cornernet_saccade.cli import main
from cornernet_saccade.engine import trainer as trainer_module
from cornernet_saccade.engine.train_config import OptimConfig
from cornernet_saccade.engine.trainer import Trainer, run_training, training_amp
from cornernet_saccade.engine.weight_average import WeightAverage
from cornernet_saccade.errors import ConfigError
from cornernet_saccade.model.checkpoint import read_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")
AMX_CPU = Capability("cpu", "Stand-in Xeon", ("avx512f", "avx512_bf16", "amx_tile", "amx_bf16"), True)
AVX512_CPU = Capability("cpu", "Stand-in Xeon", ("avx512f", "avx512_bf16"), False)
OLD_GPU = Capability("cuda", "Stand-in GPU", (), False)
BF16_GPU = Capability("cuda", "Stand-in H100", (), True)


@pytest.fixture(scope="module")
def train_json(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_box_dataset(tmp_path_factory.mktemp("boxes"), 8)


@pytest.mark.parametrize(("capability", "amp", "backend"), [
    (AMX_CPU, "bf16", "fast-bf16"), (AVX512_CPU, "none", "fast"), (OLD_GPU, "none", "fast"),
    (BF16_GPU, "bf16", "fast-bf16"),
])
def test_choices_follow_the_capability(capability: Capability, amp: str, backend: str) -> None:
    chosen_amp, why_amp = choose_amp(capability)
    chosen_backend, why_backend = choose_backend(capability)
    assert (chosen_amp, chosen_backend) == (amp, backend)
    assert capability.name in why_amp and capability.name in why_backend


def test_amp_auto_uses_the_detected_capability_and_says_why(
        train_json: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    for capability, expected in ((AMX_CPU, "bf16"), (AVX512_CPU, "none")):
        monkeypatch.setattr(trainer_module, "detect_capability", lambda device, c=capability: c)
        assert training_amp("auto", cpu)[0] == expected
        trainer = Trainer(tiny_config(train_json, tmp_path / expected, amp="auto"), DistContext(0, 1, cpu))
        assert trainer.amp == expected
        assert f"precision: {choose_amp(capability)[1]}" in trainer.describe()
    # an explicit amp wins over the capability
    assert training_amp("none", cpu) == ("none", "amp: none as configured")
    with pytest.raises(ConfigError, match="fp16 needs CUDA"):
        Trainer(tiny_config(train_json, tmp_path / "fp16", amp="fp16"), DistContext(0, 1, cpu))


def test_weight_average_by_hand() -> None:
    model = nn.BatchNorm1d(1)  # a weight, a bias, running statistics and an integer batch counter
    average = WeightAverage(model, decay=0.5)
    with torch.no_grad():
        model.weight.fill_(3.0)
        model.running_mean.fill_(-1.0)
        model.num_batches_tracked.fill_(7)
    average.update(model)  # d = min(0.5, 2/11) = 2/11: 1 -> 2/11 * 1 + 9/11 * 3
    state = average.network.state_dict()
    assert state["weight"].item() == pytest.approx(2 / 11 + 27 / 11)
    assert state["running_mean"].item() == pytest.approx(-9 / 11)
    assert state["bias"].item() == 0.0 and state["num_batches_tracked"].item() == 7
    assert average.factor(1) == pytest.approx(2 / 11) and average.factor(10**6) == 0.5
    with torch.no_grad():
        model.weight.fill_(5.0)
    before = state["weight"].item()
    average.update(model)  # d = min(0.5, 3/12) = 0.25
    assert average.network.state_dict()["weight"].item() == pytest.approx(0.25 * before + 0.75 * 5.0)
    assert model.weight.item() == 5.0 and not average.network.weight.requires_grad


def test_average_is_what_a_checkpoint_holds_and_resume_is_exact(train_json: Path, tmp_path: Path) -> None:
    """With ``ema_decay`` a checkpoint's weights are the average; the trained ones ride along, and
    resuming at 3 reproduces the 6-iteration run bit for bit (both sets of weights), also under bf16
    autocast (what ``amp: auto`` picks on AMX CPUs)."""
    straight = run_training(tiny_config(train_json, tmp_path / "straight", amp="bf16", optim={
        "lr": 1e-3, "max_iter": 6, "decay_steps": [4], "ema_decay": 0.9}))
    stored = read_checkpoint(straight.checkpoint)
    trained, averaged = stored.training_state["train_weights"], stored.state_dict
    assert stored.training_state["ema_updates"] == 6
    assert not torch.equal(trained["hg.pre.0.conv.weight"], averaged["hg.pre.0.conv.weight"])
    middle = tmp_path / "straight" / "checkpoint_0000003.pt"
    assert main(["train", "--resume", str(middle), "--out", str(tmp_path / "resumed")]) == 0
    resumed = read_checkpoint(tmp_path / "resumed" / "checkpoint_0000006.pt")
    for key, value in averaged.items():
        assert torch.equal(value, resumed.state_dict[key]), key
    for key, value in trained.items():
        assert torch.equal(value, resumed.training_state["train_weights"][key]), key


def test_cosine_schedule_by_hand() -> None:
    optim = OptimConfig(lr=1.0, max_iter=100, decay_steps=(), schedule="cosine", warmup_iters=10)
    assert optim.lr_factor(0) == pytest.approx(0.1)  # warm-up 1/10 of the cosine's 1.0
    assert optim.lr_factor(50) == pytest.approx(0.5)
    assert optim.lr_factor(75) == pytest.approx((1 + math.cos(math.pi * 0.75)) / 2)
    assert optim.lr_factor(99) == pytest.approx((1 + math.cos(math.pi * 0.99)) / 2)
    with pytest.raises(ValueError, match="decay_steps: \\[\\]"):
        OptimConfig(max_iter=100, decay_steps=(50,), schedule="cosine")
    with pytest.raises(ValueError, match="ema_decay"):
        OptimConfig(ema_decay=1.0)
