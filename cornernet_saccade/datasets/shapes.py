"""Synthetic multi-scale scenes: textured shapes on cluttered backgrounds, as COCO datasets.

A scene is a large image (640x480 up to 1280x960 by default) holding 1-30 objects of five classes
(:data:`CLASS_NAMES`) whose sizes run log-uniformly from about 10 px to 400 px, so about a third
are COCO-small (< 32 px) and lie in a big image: the case saccades are built for. Objects carry
solid, striped, checkered or noisy textures and sit on backgrounds of gradients, blotches, pixel
noise and clutter (lines, arcs, irregular blobs) that are not objects.
:meth:`SceneConfig.large` gives scenes ten times that area (2048x1536 up to 4096x3072) with the
same object sizes and densities: the case for tiling at native resolution.

Later objects may overlap earlier ones. Each object is annotated with the tight box of its
*visible* pixels in image pixels (x1, y1, x2, y2 with x2, y2 exclusive, like COCO ``x + w``). A
placement that would leave any object (itself included, when it sticks out of the image) with
less than :data:`MIN_VISIBLE_FRACTION` of its pixels visible is drawn again, and skipped after
:data:`PLACEMENT_TRIES` tries, so every drawn shape pixel belongs to an annotated object.

Everything is drawn from one ``numpy.random.Generator``: the same seed gives the same bytes.
"""
from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from cornernet_saccade.bounds import check_bounds
from cornernet_saccade.data.coco import coco_document, write_json
from cornernet_saccade.data.records import AnnotatedImage
from cornernet_saccade.errors import ConfigError, OutputError

#: Class names; label ``i`` is ``CLASS_NAMES[i]`` (COCO category id ``i + 1``).
CLASS_NAMES: tuple[str, ...] = ("circle", "square", "triangle", "star", "ring")
#: Objects (and placements) keeping less than this fraction of their pixels visible are refused.
MIN_VISIBLE_FRACTION = 0.3
#: How often a refused placement is drawn again before the object is skipped.
PLACEMENT_TRIES = 10
#: At most this fraction of an object's width (height) may lie left or right (above or below) of
#: the image.
MAX_OUTSIDE_FRACTION = 1.0 / 3.0
#: JPEG quality of written scenes (4:4:4 chroma, so small objects keep their colours).
JPEG_QUALITY = 92


#: Mean image area of :meth:`SceneConfig.large` over the default's: ``(3072 * 2304) / (960 * 720)``.
LARGE_AREA_RATIO = 3072 * 2304 / (960 * 720)


#: Bounds of the size-like scene settings (:func:`~cornernet_saccade.bounds.check_bounds`; raised on
#: purpose with ``CORNERNET_SACCADE_LIMITS``): image sides up to 100 megapixels (the image readers'
#: default limit), objects per image, object sides, clutter.
SCENE_BOUNDS: dict[str, float] = {"max_width": 10_000, "max_height": 10_000, "max_objects": 5_000,
                                  "max_object_size": 10_000, "clutter_scale": 1_000}


