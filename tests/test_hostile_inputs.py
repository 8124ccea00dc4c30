"""Hostile inputs (issue 27): small files that would expand without bound, sizes that would exhaust
memory. Every probe that could hang or allocate runs in a child process with bounded memory and time
(:func:`bounded.run_bounded`)."""
from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from bounded import run_bounded
from detect_fixtures import tiny_model
from engine_fixtures import one_thread, tiny_config, write_box_dataset  # noqa: F401 (one_thread: a fixture)

from cornernet_saccade import config as config_module
from cornernet_saccade.bounds import LIMITS_ENV
from cornernet_saccade.config import check_tree_size, read_yaml
from cornernet_saccade.errors import CheckpointError, ConfigError
from cornernet_saccade.inference.settings import SaccadeConfig
from cornernet_saccade.model import checkpoint as checkpoint_module
from cornernet_saccade.model.checkpoint import read_checkpoint, save_checkpoint


def _alias_bomb(levels: int) -> str:
    """YAML whose ``a{levels}`` expands to 2**levels leaves through nested anchors (a few bytes a level)."""
    lines = ["a0: &a0 [1, 1]"] + [f"a{i}: &a{i} {{x: *a{i - 1}, y: *a{i - 1}}}" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\ndata: {train: t.json}\n"


# ----------------------------------------------------------------------------- 1: shared references
def test_tree_size_counts_every_repetition_of_a_shared_part(monkeypatch):
    leaf = [1, 1]
    two_levels = {"x": leaf, "y": leaf}  # 1 mapping + 2 lists + 4 numbers = 7 values once expanded
    monkeypatch.setattr(config_module, "MAX_TREE_VALUES", 7)
    check_tree_size(two_levels, "t")
    monkeypatch.setattr(config_module, "MAX_TREE_VALUES", 6)
    with pytest.raises(ConfigError, match="t: holds more than 6 values"):
        check_tree_size(two_levels, "t")


def test_yaml_alias_bomb_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "dictbomb.yaml"
    path.write_text(_alias_bomb(20))
    with pytest.raises(ConfigError, match=f"{path}: holds more than"):
        read_yaml(path)


def test_train_with_alias_bomb_config_ends_in_bounded_memory_and_time(tmp_path):
    """The issue's case: the bomb plus ``--set`` (whose copy expanded it) in the train command."""
    path = tmp_path / "dictbomb.yaml"
    path.write_text(_alias_bomb(24))
    done = run_bounded(f"""
        from cornernet_saccade.cli import main
        raise SystemExit(main(["train", "--config", {str(path)!r}, "--set", "seed=1"]))
    """, memory_mb=400, seconds=60)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "holds more than" in done.stderr and "Traceback" not in done.stderr


def test_checkpoint_with_shared_reference_bomb_is_refused(tmp_path):
    tree: object = {"leaf": 1}
    for _ in range(20):
        tree = {"x": tree, "y": tree}  # pickled once per level (the memo), 2**20 values expanded
    path = tmp_path / "bomb.pt"
    save_checkpoint(path, tiny_model(), iteration=1, config=tree)
    assert path.stat().st_size < 1 << 20
    with pytest.raises(CheckpointError, match="bomb.pt: stored data: holds more than"):
        read_checkpoint(path)


@pytest.mark.parametrize("depth", [40, 5000])
def test_deeply_nested_set_value_is_a_config_error(depth):
    from cornernet_saccade.config import apply_overrides

    with pytest.raises(ConfigError, match="nested deeper"):
        apply_overrides({}, ["x=" + "[" * depth + "]" * depth])


# ----------------------------------------------------------------------------- 2: pickle bombs
def test_deflated_pickle_bomb_is_refused_before_unpickling(tmp_path):
    """The issue's file, a quarter of its size: 100 M ``None`` opcodes deflated to about 100 KB;
    refused from the zip directory alone, in bounded time and memory."""
    path = tmp_path / "bomb.pt"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("archive/data.pkl", "w", force_zip64=True) as member:
            member.write(b"\x80\x02(")
            for _ in range(10):
                member.write(b"N" * 10_000_000)
            member.write(b"l.")
    assert path.stat().st_size < 1 << 20
    done = run_bounded(f"""
        from cornernet_saccade.errors import CheckpointError
        from cornernet_saccade.model.checkpoint import read_checkpoint
        try:
            read_checkpoint({str(path)!r})
        except CheckpointError as exc:
            print(exc)
    """, memory_mb=300, seconds=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "data.pkl declares 100,000,005 bytes" in done.stdout


def test_small_pickle_bound_keeps_real_checkpoints_readable(tmp_path, monkeypatch):
    path = tmp_path / "real.pt"
    save_checkpoint(path, tiny_model(), iteration=3)
    assert read_checkpoint(path).training_state["iteration"] == 3
    monkeypatch.setattr(checkpoint_module, "MAX_PICKLE_BYTES", 100)
    with pytest.raises(CheckpointError, match="data.pkl declares .* above the 100"):
        read_checkpoint(path)


# ----------------------------------------------------------------------------- 3: size-like settings
@pytest.mark.parametrize(("settings", "name"), [
    ({"mode": "full", "full_size": 40000}, "full_size"),
    ({"init_sizes": [255] * 20000}, "init_sizes"),
    ({"init_sizes": [255, 100000]}, "init_sizes"),
    ({"top_k": 100000, "num_dets": 12}, "top_k"),
    ({"batch_size": 1_000_000}, "batch_size"),
])
def test_detector_settings_are_bounded(settings, name):
    with pytest.raises(ConfigError, match=f"{name}"):
        config_module.config_from_dict(SaccadeConfig, settings, "w.safetensors: test_settings")


def test_bound_can_be_raised_on_purpose(monkeypatch):
    with pytest.raises(ConfigError, match=f"full_size 5000 is above its bound 4096.*{LIMITS_ENV}=full_size=N"):
        config_module.config_from_dict(SaccadeConfig, {"full_size": 5000}, "settings")
    monkeypatch.setenv(LIMITS_ENV, "full_size=5000")
    assert SaccadeConfig(full_size=5000).full_size == 5000
    monkeypatch.setenv(LIMITS_ENV, "top_k=5, full_size=5000")
    with pytest.raises(ValueError, match="top_k 12 is above its bound 5"):
        SaccadeConfig()


def test_stored_test_settings_are_bounded_before_detect_allocates(tmp_path):
    path = tmp_path / "w.safetensors"
    save_checkpoint(path, tiny_model(), class_names=["a", "b", "c"],
                    test_settings={"mode": "full", "full_size": 40000})
    image = tmp_path / "i.png"
    from PIL import Image

    Image.new("RGB", (40, 30)).save(image)
    done = run_bounded(f"""
        from cornernet_saccade.cli import main
        raise SystemExit(main(["detect", "--weights", {str(path)!r}, {str(image)!r}, "--out", {str(tmp_path / 'o')!r}]))
    """, memory_mb=600, seconds=60)
    assert done.returncode != 0 and "full_size 40000 is above its bound" in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(("key", "value"), [("model.num_stacks", "100000"), ("batch_size", "1000000"),
                                            ("model.dims", "[8, 8, 8, 100000]"), ("sampling.max_objects", "100000")])
def test_train_settings_are_bounded(tmp_path, key, value):
    from engine_fixtures import tiny_config_dict

    from cornernet_saccade.engine.train_config import train_config_from_dict

    data = tiny_config_dict(tmp_path / "t.json", tmp_path / "run")
    with pytest.raises(ConfigError, match=f"{key.split('.')[-1]} .* is above its bound"):
        train_config_from_dict(data, "c.yaml", [f"{key}={value}"])


def test_thread_count_is_bounded():
    from cornernet_saccade.backends.device import set_threads

    before = torch.get_num_threads()
    with pytest.raises(ConfigError, match="threads 100000 is above its bound"):
        set_threads(100000)
    assert torch.get_num_threads() == before


def test_metadata_json_too_deep_is_a_checkpoint_error(tmp_path):
    stored = checkpoint_module.StoredCheckpoint(str(tmp_path / "w"), {}, metadata={"test_settings": "[" * 100000})
    with pytest.raises(CheckpointError, match="test_settings"):
        _ = stored.test_settings


# ----------------------------------------------------------------------------- 4: make-shapes keeps a dataset
def test_make_shapes_keeps_an_earlier_dataset_unless_overwrite(tmp_path, capsys):
    from cornernet_saccade.cli import main

    args = ["make-shapes", "--out", str(tmp_path), "--num", "1", "--max-width", "96", "--max-height", "96",
            "--min-width", "64", "--min-height", "64"]
    assert main([*args, "--seed", "1"]) == 0
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert main([*args, "--seed", "2"]) == 1
    assert f"{tmp_path / 'train.json'}: already exists (and 2 more files" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    assert main([*args, "--seed", "2", "--overwrite"]) == 0
    assert (tmp_path / "train.json").read_bytes() != before[tmp_path / "train.json"]


def test_make_shapes_sizes_are_bounded(tmp_path, capsys):
    from cornernet_saccade.cli import main

    assert main(["make-shapes", "--out", str(tmp_path), "--num", "1", "--max-width", "1000000"]) == 1
    assert "max_width 1000000 is above its bound 10000" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- 5: an earlier run's folder
@pytest.mark.parametrize("leftover", ["last.pt dangling", "last.pt missing", "metrics only"])
@pytest.mark.usefixtures("one_thread")
def test_training_into_an_earlier_run_folder_is_refused(tmp_path, leftover):
    from cornernet_saccade.engine.trainer import run_training

    run = tmp_path / "run"
    run.mkdir()
    earlier = {"metrics.jsonl": b'{"kind": "start", "iteration": 0}\n'}
    if leftover != "metrics only":
        earlier.update({"checkpoint_0000010.pt": b"earlier run", "checkpoint_0000015.pt": b"earlier run"})
    for name, content in earlier.items():
        (run / name).write_bytes(content)
    if leftover == "last.pt dangling":
        (run / "last.pt").symlink_to("checkpoint_0000020.pt")
    config = tiny_config(write_box_dataset(tmp_path, 4), run, keep_last=1)
    with pytest.raises(ConfigError, match=f"{run}: already holds a run .*pass --resume"):
        run_training(config)
    assert {name: (run / name).read_bytes() for name in earlier} == earlier


# ----------------------------------------------------------------------------- 6-8: detect's output folder
FAST = ("--max-crops", "2", "--score-threshold", "0", "--no-pictures")


def _detect(weights, *args: object) -> int:
    from detect_fixtures import detect

    return detect("--weights", weights, *FAST, *args)


def test_lines_file_link_to_nowhere_is_not_followed(weights, folder, tmp_path, capsys):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "detections.jsonl").symlink_to(elsewhere / "new.txt")
    assert _detect(weights, folder / "first.png", "--out", out) == 1
    assert "detections.jsonl: already exists" in capsys.readouterr().err
    assert not (elsewhere / "new.txt").exists()


@pytest.mark.parametrize("mode", ["--overwrite", "--resume"])
def test_lines_file_link_to_a_users_file_leaves_that_file_alone(weights, folder, tmp_path, capsys, mode):
    out = tmp_path / "out"
    out.mkdir()
    users = tmp_path / "thesis.txt"
    users.write_text("years of work\n")
    (out / "detections.jsonl").symlink_to(users)
    code = _detect(weights, folder / "first.png", "--out", out, mode)
    assert users.read_text() == "years of work\n"
    if mode == "--overwrite":
        assert code == 0 and not (out / "detections.jsonl").is_symlink()
        assert len((out / "detections.jsonl").read_text().splitlines()) == 1
    else:
        assert code == 1 and "detections.jsonl: a link; refusing to read or write through it" in capsys.readouterr().err


def test_training_metrics_are_not_written_through_a_link(tmp_path):
    from cornernet_saccade.engine.metrics import MetricsLogger
    from cornernet_saccade.errors import OutputError

    run, users = tmp_path / "run", tmp_path / "notes.txt"
    run.mkdir()
    users.write_text("mine\n")
    (run / "metrics.jsonl").symlink_to(users)
    for resumed_at in (None, 3):
        with pytest.raises(OutputError, match="metrics.jsonl: a link; refusing"):
            MetricsLogger(run, resumed_at=resumed_at)
    assert users.read_text() == "mine\n"


def test_a_second_run_into_a_folder_in_use_refuses_naming_the_holder(weights, folder, tmp_path, capsys):
    from cornernet_saccade.outputs import FolderLock

    out = tmp_path / "out"
    out.mkdir()
    holder = FolderLock(out / ".detections.jsonl.lock")  # the first run, still writing
    try:
        assert _detect(weights, folder / "first.png", "--out", out, "--overwrite") == 1
        assert f"{out}: in use by another run (process {os.getpid()}:" in capsys.readouterr().err
        assert not (out / "detections.jsonl").exists()
    finally:
        holder.release()
    assert _detect(weights, folder / "first.png", "--out", out, "--overwrite") == 0
    assert not (out / ".detections.jsonl.lock").exists()


def test_concurrent_runs_keep_every_line_whole(weights, folder, tmp_path):
    """Two real processes into one folder: one refuses (or runs after the other); the lines file
    only ever holds whole lines of one run."""
    import subprocess
    import sys

    out = tmp_path / "out"
    command = [sys.executable, "-m", "cornernet_saccade", "detect", "--weights", str(weights), *FAST,
               str(folder / "first.png"), str(folder / "second.jpg"), "--out", str(out), "--overwrite", "--threads", "1"]
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [run.communicate(timeout=120) + (run.returncode,) for run in runs]
    codes = sorted(code for _, _, code in results)
    assert codes[0] == 0 and all("Traceback" not in err for _, err, _ in results)
    if codes[1] == 1:
        assert any("in use by another run" in err for _, err, _ in results)
    lines = (out / "detections.jsonl").read_text().splitlines()
    assert [json.loads(line)["file_name"] for line in lines] == [str(folder / "first.png"), str(folder / "second.jpg")]
    assert len(json.loads((out / "detections.json").read_text())) == sum(
        len(json.loads(line)["results"]) for line in lines)


def test_resume_drops_a_torn_last_line_and_redoes_its_image(weights, folder, tmp_path, capsys):
    out = tmp_path / "out"
    images = (folder / "first.png", folder / "second.jpg")
    assert _detect(weights, *images, "--out", out) == 0
    lines_path = out / "detections.jsonl"
    whole = lines_path.read_bytes()
    lines_path.write_bytes(whole[:-40])  # the disk filled up while the second line was written
    for _ in range(2):  # the first resume repairs; the second finds nothing to do
        assert _detect(weights, *images, "--out", out, "--resume") == 0
        assert "2 of 2 images processed" in capsys.readouterr().out
    assert [_without_time(line) for line in lines_path.read_text().splitlines()] == [
        _without_time(line) for line in whole.decode().splitlines()]


def _without_time(line: str) -> dict:
    return {k: v for k, v in json.loads(line).items() if k != "seconds"}


def test_resume_knows_an_image_by_its_file_not_its_path_string(weights, folder, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    names = ("first.png", "second.jpg")
    assert _detect(weights, *(folder / name for name in names), "--out", out) == 0
    monkeypatch.chdir(folder)
    assert _detect(weights, *names, "--out", out, "--resume") == 0
    captured = capsys.readouterr()
    assert "2 of 2 images already done" in captured.err and "2 of 2 images processed" in captured.out
    assert len((out / "detections.jsonl").read_text().splitlines()) == 2


# ----------------------------------------------------------------------------- 10: a full disk
def test_full_disk_during_detect_is_an_output_error_and_keeps_lines_whole(weights, folder, tmp_path):
    """A file-size limit as the full disk: the lines write fails part-way through the second line."""
    out = tmp_path / "out"
    images = [str(folder / "first.png"), str(folder / "second.jpg")]
    assert _detect(weights, *images, "--out", out) == 0
    first_line = len((out / "detections.jsonl").read_text().splitlines()[0]) + 1
    done = run_bounded(f"""
        import resource, signal
        from cornernet_saccade.cli import main
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, ({first_line + 20}, {first_line + 20}))
        raise SystemExit(main(["detect", "--weights", {str(weights)!r}, *{FAST!r}, *{images!r},
                               "--out", {str(out)!r}, "--overwrite"]))
    """, memory_mb=600, seconds=120)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "detections.jsonl: cannot write (only " in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    kept = (out / "detections.jsonl").read_text()  # the first image's line, whole (its time may differ)
    assert kept.endswith("\n") and [json.loads(line)["file_name"] for line in kept.splitlines()] == images[:1]


# ----------------------------------------------------------------------------- 9: tiny images
@pytest.mark.parametrize(("height", "width", "size"), [(1, 1, 511), (3, 2, 511), (7, 5, 1023), (1, 40, 1023)])
def test_first_views_of_a_tiny_image_cover_it(height, width, size):
    from cornernet_saccade.inference.locations import initial_locations
    from cornernet_saccade.inference.views import window_side

    views = initial_locations(height, width, [size])
    reach = max(1, window_side(views[0, 2]) // 2)  # a view shows its centre +- reach pixels
    assert 1 <= len(views) <= height * width
    for axis, length in ((0, height), (1, width)):
        centres = views[:, axis]
        assert all(np.abs(centres - pixel).min() <= reach for pixel in range(length))


def test_a_one_pixel_image_does_not_stop_the_batch(weights, folder, tmp_path, capsys):
    from PIL import Image

    tiny = tmp_path / "1x1.png"
    Image.new("RGB", (1, 1), (200, 30, 30)).save(tiny)
    assert _detect(weights, tiny, folder / "first.png", "--out", tmp_path / "out",
                   "--set", "init_sizes=[255,1023]") == 0
    assert "2 of 2 images processed" in capsys.readouterr().out


def test_full_disk_during_a_checkpoint_save_keeps_the_previous_one(tmp_path):
    """torch.save on a full disk (a file-size limit here) raises RuntimeError; the save is an
    OutputError naming the file and the previous checkpoint stays whole."""
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, tiny_model(), iteration=1)
    before = path.read_bytes()
    done = run_bounded(f"""
        import resource, signal
        from detect_fixtures import tiny_model
        from cornernet_saccade.errors import OutputError
        from cornernet_saccade.model.checkpoint import save_checkpoint
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))
        try:
            save_checkpoint({str(path)!r}, tiny_model(), iteration=2)
        except OutputError as exc:
            print(exc)
    """, memory_mb=600, seconds=60, cwd=Path(__file__).parent)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"{path}: cannot write" in done.stdout
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


# ----------------------------------------------------------------------------- 11-12: annotation files
def test_evaluation_ground_truth_leaves_out_what_the_reader_skips(tmp_path):
    from engine_fixtures import write_box_dataset

    from cornernet_saccade.engine.evaluate import coco_metrics, load_ground_truth

    path = write_box_dataset(tmp_path, 3, seed=2, name="val")
    document = json.loads(path.read_text())
    clean = load_ground_truth(path)
    truth = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
             for a in clean.dataset["annotations"]]
    image_ids = sorted(clean.getImgIds())
    first = document["annotations"][0]
    document["annotations"] += [{**first, "bbox": bbox} for bbox in (None, [1, 2], [1, 2, "a", "b"])]
    document["annotations"].append({**first, "image_id": [2]})
    document["images"].append({"id": [2], "file_name": "x.png"})
    path.write_text(json.dumps(document))
    polluted = load_ground_truth(path)
    assert len(polluted.dataset["annotations"]) == len(truth)
    assert coco_metrics(polluted, truth, image_ids)["AP"] == pytest.approx(1.0)


def test_an_integer_beyond_pythons_digit_limit_is_an_annotation_error(tmp_path):
    from cornernet_saccade.cli import main
    from cornernet_saccade.data import read_coco
    from cornernet_saccade.engine.evaluate import load_ground_truth
    from cornernet_saccade.errors import AnnotationError

    path = tmp_path / "big.json"
    path.write_text('{"images": [{"id": ' + "9" * 5000 + ', "file_name": "a.png"}], "annotations": [], '
                    '"categories": []}')
    for read in (read_coco, load_ground_truth):
        with pytest.raises(AnnotationError, match="big.json: not valid JSON .*digits"):
            read(path)
    assert main(["check-data", str(path)]) == 1


# ----------------------------------------------------------------------------- 13: poisoned training state
@pytest.fixture(scope="module")
def one_iteration_run(tmp_path_factory):
    """A run folder with the checkpoint of one training iteration of the tiny network, and its data."""
    from cornernet_saccade.engine.trainer import run_training

    root = tmp_path_factory.mktemp("run")
    train = write_box_dataset(root, 4)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_training(tiny_config(train, root / "run", optim={"lr": 1e-3, "max_iter": 1, "decay_steps": []},
                                 checkpoint_every=1))
    finally:
        torch.set_num_threads(before)
    return train, root / "run" / "checkpoint_0000001.pt"


def _exp_avg_misshaped(state):
    first = next(iter(state["optimizer"]["state"].values()))
    first["exp_avg"] = torch.zeros(3)


def _lr_nan(state):
    state["optimizer"]["param_groups"][0]["lr"] = float("nan")


@pytest.mark.parametrize(("poison", "problem"), [
    (_exp_avg_misshaped, "optimizer state 'exp_avg' has shape (3,)"),
    (lambda state: state["scheduler"].update(last_epoch="x"), "scheduler last_epoch is 'x'"),
    (lambda state: state["scheduler"].update(base_lrs=[]), "scheduler base_lrs is []"),
    (lambda state: state["optimizer"]["param_groups"][0].update(lr="x"), "optimizer param_groups[0].lr is 'x'"),
    (_lr_nan, "optimizer param_groups[0].lr is nan"),
])
@pytest.mark.usefixtures("one_thread")
def test_resume_from_a_poisoned_training_state_is_a_checkpoint_error(one_iteration_run, tmp_path, poison, problem):
    from cornernet_saccade.engine.trainer import run_training

    train, checkpoint = one_iteration_run
    state = torch.load(checkpoint, weights_only=True)
    poison(state)
    poisoned = tmp_path / "poisoned.pt"
    torch.save(state, poisoned)
    config = tiny_config(train, tmp_path / "run", optim={"lr": 1e-3, "max_iter": 2, "decay_steps": []},
                         checkpoint_every=0)
    with pytest.raises(CheckpointError) as info:
        run_training(config, read_checkpoint(poisoned))
    assert f"poisoned.pt: malformed training checkpoint: {problem}" in str(info.value)
    assert str(info.value).endswith("resume from an earlier checkpoint of the run")


@pytest.mark.parametrize("where", ["stored", "--set"])
def test_an_architecture_that_is_not_a_name_is_a_config_error(one_iteration_run, tmp_path, where):
    from cornernet_saccade.engine.train_config import train_config_from_dict

    train, checkpoint = one_iteration_run
    config = read_checkpoint(checkpoint).training_state["config"]
    overrides = ["architecture=[1]"] if where == "--set" else []
    if where == "stored":
        config = {**config, "architecture": [1]}
    with pytest.raises(ConfigError, match=r"architecture: \[1\] is not one of"):
        train_config_from_dict(config, "c", overrides)


# ----------------------------------------------------------------------------- 14: settings that crashed
def test_top_k_above_the_cells_of_a_small_map_takes_every_corner():
    from cornernet_saccade.inference.decode import decode_detections

    heat = torch.zeros(1, 2, 2, 2)  # 8 corner candidates of each kind
    maps = (heat, heat, torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2, 2))
    rows = decode_detections(*maps, k=100, num_dets=1000)
    assert rows.shape == (1, 64, 8)  # 8 x 8 pairs


