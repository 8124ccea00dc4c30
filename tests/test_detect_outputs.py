"""``detect``'s outputs: nothing a user made is replaced, results survive failures, resume, filters
and per-image files (the tiny model and images of test_cli_detect)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from detect_fixtures import NAMES, detect, tiny_model
from PIL import Image

from cornernet_saccade.errors import OutputError
from cornernet_saccade.inference import batch
from cornernet_saccade.inference.batch import find_images
from cornernet_saccade.model.checkpoint import save_checkpoint
from cornernet_saccade.tables import format_table

FAST = ("--max-crops", "2", "--score-threshold", "0")


def run_detect(weights: Path, *args: object) -> int:
    return detect("--weights", weights, *FAST, *args)


def test_out_equal_to_the_input_folder_replaces_no_image(weights, folder, capsys):
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert run_detect(weights, folder, "--out", folder) == 1
    err = capsys.readouterr().err
    assert "first.png: an output would replace an input image" in err and "Traceback" not in err
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert run_detect(weights, folder, "--out", folder, "--overwrite") == 1, "inputs are protected even then"
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_x_jpg_does_not_replace_x_png(weights, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.full((40, 50, 3), 90, np.uint8)).save(images / "x.png")
    Image.fromarray(np.full((40, 50, 3), 200, np.uint8)).save(images / "x.jpg")
    before = (images / "x.png").read_bytes()
    assert run_detect(weights, images / "x.jpg", images / "x.png", "--out", images) == 0  # x.jpg.png, x.png.png
    assert (images / "x.png").read_bytes() == before
    assert (images / "x.jpg.png").is_file() and (images / "x.png.png").is_file()
    assert run_detect(weights, images / "x.png", "--out", images, "--overwrite") == 1
    assert (images / "x.png").read_bytes() == before
    assert "replace an input image" in capsys.readouterr().err


def test_existing_outputs_need_overwrite_or_resume(weights, folder, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    mine = out / "detections.json"
    mine.write_text("my own file")
    assert run_detect(weights, folder / "first.png", "--out", out) == 1
    assert "already exists" in capsys.readouterr().err and mine.read_text() == "my own file"
    assert run_detect(weights, folder / "first.png", "--out", out, "--overwrite") == 0
    assert json.loads(mine.read_text())[0]["file_name"] == str(folder / "first.png")


def test_failed_run_keeps_an_existing_results_file(weights, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "detections.json").write_text("[1]")
    missing = tmp_path / "missing.jpg"
    assert run_detect(weights, missing, "--out", out, "--overwrite") == 1
    assert (out / "detections.json").read_text() == "[1]"


def test_recursive_search_never_reads_the_output_folder(weights, folder, tmp_path):
    out = folder / "results"
    assert run_detect(weights, folder, "--recursive", "--out", out) == 0
    paths, _ = find_images([folder], recursive=True, exclude=out)
    assert all(out not in p.parents for p in paths)
    assert run_detect(weights, folder, "--recursive", "--out", out, "--overwrite") == 0
    assert not list((out / "results").glob("*")) and len(list(out.glob("*.png"))) == 2


def test_a_failed_picture_write_keeps_earlier_results_and_resume_finishes(weights, folder, tmp_path,
                                                                          monkeypatch, capsys):
    out = tmp_path / "out"
    real_write = batch.atomic_write
    calls = {"pictures": 0}

    def failing_second_picture(path: Path, save):
        if path.suffix == ".png":
            calls["pictures"] += 1
            if calls["pictures"] == 2:
                raise OutputError(f"{path}: cannot write (No space left on device)")
        return real_write(path, save)

    monkeypatch.setattr(batch, "atomic_write", failing_second_picture)
    assert run_detect(weights, folder, "--out", out) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "--resume" in err and "Traceback" not in err
    lines = (out / "detections.jsonl").read_text().splitlines()
    assert [json.loads(line)["file_name"] for line in lines] == [str(folder / "first.png")]
    monkeypatch.setattr(batch, "atomic_write", real_write)
    assert run_detect(weights, folder, "--out", out, "--resume") == 0
    assert "1 of 3 images already done" in capsys.readouterr().err
    records = [json.loads(line) for line in (out / "detections.jsonl").read_text().splitlines()]
    assert [r["file_name"] for r in records] == [str(folder / "first.png"), str(folder / "second.jpg")]
    fresh = tmp_path / "fresh"
    assert run_detect(weights, folder, "--out", fresh) == 0
    assert json.loads((out / "detections.json").read_text()) == json.loads((fresh / "detections.json").read_text())


def test_unwritable_output_folder_is_a_clear_error(weights, folder, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert run_detect(weights, folder, "--out", blocker / "sub") == 1
    err = capsys.readouterr().err
    assert f"{blocker / 'sub'}: cannot create the output folder" in err and "Traceback" not in err


def test_outputs_honour_the_umask(weights, folder, tmp_path):
    out = tmp_path / "out"
    old = os.umask(0o022)
    try:
        assert run_detect(weights, folder / "first.png", "--out", out) == 0
    finally:
        os.umask(old)
    for name in ("detections.json", "detections.jsonl", "first.png"):
        assert (out / name).stat().st_mode & 0o777 == 0o644, name


def test_entries_carry_image_size_and_filters_apply(weights, folder, tmp_path):
    out = tmp_path / "out"
    assert run_detect(weights, folder / "first.png", "--out", out, "--no-pictures") == 0
    everything = json.loads((out / "detections.json").read_text())
    assert {(r["width"], r["height"]) for r in everything} == {(160, 120)}
    out2 = tmp_path / "out2"
    assert run_detect(weights, folder / "first.png", "--out", out2, "--no-pictures", "--classes", "star,0",
                      "--max-dets", "3") == 0
    kept = json.loads((out2 / "detections.json").read_text())
    expected = [r for r in everything if r["category"] in ("star", "circle")][:3]
    assert kept == expected


def test_unknown_class_filter_names_the_known_ones(weights, folder, tmp_path, capsys):
    assert run_detect(weights, folder, "--out", tmp_path / "out", "--classes", "dog") == 1
    assert f"unknown class 'dog' (known: {', '.join(NAMES)})" in capsys.readouterr().err


def test_per_image_json_and_yolo_files(weights, folder, tmp_path):
    out = tmp_path / "out"
    assert run_detect(weights, folder / "first.png", "--out", out, "--no-pictures", "--per-image", "json",
                      "--per-image", "yolo") == 0
    record = json.loads((out / "json" / "first.json").read_text())
    assert record["results"] == json.loads((out / "detections.json").read_text())
    rows = [line.split() for line in (out / "labels" / "first.txt").read_text().splitlines()]
    assert len(rows) == len(record["results"])
    for row, entry in zip(rows, record["results"]):
        x, y, w, h = entry["bbox"]
        np.testing.assert_allclose([float(v) for v in row[1:5]], [(x + w / 2) / 160, (y + h / 2) / 120, w / 160, h / 120],
                                   atol=1e-4)
        assert int(row[0]) == NAMES.index(entry["category"])


def test_folder_search_reports_links_to_nowhere_and_folders_named_like_images(tmp_path):
    (tmp_path / "real.png").write_bytes(b"x")
    (tmp_path / "folder.jpg").mkdir()
    (tmp_path / "dangling.png").symlink_to(tmp_path / "gone.png")
    (tmp_path / "loop.jpg").symlink_to(tmp_path / "loop.jpg")
    paths, skipped = find_images([tmp_path])
    assert [p.name for p in paths] == ["real.png"]
    reasons = {s.path.name: s.reason for s in skipped}
    assert reasons["dangling.png"] == "a link to nowhere"
    assert "folder" in reasons["folder.jpg"] and "symbolic links" in reasons["loop.jpg"]


def test_table_escapes_newlines_in_names():
    table = format_table(("image", "n"), [("a\nb.png", "1")], (False, True))
    assert table.splitlines() == ["image     n", "a\\nb.png  1"]


def test_two_processes_shard_the_images_and_give_the_same_results(weights, folder, tmp_path):
    """torchrun with 2 CPU processes (gloo): each writes its own lines file as its images finish,
    rank 0 merges them into the same detections.json as one process writes."""
    import subprocess
    import sys

    single = tmp_path / "single"
    assert run_detect(weights, folder, "--out", single, "--no-pictures") == 0
    sharded = tmp_path / "sharded"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
               "cornernet_saccade", "detect", "--weights", str(weights), *FAST, str(folder), "--out", str(sharded),
               "--no-pictures", "--device", "cpu", "--threads", "1"]
    done = subprocess.run(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=300, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in sharded.glob("*.jsonl")) == ["detections.rank0.jsonl", "detections.rank1.jsonl"]
    assert json.loads((sharded / "detections.json").read_text()) == json.loads((single / "detections.json").read_text())
    assert done.stdout.count("images processed") == 1


def test_resume_with_other_weights_or_settings_is_refused_naming_what_differs(weights, folder, tmp_path, capsys):
    """Results of two models or two settings never end up in one detections.json: --resume must
    match the earlier run (speed / readable-size settings may change), --overwrite starts over."""
    other = tmp_path / "other.pt"
    save_checkpoint(other, tiny_model(), class_names=["tree", "bush", "rock"])
    out = tmp_path / "out"
    assert run_detect(weights, folder / "first.png", "--out", out) == 0
    before = (out / "detections.jsonl").read_text()
    capsys.readouterr()
    assert run_detect(other, folder, "--out", out, "--resume", "--score-threshold", "0.9") == 1
    err = capsys.readouterr().err
    assert "--resume would mix results of different runs" in err and "Traceback" not in err
    assert f"weights: '{weights.resolve()}' then, '{other.resolve()}' now" in err
    assert "class_names: ['circle', 'star', 'square'] then, ['tree', 'bush', 'rock'] now" in err
    assert "score_threshold: 0.0 then, 0.9 now" in err and "--overwrite" in err
    assert (out / "detections.jsonl").read_text() == before, "the earlier results are kept"
    assert run_detect(weights, folder, "--out", out, "--resume", "--max-pixels", "1000000") == 0
    assert run_detect(other, folder, "--out", out, "--overwrite") == 0
    results = json.loads((out / "detections.json").read_text())
    assert results and {entry["category"] for entry in results} <= {"tree", "bush", "rock"}


def test_max_dets_above_the_detector_s_100_keeps_more(tmp_path):
    """``--max-dets 150`` with every score kept: more than the 100 boxes the detector keeps by default
    (the bundled shapes model on its example scene finds well over 150 scored boxes)."""
    out = tmp_path / "out"
    scene = Path(__file__).resolve().parents[1] / "examples" / "shapes_scene.jpg"
    assert detect("--weights", "shapes", scene, "--out", out, "--no-pictures", "--threads", "1",
                  "--score-threshold", "0", "--max-dets", "150") == 0
    kept = json.loads((out / "detections.json").read_text())
    assert len(kept) == 150
