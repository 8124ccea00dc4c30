"""Views of an image: the square windows the detector looks at, pasted into crops, and the
conversions of boxes between frames.

Frames: **image pixels** (x right, y down, of the input image); **crop pixels** (the square canvas a
view is pasted into, 255x255 for a saccade crop); **output-map cells** (64x64 for 255, ratio 64/255).

The image is a ``[3, H, W]`` tensor or an :class:`~cornernet_saccade.image_windows.ImageWindows`
(read by windows): each view reads only its own region, and a view of a large region (a downsized
view of a large image) only the rows and columns its resize reads (:func:`resize_by_taps`).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from cornernet_saccade.image_windows import ImageWindows
from cornernet_saccade.model.geometry import CROP_SIZE

#: A view whose region has more image pixels than this is resized by :func:`resize_by_taps` from the
#: rows and columns its bilinear taps read, not from the whole region (whose float64 copy takes 8
#: bytes per pixel and channel). No view of an image up to 1024 x 1024 pixels is that large.
DIRECT_RESIZE_MAX_PIXELS = 1024 * 1024

#: Most image pixels :func:`resize_by_taps` reads from an ``ImageWindows`` at once (a band of rows
#: of the view's region; at least one chunk of rows the source decodes together).
BAND_PIXELS = 1024 * 1024

#: What views are cut from: a ``[3, H, W]`` tensor (``uint8`` or float64 in [0, 1]) or an image read
#: by windows.
ViewSource = Tensor | ImageWindows


@dataclass(frozen=True)
class CropWindow:
    """One view: image pixels ``[src_y0:src_y1, src_x0:src_x1]`` resized into crop pixels
    ``[dst_y0:dst_y1, dst_x0:dst_x1]`` of the canvas. The canvas shows the image square of side
    ``side`` whose top-left corner is image pixel ``(offset_y, offset_x)``."""

    src_y0: int
    src_y1: int
    src_x0: int
    src_x1: int
    dst_y0: int
    dst_y1: int
    dst_x0: int
    dst_x1: int
    offset_y: int
    offset_x: int
    side: int

    @property
    def region_xyxy(self) -> tuple[int, int, int, int]:
        """The image square the canvas shows: x0, y0, x1, y1 image pixels (may reach outside the image)."""
        return (self.offset_x, self.offset_y, self.offset_x + self.side, self.offset_y + self.side)

    @property
    def is_empty(self) -> bool:
        """True when no image pixel lands on the canvas (location outside the image, tiny image)."""
        return min(self.src_y1 - self.src_y0, self.src_x1 - self.src_x0,
                   self.dst_y1 - self.dst_y0, self.dst_x1 - self.dst_x0) <= 0


def crop_window(center_y: int, center_x: int, side: int, image_hw: tuple[int, int], canvas: int) -> CropWindow:
    """The original ``crop_image_gpu`` geometry: the ``side x side`` image square centred on the
    (integer) image pixel, cut to the image, resized by ``canvas / side`` and centred on the canvas."""
    height, width = image_hw
    half = side // 2
    y0, y1 = max(0, center_y - half), min(center_y + half, height)
    x0, x1 = max(0, center_x - half), min(center_x + half, width)
    resize = canvas / side
    mid = canvas // 2
    return CropWindow(
        src_y0=y0, src_y1=y1, src_x0=x0, src_x1=x1,
        dst_y0=mid - int((center_y - y0) * resize), dst_y1=mid + int((y1 - center_y) * resize),
        dst_x0=mid - int((center_x - x0) * resize), dst_x1=mid + int((x1 - center_x) * resize),
        offset_y=center_y - half, offset_x=center_x - half, side=side,
    )


def window_side(scale: float, canvas: int = CROP_SIZE) -> int:
    """Side (image pixels) of the square a location of zoom ``scale`` shows: ``int(canvas / scale)``,
    at least 1, computed in ``scale``'s dtype (float32 for the initial views, as the original)."""
    return max(1, int(canvas / scale))


def location_windows(locations: np.ndarray, image_hw: tuple[int, int], canvas: int = CROP_SIZE) -> list[CropWindow]:
    """Crop windows of ``locations`` ``[N, >=3]`` (y, x, scale), of side :func:`window_side`."""
    return [
        crop_window(int(y), int(x), window_side(scale, canvas), image_hw, canvas)
        for y, x, scale in locations[:, :3]
    ]