def test_deeply_nested_config_file_is_a_config_error(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text("x: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError, match="deep.yaml: not valid YAML .*nested deeper"):
        read_yaml(path)


@pytest.mark.parametrize("name", ["meta", "xla", "mps"])
def test_devices_the_program_does_not_run_on_are_refused(name):
    from cornernet_saccade.backends.device import resolve_device

    with pytest.raises(ConfigError, match=f"device '{name}': not a device"):
        resolve_device(name)


# ----------------------------------------------------------------------------- 15: files that are not files
@pytest.mark.parametrize("kind", ["/dev/zero", "fifo", "loop"])
def test_annotation_and_class_name_files_must_be_regular_files(tmp_path, kind):
    from cornernet_saccade.inference.labels import read_class_names

    path = tmp_path / "link.json"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "loop":
        path.symlink_to(path)
    else:
        path.symlink_to(kind)
    done = run_bounded(f"""
        from cornernet_saccade.cli import main
        raise SystemExit(main(["check-data", "--format", "coco", {str(path)!r}]))
    """, memory_mb=300, seconds=30)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert f"{path}: " in done.stderr
    with pytest.raises(ConfigError, match=f"{path}: (not a regular file|cannot read)"):
        read_class_names(path)


def test_an_input_file_above_its_bound_is_refused_naming_the_setting(tmp_path, monkeypatch):
    from cornernet_saccade.data import read_coco
    from cornernet_saccade.errors import AnnotationError

    path = tmp_path / "a.json"
    path.write_text('{"images": [], "annotations": [], "categories": []}')
    monkeypatch.setenv(LIMITS_ENV, "input_file_bytes=10")
    with pytest.raises(AnnotationError, match=f"a.json: input_file_bytes 51 is above its bound 10.*{LIMITS_ENV}"):
        read_coco(path)


# ----------------------------------------------------------------------------- 16: silent and wrong
@pytest.mark.parametrize("dtype", [torch.bool, torch.int8, torch.uint8, torch.complex64, torch.float8_e4m3fn])
def test_weights_of_a_wrong_dtype_are_refused(tmp_path, dtype):
    model = tiny_model()
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in model.state_dict().items()}
    path = tmp_path / "w.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="w.pt: of a dtype weights cannot have"):
        checkpoint_module.load_checkpoint(tiny_model(), path)


def test_negative_batchnorm_variance_is_refused(tmp_path):
    model = tiny_model()
    state = model.state_dict()
    key = next(k for k in state if k.endswith("running_var"))
    state[key][0] = -1.0
    path = tmp_path / "w.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=f"w.pt: negative BatchNorm running_var in 1 tensors: {key}"):
        checkpoint_module.load_checkpoint(tiny_model(), path)


def test_half_precision_weights_still_load(tmp_path):
    model = tiny_model()
    path = tmp_path / "w.pt"
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}, path)
    checkpoint_module.load_checkpoint(tiny_model(), path)


