"""``cornernet-saccade detect`` end to end on a tiny model, and its helpers."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from detect_fixtures import NAMES, detect, tiny_model

from cornernet_saccade.backends import load_detector
from cornernet_saccade.errors import ConfigError, ImageError
from cornernet_saccade.images import read_image
from cornernet_saccade.inference.batch import find_images, image_ids, output_stems
from cornernet_saccade.inference.detector import SaccadeDetector
from cornernet_saccade.inference.labels import COCO_CATEGORY_IDS, COCO_CLASS_NAMES, category_ids, resolve_class_names


def test_detect_folder_skips_the_corrupt_image(weights, folder, tmp_path, capsys):
    out = tmp_path / "out"
    code = detect("--weights", weights, folder, "--out", out, "--max-crops", "3", "--score-threshold", "0")
    captured = capsys.readouterr()
    assert code == 0
    assert str(folder / "broken.jpg") in captured.err
    assert "first.png" in captured.out and "second.jpg" in captured.out and "broken" not in captured.out
    assert sorted(p.name for p in out.glob("*.png")) == ["first.png", "second.png"]
    results = json.loads((out / "detections.json").read_text())
    assert {r["file_name"] for r in results} == {str(folder / "first.png"), str(folder / "second.jpg")}
    assert len({r["image_id"] for r in results}) == 2
    first_row = next(line.split() for line in captured.out.splitlines() if line.startswith("first.png"))
    assert int(first_row[1]) == sum(r["file_name"].endswith("first.png") for r in results)
    assert first_row[-2] == "5", "2 initial views + 3 zoomed crops"
    for r in results:
        assert r["category_id"] in (1, 2, 3) and r["category"] == NAMES[r["category_id"] - 1]
        assert len(r["bbox"]) == 4 and all(round(v, 2) == v for v in r["bbox"])
        assert r["bbox"][2] >= 0 and r["bbox"][3] >= 0 and isinstance(r["score"], float)


def test_detect_boxes_match_the_detector(weights, folder, tmp_path):
    out = tmp_path / "out"
    image = folder / "first.png"
    assert detect("--weights", weights, image, "--out", out, "--max-crops", "3", "--no-pictures", "--backend", "eager") == 0
    assert not list(out.glob("*.png"))
    results = json.loads((out / "detections.json").read_text())
    expected = SaccadeDetector(tiny_model(), att_max_crops=3, score_threshold=0.3)(image)
    assert len(results) == len(expected) > 0
    for r, (x1, y1, x2, y2), score, label in zip(results, expected.boxes, expected.scores, expected.labels):
        np.testing.assert_allclose(r["bbox"], [x1, y1, x2 - x1, y2 - y1], atol=0.006)
        assert abs(r["score"] - score) <= 0.005 and r["category_id"] == label + 1


def test_detect_fails_when_no_image_can_be_read(weights, tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"garbage" * 10)
    missing = tmp_path / "missing.jpg"
    assert detect("--weights", weights, bad, missing, "--out", tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert str(bad) in err and str(missing) in err
    assert not list((tmp_path / "out").glob("*.png"))


@pytest.mark.parametrize(("weights_arg", "message"), [("no_such_model", "no bundled model named 'no_such_model'"),
                                                      ("nowhere/tiny.pt", "no such weights file")])
def test_unknown_weights_is_a_clear_error(weights_arg, message, folder, tmp_path, capsys):
    assert detect("--weights", weights_arg, folder, "--out", tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_class_names_file_must_match_the_model(weights, folder, tmp_path, capsys):
    names = tmp_path / "names.txt"
    names.write_text("cat\n\ndog\n")
    assert detect("--weights", weights, folder, "--out", tmp_path / "out", "--class-names", names) == 1
    assert f"{names}: 2 class names for a model with 3 classes" in capsys.readouterr().err


def test_class_names_order_of_preference(tmp_path):
    names = tmp_path / "names.txt"
    names.write_text(" a \nb\nc\n")
    assert resolve_class_names(str(names), NAMES, 3) == ["a", "b", "c"]
    assert resolve_class_names(None, NAMES, 3) == NAMES
    assert resolve_class_names(None, None, 80) == list(COCO_CLASS_NAMES)
    assert resolve_class_names(None, None, 3) is None
    with pytest.raises(ConfigError, match="missing.txt"):
        resolve_class_names(str(tmp_path / "missing.txt"), None, 3)


def test_coco_categories():
    assert len(COCO_CLASS_NAMES) == len(set(COCO_CLASS_NAMES)) == 80
    ids = dict(zip(COCO_CLASS_NAMES, COCO_CATEGORY_IDS))
    assert (ids["person"], ids["stop sign"], ids["dining table"], ids["tv"], ids["toothbrush"]) == (1, 13, 67, 72, 90)
    assert list(COCO_CATEGORY_IDS) == sorted(COCO_CATEGORY_IDS)
    assert category_ids(list(COCO_CLASS_NAMES), 80) == list(COCO_CATEGORY_IDS)
    assert category_ids(None, 80) == list(range(1, 81))


def test_inputs_ids_and_picture_names(folder):
    sub = folder / "sub"
    sub.mkdir()
    (sub / "first.PNG").write_bytes(b"x")
    flat, skipped = find_images([str(folder)])
    assert [p.name for p in flat] == ["broken.jpg", "first.png", "second.jpg"] and not skipped
    deep, _ = find_images([str(folder), str(folder / "first.png")], recursive=True)
    names = [p.relative_to(folder).as_posix() for p in deep]
    assert names == ["broken.jpg", "first.png", "second.jpg", "sub/first.PNG"]
    assert output_stems(deep) == ["broken", "first.png", "second", "first.PNG"]
    assert output_stems(deep, [folder]) == ["broken", "first", "second", "sub/first"]
    assert image_ids([Path("000000397133.jpg"), Path("a/42.png")]) == [397133, 42]
    assert image_ids([Path("7.jpg"), Path("b/007.jpg"), Path("x.jpg")]) == [1, 2, 3]


def detections_of(out: Path) -> list[dict]:
    return sorted(json.loads((out / "detections.json").read_text()), key=lambda d: (d["file_name"], -d["score"]))


@pytest.mark.parametrize("backend", ["fast", "onnxruntime"])
def test_backends_give_the_eager_detections(weights, folder, tmp_path, backend):
    runs = {}
    for name in ("eager", backend):
        out = tmp_path / name
        assert detect("--weights", weights, folder, "--out", out, "--max-crops", "3", "--score-threshold", "0",
                      "--no-pictures", "--backend", name) == 0
        runs[name] = detections_of(out)
    eager, other = runs["eager"], runs[backend]
    assert len(eager) == len(other) > 0
    for a, b in zip(eager, other):
        assert a["category_id"] == b["category_id"] and a["file_name"] == b["file_name"]
        assert np.allclose(a["bbox"], b["bbox"], atol=0.02) and abs(a["score"] - b["score"]) <= 0.01


def test_make_demo_can_be_run_twice(tmp_path):
    """Every ``detect`` of the Makefile's demo replaces its own outputs: a second ``make demo`` failed
    because the first run's pictures existed. Runs the Squeeze line (the quick one) twice."""
    from cornernet_saccade.cli import main

    root = Path(__file__).resolve().parents[1]
    recipe = root.joinpath("Makefile").read_text().split("\ndemo:")[1].split("\n\n")[0]
    lines = [line.split("-m cornernet_saccade ")[1].split() for line in recipe.splitlines() if " detect " in line]
    assert len(lines) == 3 and all("--overwrite" in args for args in lines)
    squeeze = next(args for args in lines if "shapes-squeeze" in args)
    squeeze[squeeze.index("--out") + 1] = str(tmp_path / "demo")
    squeeze = [str(root / a) if a.startswith("examples/") else a for a in squeeze]
    assert main(squeeze) == 0
    assert main(squeeze) == 0


