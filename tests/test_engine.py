"""Training engine on CPU: exact resume (in-process and after SIGKILL), non-finite losses, bad images,
learning-rate schedule, config validation and the data stream."""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from engine_fixtures import TINY_MODEL, one_thread, tiny_config, tiny_config_dict, write_box_dataset  # noqa: F401

from cornernet_saccade.backends.device import resolve_device
from cornernet_saccade.backends.distributed import DistContext
from cornernet_saccade.cli import main
from cornernet_saccade.engine import trainer as trainer_module
from cornernet_saccade.engine.loader import IndexStream, StreamLayout
from cornernet_saccade.engine.loss import CornerNetSaccadeLoss, LossOutput
from cornernet_saccade.engine.metrics import read_metrics
from cornernet_saccade.engine.train_config import OptimConfig, load_train_config, train_config_from_dict
from cornernet_saccade.engine.trainer import build_model, check_runtime, run_training
from cornernet_saccade.errors import CheckpointError, ConfigError, TrainingError
from cornernet_saccade.model.checkpoint import read_checkpoint, resolve_weights_path
from cornernet_saccade.model.cornernet_saccade import CornerNetSaccade

pytestmark = pytest.mark.usefixtures("one_thread")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def train_json(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_box_dataset(tmp_path_factory.mktemp("boxes"), 8)


def assert_same_training_state(a: Path, b: Path) -> None:
    """Bitwise-equal weights, BatchNorm buffers and Adam moments of two checkpoints."""
    first, second = read_checkpoint(a), read_checkpoint(b)
    assert first.training_state["iteration"] == second.training_state["iteration"]
    assert first.state_dict.keys() == second.state_dict.keys()
    for key, value in first.state_dict.items():
        assert torch.equal(value, second.state_dict[key]), key
    moments_a = first.training_state["optimizer"]["state"]
    moments_b = second.training_state["optimizer"]["state"]
    for index, state in moments_a.items():
        for name in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(state[name], moments_b[index][name]), (index, name)


def test_resume_reproduces_the_uninterrupted_run(train_json: Path, tmp_path: Path) -> None:
    """6 iterations straight == 3 iterations, then --resume for 3 more (also with 2 loader workers)."""
    straight = run_training(tiny_config(train_json, tmp_path / "straight"))
    assert straight.iteration == 6
    assert straight.checkpoint == tmp_path / "straight" / "checkpoint_0000006.pt"
    middle = tmp_path / "straight" / "checkpoint_0000003.pt"
    for workers in (0, 2):
        out = tmp_path / f"resumed_{workers}"
        assert main(["train", "--resume", str(middle), "--out", str(out), "--set", f"workers={workers}"]) == 0
        assert_same_training_state(straight.checkpoint, out / "checkpoint_0000006.pt")
    # the weights did train: they differ from the middle checkpoint
    assert not torch.equal(read_checkpoint(middle).state_dict["hg.pre.0.conv.weight"],
                           read_checkpoint(straight.checkpoint).state_dict["hg.pre.0.conv.weight"])


def test_resume_after_sigkill(train_json: Path, tmp_path: Path) -> None:
    """A run killed with SIGKILL (checkpoint every iteration, killed after its first) leaves a
    readable last.pt; resuming from it gives the weights of an uninterrupted run."""
    config_path = tmp_path / "run.yaml"
    config = tiny_config_dict(train_json, tmp_path / "killed", checkpoint_every=1, log_every=0)
    config["optim"].update(max_iter=100_000, decay_steps=[])  # resumed below with a lower max_iter
    config_path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "cornernet_saccade", "train", "--config", str(config_path)],
                               cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    last = tmp_path / "killed" / "last.pt"
    deadline = time.monotonic() + 120
    while not last.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    _, stderr = process.communicate()
    assert process.returncode == -signal.SIGKILL, stderr.decode()[-2000:]
    reached = read_checkpoint(last).training_state["iteration"]
    stop = reached + 2
    assert main(["train", "--resume", str(tmp_path / "killed"), "--set", f"optim.max_iter={stop}"]) == 0
    reference = run_training(tiny_config(train_json, tmp_path / "reference",
                                         optim={**config["optim"], "max_iter": stop}))
    assert_same_training_state(reference.checkpoint, tmp_path / "killed" / f"checkpoint_{stop:07d}.pt")


class PoisonedLoss(CornerNetSaccadeLoss):
    """The real loss, but NaN on its 4th call (iteration 4 at one micro-batch per iteration)."""

    calls = 0

    def forward(self, outputs, targets, normalizers=None) -> LossOutput:
        result = super().forward(outputs, targets, normalizers)
        PoisonedLoss.calls += 1
        if PoisonedLoss.calls == 4:
            poisoned = {**result.components, "focal": result.components["focal"] * float("nan")}
            return LossOutput(total=sum(poisoned.values()), components=poisoned)
        return result


