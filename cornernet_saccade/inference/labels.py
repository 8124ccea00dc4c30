"""Class names and COCO category ids: the 80 COCO categories in the order of the official model's
classes, and the rules that name a model's classes and give each a category id.

Class ``i`` of an 80-class COCO model (labels sorted by COCO category id, as the original and
:mod:`cornernet_saccade.data.coco` order them) is named ``COCO_CLASS_NAMES[i]`` and has the COCO
category id ``COCO_CATEGORY_IDS[i]`` (ids run from 1 to 90 with gaps).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cornernet_saccade.errors import AnnotationError, ConfigError
from cornernet_saccade.inputs import read_input_text

#: ``(category id, name)`` of the COCO 2014/2017 detection categories, by id.
COCO_CATEGORIES: tuple[tuple[int, str], ...] = (
    (1, "person"), (2, "bicycle"), (3, "car"), (4, "motorcycle"), (5, "airplane"), (6, "bus"),
    (7, "train"), (8, "truck"), (9, "boat"), (10, "traffic light"), (11, "fire hydrant"),
    (13, "stop sign"), (14, "parking meter"), (15, "bench"), (16, "bird"), (17, "cat"), (18, "dog"),
    (19, "horse"), (20, "sheep"), (21, "cow"), (22, "elephant"), (23, "bear"), (24, "zebra"),
    (25, "giraffe"), (27, "backpack"), (28, "umbrella"), (31, "handbag"), (32, "tie"),
    (33, "suitcase"), (34, "frisbee"), (35, "skis"), (36, "snowboard"), (37, "sports ball"),
    (38, "kite"), (39, "baseball bat"), (40, "baseball glove"), (41, "skateboard"), (42, "surfboard"),
    (43, "tennis racket"), (44, "bottle"), (46, "wine glass"), (47, "cup"), (48, "fork"),
    (49, "knife"), (50, "spoon"), (51, "bowl"), (52, "banana"), (53, "apple"), (54, "sandwich"),
    (55, "orange"), (56, "broccoli"), (57, "carrot"), (58, "hot dog"), (59, "pizza"), (60, "donut"),
    (61, "cake"), (62, "chair"), (63, "couch"), (64, "potted plant"), (65, "bed"),
    (67, "dining table"), (70, "toilet"), (72, "tv"), (73, "laptop"), (74, "mouse"), (75, "remote"),
    (76, "keyboard"), (77, "cell phone"), (78, "microwave"), (79, "oven"), (80, "toaster"),
    (81, "sink"), (82, "refrigerator"), (84, "book"), (85, "clock"), (86, "vase"), (87, "scissors"),
    (88, "teddy bear"), (89, "hair drier"), (90, "toothbrush"),
)

COCO_CATEGORY_IDS: tuple[int, ...] = tuple(category_id for category_id, _ in COCO_CATEGORIES)
COCO_CLASS_NAMES: tuple[str, ...] = tuple(name for _, name in COCO_CATEGORIES)


def category_ids(
    class_names: Sequence[str] | None,
    num_classes: int,
    categories: Sequence[dict[str, Any]] | None = None,
    source: str = "the annotation file",
) -> list[int]:
    """The COCO ``category_id`` of each model class (index = label).

    Against an annotation file's ``categories``: the category of the same name when the model has
    class names, else the ``i``-th category by ascending id (COCO ids 1..90 <-> the 80 classes, as
    the original); AnnotationError naming ``source`` when a class has no category. Without
    categories: COCO's ids when the classes are the 80 COCO ones, else ``label + 1``.
    """
    if categories is None:
        if class_names is not None and tuple(class_names) == COCO_CLASS_NAMES:
            return list(COCO_CATEGORY_IDS)
        return list(range(1, num_classes + 1))
    if class_names is None:
        ids = sorted(int(category["id"]) for category in categories)
        if len(ids) != num_classes:
            raise AnnotationError(
                f"{source}: {len(ids)} categories but the model has {num_classes} classes and no class names "
                f"to match them by"
            )
        return ids
    by_name = {str(category["name"]): int(category["id"]) for category in categories}
    missing = [name for name in class_names if name not in by_name]
    if missing:
        raise AnnotationError(f"{source}: no category named {missing} (model classes: {list(class_names)})")
    return [by_name[name] for name in class_names]


def read_class_names(path: str | Path) -> list[str]:
    """Class names from a text file, one per line (surrounding spaces and blank lines ignored)."""
    text = read_input_text(path, ConfigError, "class names file")
    return [line.strip() for line in text.splitlines() if line.strip()]


def resolve_class_names(names_file: str | Path | None, stored: list[str] | None, num_classes: int) -> list[str] | None:
    """The model's class names: from ``names_file`` when given, else those the weights carry, else
    COCO's for an 80-class model, else ``None`` (class indices). ConfigError on a count mismatch."""
    names = read_class_names(names_file) if names_file else stored
    source = names_file or "the class names stored in the weights"
    if names is None:
        return list(COCO_CLASS_NAMES) if num_classes == len(COCO_CLASS_NAMES) else None
    if len(names) != num_classes:
        raise ConfigError(f"{source}: {len(names)} class names for a model with {num_classes} classes")
    return names