@dataclass(frozen=True)
class SceneConfig:
    """Ranges of the scene generator; image sizes are drawn uniformly, object sizes log-uniformly, the
    object count uniformly in ``1..max_objects``; ``clutter_scale`` multiplies the count of clutter
    strokes (10-59 per image by default)."""

    min_width: int = 640
    max_width: int = 1280
    min_height: int = 480
    max_height: int = 960
    max_objects: int = 30
    min_object_size: int = 10
    max_object_size: int = 400
    clutter_scale: float = 1.0

    @classmethod
    def large(cls) -> SceneConfig:
        """Large scenes (``make-shapes --large``): images of 2048-4096 x 1536-3072 px, 3.2 times the
        default sides, with the same object sizes (10-400 px) and the same densities: the mean image
        area is :data:`LARGE_AREA_RATIO` times the default one, and so are the object count (1-307
        instead of 1-30, drawn the same way) and the clutter count (``clutter_scale``)."""
        return cls(min_width=2048, max_width=4096, min_height=1536, max_height=3072,
                   max_objects=round(cls.max_objects * LARGE_AREA_RATIO), clutter_scale=LARGE_AREA_RATIO)

    def __post_init__(self) -> None:
        try:
            check_bounds(vars(self), SCENE_BOUNDS)
        except ValueError as exc:
            raise ConfigError(f"shape scene settings: {exc}") from None
        checks = [
            (0 < self.min_width <= self.max_width, "need 0 < min_width <= max_width"),
            (0 < self.min_height <= self.max_height, "need 0 < min_height <= max_height"),
            (self.max_objects >= 1, "need max_objects >= 1"),
            (4 <= self.min_object_size <= self.max_object_size,
             "need 4 <= min_object_size <= max_object_size"),
            (self.min_object_size <= min(self.min_width, self.min_height),
             "min_object_size must fit in the smallest image"),
            (self.clutter_scale > 0, "need clutter_scale > 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"shape scene settings: {message} (got {self})")


@dataclass(frozen=True)
class Sprite:
    """One placed object: its shape ``mask`` and ``pixels`` start at (x0, y0) in image pixels.

    ``mask`` and ``pixels`` are already clipped to the image; ``full_area`` counts the shape's
    pixels before clipping.
    """

    label: int
    x0: int
    y0: int
    mask: np.ndarray
    pixels: np.ndarray
    full_area: int

    @property
    def region(self) -> tuple[slice, slice]:
        """Row and column slices of the image that the sprite covers."""
        return _region(self.x0, self.y0, self.mask.shape)


@dataclass(frozen=True)
class Scene:
    """A background (uint8 RGB) and the sprites painted on it, in painting order."""

    background: np.ndarray
    sprites: tuple[Sprite, ...]


# ----------------------------------------------------------------------------------------------
# Shapes


def _polygon_mask(vertices: np.ndarray, size: float, angle: float) -> np.ndarray:
    """Rasterise unit-scale ``vertices`` [K,2], rotated by ``angle``, with longest extent ``size``."""
    cos, sin = math.cos(angle), math.sin(angle)
    points = vertices @ np.array([[cos, sin], [-sin, cos]])
    points -= points.min(axis=0)
    points *= (size - 1) / max(float(points.max()), 1e-6)
    width, height = (int(math.ceil(v)) + 1 for v in points.max(axis=0))
    canvas = Image.new("L", (width, height), 0)
    ImageDraw.Draw(canvas).polygon([tuple(p) for p in points.tolist()], fill=255)
    return np.asarray(canvas) > 0


def _regular_vertices(count: int, radii: Sequence[float] | np.ndarray) -> np.ndarray:
    """``count`` vertices at equal angles, cycling through ``radii`` (two radii make a star)."""
    angles = np.arange(count) * (2 * math.pi / count)
    radius = np.resize(np.asarray(radii), count)
    return np.stack([radius * np.cos(angles), radius * np.sin(angles)], axis=1)


def _ellipse_mask(rng: np.random.Generator, size: float, hollow: bool) -> np.ndarray:
    """A filled circle, or an axis-aligned elliptical ring of random aspect and thickness."""
    width = height = max(int(round(size)), 2)
    if hollow:
        short = max(int(round(size * rng.uniform(0.6, 1.0))), 2)
        width, height = (width, short) if rng.random() < 0.5 else (short, width)
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    draw.ellipse((0, 0, width - 1, height - 1), fill=255)
    if hollow:
        thickness = max(2, int(round(min(width, height) / 2 * rng.uniform(0.2, 0.45))))
        draw.ellipse((thickness, thickness, width - 1 - thickness, height - 1 - thickness), fill=0)
    return np.asarray(canvas) > 0


def shape_mask(rng: np.random.Generator, label: int, size: float) -> np.ndarray:
    """Boolean mask of a randomly rotated shape of class ``label`` whose longest side is ~``size``."""
    name = CLASS_NAMES[label]
    if name in ("circle", "ring"):
        return _ellipse_mask(rng, size, hollow=name == "ring")
    vertices = {
        "square": lambda: _regular_vertices(4, (1.0,)),
        "triangle": lambda: _regular_vertices(3, (1.0,)),
        "star": lambda: _regular_vertices(10, (1.0, rng.uniform(0.38, 0.5))),
    }[name]()
    return _polygon_mask(vertices, size, rng.uniform(0.0, 2 * math.pi))


# ----------------------------------------------------------------------------------------------
# Textures and backgrounds


def _to_uint8(pixels: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def _colour(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, size=3).astype(np.float32)


def _two_tone(rng: np.random.Generator, select: np.ndarray) -> np.ndarray:
    """Two random colours, the second where ``select`` is true."""
    palette = rng.integers(0, 256, size=(2, 3), dtype=np.uint8)
    return palette[select.astype(np.uint8)]


def _stripes(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    half_period = rng.uniform(1.5, max(2.0, max(height, width) / 6))
    angle = rng.uniform(0.0, math.pi)
    ys, xs = np.arange(height)[:, None], np.arange(width)[None, :]
    phase = (xs * math.cos(angle) + ys * math.sin(angle)) // half_period
    return _two_tone(rng, phase % 2 == 1)


def _checker(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    cell = int(rng.integers(2, max(3, max(height, width) // 3) + 1))
    ys, xs = np.arange(height)[:, None], np.arange(width)[None, :]
    return _two_tone(rng, (ys // cell + xs // cell) % 2 == 1)


def _solid(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    return np.broadcast_to(rng.integers(0, 256, size=3, dtype=np.uint8), (height, width, 3))


def _noisy(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    noise = rng.standard_normal(size=(height, width, 3), dtype=np.float32)
    return _to_uint8(_colour(rng) + noise * np.float32(rng.uniform(10.0, 40.0)))


#: Object textures: each maps (rng, height, width) to uint8 RGB pixels [H,W,3].
TEXTURES: dict[str, Callable[[np.random.Generator, int, int], np.ndarray]] = {
    "solid": _solid, "stripes": _stripes, "checker": _checker, "noise": _noisy,
}


def texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A random texture from :data:`TEXTURES`, uint8 RGB [height, width, 3]."""
    names = list(TEXTURES)
    return TEXTURES[names[int(rng.integers(len(names)))]](rng, height, width)


def _base_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Linear colour gradient + smooth blotches + grey pixel noise, uint8 RGB [H,W,3].

    Works channel-first ([3,H,W]) so numpy's inner loops run along rows, not over 3 channels.
    """
    start, end = _colour(rng)[:, None, None], _colour(rng)[:, None, None]
    angle = rng.uniform(0.0, 2 * math.pi)
    ramp = (np.arange(width, dtype=np.float32)[None, :] * math.cos(angle)
            + np.arange(height, dtype=np.float32)[:, None] * math.sin(angle))
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1.0)
    image = start + ramp[None] * (end - start)
    grid = rng.integers(0, 256, size=(int(rng.integers(3, 12)), int(rng.integers(3, 12)), 3))
    blotches = Image.fromarray(grid.astype(np.uint8)).resize((width, height), Image.Resampling.BILINEAR)
    strength = np.float32(rng.uniform(0.0, 0.6))
    image += (np.asarray(blotches, dtype=np.float32).transpose(2, 0, 1) - 128.0) * strength
    amplitude = int(rng.integers(0, 21))
    image += rng.integers(-amplitude, amplitude + 1, size=(1, height, width), dtype=np.int16)
    return np.ascontiguousarray(_to_uint8(image).transpose(1, 2, 0))


def _blob_outline(rng: np.random.Generator, count: int = 32) -> np.ndarray:
    """Vertices [count,2] of a smooth lumpy closed curve (radius 1 plus low harmonics 2 and 3)."""
    angles = np.arange(count) * (2 * math.pi / count)
    radius = np.ones(count)
    for harmonic in (2, 3):
        radius += rng.uniform(0.1, 0.25) * np.cos(harmonic * angles + rng.uniform(0, 2 * math.pi))
    return _regular_vertices(count, radius)


def _draw_clutter(rng: np.random.Generator, canvas: Image.Image, scale: float = 1.0) -> None:
    """Lines, arcs and irregular blobs (never one of the object classes) drawn onto ``canvas``:
    10-59 of them, times ``scale``."""
    width, height = canvas.size
    draw = ImageDraw.Draw(canvas)

    def point() -> tuple[float, float]:
        return float(rng.uniform(0, width)), float(rng.uniform(0, height))

    def colour() -> tuple[int, int, int]:
        red, green, blue = (int(v) for v in rng.integers(0, 256, size=3))
        return red, green, blue

    for _ in range(round(int(rng.integers(10, 60)) * scale)):
        kind = rng.integers(3)
        if kind == 0:
            draw.line([point(), point()], fill=colour(), width=int(rng.integers(1, 5)))
        elif kind == 1:
            (x, y), radius = point(), float(rng.uniform(10, 150))
            start = float(rng.uniform(0, 360))
            draw.arc((x - radius, y - radius, x + radius, y + radius), start,
                     start + float(rng.uniform(30, 200)), fill=colour(), width=int(rng.integers(1, 4)))
        else:
            (x, y), radius = point(), float(rng.uniform(3, 60))
            outline = _blob_outline(rng) * radius
            draw.polygon([(x + dx, y + dy) for dx, dy in outline.tolist()], fill=colour())


def background(rng: np.random.Generator, height: int, width: int, clutter_scale: float = 1.0) -> np.ndarray:
    """A cluttered textured background, uint8 RGB [height, width, 3]; ``clutter_scale`` multiplies
    the number of clutter strokes."""
    canvas = Image.fromarray(_base_background(rng, height, width))
    _draw_clutter(rng, canvas, clutter_scale)
    return np.asarray(canvas).copy()


# ----------------------------------------------------------------------------------------------
# Placement and painting


def _region(x0: int, y0: int, shape: tuple[int, ...]) -> tuple[slice, slice]:
    """Row and column slices of an image covered by an array of ``shape`` placed at (x0, y0)."""
    return slice(y0, y0 + shape[0]), slice(x0, x0 + shape[1])


def _place(rng: np.random.Generator, mask: np.ndarray, image_size: tuple[int, int],
           ) -> tuple[int, int, np.ndarray] | None:
    """Position ``mask`` at random (up to MAX_OUTSIDE_FRACTION outside), clipped to the image.

    Returns (x0, y0, clipped mask) in image pixels, or None when nothing lies inside the image.
    """
    height, width = mask.shape
    image_height, image_width = image_size
    margin_x, margin_y = int(width * MAX_OUTSIDE_FRACTION), int(height * MAX_OUTSIDE_FRACTION)
    x0 = int(rng.integers(-margin_x, max(image_width - width + margin_x, -margin_x) + 1))
    y0 = int(rng.integers(-margin_y, max(image_height - height + margin_y, -margin_y) + 1))
    left, top = max(0, -x0), max(0, -y0)
    right, bottom = min(width, image_width - x0), min(height, image_height - y0)
    if right <= left or bottom <= top:
        return None
    return x0 + left, y0 + top, mask[top:bottom, left:right]


def _remaining_visible(placement: tuple[int, int, np.ndarray], full_area: int, owner: np.ndarray,
                       visible: np.ndarray, full_areas: np.ndarray) -> np.ndarray | None:
    """Visible pixel counts of the earlier sprites once ``placement`` is painted over them.

    None when the placement would leave itself or an earlier sprite under MIN_VISIBLE_FRACTION.
    """
    x0, y0, mask = placement
    if mask.sum() < MIN_VISIBLE_FRACTION * full_area:
        return None
    covered = owner[_region(x0, y0, mask.shape)][mask]
    remaining = visible - np.bincount(covered[covered >= 0], minlength=len(visible))
    if np.any(remaining < MIN_VISIBLE_FRACTION * full_areas):
        return None
    return remaining


def sample_scene(rng: np.random.Generator, config: SceneConfig = SceneConfig()) -> Scene:
    """Draw a background and 1..max_objects non-hidden sprites (see the module docstring)."""
    height = int(rng.integers(config.min_height, config.max_height + 1))
    width = int(rng.integers(config.min_width, config.max_width + 1))
    base = background(rng, height, width, config.clutter_scale)
    owner = np.full((height, width), -1, dtype=np.int16)
    sprites: list[Sprite] = []
    visible = np.zeros(0, dtype=np.int64)
    log_min = math.log(config.min_object_size)
    log_max = math.log(min(config.max_object_size, height, width))
    for _ in range(int(rng.integers(1, config.max_objects + 1))):
        label = int(rng.integers(len(CLASS_NAMES)))
        shape = shape_mask(rng, label, math.exp(rng.uniform(log_min, log_max)))
        full_area = int(shape.sum())
        full_areas = np.array([s.full_area for s in sprites], dtype=np.int64)
        for _ in range(PLACEMENT_TRIES):
            placement = _place(rng, shape, (height, width))
            remaining = None if placement is None else _remaining_visible(
                placement, full_area, owner, visible, full_areas)
            if placement is not None and remaining is not None:
                x0, y0, mask = placement
                owner[_region(x0, y0, mask.shape)][mask] = len(sprites)
                visible = np.append(remaining, int(mask.sum()))
                sprites.append(Sprite(label, x0, y0, mask, texture(rng, *mask.shape), full_area))
                break
    return Scene(base, tuple(sprites))


def compose(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """Paint the sprites over the background in order.

    Returns the uint8 RGB image and the owner map (int16 [H,W]: index of the sprite whose pixel
    is visible there, -1 for background).
    """
    image = scene.background.copy()
    owner = np.full(image.shape[:2], -1, dtype=np.int16)
    for index, sprite in enumerate(scene.sprites):
        image[sprite.region][sprite.mask] = sprite.pixels[sprite.mask]
        owner[sprite.region][sprite.mask] = index
    return image, owner


def visible_boxes(scene: Scene, owner: np.ndarray) -> np.ndarray:
    """Tight boxes of each sprite's visible pixels, float32 [N,4] x1,y1,x2,y2 (x2,y2 exclusive)."""
    boxes = np.zeros((len(scene.sprites), 4), dtype=np.float32)
    for index, sprite in enumerate(scene.sprites):
        mine = owner[sprite.region] == index
        rows, cols = np.flatnonzero(mine.any(axis=1)), np.flatnonzero(mine.any(axis=0))
        boxes[index] = (sprite.x0 + cols[0], sprite.y0 + rows[0],
                        sprite.x0 + cols[-1] + 1, sprite.y0 + rows[-1] + 1)
    return boxes


def render_scene(rng: np.random.Generator, config: SceneConfig = SceneConfig(),
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw one scene: (image uint8 RGB [H,W,3], boxes float32 [N,4] x1,y1,x2,y2 image pixels,
    labels int64 [N] indices into :data:`CLASS_NAMES`)."""
    scene = sample_scene(rng, config)
    image, owner = compose(scene)
    labels = np.array([s.label for s in scene.sprites], dtype=np.int64)
    return image, visible_boxes(scene, owner), labels


# ----------------------------------------------------------------------------------------------
# COCO datasets


def _write_split(out_dir: Path, split: str, seed: int, split_code: int, count: int,
                 config: SceneConfig, progress: bool) -> Path:
    """Render ``count`` scenes into out_dir/images and their annotations into out_dir/{split}.json."""
    records = []
    for index in tqdm(range(count), desc=split, unit="image", disable=not progress):
        image, boxes, labels = render_scene(np.random.default_rng([seed, split_code, index]), config)
        file_name = _image_name(split, index)
        Image.fromarray(image).save(out_dir / file_name, quality=JPEG_QUALITY, subsampling=0)
        records.append(AnnotatedImage(index + 1, file_name, image.shape[1], image.shape[0], boxes, labels))
    document = coco_document(records, CLASS_NAMES,
                             f"cornernet-saccade synthetic shapes, {split}, seed {seed}")
    path = out_dir / f"{split}.json"
    write_json(path, document)
    return path


def _image_name(split: str, index: int) -> str:
    return f"images/{split}_{index:06d}.jpg"


def _check_nothing_replaced(out: Path, counts: dict[str, int]) -> None:
    """OutputError naming the first file of the dataset that already exists in ``out`` (and how many
    more would be replaced): a user's earlier dataset is replaced only with ``overwrite``."""
    targets = [out / f"{split}.json" for split in counts]
    targets += [out / _image_name(split, index) for split, count in counts.items() for index in range(count)]
    existing = [path for path in targets if os.path.lexists(path)]
    if existing:
        more = f" (and {len(existing) - 1} more files of the dataset)" if len(existing) > 1 else ""
        raise OutputError(f"{existing[0]}: already exists{more}; choose another --out or add --overwrite")


def make_shapes_dataset(out_dir: str | Path, seed: int, num_train: int, num_val: int = 0,
                        config: SceneConfig = SceneConfig(), progress: bool = False, overwrite: bool = False,
                        ) -> dict[str, Path]:
    """Write a synthetic COCO dataset: ``out_dir/{train,val}.json`` and ``out_dir/images/*.jpg``.

    Image ``i`` of a split is drawn from ``default_rng([seed, split, i])`` (split 0 = train,
    1 = val), so the two splits never share a scene and any image can be re-rendered alone.
    ``file_name`` entries are relative to ``out_dir``. ``progress`` shows a progress bar on stderr.
    Returns the written JSON paths by split. Files of the dataset already in ``out_dir`` are replaced
    only with ``overwrite`` (else OutputError naming one, before anything is written).
    """
    if seed < 0 or num_train < 0 or num_val < 0:
        raise ConfigError(f"make-shapes {out_dir}: seed and image counts must be >= 0, "
                          f"got seed={seed}, num_train={num_train}, num_val={num_val}")
    out = Path(out_dir)
    counts = {"train": num_train, "val": num_val}
    if not overwrite:
        _check_nothing_replaced(out, counts)
    (out / "images").mkdir(parents=True, exist_ok=True)
    return {split: _write_split(out, split, seed, code, count, config, progress)
            for code, (split, count) in enumerate(counts.items())}
