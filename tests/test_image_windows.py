"""Images read by windows: a window has the pixels of the whole read, for every TIFF layout and
compression; other images are read whole; a large tiled TIFF is detected within a memory bound
(measured in a subprocess) and gives what the same image in memory gives."""
from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from engine_fixtures import one_thread  # noqa: F401
from PIL import Image
from test_saccade import RectangleFinder

import cornernet_saccade.image_windows as image_windows
from cornernet_saccade.errors import ImageError
from cornernet_saccade.image_windows import ArrayWindows, TiffWindows, open_windows
from cornernet_saccade.images import read_image
from cornernet_saccade.inference import views
from cornernet_saccade.inference.detector import SaccadeDetector
from cornernet_saccade.inference.results import box_iou
from cornernet_saccade.inference.views import CropWindow, full_image_window, paste_crops
from cornernet_saccade.testing import write_tiled_tiff

TESTS = Path(__file__).parent
WINDOWS = [(0, 300, 0, 410), (5, 200, 250, 409), (299, 300, 409, 410), (64, 129, 0, 17), (100, 101, 3, 400)]


@pytest.fixture
def windowed_from_any_size(monkeypatch):
    monkeypatch.setattr(image_windows, "WINDOWED_MIN_PIXELS", 0)


def random_rgb(height: int = 300, width: int = 410) -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.mark.usefixtures("windowed_from_any_size")
@pytest.mark.parametrize("deflate", [True, False])
@pytest.mark.parametrize("tile", [64, 128])
def test_tiled_tiff_windows_are_the_pixels(tmp_path, deflate, tile):
    pixels = random_rgb()
    path = tmp_path / "tiled.tif"
    write_tiled_tiff(path, 300, 410, tile, lambda y0, y1, x0, x1: pixels[y0:y1, x0:x1], deflate=deflate)
    windows = open_windows(path)
    assert isinstance(windows, TiffWindows) and windows.chunk_rows == tile
    np.testing.assert_array_equal(read_image(path), pixels)  # Pillow's whole decode agrees
    for y0, y1, x0, x1 in WINDOWS:
        np.testing.assert_array_equal(windows.read(y0, y1, x0, x1), pixels[y0:y1, x0:x1])
    windows.close()


@pytest.mark.usefixtures("windowed_from_any_size")
@pytest.mark.parametrize(("mode", "options"), [
    ("RGB", {"compression": "tiff_lzw"}), ("RGB", {"compression": "packbits"}),
    ("RGB", {"compression": "tiff_adobe_deflate"}), ("RGB", {}), ("RGB", {"compression": "jpeg"}),
    ("L", {"compression": "tiff_lzw"}), ("I;16", {"compression": "tiff_adobe_deflate"}), ("P", {}),
])
def test_stripped_tiff_windows_are_the_whole_read(tmp_path, mode, options):
    pixels = random_rgb()
    image = Image.fromarray(pixels)
    if mode == "I;16":
        image = Image.fromarray(pixels[:, :, 0].astype(np.uint16) * 255 + 7)  # 16-bit grey
    elif mode != "RGB":
        image = image.convert(mode)
    path = tmp_path / "stripped.tif"
    image.save(path, **options)
    windows = open_windows(path)
    assert isinstance(windows, TiffWindows)
    whole = read_image(path)
    for y0, y1, x0, x1 in WINDOWS:
        np.testing.assert_array_equal(windows.read(y0, y1, x0, x1), whole[y0:y1, x0:x1])


@pytest.mark.usefixtures("windowed_from_any_size")
def test_what_cannot_be_read_by_windows_is_read_whole(tmp_path):
    pixels = random_rgb()
    Image.fromarray(pixels).save(tmp_path / "image.png")
    turned = Image.fromarray(pixels)
    exif = turned.getexif()
    exif[274] = 6  # EXIF orientation: turned
    turned.save(tmp_path / "turned.tif", exif=exif)
    for name in ("image.png", "turned.tif"):
        windows = open_windows(tmp_path / name)
        assert isinstance(windows, ArrayWindows)
        np.testing.assert_array_equal(windows.pixels, read_image(tmp_path / name))


def test_small_tiffs_are_read_whole(tmp_path):
    Image.fromarray(random_rgb()).save(tmp_path / "small.tif")
    assert isinstance(open_windows(tmp_path / "small.tif"), ArrayWindows)


@pytest.mark.usefixtures("windowed_from_any_size")
def test_a_truncated_tile_is_an_error_naming_the_file(tmp_path):
    pixels = random_rgb()
    path = tmp_path / "tiled.tif"
    write_tiled_tiff(path, 300, 410, 64, lambda y0, y1, x0, x1: pixels[y0:y1, x0:x1])
    data = bytearray(path.read_bytes())
    data[200:4000] = bytes(3800)  # the first tiles' Deflate streams are zeros now
    path.write_bytes(bytes(data))
    windows = open_windows(path)
    with pytest.raises(ImageError, match=f"{path}: cannot decode the TIFF window"):
        windows.read(0, 10, 0, 10)


@pytest.mark.usefixtures("windowed_from_any_size")
def test_a_truncated_tiff_is_an_error_naming_the_file(tmp_path):
    pixels = random_rgb()
    path = tmp_path / "tiled.tif"
    write_tiled_tiff(path, 300, 410, 64, lambda y0, y1, x0, x1: pixels[y0:y1, x0:x1])
    data = path.read_bytes()
    with Image.open(path) as image:
        offsets = image.tag_v2[324]  # TileOffsets
    table = struct.pack("<2I", *offsets[:2])
    path.write_bytes(data.replace(table, struct.pack("<2I", len(data) + 100, offsets[1])))  # tile 0 past the end
    with pytest.raises(ImageError, match=f"{path}: the TIFF tile table points outside the file"):
        open_windows(path)