def test_a_local_folder_named_like_a_bundled_model_is_loaded_with_a_warning(tmp_path, monkeypatch):
    from cornernet_saccade.model.checkpoint import WEIGHTS_DIR, resolve_weights_path

    (tmp_path / "shapes").mkdir()
    save_checkpoint(tmp_path / "shapes" / "last.pt", tiny_model())
    monkeypatch.chdir(tmp_path)
    with pytest.warns(UserWarning, match=f"shapes: loading {tmp_path / 'shapes'} from the working directory, not the "
                                         f"bundled model 'shapes'; .* {WEIGHTS_DIR / 'shapes.safetensors'}"):
        assert resolve_weights_path("shapes") == Path("shapes/last.pt")
    monkeypatch.chdir(tmp_path / "shapes")
    assert resolve_weights_path("shapes") == WEIGHTS_DIR / "shapes.safetensors"


def test_detect_on_a_large_image_needs_about_a_dozen_bytes_per_pixel(weights, tmp_path):
    """A 9-megapixel image (27 MB of pixels) in 350 MB beyond the model and imports: the whole-image
    first views are resized one float64 channel at a time (8 bytes per pixel), not as float64 RGB
    copies (48)."""
    from PIL import Image

    image = tmp_path / "large.ppm"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (3000, 3000, 3), dtype=np.uint8)).save(image)
    done = run_bounded(f"""
        from cornernet_saccade.cli import main
        raise SystemExit(main(["detect", "--weights", {str(weights)!r}, "--max-crops", "2", "--no-pictures",
                               {str(image)!r}, "--out", {str(tmp_path / 'out')!r}]))
    """, memory_mb=350, seconds=120)
    assert done.returncode == 0, done.stderr[-2000:]
