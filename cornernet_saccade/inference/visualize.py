"""Pictures of detections: labelled boxes, and a panel that shows where the detector looked.

:func:`draw_detections` draws each box (image pixels, x1 y1 x2 y2) in its class's colour with a
``name score`` label; line width and font size grow with the image, so the picture reads the same
at any size, but a label is no taller than about half its box (:func:`label_font_size`), so the
labels of small objects on a large image do not hide them. :func:`render_panel` puts the annotated
image beside tiles built from the detector's :class:`~cornernet_saccade.inference.trace.DetectionTrace`:
every view it looked at (the downsized first-round views and the zoomed crops, as rectangles clipped
to the image) and, in saccade mode, the first round's coarse / middle / fine attention probabilities
as heat over the image.
"""
from __future__ import annotations

import colorsys
import functools
from collections import Counter
from collections.abc import Sequence
from typing import Protocol

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from cornernet_saccade.image_windows import ArrayWindows, ImageWindows, whole_pixels
from cornernet_saccade.images import ImageSource, read_image
from cornernet_saccade.inference.trace import PADDED_VIEWS, CropView, DetectionTrace
from cornernet_saccade.inference.views import full_image_window, paste_crops
from cornernet_saccade.model.geometry import ATTENTION_RATIOS

RGB = tuple[int, int, int]


class DrawnDetections(Protocol):
    """What a picture shows of one image's detections
    (:class:`~cornernet_saccade.inference.results.Detections` is one): boxes ``[N,4]`` x1 y1 x2 y2
    image pixels, scores ``[N]``, 0-based labels ``[N]``, a class name per detection (or ``None``) and
    the detector's trace."""

    @property
    def boxes(self) -> np.ndarray: ...

    @property
    def scores(self) -> np.ndarray: ...

    @property
    def labels(self) -> np.ndarray: ...

    @property
    def class_names(self) -> list[str] | None: ...

    @property
    def trace(self) -> DetectionTrace: ...


Font = ImageFont.ImageFont | ImageFont.FreeTypeFont

#: Rectangle colour of the first-round (downsized, whole-image) views.
INITIAL_VIEW_COLOUR: RGB = (0, 200, 255)
#: Rectangle colour of the first round of zoomed crops.
ZOOMED_CROP_COLOUR: RGB = (255, 60, 170)
#: Rectangle colour of the views of each round (0: the first views; later rounds take the last).
ROUND_COLOURS: tuple[RGB, ...] = (INITIAL_VIEW_COLOUR, ZOOMED_CROP_COLOUR, (255, 215, 0), (120, 255, 120))
#: Names of the first-round attention maps, in the order of ``DetectionTrace.attention_maps``.
ATTENTION_NAMES = ("coarse", "middle", "fine")
#: Padded views drawn at most (one per test scale of the CornerNet tester).
MAX_PADDED_TILES = 3
#: :func:`render_panel` shows the image with its long side scaled into this range (pixels).
MIN_DISPLAY_SIDE, MAX_DISPLAY_SIDE = 480, 1600
#: Panel background and title text colours.
BACKGROUND: RGB = (32, 32, 32)
TITLE_COLOUR: RGB = (235, 235, 235)
#: Attention colour scale: probability -> colour, linearly interpolated between these stops.
HEAT_STOPS = (0.0, 0.3, 0.6, 1.0)
HEAT_COLOURS = np.array([(80, 0, 120), (220, 40, 40), (255, 160, 0), (255, 255, 160)], dtype=np.float64)
#: Largest opacity of the attention colour over the image (reached at probability 1).
HEAT_OPACITY = 0.8
_GOLDEN_RATIO_CONJUGATE = 0.6180339887498949


def class_colour(label: int) -> RGB:
    """A saturated colour for class ``label``; hues step by the golden ratio, so neighbouring
    labels get clearly different colours."""
    red, green, blue = colorsys.hsv_to_rgb((label * _GOLDEN_RATIO_CONJUGATE) % 1.0, 0.85, 0.95)
    return round(red * 255), round(green * 255), round(blue * 255)