def test_nonfinite_loss_stops_and_keeps_last_checkpoint(train_json: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trainer_module, "CornerNetSaccadeLoss", PoisonedLoss)
    PoisonedLoss.calls = 0
    out = tmp_path / "run"
    with pytest.raises(TrainingError, match="iteration 4") as caught:
        run_training(tiny_config(train_json, out))
    assert "checkpoint_0000003.pt" in str(caught.value)
    assert sorted(p.name for p in out.glob("checkpoint_*.pt")) == ["checkpoint_0000003.pt"]
    assert read_checkpoint(out / "last.pt").training_state["iteration"] == 3


def test_nonfinite_loss_skipped_on_request(train_json: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trainer_module, "CornerNetSaccadeLoss", PoisonedLoss)
    PoisonedLoss.calls = 0
    result = run_training(tiny_config(train_json, tmp_path / "run", on_nonfinite="skip"))
    assert result.iteration == 6 and result.skipped_steps == 1
    skipped = [r["iteration"] for r in read_metrics(tmp_path / "run") if r["kind"] == "skipped_step"]
    assert skipped == [4]
    state = read_checkpoint(result.checkpoint).training_state
    assert all(torch.isfinite(v).all() for v in read_checkpoint(result.checkpoint).state_dict.values())
    # Adam stepped 5 times, not 6
    assert all(int(s["step"]) == 5 for s in state["optimizer"]["state"].values())


def test_unreadable_image_is_replaced_and_counted(tmp_path: Path) -> None:
    """One of 8 images is garbage: 6 iterations x batch 4 = 3 epochs draw it 3 times."""
    train_json = write_box_dataset(tmp_path / "data", 8)
    bad = tmp_path / "data" / "images" / "train_005.png"
    bad.write_bytes(b"not an image at all")
    result = run_training(tiny_config(train_json, tmp_path / "run"))
    assert result.iteration == 6 and result.skipped_samples == 3
    messages = [r["message"] for r in read_metrics(tmp_path / "run") if r["kind"] == "bad_sample"]
    assert len(messages) == 3 and all("train_005.png" in m for m in messages)


def test_batch_size_one_and_logged_learning_rate(train_json: Path, tmp_path: Path) -> None:
    """Batch 1 trains; the optimizer's lr is 1e-3 for iterations 1-4, then 1e-4 (decay after 4);
    with a 2-iteration warm-up: 5e-4 then 1e-3. keep_last 1 leaves only the newest checkpoint."""
    run_training(tiny_config(train_json, tmp_path / "run", batch_size=1, keep_last=1))
    assert sorted(p.name for p in (tmp_path / "run").glob("*.pt")) == ["checkpoint_0000006.pt", "last.pt"]
    train_records = [r for r in read_metrics(tmp_path / "run") if r["kind"] == "train"]
    assert [r["iteration"] for r in train_records] == [1, 2, 3, 4, 5, 6]
    assert [r["lr"] for r in train_records] == pytest.approx([1e-3] * 4 + [1e-4] * 2)
    assert all(r["loss"] > 0 for r in train_records)
    warm = OptimConfig(lr=1e-3, max_iter=6, decay_steps=(4,), warmup_iters=2)
    assert [warm.lr_factor(done) for done in range(6)] == pytest.approx([0.5, 1, 1, 1, 0.1, 0.1])


def test_fine_tuning_from_official_layout_with_other_classes(train_json: Path, tmp_path: Path) -> None:
    """init_weights: a state_dict with the official ``module.`` prefix of a 5-class network onto the
    3-class data: every weight is loaded except the heatmap heads' last conv."""
    torch.manual_seed(123)
    source = CornerNetSaccade({**TINY_MODEL, "num_classes": 5}).state_dict()
    weights = tmp_path / "official_layout.pkl"
    torch.save({f"module.{k}": v for k, v in source.items()}, weights)
    config = tiny_config(train_json, tmp_path / "run", init_weights=str(weights), optim={"max_iter": 1, "decay_steps": []})
    with pytest.warns(UserWarning, match="number of classes differs"):
        model = build_model(config, DistContext(0, 1, torch.device("cpu")), init_weights=True)
    class_heads = {f"{corner}_heats.{stack}.1.{kind}" for corner in ("tl", "br") for stack in (0, 1)
                   for kind in ("weight", "bias")}
    for key, value in model.state_dict().items():
        if key in class_heads:
            assert value.shape[0] == 3 and source[key].shape[0] == 5
        else:
            assert torch.equal(value, source[key]), key
    with pytest.warns(UserWarning, match="number of classes differs"):
        assert run_training(config).iteration == 1