def test_max_pixels_lets_detect_and_the_detector_take_a_larger_image(weights, folder, tmp_path, capsys):
    """The decompression-bomb limit is a setting: ``--max-pixels`` (or ``--set max_pixels=``) and
    ``max_pixels=`` of the Python detector raise it; below the image's size it is refused by name."""
    image = folder / "first.png"  # 160 x 120 = 19200 pixels
    assert detect(image, "--weights", weights, "--out", tmp_path / "low", "--max-pixels", "19199") == 1
    assert f"{image}: image is 160x120 = 19200 pixels" in capsys.readouterr().err
    assert detect(image, "--weights", weights, "--out", tmp_path / "enough", "--set", "max_pixels=19200") == 0
    low = load_detector(weights, max_pixels=19199)
    with pytest.raises(ImageError, match="--max-pixels 19200"):
        low(image)
    assert low(read_image(image)).boxes.shape[1] == 4  # an array in memory is not limited
    assert load_detector(weights, max_pixels=19200).config.max_pixels == 19200


def test_detect_to_a_log_reports_each_image_and_no_empty_table(weights, folder, tmp_path, capsys):
    """Output to a file or pipe (no progress bar) still says how far the run got, image by image;
    a run where every image fails prints no table header without rows."""
    assert detect("--weights", weights, folder, "--out", tmp_path / "out", "--max-crops", "1") == 0
    captured = capsys.readouterr()
    assert f"1/3 {folder / 'broken.jpg'}" not in captured.err  # skipped images are reported as such
    assert f"2/3 {folder / 'first.png'}: " in captured.err and f"3/3 {folder / 'second.jpg'}: " in captured.err
    assert "image" in captured.out.splitlines()[0]
    assert detect("--weights", weights, folder / "broken.jpg", "--out", tmp_path / "none") == 1
    captured = capsys.readouterr()
    assert "detections" not in captured.out.splitlines()[0] and "0 of 1 images processed" in captured.out


