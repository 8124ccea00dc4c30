"""Tree-crown conversion: wheel reading, tiling arithmetic, box bookkeeping, COCO output."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from cornernet_saccade.cli import main
from cornernet_saccade.data.coco import read_coco
from cornernet_saccade.data.records import AnnotatedImage
from cornernet_saccade.datasets.trees import (
    WHEEL_FILE_NAME,
    assign_to_tiles,
    convert_trees,
    fetch_wheel,
    tile_grid,
    tile_record,
)
from cornernet_saccade.errors import AnnotationError, ConfigError

#: VOC boxes (1-based inclusive) of the 50x30 image "a.png", and where each must land with tile
#: size 20 (columns cut at 0/17/33/50, rows at 0/15/30): (tile x0, tile y0, box in tile pixels).
A_OBJECTS = [
    ((3, 3, 10, 10), (0, 0, (2, 2, 10, 10))),      # inside the first tile
    ((15, 5, 22, 12), (17, 0, (0, 4, 5, 12))),     # 3 px left of x=17, 5 px right: second tile
    ((31, 13, 40, 20), (33, 15, (0, 0, 7, 5))),    # four pieces 9/21/15/35 px^2: last tile
    ((14, 3, 21, 6), (0, 0, (13, 2, 17, 6))),      # 4 px on each side of x=17: first tile wins
]


def _voc_xml(file_name: str, size: tuple[int, int], objects: list[tuple[str, tuple]]) -> str:
    parts = [f"<annotation><filename>{file_name}</filename><size><width>{size[0]}</width>"
             f"<height>{size[1]}</height><depth>3</depth></size>"]
    for name, (xmin, ymin, xmax, ymax) in objects:
        parts.append(f"<object><name>{name}</name><difficult>0</difficult><bndbox><xmin>{xmin}"
                     f"</xmin><ymin>{ymin}</ymin><xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox>"
                     "</object>")
    return "".join(parts) + "</annotation>"


def _png_bytes(pixels: np.ndarray, path: Path) -> bytes:
    Image.fromarray(pixels).save(path)
    return path.read_bytes()


@pytest.fixture()
def tiny_wheel(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A zip laid out like the deepforest wheel: two annotated images plus unrelated members."""
    pixels = np.random.default_rng(0).integers(0, 256, size=(30, 50, 3), dtype=np.uint8)
    wheel = tmp_path / "tiny.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("deepforest/__init__.py", "")
        archive.writestr("deepforest/data/sub/ignored.xml", "<annotation/>")
        archive.writestr("deepforest/data/a.xml", _voc_xml(
            "a.png", (50, 30), [("Tree", box) for box, _ in A_OBJECTS]))
        archive.writestr("deepforest/data/a.png", _png_bytes(pixels, tmp_path / "a.png"))
        archive.writestr("deepforest/data/b.xml", _voc_xml(
            "b.png", (20, 20), [("Dead", (2, 2, 8, 9))]))
        archive.writestr("deepforest/data/b.png",
                         _png_bytes(np.zeros((20, 20, 3), np.uint8), tmp_path / "b.png"))
    return wheel, pixels


def test_tile_grid_hand_computed_and_covering() -> None:
    assert tile_grid(50, 30, 20) == [(0, 0, 17, 15), (17, 0, 33, 15), (33, 0, 50, 15),
                                     (0, 15, 17, 30), (17, 15, 33, 30), (33, 15, 50, 30)]
    assert tile_grid(400, 400, 400) == [(0, 0, 400, 400)]
    assert tile_grid(1249, 1035, 0) == [(0, 0, 1249, 1035)]
    tiles = np.array(tile_grid(2299, 2472, 400))
    sides = tiles[:, 2:] - tiles[:, :2]
    assert len(tiles) == 6 * 7 and sides.max() <= 400 and sides.prod(axis=1).sum() == 2299 * 2472


def test_assign_to_tiles_picks_largest_part() -> None:
    tiles = tile_grid(50, 30, 20)
    boxes = np.array([[2, 2, 10, 10], [14, 4, 22, 12], [30, 12, 40, 20], [13, 2, 21, 6]], np.float32)
    np.testing.assert_array_equal(assign_to_tiles(boxes, tiles), [0, 1, 5, 0])
    assert assign_to_tiles(np.zeros((0, 4), np.float32), tiles).shape == (0,)


def test_tile_record_moves_boxes_to_tile_pixels() -> None:
    boxes = np.array([[14, 4, 22, 12], [30, 12, 40, 20]], np.float32)
    record = AnnotatedImage(1, "a.png", 50, 30, boxes, np.array([0, 0]))
    tiles = tile_record(record, 20)
    assert [len(t.boxes) for t in tiles] == [0, 1, 0, 0, 0, 1]
    np.testing.assert_array_equal(tiles[1].boxes, [[0, 4, 5, 12]])
    np.testing.assert_array_equal(tiles[5].boxes, [[0, 0, 7, 5]])