def full_image_window(image_hw: tuple[int, int], canvas: int) -> CropWindow:
    """The whole image resized so its long side fills ``canvas``, at the canvas's top-left corner."""
    height, width = image_hw
    side = max(height, width)
    return CropWindow(
        src_y0=0, src_y1=height, src_x0=0, src_x1=width,
        dst_y0=0, dst_y1=max(1, round(height * canvas / side)),
        dst_x0=0, dst_x1=max(1, round(width * canvas / side)),
        offset_y=0, offset_x=0, side=side,
    )


def tile_origins(length: int, tile: int, overlap: int) -> list[int]:
    """Start pixels of the tiles of side ``tile`` that cover ``length`` image pixels along one axis,
    neighbours sharing at least ``overlap`` pixels (``0 <= overlap < tile``).

    The first tile starts at 0 and the last ends at the image edge (``length - tile``); the ``n``
    origins in between are evenly spaced (``i * (length - tile) // (n - 1)``), with ``n`` the fewest
    whose step is at most ``tile - overlap``. A ``length`` up to ``tile`` gives one tile at 0 (the
    canvas pads the rest with zeros). ``800, 511, 128 -> [0, 289]``; ``1200 -> [0, 344, 689]``.
    """
    if length <= tile:
        return [0]
    count = 1 + -(-(length - tile) // (tile - overlap))
    return [i * (length - tile) // (count - 1) for i in range(count)]


def tile_cores(origins: Sequence[int], tile: int) -> np.ndarray:
    """``[n, 2]`` float64 (start, end) of each tile's *core* along one axis, image pixels: the part of
    the axis closer to that tile than to its neighbours, i.e. the overlaps split at their middle
    (``-inf`` before the first tile, ``+inf`` after the last). The cores partition the axis, so a box
    centre lies in exactly one tile's core; an object no longer than the overlap whose centre is in
    a tile's core lies wholly inside that tile."""
    starts = np.asarray(origins, np.float64)
    middles = (starts[1:] + starts[:-1] + tile) / 2
    return np.stack((np.concatenate(([-np.inf], middles)), np.concatenate((middles, [np.inf]))), axis=1)


def tile_grid(image_hw: tuple[int, int], tile: int, overlap: int) -> tuple[list[CropWindow], np.ndarray]:
    """The tiles covering the ``(height, width)`` image, row-major, at the :func:`tile_origins` of
    each axis: their crop windows at native resolution (image pixels ``[y, y + tile) x [x, x + tile)``
    cut to the image, pasted at the top-left of a ``tile`` canvas, so crop pixel = image pixel -
    origin; a tile reaching past the image edge is padded with zeros) and their cores ``[N, 4]``
    float64 (x start, x end, y start, y end; image pixels, :func:`tile_cores`)."""
    height, width = image_hw
    rows, cols = tile_origins(height, tile, overlap), tile_origins(width, tile, overlap)
    row_cores, col_cores = tile_cores(rows, tile), tile_cores(cols, tile)
    windows, cores = [], []
    for y, row_core in zip(rows, row_cores):
        for x, col_core in zip(cols, col_cores):
            h, w = min(tile, height - y), min(tile, width - x)
            windows.append(CropWindow(src_y0=y, src_y1=y + h, src_x0=x, src_x1=x + w, dst_y0=0, dst_y1=h,
                                      dst_x0=0, dst_x1=w, offset_y=y, offset_x=x, side=tile))
            cores.append((*col_core, *row_core))
    return windows, np.array(cores, np.float64)


def source_hw(image: ViewSource) -> tuple[int, int]:
    """``(height, width)`` of a view source, image pixels."""
    return (image.shape[1], image.shape[2]) if isinstance(image, Tensor) else (image.height, image.width)


def paste_crops(image: ViewSource, windows: Sequence[CropWindow], canvas: int = CROP_SIZE,
                device: torch.device | None = None) -> Tensor:
    """Cut and resize the views out of ``image`` (:data:`ViewSource`).

    Returns float32 ``[N,3,canvas,canvas]`` in crop pixels on ``device`` (default: the tensor's, the
    CPU for an ``ImageWindows``), zero outside the pasted part. Each view's source pixels are
    converted to float64 in [0, 1] (``v / 255`` for uint8: the same values as converting the whole
    image, at a fraction of the memory) and resized bilinearly (``align_corners=False``) in float64,
    like the original, one channel at a time (8 bytes per region pixel at once, not 48); a region
    above :data:`DIRECT_RESIZE_MAX_PIXELS` by :func:`resize_by_taps`.
    """
    if device is None:
        device = image.device if isinstance(image, Tensor) else torch.device("cpu")
    crops = torch.zeros((len(windows), 3, canvas, canvas), dtype=torch.float32, device=device)
    for crop, w in zip(crops, windows):
        if w.is_empty:
            continue
        size = (w.dst_y1 - w.dst_y0, w.dst_x1 - w.dst_x0)
        if (w.src_y1 - w.src_y0) * (w.src_x1 - w.src_x0) > DIRECT_RESIZE_MAX_PIXELS:
            resized = resize_by_taps(image, w, size).to(device)
            crop[:, w.dst_y0 : w.dst_y1, w.dst_x0 : w.dst_x1] = resized
            continue
        part = _region(image, w, device)
        for channel in range(part.shape[0]):
            crop[channel, w.dst_y0 : w.dst_y1, w.dst_x0 : w.dst_x1] = _resized_plane(part[channel], size)
    return crops


def _resized_plane(plane: Tensor, size: tuple[int, int]) -> Tensor:
    """One channel ``[h, w]`` (uint8 0-255 or float) in float64 [0, 1], resized bilinearly to ``size``
    (its float64 copy is freed on return, before the next channel's is made)."""
    source = plane[None, None].to(torch.float64, memory_format=torch.contiguous_format)
    if plane.dtype == torch.uint8:
        source.div_(255.0)
    return F.interpolate(source, size=size, mode="bilinear", align_corners=False)[0, 0]


def _region(image: ViewSource, w: CropWindow, device: torch.device) -> Tensor:
    """The source pixels ``[3, h, w]`` of view ``w`` (a view of the tensor, or read from the windows)."""
    if isinstance(image, Tensor):
        return image[:, w.src_y0 : w.src_y1, w.src_x0 : w.src_x1]
    pixels = image.read(w.src_y0, w.src_y1, w.src_x0, w.src_x1)
    return torch.from_numpy(np.ascontiguousarray(pixels)).to(device).permute(2, 0, 1)


def _unit_float(pixels: Tensor) -> Tensor:
    """``pixels`` as float64 in [0, 1]: ``v / 255`` for uint8 (divided in place: one float64 copy)."""
    return pixels.to(torch.float64).div_(255.0) if pixels.dtype == torch.uint8 else pixels.to(torch.float64)


def linear_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear taps of a resize from ``in_size`` to ``out_size`` pixels along one axis, as
    ``F.interpolate(mode="bilinear", align_corners=False)`` computes them: for each output pixel the
    two source pixels (``[out_size]`` int64, 0-based in the input) and their weights (float64)."""
    scale = in_size / out_size
    source = np.maximum(scale * (np.arange(out_size) + 0.5) - 0.5, 0.0)
    low = np.minimum(np.floor(source).astype(np.int64), in_size - 1)
    high = low + (low < in_size - 1)
    weight_high = np.clip(source - low, 0.0, 1.0)
    return low, high, 1.0 - weight_high, weight_high


def resize_by_taps(image: ViewSource, w: CropWindow, size: tuple[int, int]) -> Tensor:
    """The region of view ``w`` resized bilinearly to ``size`` (height, width), float64 ``[3, h, w]``
    in [0, 1] on the CPU, reading only the (at most ``2 * size``) rows and columns the taps use and
    converting them to float64 a band of output rows at a time.

    The same formula as ``F.interpolate(mode="bilinear", align_corners=False)``; the sums are
    ordered differently, so values may differ from it by about 1e-13.
    """
    rows_low, rows_high, row_w0, row_w1 = linear_taps(w.src_y1 - w.src_y0, size[0])
    cols_low, cols_high, col_w0, col_w1 = linear_taps(w.src_x1 - w.src_x0, size[1])
    rows = np.unique(np.concatenate((rows_low, rows_high)))
    cols = np.unique(np.concatenate((cols_low, cols_high)))
    values = _gather(image, w, rows, cols).cpu()  # [3, R, C], uint8 until a band of output rows needs them
    top, bottom = np.searchsorted(rows, rows_low), np.searchsorted(rows, rows_high)
    left, right = torch.from_numpy(np.searchsorted(cols, cols_low)), torch.from_numpy(np.searchsorted(cols, cols_high))
    w_left, w_right = torch.from_numpy(col_w0), torch.from_numpy(col_w1)
    resized = torch.empty((3, *size), dtype=torch.float64)
    step = max(1, BAND_PIXELS // (2 * len(cols)))  # output rows per band: 2 source rows each
    for start in range(0, size[0], step):
        band = slice(start, start + step)
        upper, lower = _unit_float(values[:, top[band]]), _unit_float(values[:, bottom[band]])
        upper = upper[:, :, left] * w_left + upper[:, :, right] * w_right
        lower = lower[:, :, left] * w_left + lower[:, :, right] * w_right
        resized[:, band] = upper * torch.from_numpy(row_w0[band])[:, None] + lower * torch.from_numpy(row_w1[band])[:, None]
    return resized


def _gather(image: ViewSource, w: CropWindow, rows: np.ndarray, cols: np.ndarray) -> Tensor:
    """``[3, len(rows), len(cols)]`` pixels of view ``w``'s region at ``rows`` x ``cols`` (sorted,
    0-based in the region); an ``ImageWindows`` is read in bands of rows of at most
    :data:`BAND_PIXELS` pixels (whole chunks of the source's rows), only where some row is needed."""
    abs_rows, abs_cols = torch.from_numpy(rows + w.src_y0), torch.from_numpy(cols + w.src_x0)
    if isinstance(image, Tensor):
        return image.index_select(1, abs_rows.to(image.device)).index_select(2, abs_cols.to(image.device))
    width = w.src_x1 - w.src_x0
    band = max(1, BAND_PIXELS // (width * image.chunk_rows)) * image.chunk_rows
    absolute = rows + w.src_y0
    parts = []
    for start in np.unique(absolute // band) * band:
        needed = absolute[(absolute >= start) & (absolute < start + band)]
        pixels = image.read(int(needed[0]), int(needed[-1]) + 1, w.src_x0, w.src_x1)
        parts.append(pixels[needed - needed[0]][:, cols])
    return torch.from_numpy(np.concatenate(parts)).permute(2, 0, 1)


def window_offsets(windows: Sequence[CropWindow]) -> np.ndarray:
    """``[N,2]`` float32 image pixel (y, x) of each canvas's top-left corner (the original ``offsets``)."""
    return np.array([(w.offset_y, w.offset_x) for w in windows], dtype=np.float32).reshape(-1, 2)


def map_to_crop_pixels(detections: Tensor, map_to_crop_ratio: float) -> Tensor:
    """Box columns of ``detections`` ``[..., 8]`` from output-map cells to crop pixels (the original
    ``rescale_dets_``: float32 division by ``float32(map_size / crop_size)``); other columns kept."""
    ratio = float(np.float32(map_to_crop_ratio))
    boxes = (detections[..., :4].double() / ratio).to(detections.dtype)
    return torch.cat((boxes, detections[..., 4:]), dim=-1)


def crop_to_image_pixels(detections: Tensor, scales: np.ndarray, offsets: np.ndarray) -> Tensor:
    """Box columns of ``detections`` ``[N,K,8]`` from crop pixels of view ``n`` to image pixels:
    ``/ scales[n] + offsets[n]`` (the original ``remap_dets_``: nominal zoom, float32 results)."""
    device = detections.device
    scale = torch.as_tensor(np.asarray(scales, dtype=np.float64), device=device).reshape(-1, 1, 1)
    shift = torch.as_tensor(offsets[:, [1, 0, 1, 0]], dtype=torch.float32, device=device).unsqueeze(1)
    boxes = (detections[..., :4].double() / scale).to(detections.dtype) + shift
    return torch.cat((boxes, detections[..., 4:]), dim=-1)


def clip_to_image(boxes: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """``boxes`` ``[M,4]`` x1, y1, x2, y2 in image pixels clipped to the ``(height, width)`` image:
    x into ``[0, width]``, y into ``[0, height]`` (torchvision's ``clip_boxes_to_image``); a copy,
    same dtype."""
    height, width = image_hw
    upper = np.array([width, height, width, height], dtype=boxes.dtype)
    return np.clip(boxes, 0, upper).astype(boxes.dtype, copy=False)
