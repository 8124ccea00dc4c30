"""Writers of tiny datasets (COCO JSON, VOC XML, CSV) and their images, for the reader tests.

Each ``make_valid_*`` writes the same small dataset whose expected records are stated next to it,
so tests compare against hand-computed boxes and labels.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image


def write_image(path: Path, width: int, height: int) -> Path:
    """A ``width x height`` PNG (or JPEG, by suffix) of a plain grey with one white pixel."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.full((height, width, 3), 90, dtype=np.uint8)
    pixels[0, 0] = 255
    Image.fromarray(pixels).save(path)
    return path


def write_json(path: Path, document: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


#: Categories in file order; sorted ids 2, 5, 90 -> labels 0 (cat), 1 (dog), 2 (zebra).
COCO_CATEGORIES = [{"id": 5, "name": "dog"}, {"id": 2, "name": "cat"}, {"id": 90, "name": "zebra"}]


def make_valid_coco(root: Path) -> Path:
    """COCO file ``root/annotations/instances.json``, images in ``root/annotations``.

    Expected records, in order: id 10 ``a.png`` 40x30, boxes [[1, 2, 11, 7] dog=1,
    [0, 0, 40, 30] zebra=2]; id 3 ``b.png`` 20x20 (size from the header), [[2.5, 3.5, 6.5, 9.5]
    cat=0]; id 7 ``c.png`` 16x12, no boxes. One crowd annotation ignored.
    """
    folder = root / "annotations"
    write_image(folder / "a.png", 40, 30)
    write_image(folder / "b.png", 20, 20)
    write_image(folder / "c.png", 16, 12)
    document = {
        "images": [
            {"id": 10, "file_name": "a.png", "width": 40, "height": 30},
            {"id": 3, "file_name": "b.png"},
            {"id": 7, "file_name": "c.png", "width": 16, "height": 12},
        ],
        "annotations": [
            {"id": 1, "image_id": 10, "category_id": 5, "bbox": [1, 2, 10, 5], "iscrowd": 0},
            {"id": 2, "image_id": 10, "category_id": 90, "bbox": [0, 0, 40, 30]},
            {"id": 3, "image_id": 3, "category_id": 2, "bbox": [2.5, 3.5, 4, 6]},
            {"id": 4, "image_id": 10, "category_id": 2, "bbox": [5, 5, 10, 10], "iscrowd": 1},
        ],
        "categories": COCO_CATEGORIES,
    }
    return write_json(folder / "instances.json", document)


def voc_xml(
    filename: str,
    size: tuple[int, int] | None,
    objects: Sequence[tuple[str, Sequence[object], bool]],
) -> str:
    """A VOC annotation; ``objects`` = ``(name, (xmin, ymin, xmax, ymax), difficult)``."""
    parts = ["<annotation>", f"<folder>VOC</folder><filename>{filename}</filename>"]
    if size is not None:
        parts.append(f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>")
    for name, box, difficult in objects:
        coordinates = "".join(
            f"<{tag}>{value}</{tag}>" for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), box)
        )
        parts.append(
            f"<object><name>{name}</name><difficult>{int(difficult)}</difficult>"
            f"<bndbox>{coordinates}</bndbox></object>"
        )
    parts.append("</annotation>")
    return "\n".join(parts)


def make_valid_voc(root: Path) -> Path:
    """VOC folder ``root/VOC`` (Annotations/ + JPEGImages/).

    Expected records: id 0 ``img1.png`` 30x20, boxes [[0, 0, 10, 5] dog=1, [4, 5, 20, 15]
    person=2] (a difficult cat is ignored unless kept: [1, 1, 3, 3] cat=0); id 1 ``img2.png``
    25x15 (size from the header), no boxes. Classes cat, dog, person.
    """
    voc = root / "VOC"
    write_image(voc / "JPEGImages" / "img1.png", 30, 20)
    write_image(voc / "JPEGImages" / "img2.png", 25, 15)
    annotations = voc / "Annotations"
    annotations.mkdir(parents=True)
    (annotations / "000001.xml").write_text(
        voc_xml(
            "img1.png",
            (30, 20),
            [("dog", (1, 1, 10, 5), False), ("cat", (2, 2, 3, 3), True), ("person", (5, 6, 20, 15), False)],
        )
    )
    (annotations / "000002.xml").write_text(voc_xml("img2.png", None, []))
    return voc


VALID_CSV = """image_path,xmin,ymin,xmax,ymax,label
imgs/a.png,1,2,11,7,dog
imgs/a.png,0,0,40,30,cat

b.png,,,,,
imgs/a.png,3.5,3,5,5.5,dog
"""


def make_valid_csv(root: Path, text: str = VALID_CSV) -> Path:
    """CSV ``root/boxes.csv`` with images ``root/imgs/a.png`` (40x30) and ``root/b.png`` (20x20).

    Expected records (for :data:`VALID_CSV`): id 0 ``imgs/a.png`` boxes [[1, 2, 11, 7] dog=1,
    [0, 0, 40, 30] cat=0, [3.5, 3, 5, 5.5] dog=1]; id 1 ``b.png``, no boxes. Classes cat, dog.
    """
    write_image(root / "imgs" / "a.png", 40, 30)
    write_image(root / "b.png", 20, 20)
    path = root / "boxes.csv"
    path.write_text(text, encoding="utf-8")
    return path