@functools.lru_cache(maxsize=32)
def label_font(size: int) -> Font:
    """Pillow's default font at ``size`` pixels (its small fixed bitmap font without FreeType)."""
    try:
        return ImageFont.load_default(size=size)
    except (ImportError, OSError):
        return ImageFont.load_default()


def line_width(width: int, height: int) -> int:
    """Box outline width (pixels) for a picture of ``width x height``."""
    return max(1, round(max(width, height) / 400))


#: Smallest label font size (pixels): still readable.
MIN_FONT_SIZE = 9
#: A label's font is at most this fraction of its box's shorter side.
FONT_TO_BOX = 0.5


def font_size(width: int, height: int) -> int:
    """Largest label font size (pixels) for a picture of ``width x height``."""
    return max(11, round(max(width, height) / 45))


def label_font_size(picture_size: tuple[int, int], box: Rectangle) -> int:
    """Font size of the label of ``box`` (inclusive x1, y1, x2, y2 picture pixels): the picture's
    :func:`font_size`, at most :data:`FONT_TO_BOX` of the box's shorter side, at least :data:`MIN_FONT_SIZE`."""
    x1, y1, x2, y2 = box
    return max(MIN_FONT_SIZE, min(font_size(*picture_size), round(FONT_TO_BOX * min(x2 - x1 + 1, y2 - y1 + 1))))


def detection_name(detections: DrawnDetections, index: int, class_names: Sequence[str] | None = None) -> str:
    """Name of detection ``index``: ``class_names[label]`` when given and long enough, else the
    name the detector attached, else ``"class <label>"``."""
    label = int(detections.labels[index])
    if class_names is not None and 0 <= label < len(class_names):
        return class_names[label]
    if detections.class_names is not None:
        return detections.class_names[index]
    return f"class {label}"


def draw_detections(
    image_rgb: ImageSource,
    detections: DrawnDetections,
    class_names: Sequence[str] | None = None,
    score_threshold: float = 0.0,
    box_scale: float = 1.0,
) -> Image.Image:
    """The image with every detection scoring at least ``score_threshold`` drawn on it, its boxes
    multiplied by ``box_scale`` (the image's scale when it is drawn resized).

    ``image_rgb``: ``uint8 [H,W,3]`` RGB (or anything :func:`~cornernet_saccade.images.read_image`
    takes; it is not modified). Boxes are in image pixels, rounded to the nearest pixel; the outline
    lies inside the box. The ``name score`` label (font :func:`label_font_size`) sits on a bar of the
    class colour above the box (inside it at the image's top edge); when that place is taken by a
    better detection's label, it moves inside the box's top, then below the box, then down inside the
    box in steps of its height; when no place near the box is free it takes the first one, over the
    other label, rather than a tower of labels away from its box. The best detection is drawn last,
    on top, and chooses its label place first.
    """
    picture = Image.fromarray(read_image(image_rgb))
    draw = ImageDraw.Draw(picture)
    thickness = line_width(*picture.size)
    all_boxes = detections.boxes * np.float32(box_scale) if box_scale != 1 else detections.boxes
    drawable = (detections.scores >= score_threshold) & np.isfinite(all_boxes).all(axis=1)
    boxes: dict[int, Rectangle] = {}
    labels: dict[int, tuple[str, Rectangle, Font]] = {}
    placed: list[Rectangle] = []
    for index in map(int, np.flatnonzero(drawable)):  # best first: the best labels get the best places
        x1, x2 = sorted(round(float(v)) for v in all_boxes[index, [0, 2]])
        y1, y2 = sorted(round(float(v)) for v in all_boxes[index, [1, 3]])
        boxes[index] = (x1, y1, x2, y2)
        font = label_font(label_font_size(picture.size, boxes[index]))
        text = f"{detection_name(detections, index, class_names)} {detections.scores[index]:.2f}"
        bar = label_bar(draw, boxes[index], text, font, picture.size, placed)
        placed.append(bar)
        labels[index] = (text, bar, font)
    for index in list(boxes)[::-1]:
        colour = class_colour(int(detections.labels[index]))
        draw.rectangle(boxes[index], outline=colour, width=thickness)
        text, bar, font = labels[index]
        _draw_label(draw, bar, text, colour, font)
    return picture


