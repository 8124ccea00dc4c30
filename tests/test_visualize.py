"""Pictures: box outlines at the right pixels, label placement, attention mapping, panel layout."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from cornernet_saccade.inference.results import Detections
from cornernet_saccade.inference.trace import CropView, DetectionTrace
from cornernet_saccade.inference.visualize import (
    HEAT_COLOURS,
    INITIAL_VIEW_COLOUR,
    ROUND_COLOURS,
    ZOOMED_CROP_COLOUR,
    attention_heat,
    attention_tile,
    class_colour,
    crops_tile,
    detection_name,
    draw_detections,
    label_bar,
    render_panel,
    tile_rectangle,
)


def detections(boxes, scores, labels, trace=None, names=None) -> Detections:
    return Detections(
        boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        scores=np.asarray(scores, dtype=np.float32),
        labels=np.asarray(labels, dtype=np.int64),
        class_names=names,
        trace=trace or DetectionTrace(),
    )


def has_colour(pixels: np.ndarray, colour) -> bool:
    return bool(np.all(pixels == np.array(colour, dtype=np.uint8), axis=-1).any())


def test_box_outline_is_drawn_on_the_rounded_box_edges():
    blank = np.zeros((100, 120, 3), dtype=np.uint8)
    # rounds to x 20..70, y 31..80 (inclusive); 1-pixel lines at this size
    picture = np.asarray(draw_detections(blank, detections([[20.3, 30.6, 70.2, 80.4]], [0.9], [1])))
    colour = np.array(class_colour(1), dtype=np.uint8)
    for edge in (picture[31:81, 20], picture[31:81, 70], picture[31, 20:71], picture[80, 20:71]):
        assert np.all(edge == colour)
    assert not picture[32:80, 21:70].any(), "the inside of the box stays untouched"
    for outside in (picture[31:81, 19], picture[31:81, 71], picture[81, 20:71]):
        assert not outside.any()
    label_colours = {tuple(c) for c in picture[:31, 20:].reshape(-1, 3)} - {(0, 0, 0)}
    assert class_colour(1) in label_colours and len(label_colours) >= 2, "label bar with text above the box"


def test_label_goes_inside_a_box_at_the_top_edge_and_input_is_untouched():
    blank = np.zeros((60, 200, 3), dtype=np.uint8)
    picture = np.asarray(draw_detections(blank, detections([[10, 0, 150, 50]], [0.5], [0])))
    assert has_colour(picture[1:20, 11:150], class_colour(0)), "no room above: the label is inside"
    assert not blank.any()


def test_score_threshold_and_line_width_growing_with_the_image():
    blank = np.zeros((1600, 2000, 3), dtype=np.uint8)
    dets = detections([[100, 300, 900, 1200], [1000, 300, 1500, 800]], [0.9, 0.2], [0, 2])
    picture = np.asarray(draw_detections(blank, dets, score_threshold=0.5))
    assert not picture[:, 990:].any(), "the detection below the threshold is not drawn"
    row = picture[700, 90:120]
    drawn = np.flatnonzero(row.any(axis=1)) + 90
    assert drawn.min() == 100 and len(drawn) >= 3, "outline thicker on a big image, inside the box"


def test_class_colours_are_distinct():
    colours = [np.array(class_colour(label), dtype=float) for label in range(80)]
    closest = min(np.abs(a - b).sum() for a, b in itertools.combinations(colours[:10], 2))
    assert closest > 60
    assert len(set(map(tuple, map(tuple, colours)))) == 80


def test_detection_names_prefer_the_given_list_then_the_detector_names():
    dets = detections([[0, 0, 5, 5], [0, 0, 5, 5]], [0.9, 0.8], [1, 7], names=["cat", "dog"])
    assert detection_name(dets, 0, ["a", "b"]) == "b"
    assert detection_name(dets, 1, ["a", "b"]) == "dog"
    assert detection_name(detections([[0, 0, 5, 5]], [0.9], [4]), 0) == "class 4"


def test_attention_heat_maps_cells_to_image_pixels():
    maps = np.zeros((2, 1, 16, 16), dtype=np.float32)
    maps[0, 0, 2, 3] = 1.0  # view 0: whole 400x400 image at zoom 255/400 -> 16 / zoom = 25.098 px per cell
    maps[1, 0, 0, 0] = 0.5  # view 1: zoom 1 -> 16 px per cell, canvas corner at image (x 200, y 100)
    views = [CropView(0, (200.0, 200.0), 255 / 400, (0, 0, 400, 400)),
             CropView(0, (227.0, 327.0), 1.0, (200, 100, 455, 355))]
    heat = attention_heat(maps, views, 16, (400, 400), (400, 400))
    expected = np.zeros((400, 400), dtype=np.float32)
    expected[50:75, 75:100] = 1.0  # pixel centres y in [50.2, 75.3), x in [75.3, 100.4)
    expected[100:116, 200:216] = 0.5
    np.testing.assert_array_equal(heat, expected)
    half = attention_heat(maps, views, 16, (400, 400), (200, 200))
    assert half[25:37, 38:50].min() == 1.0 and half[:25].max() == 0.0


def test_tile_rectangle_clips_to_the_image():
    assert tile_rectangle((-50, -20, 100, 60), (100, 200), (100, 50)) == (0, 0, 49, 29)
    assert tile_rectangle((0, 0, 200, 100), (100, 200), (100, 50)) == (0, 0, 99, 49)
    assert tile_rectangle((300, 0, 400, 50), (100, 200), (100, 50)) is None


def saccade_trace(height: int, width: int) -> DetectionTrace:
    long_side = max(height, width)
    initial = [CropView(0, (height / 2, width / 2), s / long_side, (0, 0, long_side, long_side)) for s in (192, 255)]
    zoomed = [CropView(1, (100.0, 100.0), 2.0, (36, 36, 164, 164)),
              CropView(1, (400.0, 550.0), 1.0, (423, 273, 678, 528))]
    maps = [np.full((2, 1, s, s), 0.7, dtype=np.float32) for s in (16, 32, 64)]
    return DetectionTrace(crops=initial + zoomed, attention_maps=maps)


@pytest.fixture
def grey_image() -> np.ndarray:
    return np.full((500, 600, 3), 128, dtype=np.uint8)


def test_panel_shows_the_annotated_image_and_the_views(grey_image):
    dets = detections([[50, 60, 300, 400]], [0.8], [0], saccade_trace(500, 600))
    panel = render_panel(grey_image, dets)
    assert panel.mode == "RGB" and panel.height >= 500 and panel.width > 600 + 2 * 290
    left = np.asarray(panel.crop((0, 0, 600, 500)))
    np.testing.assert_array_equal(left, np.asarray(draw_detections(grey_image, dets)))
    below_titles = np.asarray(panel)[40:, 600:]
    assert has_colour(below_titles, INITIAL_VIEW_COLOUR) and has_colour(below_titles, ZOOMED_CROP_COLOUR)


def test_panel_full_image_mode_without_detections(grey_image):
    full = DetectionTrace(crops=[CropView(0, (250.0, 300.0), 511 / 600, (0, 0, 600, 600))])
    panel = render_panel(grey_image, detections([], [], [], full))
    saccade_panel = render_panel(grey_image, detections([], [], [], saccade_trace(500, 600)))
    below_titles = np.asarray(panel)[40:, 600:]
    assert has_colour(below_titles, INITIAL_VIEW_COLOUR) and not has_colour(below_titles, ZOOMED_CROP_COLOUR)
    assert panel.width < saccade_panel.width, "no attention tiles: one column of tiles"
    np.testing.assert_array_equal(np.asarray(panel)[:500, :600], grey_image)


@pytest.mark.parametrize(("size", "shown_long_side"), [((80, 100), 480), ((2400, 3200), 1600)])
def test_panel_scales_small_and_large_images(size, shown_long_side):
    image = np.full((*size, 3), 90, dtype=np.uint8)
    scale = shown_long_side / max(size)
    dets = detections([[10, 10, 60, 50]], [0.9], [2], DetectionTrace(crops=[CropView(0, (0, 0), 1.0, (0, 0, 5, 5))]))
    panel = np.asarray(render_panel(image, dets))
    shown_h = round(size[0] * scale)
    assert np.all(panel[:shown_h, shown_long_side - 1] == 90), "image scaled to the display size"
    x = round(10 * scale)
    assert has_colour(panel[round(30 * scale), x : x + 2], class_colour(2)), "boxes scaled with the image"


def test_labels_of_overlapping_boxes_do_not_hide_each_other():
    """Three boxes sharing a top edge: each label gets its own place, the best one above its box."""
    from PIL import Image, ImageDraw

    from cornernet_saccade.inference.visualize import font_size, label_font

    picture = Image.new("RGB", (300, 200))
    draw = ImageDraw.Draw(picture)
    font = label_font(font_size(300, 200))
    placed = []
    for box in [(40, 60, 200, 150), (44, 60, 190, 140), (48, 62, 180, 130)]:
        placed.append(label_bar(draw, box, "square 0.37", font, picture.size, placed))
    assert placed[0][3] == 59, "the best label sits right above its box"
    for first, second in itertools.combinations(placed, 2):
        assert first[2] < second[0] or second[2] < first[0] or first[3] < second[1] or second[3] < first[1]
    rendered = np.asarray(draw_detections(np.zeros((200, 300, 3), np.uint8),
                                          detections([[40, 60, 200, 150], [44, 60, 190, 140]], [0.9, 0.4], [0, 1])))
    assert has_colour(rendered[:60], class_colour(0)) and has_colour(rendered, class_colour(1))


def test_crops_have_a_colour_per_round_and_a_legend():
    from PIL import Image

    thumbnail = Image.new("RGB", (200, 150), (128, 128, 128))
    crops = [CropView(0, (75.0, 100.0), 1.0, (0, 0, 200, 200)), CropView(1, (30.0, 30.0), 2.0, (10, 10, 60, 60)),
             CropView(2, (100.0, 150.0), 4.0, (140, 90, 170, 120))]
    tile = np.asarray(crops_tile(thumbnail, crops, (150, 200)))
    for colour in ROUND_COLOURS[:3]:
        assert has_colour(tile, colour)
    assert not has_colour(tile, ROUND_COLOURS[3])


def test_a_weak_attention_map_is_visible_and_has_a_colour_bar():
    from PIL import Image

    maps = np.zeros((1, 1, 4, 4), np.float32)
    maps[0, 0, 1, 2] = 0.08
    trace = DetectionTrace(crops=[CropView(0, (32.0, 32.0), 4.0, (0, 0, 64, 64))], attention_maps=[maps])
    thumbnail = Image.new("RGB", (256, 256), (128, 128, 128))
    tile = np.asarray(attention_tile(thumbnail, trace, 0, (64, 64)))
    brightest = np.array(HEAT_COLOURS[-1]).round().astype(np.uint8)
    assert tile.shape[0] > 256 + 20, "title strip and colour bar added"
    assert has_colour(tile[-20:], brightest), "the colour bar ends in the top colour"
    warm = (tile[..., 0].astype(int) - tile[..., 2].astype(int)) > 100
    assert warm.sum() > 100, "the weak map's peak shows in warm colours"


def test_labels_of_small_objects_on_a_large_picture_are_no_bigger_than_them():
    """On a 1600x730 picture (a 3574x1631 scene as the panel shows it) a 20 px object's label was a
    36 px bar that hid it: a label is now at most about half its box tall (never under 9 px), and a
    large box keeps the picture's label size."""
    from cornernet_saccade.inference.visualize import font_size, label_font_size

    size = (1600, 730)
    assert font_size(*size) == 36
    assert label_font_size(size, (100, 100, 119, 119)) == 10  # half of 20
    assert label_font_size(size, (100, 100, 104, 160)) == 9  # a 5 px wide box: the smallest readable
    assert label_font_size(size, (100, 100, 499, 399)) == 36
    picture = np.asarray(draw_detections(np.zeros((730, 1600, 3), np.uint8),
                                         detections([[400, 300, 420, 320]], [0.9], [0])))
    rows = np.flatnonzero(np.all(picture == np.array(class_colour(0), np.uint8), axis=-1).any(axis=1))
    assert rows.min() >= 300 - 16, "the label bar above the box is about as tall as the box's half"


def test_labels_stay_near_their_box_instead_of_stacking_into_a_tower():
    """Ten boxes at one place: once the places near the box are taken, a label overlaps another
    rather than moving further and further down the picture."""
    from PIL import Image, ImageDraw

    from cornernet_saccade.inference.visualize import label_font

    picture = Image.new("RGB", (400, 400))
    draw = ImageDraw.Draw(picture)
    font = label_font(12)
    placed: list = []
    box = (100, 100, 160, 140)
    for _ in range(10):
        placed.append(label_bar(draw, box, "circle 0.50", font, picture.size, placed))
    bar_height = placed[0][3] - placed[0][1] + 1
    assert all(box[1] - bar_height <= bar[1] and bar[3] <= box[3] + bar_height for bar in placed)
