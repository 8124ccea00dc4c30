"""Fuzzing: random and mutated inputs to read_image, image_size and the three dataset readers.

Every call must end, quickly, in a valid result or the project's own error type
(:class:`CornerNetSaccadeError`); any other exception fails the test. Fixed seeds.
"""
from __future__ import annotations

import contextlib
import io
import json
import signal
from collections.abc import Callable, Iterator

import numpy as np
import pytest
from dataset_files import VALID_CSV, make_valid_coco, make_valid_csv, make_valid_voc
from PIL import Image

from cornernet_saccade.data import DetectionDataset, read_coco, read_csv, read_voc
from cornernet_saccade.errors import CornerNetSaccadeError
from cornernet_saccade.images import image_size, read_image

#: Pillow warns about the corrupt metadata the mutants contain; that is expected here.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

#: Small enough that no mutated header makes the decoder allocate much.
FUZZ_MAX_PIXELS = 1 << 20
#: Seconds any single call may take before it counts as a hang.
CALL_TIME_LIMIT = 10

MAGIC_PREFIXES = [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a", b"BM", b"II*\x00", b"RIFF", b"P6\n"]


@contextlib.contextmanager
def _watchdog(seconds: int) -> Iterator[None]:
    """Raise TimeoutError (not a project error, so the test fails) if the body runs too long."""
    if not hasattr(signal, "SIGALRM"):
        yield
        return

    def on_alarm(signum, frame):
        raise TimeoutError(f"call took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _outcome(call: Callable[[], object]) -> object:
    """The call's result, or the project error it raised; anything else propagates."""
    with _watchdog(CALL_TIME_LIMIT):
        try:
            return call()
        except CornerNetSaccadeError as exc:
            return exc


def _encoded_images() -> dict[str, bytes]:
    """Small valid files of each accepted format and several pixel modes."""
    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 256, size=(12, 16, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6
    images = {
        "rgb.png": (Image.fromarray(pixels), {"format": "PNG"}),
        "rgba.png": (Image.fromarray(pixels).convert("RGBA"), {"format": "PNG"}),
        "deep.png": (Image.fromarray(pixels[:, :, 0].astype(np.uint16) * 257), {"format": "PNG"}),
        "rotated.jpg": (Image.fromarray(pixels), {"format": "JPEG", "exif": exif.tobytes()}),
        "cmyk.jpg": (Image.fromarray(pixels).convert("CMYK"), {"format": "JPEG"}),
        "palette.gif": (Image.fromarray(pixels).convert("P"), {"format": "GIF"}),
        "gray.bmp": (Image.fromarray(pixels).convert("L"), {"format": "BMP"}),
        "rgb.tiff": (Image.fromarray(pixels), {"format": "TIFF"}),
        "rgb.webp": (Image.fromarray(pixels), {"format": "WEBP"}),
        "rgb.ppm": (Image.fromarray(pixels), {"format": "PPM"}),
    }
    encoded = {}
    for name, (image, options) in images.items():
        buffer = io.BytesIO()
        image.save(buffer, **options)
        encoded[name] = buffer.getvalue()
    return encoded


def _mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """Flip a few bytes, truncate, splice random bytes in, or duplicate a slice."""
    array = bytearray(data)
    choice = rng.integers(4)
    if choice == 0:
        for position in rng.integers(0, len(array), size=rng.integers(1, 9)):
            array[position] = int(rng.integers(256))
    elif choice == 1:
        del array[int(rng.integers(0, len(array))) :]
    elif choice == 2:
        position = int(rng.integers(0, len(array)))
        array[position:position] = rng.bytes(int(rng.integers(1, 64)))
    else:
        start = int(rng.integers(0, len(array)))
        array[start:start] = array[start : start + int(rng.integers(1, 200))]
    return bytes(array)


def _image_cases() -> Iterator[tuple[str, bytes]]:
    rng = np.random.default_rng(2024)
    encoded = _encoded_images()
    for name, data in encoded.items():
        yield name, data
        for _ in range(25):
            yield name, _mutate(data, rng)
    for _ in range(60):
        yield "random.jpg", rng.bytes(int(rng.integers(1, 400)))
    for _ in range(60):
        prefix = MAGIC_PREFIXES[int(rng.integers(len(MAGIC_PREFIXES)))]
        yield "magic.png", prefix + rng.bytes(int(rng.integers(0, 300)))


def test_read_image_never_raises_foreign_errors(tmp_path):
    count = 0
    for index, (name, data) in enumerate(_image_cases()):
        path = tmp_path / f"{index}_{name}"
        path.write_bytes(data)
        image = _outcome(lambda: read_image(path, max_pixels=FUZZ_MAX_PIXELS))
        if isinstance(image, np.ndarray):
            assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        size = _outcome(lambda: image_size(path))
        if isinstance(image, np.ndarray) and isinstance(size, tuple):
            assert size == (image.shape[1], image.shape[0])
        count += 1
    assert count > 300


def _random_json_value(rng: np.random.Generator) -> object:
    choices = [
        None, True, -1, 0, 3, 2**70, -(2**70), 1e308, 0.5, float("nan"), "", "a.png", "../x",
        [], [1, 2], [1, 2, 3, 4], [-5, -5, 1, 1], ["1", "2", "3", "4"], {}, {"id": 1},
    ]  # fmt: skip
    return choices[int(rng.integers(len(choices)))]


def _mutate_document(document: object, rng: np.random.Generator, depth: int = 0) -> object:
    """Replace or delete one random value in a JSON document, below its two top levels (so most
    mutants get past the structural checks and exercise the per-item ones)."""
    deep = depth >= 2
    if isinstance(document, dict) and document:
        key = list(document)[int(rng.integers(len(document)))]
        if deep and rng.random() < 0.15:
            return {k: v for k, v in document.items() if k != key}
        if deep and rng.random() < 0.3:
            return {**document, key: _random_json_value(rng)}
        return {**document, key: _mutate_document(document[key], rng, depth + 1)}
    if isinstance(document, list) and document:
        index = int(rng.integers(len(document)))
        changed = list(document)
        if deep and rng.random() < 0.3:
            changed[index] = _random_json_value(rng)
        else:
            changed[index] = _mutate_document(document[index], rng, depth + 1)
        return changed
    return _random_json_value(rng)


def _assert_consistent(dataset: DetectionDataset) -> None:
    """Invariants every reader result keeps: boxes inside their image, positive size, valid labels."""
    for record in dataset.records:
        boxes = record.boxes
        assert boxes.shape == (len(record.labels), 4) and record.width > 0 and record.height > 0
        assert np.all(boxes[:, 0] >= 0) and np.all(boxes[:, 1] >= 0)
        assert np.all(boxes[:, 2] <= record.width) and np.all(boxes[:, 3] <= record.height)
        assert np.all(boxes[:, 2] > boxes[:, 0]) and np.all(boxes[:, 3] > boxes[:, 1])
        assert np.all((record.labels >= 0) & (record.labels < len(dataset.class_names)))


def _check_reader(call: Callable[[], DetectionDataset]) -> None:
    result = _outcome(call)
    if isinstance(result, DetectionDataset):
        _assert_consistent(result)


def test_coco_reader_fuzz(tmp_path):
    rng = np.random.default_rng(7)
    path = make_valid_coco(tmp_path)
    document = json.loads(path.read_text())
    text = path.read_bytes()
    for _ in range(150):
        mutated = document
        for _ in range(int(rng.integers(1, 4))):
            mutated = _mutate_document(mutated, rng)
        path.write_text(json.dumps(mutated))
        _check_reader(lambda: read_coco(path))
    for _ in range(50):
        path.write_bytes(_mutate(text, rng) if rng.random() < 0.7 else rng.bytes(int(rng.integers(0, 200))))
        _check_reader(lambda: read_coco(path))


def test_voc_reader_fuzz(tmp_path):
    rng = np.random.default_rng(8)
    voc = make_valid_voc(tmp_path)
    xml_file = voc / "Annotations" / "000001.xml"
    original = xml_file.read_bytes()
    words = [b"", b"-3", b"1e9", b"nan", b"x", b"0", b"1", b"<", b"&amp;", b"img2.png", b"../nope.png"]
    for _ in range(150):
        if rng.random() < 0.5:
            mutated = _mutate(original, rng)
        else:  # replace the text of one element, keeping the XML well formed
            pieces = original.split(b">")
            index = int(rng.integers(1, len(pieces)))
            text, tag = pieces[index].split(b"<", 1) if b"<" in pieces[index] else (pieces[index], b"")
            word = words[int(rng.integers(len(words)))]
            pieces[index] = word + (b"<" + tag if tag else b"")
            mutated = b">".join(pieces)
        xml_file.write_bytes(mutated)
        _check_reader(lambda: read_voc(voc))


def test_csv_reader_fuzz(tmp_path):
    rng = np.random.default_rng(9)
    path = make_valid_csv(tmp_path)
    original = VALID_CSV.encode()
    fields = ["", "imgs/a.png", "b.png", "nope.png", "-1", "1e400", "nan", "3", "40", "dog", '"', "a,b"]
    fields.append("\x00")
    for _ in range(100):
        path.write_bytes(_mutate(original, rng))
        _check_reader(lambda: read_csv(path))
    for _ in range(80):
        rows = [
            ",".join(fields[int(rng.integers(len(fields)))] for _ in range(int(rng.integers(4, 8))))
            for _ in range(int(rng.integers(1, 5)))
        ]
        path.write_text("\n".join(rows), encoding="utf-8")
        _check_reader(lambda: read_csv(path))


@pytest.mark.parametrize("reader", [read_coco, read_voc, read_csv])
def test_readers_on_random_bytes(tmp_path, reader):
    rng = np.random.default_rng(10)
    path = tmp_path / "annotations"
    for _ in range(40):
        path.write_bytes(rng.bytes(int(rng.integers(0, 300))))
        _check_reader(lambda: reader(path))
