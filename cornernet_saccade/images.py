"""Image input: every image enters the package through :func:`read_image`.

The result is always a C-contiguous ``uint8`` array of shape ``[H, W, 3]`` in **RGB** order, in image
pixels (row ``y`` down, column ``x`` right), with the EXIF orientation already applied (the original
reads with OpenCV, whose ``imread`` also honours EXIF orientation). Conversion to BGR, where the
model wants it, happens in :mod:`cornernet_saccade.inference.preprocess`.

What is accepted and how it is converted:

* Files are decoded with Pillow, restricted to :data:`ACCEPTED_FORMATS` (chosen from the content,
  not the extension, so a PNG named ``.jpg`` works). Plugins that run external programs (EPS) or
  parse rare formats are never reached.
* Sizes of files (and PIL images) are checked from the header **before** any pixel is decoded:
  above ``max_pixels`` pixels (default :data:`DEFAULT_MAX_PIXELS`, 100 megapixels) the image is
  refused with :class:`~cornernet_saccade.errors.ImageError`, which says how to raise the limit.
  The limit guards against decompression bombs (a small file that decodes to gigabytes); a larger
  ``max_pixels`` also lifts Pillow's own limit (``2 * PIL.Image.MAX_IMAGE_PIXELS``, about 179
  megapixels) for that call. Arrays and tensors are already in memory and have no limit.
* Grayscale is repeated into three channels; palette, CMYK and YCbCr images are converted by Pillow;
  16-bit images are scaled with ``round(v * 255 / 65535)``. Pillow itself reduces 16-bit *colour*
  PNGs to 8 bit by keeping the high byte (at most 1 grey level away from that rounding).
* An alpha channel is **dropped**: the stored colour of each pixel is kept as is, without blending
  onto a background (what ``cv2.imread(..., IMREAD_COLOR)`` does too).
* Arrays (``[H, W]``, ``[H, W, 1]``, ``[H, W, 3]``, ``[H, W, 4]``; assumed RGB(A)) of ``uint8``,
  ``uint16`` or floating type with values in ``[0, 1]`` are converted the same way and copied.

Anything else raises :class:`~cornernet_saccade.errors.ImageError` naming the file and the problem.
"""
from __future__ import annotations

import contextlib
import struct
import sys
import warnings
from collections.abc import Iterator
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, TypeGuard, Union

import numpy as np
from PIL import ExifTags, Image

from cornernet_saccade.errors import ImageError

if TYPE_CHECKING:
    import torch

#: Default largest ``width * height`` that :func:`read_image` agrees to decode (100 megapixels,
#: about 300 MB as RGB uint8).
DEFAULT_MAX_PIXELS = 100_000_000

#: Pillow format names :func:`read_image` and :func:`image_size` open ("JPEG" includes the
#: multi-picture JPEGs many cameras write). Multi-frame files (GIF, TIFF) give their first frame.
ACCEPTED_FORMATS = ("JPEG", "PNG", "BMP", "GIF", "TIFF", "WEBP", "PPM")

#: What Pillow's parsers and decoders raise on corrupt or hostile data.
DECODER_ERRORS = (
    OSError,  # includes PIL.UnidentifiedImageError and "image file is truncated"
    ValueError,
    SyntaxError,  # e.g. "broken PNG file"
    EOFError,
    struct.error,
    IndexError,
    KeyError,
    TypeError,
    ZeroDivisionError,
    MemoryError,
    Image.DecompressionBombError,
)

#: EXIF orientation tag value -> the transpose that brings the stored pixels upright.
_ORIENTATION_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
#: Orientations that swap width and height.
_SWAPPING_ORIENTATIONS = frozenset({5, 6, 7, 8})

#: Pillow modes whose pixels :func:`_hwc_to_rgb8` converts directly (the rest go through
#: ``Image.convert("RGB")``).
_DIRECT_MODES = frozenset({"L", "RGB", "RGBA", "I;16", "I;16L", "I;16B", "I;16N", "I", "F"})

ImageSource = Union[str, "PathLike[str]", np.ndarray, Image.Image, "torch.Tensor"]

_ARRAY_NAME = "<image array>"
_PIL_NAME = "<PIL image>"
_TENSOR_NAME = "<image tensor>"


