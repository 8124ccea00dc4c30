"""Reading an image by windows: the detector asks for the image pixels each view needs, never for more.

:func:`open_windows` gives an :class:`ImageWindows`: the image's ``height`` / ``width`` and
``read(y0, y1, x0, x1)``, the ``uint8 [y1 - y0, x1 - x0, 3]`` RGB pixels of that window (image
pixels, the same values as :func:`~cornernet_saccade.images.read_image` gives for the whole image).

* :class:`TiffWindows`: a TIFF (GeoTIFF included) larger than :data:`WINDOWED_MIN_PIXELS`, stored
  in tiles or strips of interleaved samples without an EXIF orientation, is read by windows. Pillow
  decodes a compressed TIFF only whole (through libtiff), so each window's tiles or strips are
  copied, still compressed, into a small TIFF of their own that Pillow then decodes: memory follows
  the window, not the image, and any compression Pillow reads works (none, LZW, Deflate, JPEG,
  PackBits, ...). Such a TIFF may exceed the whole-decode pixel limit (``max_pixels``) up to
  :data:`MAX_WINDOWED_PIXELS`; each window read stays under ``max_pixels``.
* :class:`ArrayWindows`: every other image (PNG, JPEG, small or planar TIFFs, arrays, PIL images,
  tensors) is read whole by :func:`~cornernet_saccade.images.read_image` (its pixel limit and
  checks) and windows are slices of it.

A format that allows windowed reads is added by another :class:`ImageWindows` class and a branch
in :func:`open_windows`.
"""
from __future__ import annotations

import io
import math
import warnings
from os import PathLike
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

import numpy as np
from PIL import Image, TiffImagePlugin, TiffTags

from cornernet_saccade.errors import ImageError
from cornernet_saccade.images import (
    DECODER_ERRORS,
    DEFAULT_MAX_PIXELS,
    ImageSource,
    existing_file,
    pil_to_rgb8,
    read_image,
)

#: A TIFF with more pixels than this (and a layout :class:`TiffWindows` reads) is read by windows;
#: smaller ones are decoded whole, which is faster for them.
WINDOWED_MIN_PIXELS = 4096 * 4096

#: The most pixels a TIFF read by windows may have (60000 x 60000; its tile table alone is then
#: about a million entries).
MAX_WINDOWED_PIXELS = 3_600_000_000

#: TIFF tags copied into the small TIFF of a window: what Pillow needs to decode the samples.
_DECODING_TAGS = (
    TiffImagePlugin.BITSPERSAMPLE, TiffImagePlugin.COMPRESSION, TiffImagePlugin.PHOTOMETRIC_INTERPRETATION,
    TiffImagePlugin.FILLORDER, TiffImagePlugin.SAMPLESPERPIXEL, TiffImagePlugin.PLANAR_CONFIGURATION,
    TiffImagePlugin.PREDICTOR, TiffImagePlugin.COLORMAP, TiffImagePlugin.EXTRASAMPLES,
    TiffImagePlugin.SAMPLEFORMAT, TiffImagePlugin.JPEGTABLES, TiffImagePlugin.YCBCRSUBSAMPLING,
    531, TiffImagePlugin.REFERENCEBLACKWHITE,  # 531: YCbCrPositioning
)
_ORIENTATION_TAG = 274
#: Pillow modes whose pixels do not depend on the rest of the image (no per-image value range).
_WINDOWED_MODES = frozenset({"1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr",
                             "I;16", "I;16L", "I;16B", "I;16N"})


@runtime_checkable
class ImageWindows(Protocol):
    """An image read by windows: ``height``, ``width`` (image pixels), ``name`` (for messages),
    ``chunk_rows`` (rows the source decodes at once: reads of whole multiples of them, aligned, decode
    nothing twice) and :meth:`read`."""

    height: int
    width: int
    name: str
    chunk_rows: int

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """``uint8 [y1 - y0, x1 - x0, 3]`` RGB pixels of rows ``y0:y1`` and columns ``x0:x1`` (image
        pixels, inside the image)."""
        ...

    def close(self) -> None:
        """Release the file, if any."""
        ...


class ArrayWindows:
    """Windows of an image held whole: ``pixels`` ``uint8 [H, W, 3]`` RGB."""

    def __init__(self, pixels: np.ndarray, name: str = "<image>"):
        self.pixels = pixels
        self.height, self.width = pixels.shape[:2]
        self.name = name
        self.chunk_rows = 1

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        return self.pixels[y0:y1, x0:x1]

    def close(self) -> None:
        pass


