"""Detection agreement of each backend with eager fp32, for a trained model on a set of images.

The detector runs once per image, mode and backend (each backend built once per mode; the
onnxruntime graph exported once per input size). Relative to eager fp32 (the reference), a
detection *matches* when the other run has a detection of the same class with IoU >= ``--iou``
(default 0.9) and a score within ``--score-tolerance`` (default 0.02); matching is one-to-one,
greedy from the best score down, to the unmatched candidate of highest IoU. The table gives:

* ``eager dets`` / ``matched`` / ``eager kept``: eager detections scoring >= ``--min-score``
  (default 0.3) and the fraction of them the backend reproduces;
* ``backend dets`` / ``matched`` / ``in eager``: the backend's detections scoring >= ``--min-score``
  and the fraction of them eager has (the reverse check: nothing spurious added).

Candidates may score below ``--min-score`` (a 0.31 eager box matched by a 0.30 bf16 box counts).
One row per image and an ``all`` row per mode and backend. This is the evidence behind "bf16 keeps
>= 95 % of the fp32 detections": read the ``eager kept`` column of the fast-bf16 ``all`` rows.
Random weights give no confident detections: use a trained model.

    python benchmarks/agreement.py --weights shapes
    python benchmarks/agreement.py --weights runs/trees/checkpoint_best.pt --images my/*.jpg --modes saccade
"""
from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from common import (
    BACKENDS,
    add_backends_argument,
    add_threads_argument,
    argument_parser,
    begin,
    build_backend,
    default_images,
    load_images,
    load_weights,
    mode_input_size,
)

from cornernet_saccade import CornerNetSaccade
from cornernet_saccade.inference.detector import SaccadeDetector
from cornernet_saccade.inference.results import Detections, box_iou
from cornernet_saccade.tables import format_table

REFERENCE = "eager"
COMPARED_BACKENDS = tuple(name for name in BACKENDS if name != REFERENCE)
DEFAULT_COMPARED = ("fast", "fast-bf16", "onnxruntime")
MODES = ("saccade", "full")
ALL_IMAGES = "all"


@dataclass(frozen=True)
class MatchRule:
    """When a detection counts, and when another run's detection reproduces it."""

    min_score: float
    iou: float
    score_tolerance: float


@dataclass(frozen=True)
class Agreement:
    """Counts of one (mode, backend, image): eager detections kept (>= min score) and matched by the
    backend, and the backend's kept detections matched by eager."""

    mode: str
    backend: str
    image: str
    eager_kept: int
    eager_matched: int
    other_kept: int
    other_matched: int


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argument_parser(__doc__)
    parser.add_argument("--weights", required=True, help="trained model: weights file or bundled model name (shapes, trees)")
    parser.add_argument("--images", nargs="+", type=Path, help="images (default: examples/*)")
    add_backends_argument(parser, COMPARED_BACKENDS, DEFAULT_COMPARED, "backends compared with eager")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES), help="detector modes (default: both)")
    parser.add_argument("--min-score", type=float, default=0.3, help="detections counted from this score (default 0.3)")
    parser.add_argument("--iou", type=float, default=0.9, help="least IoU of a match (default 0.9)")
    parser.add_argument("--score-tolerance", type=float, default=0.02,
                        help="largest score difference of a match (default 0.02)")
    add_threads_argument(parser)
    return parser.parse_args(argv)


def count_matched(query: Detections, candidates: Detections, rule: MatchRule) -> tuple[int, int]:
    """``(kept, matched)``: ``query``'s detections scoring >= ``rule.min_score``, and how many of them
    a distinct detection of ``candidates`` reproduces (same class, IoU and score within ``rule``)."""
    keep = query.scores >= rule.min_score
    ious = box_iou(query.boxes[keep], candidates.boxes)
    same = (query.labels[keep, None] == candidates.labels[None]) & (ious >= rule.iou)
    close = np.abs(query.scores[keep, None] - candidates.scores[None]) <= rule.score_tolerance
    allowed = same & close
    taken = np.zeros(len(candidates), dtype=bool)
    for row_allowed, row_ious in zip(allowed, ious):  # query detections are best score first
        free = row_allowed & ~taken
        if free.any():
            taken[np.argmax(np.where(free, row_ious, -1.0))] = True
    return int(keep.sum()), int(taken.sum())


def detect_all(
    model: CornerNetSaccade, backend: str, mode: str, images: Sequence[tuple[str, np.ndarray]]
) -> list[Detections]:
    """Detections of every image with ``backend`` (built once) in ``mode``."""
    network = build_backend(backend, model, mode_input_size(mode))
    detector = SaccadeDetector(network, mode=mode)
    return [detector(pixels) for _, pixels in images]


def compare(
    mode: str, backend: str, names: Sequence[str], eager: Sequence[Detections], other: Sequence[Detections],
    rule: MatchRule,
) -> list[Agreement]:
    """Per-image agreements of ``other`` (run with ``backend``) with ``eager``."""
    return [
        Agreement(mode, backend, name, *count_matched(ref, dets, rule), *count_matched(dets, ref, rule))
        for name, ref, dets in zip(names, eager, other)
    ]


def total(rows: Sequence[Agreement]) -> Agreement:
    """The counts of ``rows`` (one mode and backend) summed over images."""
    first = rows[0]
    return Agreement(first.mode, first.backend, ALL_IMAGES, sum(r.eager_kept for r in rows),
                     sum(r.eager_matched for r in rows), sum(r.other_kept for r in rows),
                     sum(r.other_matched for r in rows))


def percent(matched: int, kept: int) -> str:
    return "-" if kept == 0 else f"{100 * matched / kept:.1f}%"


def table(groups: Sequence[Sequence[Agreement]]) -> str:
    header = ("mode", "backend", "image", "eager dets", "matched", "eager kept", "backend dets", "matched", "in eager")
    rows = [
        (a.mode, a.backend, a.image, str(a.eager_kept), str(a.eager_matched), percent(a.eager_matched, a.eager_kept),
         str(a.other_kept), str(a.other_matched), percent(a.other_matched, a.other_kept))
        for group in groups
        for a in (*group, total(group))
    ]
    return format_table(header, rows, (False, False, False, *[True] * 6))


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    begin(args.threads, f"weights {args.weights}")
    rule = MatchRule(args.min_score, args.iou, args.score_tolerance)
    images = load_images(args.images or default_images(with_demo=False))
    names = [name for name, _ in images]
    model = load_weights(args.weights)
    groups = []
    for mode in args.modes:
        eager = detect_all(model, REFERENCE, mode, images)
        for backend in args.backends:
            other = detect_all(model, backend, mode, images)
            groups.append(compare(mode, backend, names, eager, other, rule))
    print(f"reference: eager fp32; detections with score >= {rule.min_score}; a match: same class, "
          f"IoU >= {rule.iou}, |score difference| <= {rule.score_tolerance}, one-to-one")
    print(table(groups))


if __name__ == "__main__":
    main()
