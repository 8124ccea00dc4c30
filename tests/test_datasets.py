"""COCO / VOC / CSV readers: hand-computed records on valid data, issues and errors on broken data."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from dataset_files import (
    COCO_CATEGORIES,
    make_valid_coco,
    make_valid_csv,
    make_valid_voc,
    voc_xml,
    write_image,
    write_json,
)

from cornernet_saccade.data import detect_format, load_dataset, read_coco, read_csv, read_voc
from cornernet_saccade.data.records import AnnotatedImage, DetectionDataset
from cornernet_saccade.errors import AnnotationError


def _issues(dataset: DetectionDataset) -> list[tuple[str, str, str]]:
    """``(location, kind, severity)`` of each issue, in order."""
    return [(issue.location, issue.kind, issue.severity) for issue in dataset.issues]


def _assert_record(record: AnnotatedImage, image_id, name, size, boxes, labels) -> None:
    assert record.image_id == image_id
    assert record.path.endswith(name)
    assert (record.width, record.height) == size
    assert record.boxes.dtype == np.float32 and record.labels.dtype == np.int64
    np.testing.assert_array_equal(record.boxes, np.array(boxes, dtype=np.float32).reshape(-1, 4))
    np.testing.assert_array_equal(record.labels, labels)


# ---------------------------------------------------------------- COCO


def test_coco_valid(tmp_path):
    path = make_valid_coco(tmp_path)
    dataset = read_coco(path)
    assert dataset.class_names == ["cat", "dog", "zebra"]
    assert dataset.source == str(path)
    assert dataset.issues == []
    assert dataset.ignored_objects == {"crowd": 1}
    a, b, c = dataset.records
    _assert_record(a, 10, "a.png", (40, 30), [[1, 2, 11, 7], [0, 0, 40, 30]], [1, 2])
    _assert_record(b, 3, "b.png", (20, 20), [[2.5, 3.5, 6.5, 9.5]], [0])
    _assert_record(c, 7, "c.png", (16, 12), [], [])
    assert a.path == str(path.parent / "a.png")


def test_coco_class_names_fix_the_labels(tmp_path):
    dataset = read_coco(make_valid_coco(tmp_path), class_names=["dog", "cat"])
    assert dataset.class_names == ["dog", "cat"]
    assert dataset.records[0].labels.tolist() == [0]  # the zebra is unknown now
    assert dataset.records[1].labels.tolist() == [1]
    assert _issues(dataset) == [("annotation id 2", "unknown label", "error")]


def test_coco_image_root(tmp_path):
    path = make_valid_coco(tmp_path)
    dataset = read_coco(path, image_root=tmp_path / "elsewhere")
    # b.png has no size in the JSON and is not in the image root: skipped, its box with it.
    assert [record.image_id for record in dataset.records] == [10, 7]
    assert dataset.records[0].path == str(tmp_path / "elsewhere" / "a.png")
    assert [kind for _, kind, _ in _issues(dataset)] == ["unreadable image", "unknown image id"]


def test_coco_per_item_problems(tmp_path):
    write_image(tmp_path / "a.png", 40, 30)
    annotations = [
        ([1, 2, 10, 5], 5),  # kept
        ([1, 2, -3, 5], 5),  # negative width
        ([1, 2, 0, 5], 5),  # zero width
        ([35, 25, 10, 10], 5),  # clipped to [35, 25, 40, 30]
        ([50, 50, 5, 5], 5),  # outside the 40x30 image
        (["a", 1, 2, 3], 5),  # not numbers
        ([1, 2, 3], 5),  # three values
        ([1, 2, 3, float("nan")], 5),  # non-finite
        ([1, 2, 3, 4], 77),  # unknown category
        ([1, 2, 3, 4], "dog"),  # category id not an integer
    ]
    document = {
        "images": [
            {"id": 10, "file_name": "a.png", "width": 40, "height": 30},
            {"id": 10, "file_name": "other.png", "width": 8, "height": 8},  # duplicate id
            {"id": 11, "file_name": "missing.png"},  # no size, no file
            {"id": 12, "file_name": "a.png", "width": 0, "height": 30},  # bad size: header used
        ],
        "annotations": [
            {"id": 100 + index, "image_id": 10, "category_id": category, "bbox": bbox}
            for index, (bbox, category) in enumerate(annotations)
        ]
        + [
            {"id": 200, "image_id": 999, "category_id": 5, "bbox": [1, 1, 2, 2]},
            {"id": 100, "image_id": 10, "category_id": 5, "bbox": [1, 1, 2, 2]},  # duplicate id
        ],
        "categories": COCO_CATEGORIES,
    }
    path = write_json(tmp_path / "broken.json", document)
    dataset = read_coco(path)
    assert [record.image_id for record in dataset.records] == [10, 12]
    _assert_record(dataset.records[0], 10, "a.png", (40, 30), [[1, 2, 11, 7], [35, 25, 40, 30]], [1, 1])
    assert (dataset.records[1].width, dataset.records[1].height) == (40, 30)
    assert _issues(dataset) == [
        ("image id 10", "duplicate id", "error"),
        ("image id 11", "unreadable image", "error"),
        ("image id 12", "invalid size", "warning"),
        ("annotation id 101", "invalid box", "error"),
        ("annotation id 102", "degenerate box", "warning"),
        ("annotation id 103", "box clipped", "warning"),
        ("annotation id 104", "box outside image", "error"),
        ("annotation id 105", "invalid box", "error"),
        ("annotation id 106", "invalid box", "error"),
        ("annotation id 107", "invalid box", "error"),
        ("annotation id 109", "unknown label", "error"),
        ("annotation id 200", "unknown image id", "error"),
        ("annotation id 100", "duplicate id", "error"),
        ("annotation id 108", "unknown label", "error"),
    ]
    assert all(issue.path == str(path) for issue in dataset.issues)
    assert "missing.png" in dataset.issues[1].problem
    assert "77" in dataset.issues[-1].problem


def _coco_document() -> dict:
    return {
        "images": [{"id": 1, "file_name": "a.png", "width": 4, "height": 4}],
        "annotations": [{"id": 5, "image_id": 1, "category_id": 2, "bbox": [0, 0, 1, 1]}],
        "categories": [{"id": 2, "name": "cat"}],
    }


def _without(document: dict, section: str, key: str) -> dict:
    changed = copy.deepcopy(document)
    del changed[section][0][key]
    return changed


@pytest.mark.parametrize(
    "document, message",
    [
        ([1, 2], "top level must be a JSON object"),
        ({"images": [], "annotations": []}, "missing required key 'categories'"),
        ({"images": {}, "annotations": [], "categories": []}, "'images' must be a list"),
        (_without(_coco_document(), "annotations", "bbox"), "annotation id 5 lacks required key"),
        (_without(_coco_document(), "images", "file_name"), "image id 1 lacks required key"),
        (_without(_without(_coco_document(), "images", "file_name"), "images", "id"), r"images\[0\] lacks"),
        ({**_coco_document(), "annotations": ["x"]}, r"annotations\[0\] is not an object"),
        ({**_coco_document(), "categories": [{"id": 2, "name": "a"}, {"id": 2, "name": "b"}]}, "repeated"),
        ({**_coco_document(), "categories": [{"id": "2", "name": "a"}]}, "not an integer"),
    ],
)
def test_coco_structural_errors_are_fatal(tmp_path, document, message):
    path = write_json(tmp_path / "bad.json", document)
    with pytest.raises(AnnotationError, match=message) as info:
        read_coco(path)
    assert str(path) in str(info.value)


def test_coco_not_json_names_the_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"images": [],\n "annotations": [,]}')
    with pytest.raises(AnnotationError, match=r"not valid JSON \(line 2"):
        read_coco(path)
    with pytest.raises(AnnotationError, match="not found"):
        read_coco(tmp_path / "nope.json")


# ---------------------------------------------------------------- VOC


def test_voc_valid(tmp_path):
    dataset = read_voc(make_valid_voc(tmp_path))
    assert dataset.class_names == ["cat", "dog", "person"]
    assert dataset.issues == [] and dataset.ignored_objects == {"difficult": 1}
    first, second = dataset.records
    _assert_record(first, 0, "JPEGImages/img1.png", (30, 20), [[0, 0, 10, 5], [4, 5, 20, 15]], [1, 2])
    _assert_record(second, 1, "JPEGImages/img2.png", (25, 15), [], [])


def test_voc_keep_difficult(tmp_path):
    dataset = read_voc(make_valid_voc(tmp_path), keep_difficult=True)
    assert dataset.ignored_objects == {}
    np.testing.assert_array_equal(dataset.records[0].boxes[1], [1, 1, 3, 3])
    assert dataset.records[0].labels.tolist() == [1, 0, 2]


def test_voc_split_file(tmp_path):
    voc = make_valid_voc(tmp_path)
    split = voc / "ImageSets" / "Main" / "train.txt"
    split.parent.mkdir(parents=True)
    split.write_text("000002\n\n000009  1\n")
    dataset = load_dataset(split)
    assert [record.path for record in dataset.records] == [str(voc / "JPEGImages" / "img2.png")]
    assert _issues(dataset) == [("id 000009", "missing annotation", "error")]
    with pytest.raises(AnnotationError, match="ImageSets/Main"):
        read_voc(voc / "JPEGImages" / "img1.png")


def test_voc_xml_beside_images(tmp_path):
    write_image(tmp_path / "photo.png", 12, 10)
    (tmp_path / "photo.xml").write_text(voc_xml("photo.png", (12, 10), [("b", (2, 3, 12, 11), False)]))
    dataset = read_voc(tmp_path, class_names=["a", "b"])
    _assert_record(dataset.records[0], 0, "photo.png", (12, 10), [[1, 2, 12, 10]], [1])
    assert _issues(dataset) == [("object 1", "box clipped", "warning")]


def test_voc_per_item_problems(tmp_path):
    write_image(tmp_path / "one.png", 12, 10)
    # VOC xmin=3, xmax=2 is one pixel column ([2, 2] after the -1 shift): zero width, not inverted.
    objects = [
        ("a", ("x", 1, 5, 5), False),
        ("zebra", (1, 1, 5, 5), False),
        ("a", (4, 3, 2, 8), False),
        ("a", (3, 3, 2, 8), False),
    ]
    (tmp_path / "1.xml").write_text(voc_xml("one.png", (12, 10), objects))
    (tmp_path / "2.xml").write_text(voc_xml("one.png", (12, 10), []))  # same image again
    dataset = read_voc(tmp_path, class_names=["a"])
    assert len(dataset.records) == 1 and len(dataset.records[0].boxes) == 0
    assert _issues(dataset) == [
        ("object 1", "invalid box", "error"),
        ("object 3", "invalid box", "error"),
        ("object 4", "degenerate box", "warning"),
        ("", "duplicate id", "error"),
        ("object 2", "unknown label", "error"),
    ]
    assert dataset.issues[3].path == str(tmp_path / "2.xml")


@pytest.mark.parametrize(
    "text, message",
    [
        ("<annotation><filename>a.png</filename>", r"malformed XML \(line 1"),
        ("<root><filename>a.png</filename></root>", "root element is <root>"),
        ("<annotation><size><width>3</width></size></annotation>", "no <filename>"),
        (
            "<annotation><filename>a.png</filename><object><name>a</name></object></annotation>",
            "object 1 lacks",
        ),
        (
            "<annotation><filename>a.png</filename><object><name>a</name>"
            "<bndbox><xmin>1</xmin></bndbox></object></annotation>",
            "object 1: <bndbox> lacks",
        ),
    ],
)
def test_voc_structural_errors_are_fatal(tmp_path, text, message):
    write_image(tmp_path / "a.png", 4, 4)
    (tmp_path / "bad.xml").write_text(text)
    with pytest.raises(AnnotationError, match=message) as info:
        read_voc(tmp_path)
    assert str(tmp_path / "bad.xml") in str(info.value)


def test_voc_empty_folder_is_fatal(tmp_path):
    with pytest.raises(AnnotationError, match="no VOC annotation"):
        read_voc(tmp_path)


# ---------------------------------------------------------------- CSV


def test_csv_valid(tmp_path):
    path = make_valid_csv(tmp_path)
    dataset = read_csv(path)
    assert dataset.class_names == ["cat", "dog"] and dataset.issues == []
    a, b = dataset.records
    _assert_record(a, 0, "imgs/a.png", (40, 30), [[1, 2, 11, 7], [0, 0, 40, 30], [3.5, 3, 5, 5.5]], [1, 0, 1])
    _assert_record(b, 1, "b.png", (20, 20), [], [])
    assert a.path == str(tmp_path / "imgs" / "a.png")


def test_csv_without_header_with_absolute_paths_and_image_root(tmp_path):
    make_valid_csv(tmp_path)
    absolute = tmp_path / "imgs" / "a.png"
    path = tmp_path / "other" / "x.csv"
    path.parent.mkdir()
    path.write_text(f"{absolute},1,1,2,2,cat\na.png,0,0,4,4,dog\n")
    dataset = read_csv(path, image_root=tmp_path / "imgs")
    assert [record.path for record in dataset.records] == [str(absolute)] * 2
    assert dataset.issues == []


def test_csv_per_item_problems(tmp_path):
    make_valid_csv(tmp_path)
    text = (
        "imgs/a.png,1,2,x,7,dog\n"  # line 1: not a number
        "imgs/a.png,1,2,,7,dog\n"  # line 2: incomplete
        ",1,2,3,4,dog\n"  # line 3: no image
        "missing.png,1,2,3,4,dog\n"  # line 4: image not found
        "missing.png,1,2,3,4,dog\n"  # line 5: same image, not reported again
        "imgs/a.png,30,20,50,40,dog\n"  # line 6: clipped
        "imgs/a.png,1,2,3,4,horse\n"  # line 7: unknown label
    )
    path = tmp_path / "bad.csv"
    path.write_text(text)
    dataset = read_csv(path, class_names=["cat", "dog"])
    _assert_record(dataset.records[0], 0, "a.png", (40, 30), [[30, 20, 40, 30]], [1])
    assert len(dataset.records) == 1
    assert _issues(dataset) == [
        ("line 1", "invalid box", "error"),
        ("line 2", "incomplete row", "error"),
        ("line 3", "incomplete row", "error"),
        ("line 4", "unreadable image", "error"),
        ("line 6", "box clipped", "warning"),
        ("line 7", "unknown label", "error"),
    ]


def test_class_list_keeps_labels_of_skipped_rows(tmp_path):
    """Labels must not shift because the only image of a class is missing or its box is bad."""
    make_valid_csv(tmp_path)
    path = tmp_path / "c.csv"
    path.write_text("missing.png,1,1,2,2,ant\nimgs/a.png,1,1,1,2,bee\nimgs/a.png,1,1,2,2,cow\n")
    dataset = read_csv(path)
    assert dataset.class_names == ["ant", "bee", "cow"]
    assert dataset.records[0].labels.tolist() == [2]


@pytest.mark.parametrize(
    "content, message",
    [
        (b"a.png,1,2,3,4,dog\na.png,1,2,3,dog\n", "line 2: expected 6 fields"),
        (b"a.png,1,2,3,4,dog\n\xff\xfe\xfa,1\n", "UTF-8"),
        (b'a.png,1,2,3,4,"dog\n', "line 1: .*unexpected end of data"),
    ],
)
def test_csv_structural_errors_are_fatal(tmp_path, content, message):
    write_image(tmp_path / "a.png", 8, 8)
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(AnnotationError, match=message) as info:
        read_csv(path)
    assert str(path) in str(info.value)


# ---------------------------------------------------------------- dispatch


def test_load_dataset_dispatches_on_the_path(tmp_path):
    coco = make_valid_coco(tmp_path / "coco")
    voc = make_valid_voc(tmp_path / "voc")
    csv_path = make_valid_csv(tmp_path / "csv")
    assert (detect_format(coco), detect_format(voc), detect_format(csv_path)) == ("coco", "voc", "csv")
    assert load_dataset(coco).class_names == ["cat", "dog", "zebra"]
    assert load_dataset(voc).class_names == ["cat", "dog", "person"]
    assert load_dataset(csv_path, class_names=["dog", "cat"]).records[0].labels.tolist() == [0, 1, 0]
    renamed = csv_path.rename(csv_path.with_suffix(".dat"))
    with pytest.raises(AnnotationError, match="cannot tell the annotation format"):
        load_dataset(renamed)
    assert len(load_dataset(renamed, format="csv").records) == 2
    with pytest.raises(AnnotationError, match="not found"):
        load_dataset(tmp_path / "nothing.json")
    with pytest.raises(AnnotationError, match="unknown annotation format"):
        load_dataset(coco, format="yolo")  # type: ignore[arg-type]


def test_readers_do_not_decode_images(tmp_path):
    """Sizes come from the annotation or the header: a truncated image still loads."""
    path = make_valid_coco(tmp_path)
    image = path.parent / "b.png"
    image.write_bytes(image.read_bytes()[:60])  # header intact, pixel data cut
    assert json.loads(path.read_text())["images"][1].get("width") is None
    dataset = read_coco(path)
    assert (dataset.records[1].width, dataset.records[1].height) == (20, 20)