def test_fine_tuning_a_bundled_model_takes_its_network_from_the_file(train_json: Path, tmp_path: Path) -> None:
    """docs/training.md's fine-tuning: ``init_weights: shapes`` with only ``model.num_classes`` builds
    the shapes network (not the official one the omitted keys default to) and loads it; a network
    the config sets otherwise is refused naming both shapes."""
    stored = read_checkpoint(resolve_weights_path("shapes"))
    base = tiny_config_dict(train_json, tmp_path / "run", init_weights="shapes", optim={"max_iter": 1, "decay_steps": []})
    config = train_config_from_dict({**base, "model": {"num_classes": 3}, "sampling": {"input_size": 127}}, "fine-tune")
    held = {k: v for k, v in stored.model_config.items() if k != "architecture"}
    assert {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config.model).items()} == {
        **held, "num_classes": 3}
    with pytest.warns(UserWarning, match="number of classes differs"):
        model = build_model(config, DistContext(0, 1, torch.device("cpu")), init_weights=True)
    assert torch.equal(model.state_dict()["tl_tags.0.1.weight"], stored.state_dict["tl_tags.0.1.weight"])
    wider = train_config_from_dict({**base, "model": {**TINY_MODEL}, "sampling": {"input_size": 127}}, "fine-tune")
    with pytest.raises(CheckpointError, match=r"does not fit the model config .*dims=\(8, 8, 8, 8\).* the file holds "
                                              r"a network of model config .*'dims': \[32, 48, 48, 64\]"):
        build_model(wider, DistContext(0, 1, torch.device("cpu")), init_weights=True)


def test_refuses_to_overwrite_a_run(train_json: Path, tmp_path: Path) -> None:
    run_training(tiny_config(train_json, tmp_path / "run", optim={"max_iter": 1, "decay_steps": []}))
    with pytest.raises(ConfigError, match="--resume"):
        run_training(tiny_config(train_json, tmp_path / "run", optim={"max_iter": 1, "decay_steps": []}))


def test_training_says_what_it_does_and_a_finished_run_says_so(train_json: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture) -> None:
    config_path = tmp_path / "run.yaml"
    config = tiny_config_dict(train_json, tmp_path / "run", checkpoint_every=0)
    config["optim"].update(max_iter=2, decay_steps=[])
    config_path.write_text(yaml.safe_dump(config))
    assert main(["train", "--config", str(config_path)]) == 0
    err = " ".join(capsys.readouterr().err.split())
    for part in ("training on cpu (1 process, 1 CPU thread each)", "data: 8 training images; 3 classes:",
                 "2 iterations, batch 4 (grad_accum 1), run folder", str((tmp_path / "run").resolve())):
        assert part in err
    assert main(["train", "--resume", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "nothing to train" in out and "iteration 2 and optim.max_iter is 2" in out and "()" not in out


@pytest.mark.parametrize(("override", "message"), [
    ("optim.decay_steps=[4, 9]", r"decay_steps \[4, 9\] lie beyond max_iter 6"),
    ("optim.warmup_iters=7", "warmup_iters 7 is beyond max_iter 6"),
])
def test_schedule_beyond_max_iter_is_a_config_error(override: str, message: str, tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(tiny_config_dict(tmp_path / "train.json", tmp_path / "run")))
    with pytest.raises(ConfigError, match=rf"run\.yaml.*optim: {message}"):
        load_train_config(path, [override])


def test_an_unwritable_run_folder_is_an_output_error(train_json: Path, tmp_path: Path) -> None:
    from cornernet_saccade.errors import OutputError

    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match=f"{blocker / 'run'}"):
        run_training(tiny_config(train_json, blocker / "run", optim={"max_iter": 1, "decay_steps": []}))


def test_config_errors_name_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"data": {"train": "x.json"}, "optim": {"lrr": 0.1}}))
    with pytest.raises(ConfigError, match=r"bad\.yaml.*optim.*'lrr'"):
        load_train_config(path)
    path.write_text(yaml.safe_dump({"data": {"train": "x.json"}, "batch_sise": 4}))
    with pytest.raises(ConfigError, match=r"bad\.yaml.*'batch_sise'"):
        load_train_config(path)
    path.write_text(yaml.safe_dump({"data": {"train": "x.json"}, "amp": "fp8"}))
    with pytest.raises(ConfigError, match=r"bad\.yaml\.amp"):
        load_train_config(path)
    path.write_text(yaml.safe_dump({"data": {"train": "x.json"}, "model": {"num_classes": 3},
                                    "sampling": {"num_classes": 5}}))
    with pytest.raises(ConfigError, match="sampling.num_classes is 5, but the model gives 3"):
        load_train_config(path)
    path.write_text(yaml.safe_dump({"data": {"train": "x.json"}, "sampling": {"output_size": 32}}))
    with pytest.raises(ConfigError, match="sampling.output_size is 32, but the model gives 64"):
        load_train_config(path)
    path.write_text(yaml.safe_dump({"data": {"train": "x.json"}, "batch_size": 6, "grad_accum": 4}))
    with pytest.raises(ConfigError, match="divisible by grad_accum"):
        load_train_config(path)
    path.write_text(yaml.safe_dump({"data": {"train": "x.json"}, "sampling": {"input_size": 200}}))
    with pytest.raises(ConfigError, match="output size 50 for input_size 200, and divisible by 8"):
        load_train_config(path)
    with pytest.raises(ConfigError, match="optim.lr.*expected a number"):
        load_train_config(path, ["optim.lr=fast"])