def test_an_interrupted_detect_says_how_to_resume(weights, folder, tmp_path, monkeypatch, capsys):
    from cornernet_saccade.cli import detect as detect_module

    real = detect_module.detect_image
    calls = []

    def interrupted_at_the_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(detect_module, "detect_image", interrupted_at_the_second)
    out = tmp_path / "out"
    assert detect("--weights", weights, folder / "first.png", folder / "second.jpg", "--out", out) == 130
    err = capsys.readouterr().err
    assert f"interrupted: the 1 images finished are kept in {out / 'detections.jsonl'}" in err
    assert "rerun the same command with --resume" in err


def test_the_onnxruntime_backend_announces_its_export(capsys):
    import argparse

    from cornernet_saccade.cli.common import runtime_settings

    runtime_settings(argparse.Namespace(threads=1, device="cpu", backend="onnxruntime", weights="shapes"))
    assert "backend onnxruntime: exporting shapes to an ONNX graph first" in capsys.readouterr().err
    runtime_settings(argparse.Namespace(threads=1, device="cpu", backend="onnxruntime", weights="model.onnx"))
    assert "exporting" not in capsys.readouterr().err


def test_recursive_outputs_keep_the_relative_path_and_tell_same_stems_apart(weights, tmp_path, capsys):
    """coffee.jpg, coffee.png and sub/coffee.png gave coffee, coffee_2, coffee_3 (which is which?) and
    a summary naming coffee.png twice: now coffee.jpg, coffee.png and sub/coffee, listed by path."""
    from PIL import Image

    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    for name in ("coffee.jpg", "coffee.png", "sub/coffee.png", "sub/tea.png"):
        Image.fromarray(np.full((40, 50, 3), 100, np.uint8)).save(photos / name)
    assert output_stems(sorted(photos.rglob("*.*")), [photos]) == ["coffee.jpg", "coffee.png", "sub/coffee", "sub/tea"]
    out = tmp_path / "out"
    assert detect("--weights", weights, photos, "--recursive", "--out", out, "--per-image", "yolo",
                  "--max-crops", "1") == 0
    pictures = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert pictures == ["coffee.jpg.png", "coffee.png.png", "sub/coffee.png", "sub/tea.png"]
    labels = sorted(p.relative_to(out / "labels").as_posix() for p in (out / "labels").rglob("*.txt"))
    assert labels == ["coffee.jpg.txt", "coffee.png.txt", "sub/coffee.txt", "sub/tea.txt"]
    rows = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:-1]]
    assert rows == ["coffee.jpg", "coffee.png", "sub/coffee.png", "sub/tea.png"]
