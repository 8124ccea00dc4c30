"""COCO evaluation: result conversion and category mapping by hand, pycocotools scores of perfect and
empty detections, and a tiny end-to-end run: train (with validation loss and COCO evaluation
during training), then ``cornernet-saccade evaluate``."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from engine_fixtures import CLASS_NAMES, one_thread, tiny_config, write_box_dataset, write_csv_copy  # noqa: F401

from cornernet_saccade.cli import main
from cornernet_saccade.engine.evaluate import (
    COCO_METRICS,
    coco_metrics,
    coco_scores,
    evaluate,
    load_ground_truth,
)
from cornernet_saccade.engine.metrics import read_metrics
from cornernet_saccade.engine.trainer import run_training
from cornernet_saccade.errors import AnnotationError
from cornernet_saccade.inference.labels import category_ids
from cornernet_saccade.inference.results import Detections, coco_results
from cornernet_saccade.inference.trace import DetectionTrace

pytestmark = pytest.mark.usefixtures("one_thread")
CATEGORIES = [{"id": 7, "name": "b"}, {"id": 3, "name": "a"}, {"id": 9, "name": "c"}]


def test_coco_results_by_hand() -> None:
    detections = Detections(
        boxes=np.array([[10.3125, 20.5, 30.75, 50.0], [0, 0, 4, 2]], np.float32),
        scores=np.array([0.875, 0.3125], np.float32), labels=np.array([1, 0]), class_names=None, trace=DetectionTrace(),
    )
    assert coco_results(5, detections, [3, 7]) == [
        {"image_id": 5, "category_id": 7, "bbox": [10.31, 20.5, 20.44, 29.5], "score": 0.88},
        {"image_id": 5, "category_id": 3, "bbox": [0.0, 0.0, 4.0, 2.0], "score": 0.31},
    ]


def test_category_mapping() -> None:
    assert category_ids(None, 3, CATEGORIES, "val.json") == [3, 7, 9]
    assert category_ids(["c", "a", "b"], 3, CATEGORIES, "val.json") == [9, 3, 7]
    with pytest.raises(AnnotationError, match=r"val\.json.*'d'"):
        category_ids(["a", "d"], 2, CATEGORIES, "val.json")
    with pytest.raises(AnnotationError, match=r"val\.json: 3 categories .* 80 classes"):
        category_ids(None, 80, CATEGORIES, "val.json")


def _class_recall(truth: list[dict], found: list[dict], category: int) -> float:
    """Share of ``truth``'s objects of ``category`` in ``found`` (COCO averages recall per class)."""
    return sum(r["category_id"] == category for r in found) / sum(r["category_id"] == category for r in truth)


def test_metrics_of_perfect_and_missing_detections(tmp_path: Path) -> None:
    annotations = write_box_dataset(tmp_path, 4, seed=1, name="val")
    ground_truth = load_ground_truth(annotations)
    truth = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
             for a in ground_truth.dataset["annotations"]]
    image_ids = sorted(ground_truth.getImgIds())
    perfect = coco_metrics(ground_truth, truth, image_ids)
    assert perfect["AP"] == pytest.approx(1.0) and perfect["AP50"] == pytest.approx(1.0)
    assert perfect["APl"] == -1  # no object above 96x96 px: undefined, as COCO reports it
    assert perfect["AR100"] == pytest.approx(1.0)
    half = coco_metrics(ground_truth, truth[::2], image_ids)  # every other object found
    assert half["AR100"] == pytest.approx(np.mean([_class_recall(truth, truth[::2], c) for c in (1, 2, 3)]))
    shifted = [{**r, "bbox": [r["bbox"][0] + 60, r["bbox"][1] + 60, *r["bbox"][2:]]} for r in truth]
    assert coco_metrics(ground_truth, shifted, image_ids)["AP50"] == pytest.approx(0.0)
    assert coco_metrics(ground_truth, shifted, image_ids)["AR100"] == pytest.approx(0.0)
    assert coco_metrics(ground_truth, [], image_ids) == {name: 0.0 for name in COCO_METRICS}
    first_class_only = [r for r in truth if r["category_id"] == 1] + [r for r in shifted if r["category_id"] != 1]
    _, per_class = coco_scores(ground_truth, first_class_only, image_ids)
    names = [c["name"] for c in ground_truth.dataset["categories"]]
    assert per_class[names[0]] == pytest.approx(1.0)
    assert all(per_class[name] in (pytest.approx(0.0), -1.0) for name in names[1:])