def test_device_dependent_settings_checked(train_json: Path, tmp_path: Path) -> None:
    cpu = torch.device("cpu")
    with pytest.raises(ConfigError, match="fp16 needs CUDA"):
        check_runtime(tiny_config(train_json, tmp_path, amp="fp16"), DistContext(0, 1, cpu), "fp16")
    with pytest.raises(ConfigError, match="sync needs CUDA"):
        check_runtime(tiny_config(train_json, tmp_path, batchnorm="sync"), DistContext(0, 2, cpu), "none")
    with pytest.raises(ConfigError, match="batch_size 4 is not divisible by processes x grad_accum = 3 x 1"):
        check_runtime(tiny_config(train_json, tmp_path), DistContext(0, 3, cpu), "none")
    check_runtime(tiny_config(train_json, tmp_path, amp="bf16", batchnorm="sync"), DistContext(0, 1, cpu), "bf16")
    with pytest.raises(ConfigError, match="not a device name"):
        resolve_device("gpu0")


def test_overrides_and_official_values() -> None:
    """The bundled COCO config holds the original's settings (docs/reference.md §2)."""
    config = load_train_config("coco_official")
    assert (config.batch_size, config.optim.lr, config.optim.max_iter) == (48, 2.5e-4, 500_000)
    assert (config.optim.decay_steps, config.optim.decay_rate, config.optim.betas) == ((450_000,), 10.0, (0.9, 0.999))
    assert (config.checkpoint_every, config.val_every, config.seed, config.optim.weight_decay) == (5000, 100, 317, 0.0)
    assert config.model.dims == (256, 384, 384, 512) and config.sampling.input_size == 255
    changed = load_train_config("coco_official", ["optim.lr=1e-4", "batch_size=8", "data.val=null"])
    assert (changed.optim.lr, changed.batch_size, changed.data.val) == (1e-4, 8, None)
    small = load_train_config("shapes_small")
    assert small.model.num_classes == small.sampling.num_classes == 5
    assert (config.sampling.num_classes, config.sampling.output_size) == (80, 64)
    assert load_train_config("coco_official", ["sampling.input_size=127"]).sampling.output_size == 32


def test_stream_is_a_pure_function_of_seed_and_position() -> None:
    stream = IndexStream(seed=5, size=7)
    keys = stream.keys(0, 21)
    for epoch in range(3):
        assert sorted(index for e, index in keys if e == epoch) == list(range(7))
    assert IndexStream(seed=5, size=7).keys(9, 6) == keys[9:15]
    assert [i for _, i in IndexStream(seed=6, size=7).keys(0, 7)] != [i for _, i in keys[:7]]
    # 2 processes x 2 micro-batches of 2 cover the global batch of 8 exactly once
    layouts = [StreamLayout(batch_size=8, grad_accum=2, world_size=2, rank=r) for r in range(2)]
    starts = sorted(layout.micro_batch_start(3, step) for layout in layouts for step in range(2))
    assert starts == [24, 26, 28, 30]


def test_unknown_resume_target(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["train", "--resume", str(tmp_path / "nothing")]) == 1
    assert "no checkpoint to resume from" in capsys.readouterr().err