def test_convert_keeps_every_box_and_maps_it_through_tiling(
        tiny_wheel: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    wheel, pixels = tiny_wheel
    out = tmp_path / "out"
    splits = convert_trees(wheel, out, val_images=("b.png",), tile_size=20)
    assert sum(len(r.boxes) for d in splits.values() for r in d.records) == len(A_OBJECTS) + 1
    assert [len(splits["train"]), len(splits["val"])] == [6, 1]

    train = read_coco(out / "train.json")
    assert train.class_names == ["tree"] and not train.issues
    by_tile = {Path(r.path).name: r for r in train.records}
    for _, (x0, y0, expected) in A_OBJECTS:
        record = by_tile[f"a_x{x0}_y{y0}.png"]
        assert any(np.array_equal(box, expected) for box in record.boxes)
        tile_pixels = np.asarray(Image.open(record.path))
        np.testing.assert_array_equal(tile_pixels, pixels[y0:y0 + record.height,
                                                          x0:x0 + record.width])
    val = COCO(str(out / "val.json"))
    (annotation,) = val.loadAnns(val.getAnnIds())
    assert annotation["bbox"] == [1.0, 1.0, 7.0, 8.0] and annotation["category_id"] == 1


def test_cli_converts_without_tiling(tiny_wheel: tuple[Path, np.ndarray], tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    wheel, _ = tiny_wheel
    args = ["make-trees", "--wheel", str(wheel), "--out", str(tmp_path / "o"), "--tile-size", "0",
            "--val-image", "b.png"]
    assert main(args) == 0
    assert "train: 1 images, 4 boxes" in capsys.readouterr().out


def test_bad_inputs_raise_project_errors(tiny_wheel: tuple[Path, np.ndarray],
                                         tmp_path: Path) -> None:
    wheel, _ = tiny_wheel
    with pytest.raises(ConfigError, match="c.png"):
        convert_trees(wheel, tmp_path / "o", val_images=("c.png",))
    with pytest.raises(ConfigError, match="tile size"):
        convert_trees(wheel, tmp_path / "o", tile_size=-1)
    not_zip = tmp_path / "not.whl"
    not_zip.write_text("hello")
    with pytest.raises(AnnotationError, match="not.whl"):
        convert_trees(not_zip, tmp_path / "o")
    empty = tmp_path / "empty.whl"
    with zipfile.ZipFile(empty, "w") as archive:
        archive.writestr("deepforest/__init__.py", "")
    with pytest.raises(AnnotationError, match="no deepforest/data"):
        convert_trees(empty, tmp_path / "o")


def _standin_wheel(index: Path, data_wheel: Path) -> Path:
    """A minimal valid wheel named as the real one, holding ``data_wheel``'s members: what pip
    accepts from a local index (``--no-index --find-links``)."""
    index.mkdir()
    wheel = index / WHEEL_FILE_NAME
    info = "deepforest-2.1.0.dist-info"
    with zipfile.ZipFile(data_wheel) as source, zipfile.ZipFile(wheel, "w") as archive:
        for member in source.namelist():
            archive.writestr(member, source.read(member))
        archive.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: deepforest\nVersion: 2.1.0\n")
        archive.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        archive.writestr(f"{info}/RECORD", "")
    return wheel


def test_make_trees_fetches_the_wheel_with_pip_once(tiny_wheel: tuple[Path, np.ndarray], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture) -> None:
    """Without --wheel, pip downloads it (here from a local index standing in for the registry,
    through pip's own PIP_NO_INDEX / PIP_FIND_LINKS) into the cache, and the next run reuses it."""
    standin = _standin_wheel(tmp_path / "index", tiny_wheel[0])
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "index"))
    cache = tmp_path / "cache"
    args = ["make-trees", "--out", str(tmp_path / "o"), "--cache", str(cache), "--val-image", "b.png"]
    assert main(args) == 0
    assert (cache / WHEEL_FILE_NAME).read_bytes() == standin.read_bytes()
    assert "fetching deepforest==2.1.0" in capsys.readouterr().err
    assert json.loads((tmp_path / "o" / "val.json").read_text())["annotations"][0]["bbox"] == [1.0, 1.0, 7.0, 8.0]
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "nowhere"))  # pip would find nothing now
    assert fetch_wheel(cache) == cache / WHEEL_FILE_NAME
    assert main([*args[:2], str(tmp_path / "o2"), *args[3:]]) == 0
    assert "fetching" not in capsys.readouterr().err


def test_fetch_without_the_registry_names_the_command(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(ConfigError, match=r"could not fetch deepforest==2\.1\.0 with pip \(ERROR: .*\); where there "
                                          r"is a network, run `python -m pip download deepforest==2\.1\.0 --no-deps -d DIR`"):
        fetch_wheel(tmp_path / "cache", ["--no-index", "--find-links", str(tmp_path)])
    assert not (tmp_path / "cache" / WHEEL_FILE_NAME).exists()


@pytest.fixture(scope="module")
def real_wheel() -> Path:
    """The real wheel, fetched into the user's cache where the registry can be reached."""
    try:
        return fetch_wheel(timeout=120)
    except ConfigError as exc:
        pytest.skip(f"the deepforest wheel could not be fetched here: {exc}")


def test_real_wheel_counts(real_wheel: Path, tmp_path: Path) -> None:
    splits = convert_trees(real_wheel, tmp_path)
    counts = {name: sum(len(r.boxes) for r in d.records) for name, d in splits.items()}
    assert counts == {"train": 574 + 61 + 37, "val": 279}
    assert [len(splits["train"]), len(splits["val"])] == [42 + 1 + 1, 12]