def read_image(source: ImageSource, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image file or convert an image array.

    Args:
        source: path of an image file; an array ``[H, W]``, ``[H, W, 1]``, ``[H, W, 3]`` or
            ``[H, W, 4]`` (RGB or RGBA order) of ``uint8``, ``uint16`` or float in ``[0, 1]``; a PIL
            image (any mode, used as it is: no EXIF rotation); or a torch tensor ``[C, H, W]``
            (C = 1, 3 or 4, as torchvision's images) with the array's dtypes and ranges.
        max_pixels: largest accepted ``H * W`` of a file or PIL image, checked from the header
            before decoding (arrays and tensors, already decoded, are not limited).

    Returns:
        ``uint8`` array ``[H, W, 3]``, RGB, image pixels, EXIF orientation applied. Always a new
        array (never a view of ``source``).

    Raises:
        ImageError: the file is missing, empty, not an accepted image format, truncated or corrupt,
            too large, or has an unsupported pixel mode; the array has an unsupported shape, dtype or
            value range.
    """
    if isinstance(source, Image.Image):
        return pil_to_rgb8(source, _PIL_NAME, max_pixels)
    if _is_tensor(source):
        source = _tensor_to_hwc(source)
    if isinstance(source, np.ndarray):
        return _hwc_to_rgb8(_as_hwc(source, _ARRAY_NAME), _ARRAY_NAME)
    if not isinstance(source, (str, PathLike)):
        raise ImageError(f"read_image expects a path, a numpy array, a PIL image or a torch tensor, "
                         f"got {type(source).__name__}")
    path = existing_file(source)
    with _pillow_limit(max_pixels), _open(path) as image:
        _check_pixel_count(path, image.size, max_pixels)
        try:
            image.load()
            upright = _apply_orientation(image, _orientation(image))
        except DECODER_ERRORS as exc:
            raise ImageError(f"{path}: cannot decode the image ({_describe(exc)})") from exc
        return pil_to_rgb8(upright, path, max_pixels)


@contextlib.contextmanager
def _pillow_limit(max_pixels: int) -> Iterator[None]:
    """Within the block, Pillow's decompression-bomb error limit (``2 * Image.MAX_IMAGE_PIXELS``)
    is at least ``max_pixels``, so that a caller who raised our limit is not refused by Pillow's
    (process-wide; restored on exit)."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit is None or max_pixels <= 2 * limit:
        yield
        return
    Image.MAX_IMAGE_PIXELS = (max_pixels + 1) // 2
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def pil_to_rgb8(image: Image.Image, name: object, max_pixels: int) -> np.ndarray:
    """A loaded PIL image as ``uint8 [H, W, 3]`` RGB."""
    _check_pixel_count(name, image.size, max_pixels)
    try:
        pixels = np.asarray(image) if image.mode in _DIRECT_MODES else np.asarray(image.convert("RGB"))
    except DECODER_ERRORS as exc:
        raise ImageError(f"{name}: cannot decode the image ({_describe(exc)})") from exc
    return _hwc_to_rgb8(_as_hwc(pixels, name), name)


def _is_tensor(source: object) -> TypeGuard[torch.Tensor]:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(source, torch.Tensor)


def _tensor_to_hwc(tensor: torch.Tensor) -> np.ndarray:
    """A ``[C, H, W]`` tensor (C = 1, 3 or 4) as a numpy ``[H, W, C]`` array, on the CPU."""
    if tensor.ndim != 3 or tensor.shape[0] not in (1, 3, 4):
        raise ImageError(f"{_TENSOR_NAME}: expected a [C, H, W] tensor with C = 1, 3 or 4, got shape "
                         f"{list(tensor.shape)}")
    return tensor.detach().cpu().permute(1, 2, 0).numpy()


def image_size(path: str | PathLike[str]) -> tuple[int, int]:
    """``(width, height)`` of an image file as :func:`read_image` would return it (EXIF orientation
    applied), read from the header only (no pixel is decoded).

    Raises:
        ImageError: the file is missing, empty, not an accepted image format, or its header is
            corrupt or beyond Pillow's decompression-bomb limit.
    """
    checked = existing_file(path)
    with _open(checked) as image:
        width, height = image.size
        if _orientation(image) in _SWAPPING_ORIENTATIONS:
            return height, width
        return width, height


def existing_file(path: str | PathLike[str]) -> Path:
    """The path, after checking it names a non-empty regular file."""
    checked = Path(path)
    try:
        if not checked.exists():
            raise ImageError(f"{checked}: image file not found")
        if not checked.is_file():
            raise ImageError(f"{checked}: not a regular file")
        size = checked.stat().st_size
    except OSError as exc:  # e.g. a name too long for the file system
        raise ImageError(f"{checked}: cannot access the file ({exc.strerror or exc})") from exc
    if size == 0:
        raise ImageError(f"{checked}: empty file (0 bytes)")
    return checked


def _open(path: Path) -> Image.Image:
    """Open ``path`` with Pillow (header only), mapping every failure to :class:`ImageError`.

    Pillow's decompression-bomb *warning* is silenced here because :func:`read_image` applies its
    own, configurable limit; its *error* (above twice ``Image.MAX_IMAGE_PIXELS``) is reported.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(path, formats=ACCEPTED_FORMATS)
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{path}: refused by Pillow's decompression-bomb check ({exc})") from exc
    except PermissionError as exc:
        raise ImageError(f"{path}: permission denied") from exc
    except DECODER_ERRORS as exc:
        accepted = ", ".join(ACCEPTED_FORMATS)
        raise ImageError(
            f"{path}: not a readable image (accepted formats: {accepted}; {_describe(exc)})"
        ) from exc


def _check_pixel_count(name: object, size: tuple[int, int], max_pixels: int) -> None:
    """Refuse a ``(width, height)`` that is empty or has more than ``max_pixels`` pixels."""
    width, height = size
    if width <= 0 or height <= 0:
        raise ImageError(f"{name}: image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise ImageError(
            f"{name}: image is {width}x{height} = {width * height} pixels, above the limit of "
            f"{max_pixels} (a guard against decompression bombs); if you trust the file, raise it with "
            f"--max-pixels {width * height} (Python: max_pixels={width * height})"
        )


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation tag (1..8) of an opened image; 1 when absent or unreadable.

    A corrupt EXIF block does not make the pixels unusable, so it is treated like a missing one.
    """
    try:
        value = image.getexif().get(ExifTags.Base.Orientation, 1)
    except DECODER_ERRORS:
        return 1
    return value if isinstance(value, int) and value in _ORIENTATION_TRANSPOSE else 1


def _apply_orientation(image: Image.Image, orientation: int) -> Image.Image:
    """The image turned upright according to an EXIF orientation value."""
    method = _ORIENTATION_TRANSPOSE.get(orientation)
    return image if method is None else image.transpose(method)


def _hwc_to_rgb8(channels: np.ndarray, name: object) -> np.ndarray:
    """Convert ``[H, W, 1|3|4]`` pixels to a new ``uint8 [H, W, 3]`` RGB array.

    ``uint8`` is kept, ``uint16`` scaled by ``255 / 65535`` and float in ``[0, 1]`` by 255 (both
    rounded to nearest); a 4th (alpha) channel is dropped, one channel is repeated three times.
    Big-endian samples (Pillow mode ``I;16B``) are handled like native ones.
    """
    kind, itemsize = channels.dtype.kind, channels.dtype.itemsize
    if kind == "u" and itemsize == 1:
        rgb8 = channels
    elif kind == "u" and itemsize == 2:
        rgb8 = _scale_to_uint8(channels, 65535.0)
    elif kind == "i" and itemsize == 4 and 0 <= channels.min() and channels.max() <= 65535:
        rgb8 = _scale_to_uint8(channels, 65535.0)  # Pillow mode "I" holding 16-bit samples
    elif kind == "f":
        if not np.all(np.isfinite(channels)):
            raise ImageError(f"{name}: float pixels contain NaN or infinity")
        if channels.min() < 0.0 or channels.max() > 1.0:
            raise ImageError(
                f"{name}: float pixels must lie in [0, 1], found [{channels.min():g}, {channels.max():g}]"
            )
        rgb8 = _scale_to_uint8(channels, 1.0)
    else:
        raise ImageError(
            f"{name}: unsupported pixel type {channels.dtype} (expected uint8, uint16 or float in [0, 1])"
        )
    if rgb8.shape[2] == 1:
        rgb8 = np.repeat(rgb8, 3, axis=2)
    return np.array(rgb8[:, :, :3], dtype=np.uint8, order="C", copy=True)


def _as_hwc(pixels: np.ndarray, name: object) -> np.ndarray:
    """``pixels`` viewed as ``[H, W, C]`` with ``C`` in (1, 3, 4) and ``H, W > 0``."""
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 3, 4):
        raise ImageError(
            f"{name}: unsupported image shape {tuple(pixels.shape)} (expected HxW, HxWx1, HxWx3 or HxWx4)"
        )
    if pixels.shape[0] == 0 or pixels.shape[1] == 0:
        raise ImageError(f"{name}: image has no pixels (shape {tuple(pixels.shape)})")
    return pixels


def _scale_to_uint8(pixels: np.ndarray, full_scale: float) -> np.ndarray:
    """``round(pixels * 255 / full_scale)`` as ``uint8`` (values assumed in ``[0, full_scale]``)."""
    return np.rint(pixels.astype(np.float64) * (255.0 / full_scale)).astype(np.uint8)


def _describe(exc: BaseException) -> str:
    """A one-line description of a decoder exception."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
