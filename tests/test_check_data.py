"""check_dataset and ``cornernet-saccade check-data``: problems named by file and line/id, exit codes."""
from __future__ import annotations

import json

import pytest
from dataset_files import make_valid_coco, make_valid_csv, make_valid_voc, write_image

from cornernet_saccade.cli import main
from cornernet_saccade.data import load_dataset
from cornernet_saccade.data.check import check_dataset


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["check-data", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("make", [make_valid_coco, make_valid_voc, make_valid_csv])
def test_valid_datasets_pass(tmp_path, capsys, make):
    code, out, _ = _run(capsys, str(make(tmp_path)))
    assert code == 0
    assert "problems: none" in out and "result: 0 errors, 0 warnings" in out


def test_summary_counts_images_and_boxes_per_class(tmp_path):
    report = check_dataset(load_dataset(make_valid_coco(tmp_path)), progress=False)
    assert report.ok
    assert report.boxes_per_class() == {"cat": 1, "dog": 1, "zebra": 1}
    summary = report.summary()
    assert "images: 3 (1 without boxes)" in summary
    assert "boxes: 3 in 3 classes" in summary
    assert "ignored crowd objects: 1" in summary


def test_broken_images_are_errors_named_by_id(tmp_path, capsys):
    path = make_valid_coco(tmp_path)
    image = path.parent / "a.png"
    image.write_bytes(image.read_bytes()[:70])  # header intact, pixels cut
    write_image(path.parent / "c.png", 17, 12)  # annotated as 16x12
    code, out, _ = _run(capsys, str(path))
    assert code == 1
    lines = out.splitlines()
    unreadable = next(line for line in lines if "image id 10" in line)
    assert str(path) in unreadable and "error" in unreadable and str(image) in unreadable
    mismatch = next(line for line in lines if "image id 7" in line)
    assert "17x12" in mismatch and "16x12" in mismatch
    assert "error    size mismatch: 1" in out and "error    unreadable image: 1" in out
    assert "result: 2 errors, 0 warnings" in out


def test_warnings_alone_exit_zero(tmp_path, capsys):
    path = make_valid_csv(tmp_path, "imgs/a.png,30,20,50,40,dog\n")
    code, out, _ = _run(capsys, str(path))
    assert code == 0
    assert f"{path}: line 1: warning: box [30, 20, 50, 40] reaches outside the 40x30 image" in out
    assert "warning  box clipped: 1" in out


def test_reader_issues_are_listed_with_file_and_line(tmp_path, capsys):
    rows = "imgs/a.png,1,2,3,4,dog\nmissing.png,1,2,3,4,dog\nimgs/a.png,5,5,5,9,cat\n"
    path = make_valid_csv(tmp_path, rows)
    code, out, _ = _run(capsys, str(path), "--format", "csv")
    assert code == 1
    assert f"{path}: line 2: error: image skipped: " in out and "missing.png" in out
    assert f"{path}: line 3: warning: box has zero width or height" in out
    # The class list comes from every row, also the skipped one: cat has no box left.
    assert "images: 1 (0 without boxes)" in out and "boxes: 1 in 2 classes\n  cat  0\n  dog  1\n" in out


def test_duplicate_ids_and_files_are_reported(tmp_path, capsys):
    path = make_valid_coco(tmp_path)
    document = json.loads(path.read_text())
    document["images"].append({"id": 10, "file_name": "b.png", "width": 20, "height": 20})
    document["images"].append({"id": 11, "file_name": "a.png", "width": 40, "height": 30})
    path.write_text(json.dumps(document))
    code, out, _ = _run(capsys, str(path))
    assert code == 1
    assert f"{path}: image id 10: error: image id 10 appears again" in out
    shared = path.parent / "a.png"
    assert f"{path}: image id 11: warning: image file {shared} is also used by image id 10" in out


def test_fatal_annotation_errors_exit_one_naming_the_file_and_line(tmp_path, capsys):
    path = tmp_path / "bad.csv"
    path.write_text("a.png,1,2,3,4,dog\na.png,1,2\n")
    code, out, err = _run(capsys, str(path))
    assert code == 1 and out == ""
    assert err.startswith(f"error: {path}: line 2: expected 6 fields")


def test_image_root_option(tmp_path, capsys):
    path = make_valid_coco(tmp_path)
    moved = tmp_path / "pictures"
    path.parent.rename(moved)
    code, _, err = _run(capsys, str(moved / "instances.json"), "--image-root", str(moved))
    assert code == 0
    code, out, _ = _run(capsys, str(moved / "instances.json"), "--image-root", str(tmp_path))
    assert code == 1 and "image file not found" in out


def test_categories_sharing_a_name_are_counted_apart_and_reported(tmp_path, capsys):
    """Two categories named "cat" (ids 2 and 90): each keeps its own count, and a warning says so."""
    path = make_valid_coco(tmp_path)
    document = json.loads(path.read_text())
    document["categories"] = [{"id": 5, "name": "dog"}, {"id": 2, "name": "cat"}, {"id": 90, "name": "cat"}]
    path.write_text(json.dumps(document))
    report = check_dataset(load_dataset(path), progress=False)
    assert report.boxes_per_class() == {"cat (label 0)": 1, "dog": 1, "cat (label 2)": 1}
    assert sum(report.boxes_per_class().values()) == 3
    code, out, _ = _run(capsys, str(path))
    assert code == 0
    assert "boxes: 3 in 3 classes" in out
    assert f"{path}: warning: class name 'cat' is shared by labels [0, 2]" in out
    assert "warning  duplicate class name: 1" in out