def test_train_then_evaluate_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    train_json = write_box_dataset(tmp_path / "data", 8, seed=2)
    val_json = write_box_dataset(tmp_path / "data", 4, seed=3, name="val")
    (tmp_path / "data" / "images" / "val_004.png").write_bytes(b"\x89PNG broken")
    config = tiny_config(train_json, tmp_path / "run", data={"train": str(train_json), "val": str(val_json)},
                         val_every=2, val_batches=2, eval_every=4, eval_images=2)
    result = run_training(config)
    records = read_metrics(tmp_path / "run")
    assert [r["iteration"] for r in records if r["kind"] == "val"] == [2, 4, 6]
    evaluations = [r for r in records if r["kind"] == "eval"]
    assert [r["iteration"] for r in evaluations] == [4] and evaluations[0]["images"] == 2
    assert all(-1 <= evaluations[0][name] <= 1 for name in COCO_METRICS)

    code = main(["evaluate", "--weights", str(result.checkpoint), "--data", str(val_json), "--device", "cpu"])
    printed = capsys.readouterr().out
    assert code == 0
    assert all(name in printed for name in COCO_METRICS) and "3 images" in printed
    assert "skipped: " in printed and "val_004.png" in printed
    # one pass over the whole image keeps every decoded box (the saccade mode of an untrained
    # network finds none above its first-round threshold), so the results file has entries; in fp32
    # (bf16 rounds the untrained network's flat heatmaps into ties, and its top corners can all pair
    # into inverted boxes)
    out = tmp_path / "results.json"
    assert main(["evaluate", "--weights", str(result.checkpoint), "--data", str(val_json), "--mode", "full",
                 "--max-images", "2", "--out", str(out), "--backend", "eager"]) == 0
    assert "2 images" in capsys.readouterr().out
    detections = json.loads(out.read_text())
    assert detections and {d["image_id"] for d in detections} == {1, 2}
    for entry in detections:
        assert entry["category_id"] in (1, 2, 3) and len(entry["bbox"]) == 4 and entry["bbox"][2] >= 0
        assert entry["score"] == round(entry["score"], 2) and all(v == round(v, 2) for v in entry["bbox"])


def test_results_never_replace_the_annotations_or_an_existing_file(tmp_path: Path, capsys) -> None:
    val_json = write_box_dataset(tmp_path / "data", 2, seed=3, name="val")
    before = val_json.read_bytes()
    code = main(["evaluate", "--weights", "shapes", "--data", str(val_json), "--out", str(val_json)])
    err = capsys.readouterr().err
    assert code == 1 and f"would replace the input {val_json}" in err and "Traceback" not in err
    assert main(["evaluate", "--weights", "shapes", "--data", str(val_json), "--out", str(val_json),
                 "--overwrite"]) == 1
    assert val_json.read_bytes() == before
    mine = tmp_path / "mine.json"
    mine.write_text("keep me")
    assert main(["evaluate", "--weights", "shapes", "--data", str(val_json), "--out", str(mine)]) == 1
    assert "already exists" in capsys.readouterr().err and mine.read_text() == "keep me"


def test_results_target_of_a_folder_and_of_a_blocked_path(tmp_path: Path) -> None:
    from cornernet_saccade.engine.evaluate import results_target
    from cornernet_saccade.errors import OutputError

    assert results_target(tmp_path, tmp_path / "val.json") == tmp_path / "detections.json"
    assert results_target(None, tmp_path / "val.json") is None
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="cannot create the output folder"):
        results_target(blocker / "sub" / "r.json", tmp_path / "val.json")