@pytest.fixture(scope="module")
def one_iteration_checkpoint(train_json: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A training checkpoint after one iteration of the tiny run."""
    out = tmp_path_factory.mktemp("one_iteration")
    config = tiny_config(train_json, out, checkpoint_every=1, log_every=0, threads=1)
    optim = dataclasses.replace(config.optim, max_iter=1, decay_steps=())
    return run_training(dataclasses.replace(config, optim=optim)).checkpoint


@pytest.mark.parametrize(
    "change, problem",
    [
        ({"iteration": [1]}, "training state.iteration is list"),
        ({"iteration": True}, "training state.iteration is bool"),
        ({"iteration": -5}, "iteration is negative"),
        ({"optimizer": [1, 2]}, "training state.optimizer is list"),
        ({"optimizer": {"state": {}, "param_groups": "all"}}, "optimizer.param_groups is str"),
        ({"rng": "seeded"}, "training state.rng is str"),
        ({"rng": {"torch": 5}}, "training state.rng.torch is int"),
        ({"counters": {"skipped_samples": "0", "skipped_steps": 0}}, "counters.skipped_samples is str"),
        ({"scheduler": None}, "training state.scheduler is NoneType"),
        ({"config": ["lr", 1]}, "training state.config is list"),
    ],
)
def test_resume_from_wrong_typed_training_state_gets_clear_error(
    one_iteration_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture, change: dict, problem: str
) -> None:
    payload = torch.load(one_iteration_checkpoint, weights_only=True)
    path = tmp_path / "edited.pt"
    torch.save({**payload, **change}, path)
    assert main(["train", "--resume", str(path), "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert f"{path}: malformed training checkpoint: training state." in err and problem in err


def test_resume_from_malformed_rng_state_gets_clear_error(one_iteration_checkpoint: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    """Right types, wrong contents (a numpy key array of the wrong length)."""
    payload = torch.load(one_iteration_checkpoint, weights_only=True)
    payload["rng"]["numpy"]["keys"] = torch.zeros(3, dtype=torch.int64)
    path = tmp_path / "edited.pt"
    torch.save(payload, path)
    assert main(["train", "--resume", str(path), "--out", str(tmp_path / "run")]) == 1
    assert f"{path}: malformed RNG state" in capsys.readouterr().err


def test_resume_refuses_a_model_config_that_does_not_fit_before_building(
    one_iteration_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checkpoint's stored training config asks for a network far too wide for its weights."""
    payload = torch.load(one_iteration_checkpoint, weights_only=True)
    payload["config"]["model"]["dims"] = [2000, 8, 8, 8]  # within the bound of dims, far too wide for the file
    path = tmp_path / "edited.pt"
    torch.save(payload, path)
    monkeypatch.setattr(trainer_module, "build_model", lambda *args, **kwargs: pytest.fail("model built"))
    assert main(["train", "--resume", str(path), "--out", str(tmp_path / "run")]) == 1
    assert f"{path}: does not fit the model config" in capsys.readouterr().err


def test_resume_cleans_up_after_a_killed_run(train_json: Path, tmp_path: Path) -> None:
    """Resuming from iteration 3 of a run that reached 6 (as after a kill): the save temp files left
    by a kill are removed (nothing else), and metrics.jsonl has each iteration once, earlier lines kept."""
    out = tmp_path / "run"
    run_training(tiny_config(train_json, out))
    metrics = out / "metrics.jsonl"
    before = metrics.read_text().splitlines(keepends=True)
    stale = [out / ".checkpoint_0000006.pt.3f9a1c.tmp", out / ".last.pt.tmp", out / ".last.pt.b1e2d3.tmp"]
    kept = [out / ".notes.tmp", out / "checkpoint_draft.tmp", out / ".checkpoint_0000006.pt.keep"]
    for path in stale + kept:
        path.write_bytes(b"partial")
    assert main(["train", "--resume", str(out / "checkpoint_0000003.pt")]) == 0
    assert [p for p in stale if p.exists()] == [] and all(p.exists() for p in kept)
    records = read_metrics(out)
    train = [r["iteration"] for r in records if r["kind"] == "train"]
    assert train == [1, 2, 3, 4, 5, 6]
    first_part = [line for line in before if json.loads(line)["iteration"] <= 3]
    assert metrics.read_text().splitlines(keepends=True)[: len(first_part)] == first_part
    assert [r["kind"] for r in records].count("start") == 2


def test_threads_key_sets_the_cpu_threads(train_json: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    before = torch.get_num_threads()
    try:
        run_training(tiny_config(train_json, tmp_path / "run", threads=1, optim={"max_iter": 1, "decay_steps": []}))
        assert torch.get_num_threads() == 1 and "1 CPU thread each" in capsys.readouterr().err
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ConfigError, match="threads must be >= 0"):
        tiny_config(train_json, tmp_path / "bad", threads=-1)