@pytest.mark.usefixtures("windowed_from_any_size")
def test_a_huge_tiff_header_is_refused_before_reading(tmp_path, monkeypatch):
    pixels = random_rgb()
    path = tmp_path / "tiled.tif"
    write_tiled_tiff(path, 300, 410, 64, lambda y0, y1, x0, x1: pixels[y0:y1, x0:x1])
    monkeypatch.setattr(image_windows, "MAX_WINDOWED_PIXELS", 100_000)
    with pytest.raises(ImageError, match=f"{path}: image is 410x300 = 123000 pixels, above the limit"):
        open_windows(path)


def test_large_regions_resized_by_their_taps_match_the_direct_resize(monkeypatch):
    image = torch.from_numpy(random_rgb(700, 900)).permute(2, 0, 1)
    windows = [full_image_window((700, 900), 255), CropWindow(10, 690, 20, 700, 3, 250, 0, 255, 10, 20, 680)]
    direct = paste_crops(image, windows)
    monkeypatch.setattr(views, "DIRECT_RESIZE_MAX_PIXELS", 0)
    by_taps = paste_crops(image, windows)
    assert (by_taps - direct).abs().max() < 1e-6  # the same formula, sums in another order
    from_windows = paste_crops(ArrayWindows(image.permute(1, 2, 0).numpy()), windows)
    monkeypatch.setattr(views, "BAND_PIXELS", 1000)  # one row per band
    torch.testing.assert_close(from_windows, by_taps, rtol=0, atol=0)
    torch.testing.assert_close(paste_crops(ArrayWindows(image.permute(1, 2, 0).numpy()), windows), by_taps,
                               rtol=0, atol=0)


#: Objects of the large test image (class -> box x1, y1, x2, y2, image pixels).
LARGE_OBJECTS = {0: (1500, 2000, 1700, 2150), 1: (4200, 3300, 4300, 3360)}


def paint_large(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """The mostly black large image: a red and a green rectangle."""
    part = np.zeros((y1 - y0, x1 - x0, 3), np.uint8)
    for channel, (bx0, by0, bx1, by1) in LARGE_OBJECTS.items():
        part[max(by0 - y0, 0) : max(by1 - y0, 0), max(bx0 - x0, 0) : max(bx1 - x0, 0), channel] = 255
    return part


#: Run in a subprocess (argv: the TIFF, the tests folder): peak memory of detecting the TIFF, above
#: the peak after detecting a small image with the same detector.
MEMORY_SCRIPT = """
import json, resource, sys
sys.path.insert(0, sys.argv[2])
import numpy as np, torch
torch.set_num_threads(1)
from test_saccade import RectangleFinder
from cornernet_saccade.inference.detector import SaccadeDetector
from cornernet_saccade.inference.results import box_iou
detector = SaccadeDetector(RectangleFinder(), views="auto", min_object_size=25)
detector(np.zeros((1024, 1024, 3), np.uint8))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
result = detector(sys.argv[1])
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"peak_kib": after - before, "boxes": result.boxes.tolist(), "labels": result.labels.tolist(),
                  "scores": result.scores.tolist(), "views": len(result.trace.crops)}))
"""


@pytest.mark.usefixtures("one_thread")
def test_a_large_tiff_is_detected_within_a_memory_bound(tmp_path):
    path = tmp_path / "large.tif"
    write_tiled_tiff(path, 6000, 6000, 256, paint_large)
    run = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, str(path), str(TESTS)],
                         capture_output=True, text=True, timeout=600, check=True)
    measured = json.loads(run.stdout)
    # the image whole would take 108 MB as uint8 (and its 255 px view of it 864 MB as float64)
    assert measured["peak_kib"] < 40_000, measured["peak_kib"]
    assert_found(np.array(measured["boxes"]).reshape(-1, 4), np.array(measured["labels"]), LARGE_OBJECTS)
    # the same image in memory: the same views and detections
    in_memory = SaccadeDetector(RectangleFinder(), views="auto", min_object_size=25)(paint_large(0, 6000, 0, 6000))
    assert len(in_memory.trace.crops) == measured["views"]
    np.testing.assert_allclose(in_memory.boxes, measured["boxes"], rtol=0, atol=1e-3)
    np.testing.assert_allclose(in_memory.scores, measured["scores"], rtol=0, atol=1e-6)


@pytest.mark.usefixtures("one_thread", "windowed_from_any_size")
def test_the_detector_reports_every_view(tmp_path):
    pixels = np.zeros((600, 800, 3), np.uint8)
    pixels[100:140, 200:260, 0] = 255
    path = tmp_path / "scene.tif"
    write_tiled_tiff(path, 600, 800, 128, lambda y0, y1, x0, x1: pixels[y0:y1, x0:x1])
    detector = SaccadeDetector(RectangleFinder(), views="auto")
    counts: list[int] = []
    detector.on_views = counts.append
    result = detector(path)
    assert sum(counts) == len(result.trace.crops) > 2
    assert_found(result.boxes, result.labels, {0: (200, 100, 260, 140)})


def assert_found(boxes: np.ndarray, labels: np.ndarray, objects: dict[int, tuple[int, int, int, int]]) -> None:
    """Each object (class -> box, image pixels) has a detection of its class with IoU >= 0.9."""
    for label, box in objects.items():
        overlaps = box_iou(np.array([box], np.float64), boxes[labels == label].astype(np.float64))
        assert overlaps.max(initial=0.0) >= 0.9, (label, box, boxes[labels == label])