def test_two_processes_give_the_scores_of_one(tmp_path: Path) -> None:
    """torchrun with 2 CPU processes (gloo) shards the images and prints the one-process scores."""
    import os
    import subprocess
    import sys

    from detect_fixtures import tiny_model

    from cornernet_saccade.model.checkpoint import save_checkpoint

    weights = tmp_path / "tiny.pt"
    save_checkpoint(weights, tiny_model())
    val_json = write_box_dataset(tmp_path / "data", 4, seed=3, name="val")
    arguments = ["evaluate", "--weights", str(weights), "--data", str(val_json), "--mode", "full",
                 "--device", "cpu", "--threads", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    repo = Path(__file__).resolve().parents[1]
    single = subprocess.run([sys.executable, "-m", "cornernet_saccade", *arguments], env=env, cwd=repo,
                            capture_output=True, text=True, timeout=300)
    sharded = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                              "-m", "cornernet_saccade", *arguments, "--out", str(tmp_path / "r.json")],
                             env=env, cwd=repo, capture_output=True, text=True, timeout=300)
    assert single.returncode == 0 and sharded.returncode == 0, sharded.stderr[-3000:]
    scores = [line for line in single.stdout.splitlines() if "COCO bbox" in line or line.strip()[:1].isdigit()]
    assert scores and all(line in sharded.stdout for line in scores[:2])
    assert sharded.stdout.count("COCO bbox evaluation: 4 images") == 1
    assert {d["image_id"] for d in json.loads((tmp_path / "r.json").read_text())} <= {1, 2, 3, 4}


def test_a_csv_set_scores_as_the_same_set_in_coco(tmp_path: Path) -> None:
    """evaluate takes every format train and analyze take: a CSV copy of a COCO set gives the same
    scores, and ``convert`` writes a COCO file that scores the same again."""
    from detect_fixtures import tiny_model

    from cornernet_saccade.inference.detector import SaccadeDetector

    coco = write_box_dataset(tmp_path / "data", 3, seed=4, name="val")
    csv = write_csv_copy(coco)
    model = tiny_model()
    model.class_names = list(CLASS_NAMES)
    detector = SaccadeDetector(model, mode="full")  # the untrained network's boxes, each image in one pass
    expected = evaluate(detector, coco, progress=False)
    assert expected.detections > 0 and expected.images == 3
    got = evaluate(detector, csv, progress=False)
    assert (got.metrics, got.images, got.detections) == (expected.metrics, expected.images, expected.detections)
    converted = tmp_path / "out" / "converted.json"
    assert main(["convert", str(csv), "--out", str(converted)]) == 0
    again = evaluate(detector, converted, progress=False)
    assert (again.metrics, again.images, again.detections) == (expected.metrics, expected.images, expected.detections)
    document = json.loads(converted.read_text())
    assert [c["name"] for c in document["categories"]] == sorted(CLASS_NAMES)  # a CSV's classes: sorted labels
    assert (converted.parent / document["images"][0]["file_name"]).resolve() == (tmp_path / "data" / "images"
                                                                                 / "val_001.png").resolve()


def test_training_evaluates_on_a_csv_validation_set(tmp_path: Path) -> None:
    """eval_every with a CSV data.val evaluates during training (it failed at the first evaluation,
    after training, losing that iteration's checkpoint)."""
    train_json = write_box_dataset(tmp_path / "data", 8, seed=2)
    val_csv = write_csv_copy(write_box_dataset(tmp_path / "data", 2, seed=3, name="val"))
    config = tiny_config(train_json, tmp_path / "run", data={"train": str(train_json), "val": str(val_csv)},
                         eval_every=3, eval_images=2)
    run_training(config)
    records = read_metrics(tmp_path / "run")
    assert [r["iteration"] for r in records if r["kind"] == "eval"] == [3, 6]
    assert [r["iteration"] for r in records if r["kind"] == "checkpoint"] == [3, 6]