class TiffWindows:
    """A tiled or stripped TIFF (interleaved samples, no EXIF orientation) read by windows: each
    :meth:`read` decodes only the tiles (or strips) the window touches. Use :func:`open_windows`."""

    def __init__(self, path: Path, image: TiffImagePlugin.TiffImageFile, fp: BinaryIO, max_pixels: int):
        tags = image.tag_v2
        self.name = str(path)
        self.width, self.height = image.size
        self._fp = fp
        self._max_pixels = max_pixels
        self._tags = tags
        self._tiled = TiffImagePlugin.TILEOFFSETS in tags
        if self._tiled:
            self._chunk = (int(tags[TiffImagePlugin.TILELENGTH]), int(tags[TiffImagePlugin.TILEWIDTH]))
            offsets, counts = tags[TiffImagePlugin.TILEOFFSETS], tags[TiffImagePlugin.TILEBYTECOUNTS]
        else:
            self._chunk = (min(self.height, int(tags.get(TiffImagePlugin.ROWSPERSTRIP, self.height))), self.width)
            offsets, counts = tags[TiffImagePlugin.STRIPOFFSETS], tags[TiffImagePlugin.STRIPBYTECOUNTS]
        self.chunk_rows = self._chunk[0]
        self._grid = (math.ceil(self.height / self._chunk[0]), math.ceil(self.width / self._chunk[1]))
        if min(self._chunk) < 1 or len(offsets) != len(counts) or len(offsets) != self._grid[0] * self._grid[1]:
            raise ImageError(f"{path}: inconsistent TIFF tile table ({len(offsets)} offsets, {len(counts)} "
                             f"byte counts for a {self._grid[0]} x {self._grid[1]} grid)")
        self._offsets = np.asarray(offsets, np.int64)
        self._counts = np.asarray(counts, np.int64)
        size = path.stat().st_size
        if len(offsets) and (self._offsets.min() < 0 or self._counts.min() < 0
                             or (self._offsets + self._counts).max() > size):
            raise ImageError(f"{path}: the TIFF tile table points outside the file ({size} bytes); truncated or "
                             f"corrupt")

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        chunk_h, chunk_w = self._chunk
        rows = range(y0 // chunk_h, -(-y1 // chunk_h))
        cols = range(x0 // chunk_w, -(-x1 // chunk_w))
        block = self._decode_block(rows, cols)
        top, left = rows.start * chunk_h, cols.start * chunk_w
        return block[y0 - top : y1 - top, x0 - left : x1 - left]

    def _decode_block(self, rows: range, cols: range) -> np.ndarray:
        """``uint8 [h, w, 3]`` pixels of the chunks ``rows x cols`` (tile rows and columns; strips:
        one column), decoded from a TIFF holding only them."""
        chunk_h, chunk_w = self._chunk
        height = len(rows) * chunk_h if self._tiled else min(rows.stop * chunk_h, self.height) - rows.start * chunk_h
        width = len(cols) * chunk_w
        if height * width > self._max_pixels:
            raise ImageError(f"{self.name}: a window of {width}x{height} pixels is above the limit of "
                             f"{self._max_pixels} (max_pixels)")
        indices = [row * self._grid[1] + col for row in rows for col in cols]
        data = []
        for index in indices:
            self._fp.seek(int(self._offsets[index]))
            data.append(self._fp.read(int(self._counts[index])))
        try:
            with Image.open(io.BytesIO(_tiff_of_chunks(self._tags, self._tiled, (height, width), data)),
                            formats=("TIFF",)) as block:
                block.load()
                return pil_to_rgb8(block, self.name, self._max_pixels)
        except DECODER_ERRORS as exc:
            raise ImageError(f"{self.name}: cannot decode the TIFF window ({type(exc).__name__}: {exc})") from exc

    def close(self) -> None:
        self._fp.close()


def _tiff_of_chunks(tags: TiffImagePlugin.ImageFileDirectory_v2, tiled: bool, size: tuple[int, int],
                    chunks: list[bytes]) -> bytes:
    """A TIFF (in the source's byte order) of ``size`` (height, width) image pixels whose tiles (or
    strips), row-major, are the still-compressed ``chunks`` of the source, with the source's
    decoding tags."""
    ifd = TiffImagePlugin.ImageFileDirectory_v2(prefix=tags.prefix)
    for tag in _DECODING_TAGS:
        if tag in tags:
            ifd[tag] = tags[tag]
            ifd.tagtype[tag] = tags.tagtype[tag]
    ifd[TiffImagePlugin.IMAGELENGTH], ifd[TiffImagePlugin.IMAGEWIDTH] = size
    ifd.tagtype[TiffImagePlugin.IMAGELENGTH] = ifd.tagtype[TiffImagePlugin.IMAGEWIDTH] = TiffTags.LONG
    relative = np.cumsum([0, *map(len, chunks[:-1])]).tolist()
    if tiled:
        offsets_tag, counts_tag = TiffImagePlugin.TILEOFFSETS, TiffImagePlugin.TILEBYTECOUNTS
        for tag in (TiffImagePlugin.TILEWIDTH, TiffImagePlugin.TILELENGTH):
            ifd[tag], ifd.tagtype[tag] = tags[tag], TiffTags.LONG
    else:
        offsets_tag, counts_tag = TiffImagePlugin.STRIPOFFSETS, TiffImagePlugin.STRIPBYTECOUNTS
        ifd[TiffImagePlugin.ROWSPERSTRIP] = int(tags.get(TiffImagePlugin.ROWSPERSTRIP, size[0]))
        ifd.tagtype[TiffImagePlugin.ROWSPERSTRIP] = TiffTags.LONG
    ifd[counts_tag] = tuple(len(chunk) for chunk in chunks)
    ifd[offsets_tag] = tuple(relative)
    for tag in (offsets_tag, counts_tag):
        ifd.tagtype[tag] = TiffTags.LONG
    header = tags.prefix + (b"\x2a\x00\x08\x00\x00\x00" if tags.prefix == b"II" else b"\x00\x2a\x00\x00\x00\x08")
    directory = ifd.tobytes(len(header))
    if tiled:  # Pillow moves strip offsets past the directory itself, tile offsets not
        start = len(header) + len(directory)
        ifd[offsets_tag] = tuple(start + offset for offset in relative)
        directory = ifd.tobytes(len(header))
    return header + directory + b"".join(chunks)


def whole_pixels(source: ImageSource | ImageWindows, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The whole image ``uint8 [H, W, 3]`` RGB of ``source`` (an ``ImageWindows`` or what
    :func:`~cornernet_saccade.images.read_image` takes); a windowed image is decoded whole, which
    ``max_pixels`` limits as for a file."""
    if isinstance(source, ArrayWindows):
        return source.pixels
    if isinstance(source, ImageWindows):
        return source.read(0, source.height, 0, source.width)
    return read_image(source, max_pixels=max_pixels)


def open_windows(source: ImageSource, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageWindows:
    """The image ``source`` (as :func:`~cornernet_saccade.images.read_image` takes it) as
    :class:`ImageWindows`: a :class:`TiffWindows` for a TIFF file that can be read by windows and has
    more than :data:`WINDOWED_MIN_PIXELS` pixels, else an :class:`ArrayWindows` of the whole image.

    Raises:
        ImageError: as ``read_image``; a windowed TIFF above :data:`MAX_WINDOWED_PIXELS` pixels.
    """
    if isinstance(source, (str, PathLike)):
        windows = _tiff_windows(existing_file(source), max_pixels)
        if windows is not None:
            return windows
    name = str(source) if isinstance(source, (str, PathLike)) else f"<{type(source).__name__}>"
    return ArrayWindows(read_image(source, max_pixels=max_pixels), name)


def _tiff_windows(path: Path, max_pixels: int) -> TiffWindows | None:
    """The TIFF at ``path`` read by windows, or None when it is not a TIFF that can be (or needs to be)."""
    with open(path, "rb") as probe:
        if probe.read(4) not in (b"II*\x00", b"MM\x00*"):
            return None  # BigTIFF too: Pillow reads it whole
    fp = open(path, "rb")  # noqa: SIM115 - kept open by the TiffWindows, closed with it
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = TiffImagePlugin.TiffImageFile(fp)  # the header only: no decompression-bomb check here
        windows = _windowed_layout(path, image, fp, max_pixels)
    except ImageError:
        fp.close()
        raise
    except DECODER_ERRORS:
        fp.close()
        return None  # read_image reports what is wrong with it
    if windows is None:
        fp.close()
    return windows


def _windowed_layout(path: Path, image: TiffImagePlugin.TiffImageFile, fp: BinaryIO,
                     max_pixels: int) -> TiffWindows | None:
    """A :class:`TiffWindows` of the opened TIFF when its size and layout call for one, else None."""
    tags = image.tag_v2
    width, height = image.size
    if width * height <= WINDOWED_MIN_PIXELS:
        return None
    interleaved = tags.get(TiffImagePlugin.PLANAR_CONFIGURATION, 1) == 1
    upright = tags.get(_ORIENTATION_TAG, 1) == 1
    if not (interleaved and upright and image.mode in _WINDOWED_MODES):
        return None
    if width * height > MAX_WINDOWED_PIXELS:
        raise ImageError(f"{path}: image is {width}x{height} = {width * height} pixels, above the limit of "
                         f"{MAX_WINDOWED_PIXELS} for images read by windows; refusing to read it")
    return TiffWindows(path, image, fp, max_pixels)