Rectangle = tuple[int, int, int, int]


def label_bar(draw: ImageDraw.ImageDraw, box: Rectangle, text: str, font: Font, size: tuple[int, int],
              placed: Sequence[Rectangle]) -> Rectangle:
    """The inclusive rectangle of the label bar of ``box`` (see :func:`draw_detections`): the first
    candidate place inside a picture of ``size`` that overlaps none of ``placed``."""
    bar_w, bar_h = _bar_size(draw, text, font)
    x1, y1, x2, y2 = box
    candidates = [(x1, y1 - bar_h), (x1, y1), (x1, y2 + 1)]
    candidates += [(x1, y1 + step * bar_h) for step in range(1, max(1, (y2 - y1 + 1) // max(bar_h, 1)))]
    fallback = None
    for x, y in candidates:
        if y < 0 or y + bar_h > size[1]:
            continue
        x0 = min(max(x, 0), max(size[0] - bar_w, 0))
        bar = (x0, y, x0 + bar_w - 1, y + bar_h - 1)
        fallback = fallback or bar
        if not any(_overlap(bar, other) for other in placed):
            return bar
    if fallback is None:  # the picture is lower than a label: clamp the first place
        x0 = min(max(x1, 0), max(size[0] - bar_w, 0))
        fallback = (x0, 0, x0 + bar_w - 1, bar_h - 1)
    return fallback


def _overlap(first: Rectangle, second: Rectangle) -> bool:
    return first[0] <= second[2] and second[0] <= first[2] and first[1] <= second[3] and second[1] <= first[3]


def _bar_size(draw: ImageDraw.ImageDraw, text: str, font: Font) -> tuple[int, int]:
    left, top, right, bottom = (round(v) for v in draw.textbbox((0, 0), text, font=font))
    pad = max(1, (bottom - top) // 5)
    return right - left + 2 * pad, bottom - top + 2 * pad


def _draw_label(draw: ImageDraw.ImageDraw, bar: Rectangle, text: str, colour: RGB, font: Font) -> None:
    """``text`` on a ``colour`` bar filling ``bar``."""
    left, top, _, bottom = draw.textbbox((0, 0), text, font=font)
    pad = max(1, (bottom - top) // 5)
    draw.rectangle(bar, fill=colour)
    draw.text((bar[0] + pad - left, bar[1] + pad - top), text, fill=_text_colour(colour), font=font)


def _text_colour(background: RGB) -> RGB:
    """Black on light backgrounds, white on dark ones."""
    red, green, blue = background
    return (0, 0, 0) if 0.299 * red + 0.587 * green + 0.114 * blue > 140 else (255, 255, 255)


def display_scale(height: int, width: int) -> float:
    """Factor that brings the image's long side into ``[MIN_DISPLAY_SIDE, MAX_DISPLAY_SIDE]``."""
    long_side = max(height, width)
    return min(max(long_side, MIN_DISPLAY_SIDE), MAX_DISPLAY_SIDE) / long_side


def render_panel(
    image: ImageSource | ImageWindows,
    detections: DrawnDetections,
    class_names: Sequence[str] | None = None,
    score_threshold: float = 0.0,
) -> Image.Image:
    """The annotated image (left, at the top-left corner) beside tiles of what the detector did.

    The image is scaled so its long side lies in ``[MIN_DISPLAY_SIDE, MAX_DISPLAY_SIDE]`` (not at
    all when it already does) and annotated with :func:`draw_detections`. The tiles, half its size
    and two per row, are: the views the detector looked at (:func:`crops_tile`), then one per
    first-round attention map (:func:`attention_tile`; none in full-image mode). An image read by
    windows is read downsized (:func:`downsized_pixels`), never whole.
    """
    pixels, (height, width) = _display_pixels(image)
    scale = display_scale(height, width)
    display_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    original = Image.fromarray(pixels)
    shown = original if scale == 1 else original.resize(display_size, Image.Resampling.LANCZOS)
    annotated = draw_detections(np.asarray(shown), detections, class_names, score_threshold, box_scale=scale)
    thumbnail = original.resize((max(1, display_size[0] // 2), max(1, display_size[1] // 2)), Image.Resampling.LANCZOS)
    trace = detections.trace
    tiles = [crops_tile(thumbnail, trace.crops, (height, width), trace.view_kind)]
    tiles += [attention_tile(thumbnail, trace, index, (height, width)) for index in range(len(trace.attention_maps))]
    if trace.view_kind == PADDED_VIEWS:  # the CornerNet tester: what the network saw
        tiles += [padded_view_tile(thumbnail, crop, (height, width)) for crop in trace.crops[:MAX_PADDED_TILES]]
    return _compose(annotated, tiles)


def _display_pixels(image: ImageSource | ImageWindows) -> tuple[np.ndarray, tuple[int, int]]:
    """Pixels to draw the picture from and the ``(height, width)`` of the image: the whole image, or
    for one read by windows, a copy downsized to the display size."""
    if isinstance(image, ImageWindows) and not isinstance(image, ArrayWindows):
        hw = (image.height, image.width)
        return downsized_pixels(image, display_scale(*hw)), hw
    pixels = whole_pixels(image)
    return pixels, (pixels.shape[0], pixels.shape[1])


def downsized_pixels(image: ImageWindows, scale: float) -> np.ndarray:
    """``uint8 [h, w, 3]`` RGB: the image resized bilinearly by about ``scale`` (its long side to
    ``round(scale * max(H, W))`` pixels), read by windows (only the rows and columns the resize uses)."""
    side = max(1, round(scale * max(image.height, image.width)))
    window = full_image_window((image.height, image.width), side)
    canvas = paste_crops(image, [window], side)[0]
    resized = canvas[:, : window.dst_y1, : window.dst_x1].permute(1, 2, 0).numpy()
    return np.ascontiguousarray(np.clip(np.rint(resized * 255.0), 0, 255).astype(np.uint8))


def padded_view_tile(thumbnail: Image.Image, crop: CropView, image_hw: tuple[int, int]) -> Image.Image:
    """The padded canvas of a whole-image view: ``thumbnail`` (the whole image, any size) pasted
    where the view's ``region_xyxy`` (image pixels, reaching into the padding) puts it on a black
    canvas at the thumbnail's scale."""
    factor = thumbnail.width / image_hw[1]
    x0, y0, x1, y1 = crop.region_xyxy
    size = (max(1, round((x1 - x0) * factor)), max(1, round((y1 - y0) * factor)))
    tile = Image.new("RGB", size)
    tile.paste(thumbnail, (round(-x0 * factor), round(-y0 * factor)))
    ImageDraw.Draw(tile).text((2, 2), f"padded view, scale {crop.scale:g}", fill=(255, 255, 255))
    return tile


def crops_tile(thumbnail: Image.Image, crops: Sequence[CropView], image_hw: tuple[int, int],
               first_views: str = "initial views") -> Image.Image:
    """``thumbnail`` (the whole image, any size) with the rectangle of every view, clipped to the
    image, in the colour of its round (:func:`round_colour`; the first views drawn last, on top);
    titled with a legend: the number of views of each round in its colour, the first round's
    called ``first_views``."""
    tile = thumbnail.convert("RGB")
    draw = ImageDraw.Draw(tile)
    thickness = max(1, round(max(tile.size) / 250))
    for crop in sorted(crops, key=lambda view: -view.round):
        rectangle = tile_rectangle(crop.region_xyxy, image_hw, tile.size)
        if rectangle is not None:
            draw.rectangle(rectangle, outline=round_colour(crop.round), width=thickness)
    counts = Counter(crop.round for crop in crops)
    title = [(f"{first_views if number == 0 else f'  round {number}'}: {counts[number]}", round_colour(number))
             for number in sorted(counts)]
    return _titled(tile, title or [("no views", TITLE_COLOUR)])


def round_colour(number: int) -> RGB:
    """Rectangle colour of the views of round ``number`` (:data:`ROUND_COLOURS`)."""
    return ROUND_COLOURS[min(number, len(ROUND_COLOURS) - 1)]


def tile_rectangle(
    region_xyxy: tuple[int, int, int, int], image_hw: tuple[int, int], tile_size: tuple[int, int]
) -> tuple[int, int, int, int] | None:
    """Image-pixel box ``region_xyxy`` (end exclusive) cut to the image and moved to the pixels of a
    ``tile_size`` (width, height) picture of the whole image, as an inclusive rectangle; ``None``
    when it misses the image."""
    height, width = image_hw
    x0, x1 = np.clip((region_xyxy[0], region_xyxy[2]), 0, width)
    y0, y1 = np.clip((region_xyxy[1], region_xyxy[3]), 0, height)
    if x1 <= x0 or y1 <= y0:
        return None
    sx, sy = tile_size[0] / width, tile_size[1] / height
    right = min(max(int(np.ceil(x1 * sx)) - 1, 0), tile_size[0] - 1)
    bottom = min(max(int(np.ceil(y1 * sy)) - 1, 0), tile_size[1] - 1)
    return min(int(x0 * sx), right), min(int(y0 * sy), bottom), right, bottom


def attention_heat(
    maps: np.ndarray, views: Sequence[CropView], ratio: int, image_hw: tuple[int, int], out_size: tuple[int, int]
) -> np.ndarray:
    """First-round attention probabilities on an ``out_size`` (width, height) picture of the image.

    ``maps`` ``[V,1,h,w]``: one map per view in ``views``, cell ``(i, j)`` covering the image pixels
    from ``region corner + (i, j) * ratio / view.scale`` (``ratio`` crop pixels per cell). Each
    output pixel gets the probability of the cell under its centre, the largest over the views,
    0 where no view covers it. Returns float32 ``[out_h, out_w]``.
    """
    height, width = image_hw
    out_w, out_h = out_size
    ys = (np.arange(out_h) + 0.5) * height / out_h
    xs = (np.arange(out_w) + 0.5) * width / out_w
    heat = np.zeros((out_h, out_w), dtype=np.float32)
    for probabilities, view in zip(maps, views):
        cell = ratio / view.scale
        rows = np.floor((ys - view.region_xyxy[1]) / cell).astype(np.int64)
        cols = np.floor((xs - view.region_xyxy[0]) / cell).astype(np.int64)
        row_ok = (rows >= 0) & (rows < probabilities.shape[1])
        col_ok = (cols >= 0) & (cols < probabilities.shape[2])
        covered = np.zeros_like(heat)
        covered[np.ix_(row_ok, col_ok)] = probabilities[0][np.ix_(rows[row_ok], cols[col_ok])]
        np.maximum(heat, covered, out=heat)
    return heat


def heat_colours(heat: np.ndarray) -> np.ndarray:
    """Probabilities ``[...]`` -> float RGB ``[..., 3]`` on the :data:`HEAT_COLOURS` scale."""
    return np.stack([np.interp(heat, HEAT_STOPS, HEAT_COLOURS[:, c]) for c in range(3)], axis=-1)


def attention_tile(thumbnail: Image.Image, trace: DetectionTrace, index: int, image_hw: tuple[int, int]) -> Image.Image:
    """Attention map ``index`` (0 coarse, 1 middle, 2 fine) of the first-round views as heat over
    a dimmed grey ``thumbnail``, titled with its name, cell size and largest probability, above a
    colour bar. The colours span 0 to the map's largest probability, so a weak map stays visible;
    the bar's end says what that is."""
    maps = trace.attention_maps[index]
    views = [crop for crop in trace.crops if crop.round == 0]
    ratio = ATTENTION_RATIOS[index]
    heat = attention_heat(maps, views, ratio, image_hw, thumbnail.size)
    peak = float(maps.max()) if maps.size else 0.0
    shown = heat / peak if peak > 0 else heat
    grey = np.asarray(thumbnail.convert("L"), dtype=np.float64)[..., None] * 0.6
    opacity = HEAT_OPACITY * shown[..., None]
    blended = grey * (1 - opacity) + heat_colours(shown) * opacity
    tile = Image.fromarray(np.clip(np.rint(blended), 0, 255).astype(np.uint8), "RGB")
    name = ATTENTION_NAMES[index] if index < len(ATTENTION_NAMES) else f"map {index}"
    titled = _titled(tile, [(f"{name} attention ({ratio} px cells), max {peak:.2f}", TITLE_COLOUR)])
    return _with_colour_bar(titled, peak)


def _with_colour_bar(tile: Image.Image, peak: float) -> Image.Image:
    """``tile`` above a horizontal :data:`HEAT_COLOURS` bar labelled ``0`` and ``peak``."""
    font = label_font(max(10, tile.width // 30))
    measure = ImageDraw.Draw(tile)
    text_height = round(measure.textbbox((0, 0), "0.00", font=font)[3])
    high = f"{peak:.2f}"
    margin = max(2, text_height // 3)
    low_w, high_w = measure.textlength("0", font=font), measure.textlength(high, font=font)
    bar_x0, bar_x1 = round(low_w) + 2 * margin, tile.width - round(high_w) - 2 * margin
    bar_h = max(4, text_height * 2 // 3)
    strip = max(bar_h, text_height) + 2 * margin
    out = Image.new("RGB", (tile.width, tile.height + strip), BACKGROUND)
    out.paste(tile, (0, 0))
    if bar_x1 > bar_x0:
        ramp = heat_colours(np.linspace(0.0, 1.0, bar_x1 - bar_x0))
        bar = np.repeat(np.clip(np.rint(ramp), 0, 255).astype(np.uint8)[None], bar_h, axis=0)
        out.paste(Image.fromarray(bar, "RGB"), (bar_x0, tile.height + (strip - bar_h) // 2))
    draw = ImageDraw.Draw(out)
    text_y = tile.height + (strip - text_height) // 2
    draw.text((margin, text_y), "0", fill=TITLE_COLOUR, font=font)
    draw.text((bar_x1 + margin, text_y), high, fill=TITLE_COLOUR, font=font)
    return out


def _titled(tile: Image.Image, segments: Sequence[tuple[str, RGB]]) -> Image.Image:
    """``tile`` under a title strip; ``segments`` are pieces of title text with their colours."""
    font = label_font(max(11, tile.width // 26))
    measure = ImageDraw.Draw(tile)
    text_height = int(measure.textbbox((0, 0), "Ag", font=font)[3])
    strip = text_height + 2 * max(2, text_height // 4)
    titled = Image.new("RGB", (tile.width, tile.height + strip), BACKGROUND)
    titled.paste(tile, (0, strip))
    draw = ImageDraw.Draw(titled)
    x = max(2, text_height // 4)
    for text, colour in segments:
        draw.text((x, (strip - text_height) // 2), text, fill=colour, font=font)
        x += round(draw.textlength(text, font=font))
    return titled


def _compose(main: Image.Image, tiles: Sequence[Image.Image], columns: int = 2) -> Image.Image:
    """``main`` at the top-left corner, ``tiles`` in a grid of ``columns`` to its right."""
    gap = max(4, main.width // 100)
    columns = max(1, min(columns, len(tiles)))
    rows = -(-len(tiles) // columns)
    cell_w = max((tile.width for tile in tiles), default=0) + gap
    cell_h = max((tile.height for tile in tiles), default=0) + gap
    panel = Image.new("RGB", (main.width + gap + columns * cell_w, max(main.height, rows * cell_h)), BACKGROUND)
    panel.paste(main, (0, 0))
    for number, tile in enumerate(tiles):
        row, column = divmod(number, columns)
        panel.paste(tile, (main.width + gap + column * cell_w, row * cell_h))
    return panel