def test_training_refuses_an_evaluation_set_without_its_classes_before_training(tmp_path: Path) -> None:
    train_json = write_box_dataset(tmp_path / "data", 4, seed=2)
    val_json = write_box_dataset(tmp_path / "data", 2, seed=3, name="val")
    document = json.loads(val_json.read_text())
    document["categories"][2]["name"] = "purple"
    val_json.write_text(json.dumps(document))
    config = tiny_config(train_json, tmp_path / "run", data={"train": str(train_json), "val": str(val_json)},
                         eval_every=3)
    with pytest.raises(AnnotationError, match=r"val\.json.*'blue'"):
        run_training(config)
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_box_precision_and_recall_by_hand() -> None:
    """DeepForest's measure: results scoring >= 0.1, matched one-to-one at IoU >= 0.4."""
    from pycocotools.coco import COCO

    from cornernet_saccade.engine.evaluate import box_precision_recall

    truth = COCO()
    truth.dataset = {"images": [{"id": 1}, {"id": 2}], "categories": [{"id": 1, "name": "tree"}], "annotations": [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "iscrowd": 0, "area": 100},
        {"id": 2, "image_id": 1, "category_id": 1, "bbox": [20, 0, 10, 10], "iscrowd": 0, "area": 100},
        {"id": 3, "image_id": 2, "category_id": 1, "bbox": [0, 0, 10, 10], "iscrowd": 0, "area": 100}]}
    truth.createIndex()
    results = [
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 5], "score": 0.9},    # IoU 0.5 with box 1: a match
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 6], "score": 0.8},    # IoU 0.6 with box 1: taken first
        {"image_id": 1, "category_id": 1, "bbox": [20, 0, 10, 3], "score": 0.7},   # IoU 0.3 with box 2: no match
        {"image_id": 1, "category_id": 1, "bbox": [20, 0, 10, 10], "score": 0.05},  # below the score threshold
        {"image_id": 2, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.2},   # IoU 1 with box 3
    ]
    precision, recall = box_precision_recall(truth, results, [1, 2])
    assert (precision, recall) == (pytest.approx(2 / 4), pytest.approx(2 / 3))
    assert box_precision_recall(truth, [], [1, 2]) == (0.0, 0.0)


def test_max_dets_counts_more_detections_than_coco_s_100() -> None:
    """An image of 150 objects found perfectly: COCO's 100 detections cap its recall at 100/150;
    ``max_dets`` 150 counts them all (AP too, which pycocotools' summary would leave at -1)."""
    from pycocotools.coco import COCO

    truth = COCO()
    boxes = [[20.0 * (i % 15), 20.0 * (i // 15), 12.0, 12.0] for i in range(150)]
    truth.dataset = {"images": [{"id": 1}], "categories": [{"id": 1, "name": "tree"}], "annotations": [
        {"id": i + 1, "image_id": 1, "category_id": 1, "bbox": box, "iscrowd": 0, "area": 144.0}
        for i, box in enumerate(boxes)]}
    truth.createIndex()
    found = [{"image_id": 1, "category_id": 1, "bbox": box, "score": 1.0 - i / 1000} for i, box in enumerate(boxes)]
    capped = coco_metrics(truth, found, [1])
    assert capped["AR100"] == pytest.approx(100 / 150) and capped["AP50"] < 0.7
    every = coco_metrics(truth, found, [1], max_dets=150)
    assert every["AP"] == pytest.approx(1.0) and every["AP50"] == pytest.approx(1.0)
    assert every["APs"] == pytest.approx(1.0) and every["AR100"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="max_dets"):
        coco_metrics(truth, found, [1], max_dets=0)


def test_evaluate_refuses_a_max_dets_below_one(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["evaluate", "--weights", "shapes", "--data", "val.json", "--max-dets", "0"])
    assert "--max-dets: must be at least 1, got 0" in capsys.readouterr().err


def test_max_dets_also_raises_the_detector_s_max_per_image(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--max-dets N`` scores N detections per image and lets the detector keep N, unless
    ``--set max_per_image`` says otherwise."""
    import importlib

    engine = importlib.import_module("cornernet_saccade.engine.evaluate")  # the package exports a function of its name
    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(engine, "evaluate", lambda detector, data, **kwargs: calls.append(
        (kwargs["max_dets"], detector.config.max_per_image)) or engine.EvaluationResult(
        metrics={name: 0.0 for name in COCO_METRICS}, images=0, detections=0, seconds_per_image=0.0,
        pixels_per_image=0.0))
    base = ["evaluate", "--weights", "shapes", "--data", "val.json", "--threads", "1", "--backend", "eager"]
    assert main(base + ["--max-dets", "500"]) == 0
    assert main(base + ["--max-dets", "500", "--set", "max_per_image=300"]) == 0
    assert main(base) == 0
    assert calls == [(500, 500), (500, 300), (100, 100)]
