"""read_image / image_size: every accepted input converted correctly, every bad one an ImageError."""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cornernet_saccade.errors import ImageError
from cornernet_saccade.images import image_size, read_image


def _save(image: Image.Image, path: Path, **options) -> Path:
    image.save(path, **options)
    return path


def _raw_png(path: Path, width: int, height: int, bit_depth: int, pixel_rows: bytes | None) -> Path:
    """An RGB PNG written by hand; ``pixel_rows=None`` gives a header with no pixel data at all."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, 2, 0, 0, 0)
    pixels = b"" if pixel_rows is None else chunk(b"IDAT", zlib.compress(pixel_rows))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + pixels + chunk(b"IEND", b""))
    return path


def _png_header_only(path: Path, width: int, height: int) -> Path:
    return _raw_png(path, width, height, 8, None)


@pytest.fixture
def rgb_pixels() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(7, 11, 3), dtype=np.uint8)


def test_png_round_trip_is_exact_rgb(tmp_path, rgb_pixels):
    path = _save(Image.fromarray(rgb_pixels), tmp_path / "a.png")
    out = read_image(path)
    assert out.dtype == np.uint8 and out.shape == (7, 11, 3) and out.flags.c_contiguous
    np.testing.assert_array_equal(out, rgb_pixels)
    assert read_image(str(path)).tobytes() == rgb_pixels.tobytes()


def test_png_named_jpg_is_read_from_its_content(tmp_path, rgb_pixels):
    path = _save(Image.fromarray(rgb_pixels), tmp_path / "really_a_png.jpg", format="PNG")
    np.testing.assert_array_equal(read_image(path), rgb_pixels)


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("empty.jpg", b"", "empty file"),
        ("text.jpg", b"this is not an image\n" * 20, "not a readable image"),
        ("fake.eps", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "not a readable image"),
    ],
)
def test_non_images_raise_image_error_naming_the_file(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImageError, match=message) as info:
        read_image(path)
    assert str(path) in str(info.value)


def test_missing_file_and_folder_raise_image_error(tmp_path):
    with pytest.raises(ImageError, match="not found"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(ImageError, match="not a regular file"):
        read_image(tmp_path)


@pytest.mark.parametrize("fmt, suffix", [("PNG", "png"), ("JPEG", "jpg")])
def test_truncated_files_raise_image_error(tmp_path, fmt, suffix):
    rng = np.random.default_rng(1)
    noisy = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)  # incompressible: long pixel data
    whole = _save(Image.fromarray(noisy), tmp_path / f"whole.{suffix}", format=fmt)
    cut = tmp_path / f"cut.{suffix}"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(ImageError) as info:
        read_image(cut)
    assert str(cut) in str(info.value)


def test_16_bit_png_is_scaled_to_8_bit(tmp_path):
    values = np.array([[0, 1000, 25700, 65535]], dtype=np.uint16)  # 25700 = 100 * 257
    path = _save(Image.fromarray(values), tmp_path / "deep.png")
    assert Image.open(path).mode.startswith("I;16")
    out = read_image(path)
    expected = np.array([0, 4, 100, 255], dtype=np.uint8)  # round(v * 255 / 65535)
    for channel in range(3):
        np.testing.assert_array_equal(out[0, :, channel], expected)


def test_16_bit_colour_png_stays_within_one_level_of_exact_scaling(tmp_path):
    samples = np.array([[[0x7FFF, 0x0101, 0xFFFF], [0x0000, 0x8000, 0x12FF]]], dtype=">u2")
    path = _raw_png(tmp_path / "deep_rgb.png", 2, 1, 16, b"\x00" + samples.tobytes())
    out = read_image(path).astype(int)
    exact = np.rint(samples.astype(float) * 255 / 65535)  # [[127, 1, 255], [0, 128, 19]]
    assert np.abs(out - exact).max() <= 1
    np.testing.assert_array_equal(out[0, 0], [127, 1, 255])


def test_grayscale_is_repeated_into_three_channels(tmp_path):
    gray = np.array([[0, 50], [200, 255]], dtype=np.uint8)
    out = read_image(_save(Image.fromarray(gray), tmp_path / "gray.png"))
    np.testing.assert_array_equal(out, np.repeat(gray[:, :, None], 3, axis=2))


def test_rgba_alpha_is_dropped_and_colour_kept(tmp_path):
    rgba = np.array([[[10, 20, 30, 0], [40, 50, 60, 255]]], dtype=np.uint8)
    out = read_image(_save(Image.fromarray(rgba, "RGBA"), tmp_path / "alpha.png"))
    np.testing.assert_array_equal(out, rgba[:, :, :3])


def test_palette_image_is_expanded(tmp_path):
    image = Image.new("P", (3, 1))
    image.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (768 - 9))
    image.putdata([2, 0, 1])
    out = read_image(_save(image, tmp_path / "palette.gif"))
    np.testing.assert_array_equal(out[0], [[0, 0, 255], [255, 0, 0], [0, 255, 0]])


def test_cmyk_jpeg_colours(tmp_path):
    # CMYK (0, 255, 255, 0) is pure red, (255, 0, 255, 0) pure green; JPEG loses a little.
    image = Image.new("CMYK", (16, 8), (0, 255, 255, 0))
    image.paste((255, 0, 255, 0), (8, 0, 16, 8))
    out = read_image(_save(image, tmp_path / "cmyk.jpg", quality=95)).astype(int)
    np.testing.assert_allclose(out[4, 2], [255, 0, 0], atol=8)
    np.testing.assert_allclose(out[4, 13], [0, 255, 0], atol=8)


@pytest.fixture
def rotated_jpeg(tmp_path) -> Path:
    """A stored 20x10 (WxH) JPEG, red block at its top-left, EXIF orientation 6 (turn 90° clockwise)."""
    stored = np.zeros((10, 20, 3), dtype=np.uint8)
    stored[:4, :4] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    return _save(Image.fromarray(stored), tmp_path / "rotated.jpg", quality=100, exif=exif.tobytes())


def test_exif_orientation_is_honoured(rotated_jpeg):
    out = read_image(rotated_jpeg)
    assert out.shape == (20, 10, 3)
    # Turning clockwise moves the stored top-left corner to the displayed top-right corner.
    np.testing.assert_allclose(out[1, 8].astype(int), [255, 0, 0], atol=6)
    assert out[1, 1].max() < 10 and out[18, 1].max() < 10
    assert image_size(rotated_jpeg) == (10, 20)


def test_image_size_reads_only_the_header(tmp_path):
    # No pixel data at all: only a header read can succeed.
    assert image_size(_png_header_only(tmp_path / "header.png", 3000, 2000)) == (3000, 2000)


def test_pixel_limit_is_checked_before_decoding(tmp_path):
    path = _png_header_only(tmp_path / "big.png", 3000, 2000)
    with pytest.raises(ImageError, match="above the limit of 1000000") as info:
        read_image(path, max_pixels=1_000_000)
    assert str(path) in str(info.value)


def test_huge_header_is_refused_by_the_bomb_check(tmp_path):
    path = _png_header_only(tmp_path / "bomb.png", 100_000, 100_000)
    with pytest.raises(ImageError, match="decompression-bomb") as info:
        read_image(path)
    assert str(path) in str(info.value)
    with pytest.raises(ImageError):
        image_size(path)


@pytest.mark.parametrize(
    "array, expected",
    [
        (np.array([[0, 255]], dtype=np.uint8), [[[0, 0, 0], [255, 255, 255]]]),
        (np.array([[[7], [9]]], dtype=np.uint8), [[[7, 7, 7], [9, 9, 9]]]),
        (np.array([[[1, 2, 3, 4]]], dtype=np.uint8), [[[1, 2, 3]]]),
        (np.array([[[0, 257, 65535]]], dtype=np.uint16), [[[0, 1, 255]]]),
        (np.array([[[0.0, 0.5, 1.0]]], dtype=np.float32), [[[0, 128, 255]]]),
        (np.array([[0.2]], dtype=np.float64), [[[51, 51, 51]]]),
    ],
)
def test_arrays_are_converted(array, expected):
    out = read_image(array)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, np.array(expected, dtype=np.uint8))


def test_array_result_is_a_copy():
    array = np.zeros((2, 2, 3), dtype=np.uint8)
    out = read_image(array)
    out[0, 0, 0] = 99
    assert array[0, 0, 0] == 0


@pytest.mark.parametrize(
    "array, message",
    [
        (np.zeros((4,), dtype=np.uint8), "shape"),
        (np.zeros((4, 4, 2), dtype=np.uint8), "shape"),
        (np.zeros((1, 4, 4, 3), dtype=np.uint8), "shape"),
        (np.zeros((0, 4, 3), dtype=np.uint8), "no pixels"),
        (np.zeros((2, 2), dtype=np.int64), "pixel type"),
        (np.zeros((2, 2), dtype=bool), "pixel type"),
        (np.full((2, 2), 1.5, dtype=np.float32), r"\[0, 1\]"),
        (np.full((2, 2), -0.1, dtype=np.float32), r"\[0, 1\]"),
        (np.full((2, 2), np.nan, dtype=np.float32), "NaN"),
    ],
)
def test_bad_arrays_raise_image_error(array, message):
    with pytest.raises(ImageError, match=message):
        read_image(array)


def test_arrays_in_memory_have_no_pixel_limit():
    """The limit guards decoding a file; an array or tensor is already decoded."""
    assert read_image(np.zeros((10, 10, 3), dtype=np.uint8), max_pixels=99).shape == (10, 10, 3)
    assert read_image(torch.zeros(3, 10, 10, dtype=torch.uint8), max_pixels=99).shape == (10, 10, 3)


def test_the_pixel_limit_names_how_to_raise_it(tmp_path):
    path = tmp_path / "photo.png"
    Image.fromarray(np.zeros((20, 30, 3), dtype=np.uint8)).save(path)
    with pytest.raises(ImageError, match="raise it with --max-pixels 600 .Python: max_pixels=600."):
        read_image(path, max_pixels=599)
    assert read_image(path, max_pixels=600).shape == (20, 30, 3)


def test_a_raised_limit_also_lifts_pillows_own(tmp_path, monkeypatch):
    """Pillow refuses above ``2 * MAX_IMAGE_PIXELS`` by itself; a caller who raised ``max_pixels``
    above that must get the image, and Pillow's limit is back afterwards."""
    path = tmp_path / "photo.png"
    Image.fromarray(np.zeros((20, 30, 3), dtype=np.uint8)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # Pillow refuses above 200 pixels
    with pytest.raises(ImageError, match="decompression-bomb"):
        read_image(path, max_pixels=200)
    assert read_image(path, max_pixels=600).shape == (20, 30, 3)
    assert Image.MAX_IMAGE_PIXELS == 100


def test_other_sources_are_refused_naming_what_is_accepted():
    with pytest.raises(ImageError, match="a path, a numpy array, a PIL image or a torch tensor, got bytes"):
        read_image(b"\x89PNG")  # type: ignore[arg-type]


def test_pil_images_and_tensors_give_the_array_pixels(rgb_pixels):
    """A PIL image (any mode) and a torchvision-style [C, H, W] tensor read as the same RGB pixels."""
    import torch

    np.testing.assert_array_equal(read_image(Image.fromarray(rgb_pixels)), rgb_pixels)
    np.testing.assert_array_equal(read_image(Image.fromarray(rgb_pixels).convert("RGBA")), rgb_pixels)
    chw = torch.from_numpy(rgb_pixels).permute(2, 0, 1)
    np.testing.assert_array_equal(read_image(chw), rgb_pixels)
    np.testing.assert_array_equal(read_image(chw.float() / 255), rgb_pixels)
    with pytest.raises(ImageError, match=r"\[C, H, W\] tensor.*got shape \[2, 5, 5\]"):
        read_image(torch.zeros(2, 5, 5))
