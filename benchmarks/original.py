"""The original CornerNet-Saccade tester and ours, timed side by side in one run on one machine.

Times the ORIGINAL tester (princeton-vl/CornerNet-Lite, from a clone the user names with
``--original``, run with its own Python via ``--original-python``) and this project's
:class:`SaccadeDetector` (``--backends``, default eager and auto) on the same image (default: the
clone's demo.jpg), with the same weights and the same torch thread count, and prints one table:
median seconds per detection, spread (min-max), the views processed and the speed-up over the
original measured in this run.

* Weights: the reference fill of docs/reference.md §B2 (the weights the original was timed with).
  For the original it is computed here from the original model's own checkpoint keys and shapes
  (reported by its process) with the fill rule of :mod:`cornernet_saccade.testing`, saved as a
  ``module.`` checkpoint and loaded through the original's ``load_pretrained_params``; ours gets
  ``official_model("golden")``. A sanity line checks that this checkpoint, read by our official
  ``.pkl`` loader, equals our fill. ``--weights`` takes an official ``CornerNet_Saccade_500000.pkl``
  for both instead.
* The original runs in a subprocess (benchmarks/original_runner.py, which imports nothing of this
  project) with CPU shims applied from outside: CUDA calls stay on the CPU, corner pools are the
  clone's compiled C++ ops when built (else a ``torch.cummax`` stand-in: ``--original-pools``),
  ``pkg_resources`` gets a stand-in when setuptools no longer has it. Its soft-NMS must be built
  (see docs/benchmarks.md, "The original beside ours").
* Timed: the detection call only (the original detector's ``__call__``, ours ``detector(pixels)``),
  ``--warmup`` untimed calls then ``--repeats`` timed ones. Ours runs with ``clip_boxes=False`` as
  the original does not clip (microseconds either way).
* Exactness: the views both looked at (location, scale and crop offset of every view) and the final
  boxes per class are compared; the maximum absolute differences are printed.

    python benchmarks/original.py --original ~/CornerNet-Lite --original-python ~/cornernet-lite-venv/bin/python \\
        --threads 2 --repeats 3
    python benchmarks/original.py --original ~/CornerNet-Lite --original-python ~/cornernet-lite-venv/bin/python \\
        --threads 1 --repeats 1 --warmup 0   # quick check that everything runs
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import (
    add_backends_argument,
    add_threads_argument,
    argument_parser,
    begin,
    build_backend,
    load_images,
    load_weights,
    model_label,
    official_model,
    run_seconds,
)

from cornernet_saccade.backends import BACKENDS as DETECTOR_BACKENDS
from cornernet_saccade.backends import FAST_DTYPES, resolve_backend
from cornernet_saccade.inference.detector import SaccadeDetector
from cornernet_saccade.inference.results import Detections
from cornernet_saccade.model.geometry import CROP_SIZE
from cornernet_saccade.tables import format_table
from cornernet_saccade.testing import filled_value

RUNNER = Path(__file__).resolve().with_name("original_runner.py")
PREFIX = "module."
#: Largest difference (pixels, scale) for a view of ours to count as one of the original's.
VIEW_TOLERANCE = 1e-6
HEADER = ("detector", "views", "median s", "spread s", "x original")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argument_parser(__doc__)
    parser.add_argument("--original", required=True, type=Path, help="a clone of princeton-vl/CornerNet-Lite")
    parser.add_argument("--original-python", default="python",
                        help="the Python of the original's environment (torch, numpy, opencv, its built soft-NMS)")
    parser.add_argument("--original-pools", choices=("auto", "compiled", "torch"), default="auto",
                        help="the original's corner pools: its compiled C++ ops when importable (auto, the default), "
                             "only those (compiled), or the torch.cummax stand-in (torch)")
    parser.add_argument("--image", type=Path, help="image (default: the clone's demo.jpg)")
    add_backends_argument(parser, DETECTOR_BACKENDS, ("eager", "auto"), "our backends")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per detector; the median is shown (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs before timing (default 1)")
    add_threads_argument(parser)
    parser.add_argument("--weights", type=Path,
                        help="an official CornerNet_Saccade .pkl for both (default: the reference fill)")
    return parser.parse_args(argv)


# ---------------------------------------------------------------- the original, in its own process


def run_original(args: argparse.Namespace, *options: str) -> None:
    """Run the runner with the original's Python; its output goes to our stderr."""
    command = [args.original_python, str(RUNNER), "--original", str(args.original),
               "--pools", args.original_pools, *options]
    subprocess.run(command, check=True, stdout=sys.stderr)


def original_fill(args: argparse.Namespace, folder: Path) -> Path:
    """The reference fill as a checkpoint of the original model: its keys and shapes come from the
    original's process, the values from our fill rule (sorted unprefixed keys, key i -> seed 1000 + i)."""
    keys_file = folder / "keys.json"
    run_original(args, "--keys", str(keys_file))
    entries = json.loads(keys_file.read_text())
    shapes = {key.removeprefix(PREFIX): tuple(shape) for key, shape, _ in entries}
    dtypes = {key: dtype for key, _, dtype in entries}
    names = sorted(shapes)
    name_set = set(names)
    checkpoint = {}
    for index, name in enumerate(names):
        value = torch.from_numpy(filled_value(index, name, shapes[name], name_set))
        if str(value.dtype).replace("torch.", "") != dtypes[PREFIX + name]:
            raise RuntimeError(f"fill of {name} is {value.dtype}, the original's is {dtypes[PREFIX + name]}")
        checkpoint[PREFIX + name] = value
    path = folder / "CornerNet_Saccade_reference_fill.pkl"
    torch.save(checkpoint, path)
    return path


def time_original(args: argparse.Namespace, weights: Path, image: Path, folder: Path) -> dict[str, Any]:
    out = folder / "original.json"
    run_original(args, "--weights", str(weights), "--image", str(image), "--out", str(out),
                 "--threads", str(args.threads), "--repeats", str(args.repeats), "--warmup", str(args.warmup))
    result: dict[str, Any] = json.loads(out.read_text())
    return result


# ---------------------------------------------------------------- ours, in this process


def time_ours(model: torch.nn.Module, backend: str, pixels: np.ndarray, args: argparse.Namespace) -> tuple[list[float], Detections]:
    detector = SaccadeDetector(build_backend(backend, model, CROP_SIZE), clip_boxes=False)
    last: list[Detections] = []

    def detect() -> None:
        last[:] = [detector(pixels)]

    seconds = run_seconds(detect, args.repeats, args.warmup)
    return seconds, last[0]


# ---------------------------------------------------------------- comparison


def original_views(result: dict[str, Any]) -> list[np.ndarray]:
    """Per ``prepare_images`` call (= saccade round): ``[n, 5]`` y, x, scale, offset y, offset x."""
    return [np.hstack([np.reshape(call["locations"], (-1, 3)), np.reshape(call["offsets"], (-1, 2))])
            for call in result["crop_calls"]]


def our_views(detections: Detections) -> list[np.ndarray]:
    crops = detections.trace.crops
    rounds = sorted({crop.round for crop in crops})
    return [np.array([[*c.center_yx, c.scale, c.region_xyxy[1], c.region_xyxy[0]] for c in crops if c.round == r])
            .reshape(-1, 5) for r in rounds]


def sort_boxes(boxes: np.ndarray) -> np.ndarray:
    """``[n, 5]`` x1, y1, x2, y2, score by score (highest first), then coordinates."""
    return boxes[np.lexsort((*boxes[:, :4].T[::-1], -boxes[:, 4]))] if len(boxes) else boxes


def compare_views(theirs: list[np.ndarray], ours: list[np.ndarray]) -> str:
    """How many of our views (location, scale, crop offset) are also the original's, per round, and
    the maximum absolute difference of the two lists in order where they have the same length."""
    shared = [sum(bool(np.any(np.all(np.abs(a - row) <= VIEW_TOLERANCE, axis=1))) for row in b) if len(a) else 0
              for a, b in zip(theirs, ours)]
    line = (f"views per round: original {[len(v) for v in theirs]}, ours {[len(v) for v in ours]}, "
            f"{sum(shared)} of ours also the original's")
    if [len(v) for v in theirs] == [len(v) for v in ours]:
        diff = max((float(np.abs(a - b).max()) for a, b in zip(theirs, ours) if len(a)), default=0.0)
        line += f", in order max abs diff {diff:g}"
    return line


def compare(original: dict[str, Any], detections: Detections) -> str:
    """One line: views and final boxes of ours against the original's (maximum absolute differences)."""
    views = compare_views(original_views(original), our_views(detections))
    counts, box_diff, score_diff = [], 0.0, 0.0
    for label, original_boxes in enumerate(original["boxes"]):
        a = sort_boxes(np.reshape(original_boxes, (-1, 5)))
        mask = detections.labels == label
        b = sort_boxes(np.hstack([detections.boxes[mask], detections.scores[mask, None]]).astype(np.float64))
        if len(a) != len(b):
            counts.append(f"class {label}: original {len(a)}, ours {len(b)}")
        elif len(a):
            box_diff = max(box_diff, float(np.abs(a[:, :4] - b[:, :4]).max()))
            score_diff = max(score_diff, float(np.abs(a[:, 4] - b[:, 4]).max()))
    total = sum(len(boxes) for boxes in original["boxes"])
    if counts:
        boxes = f"final boxes differ in number ({'; '.join(counts[:5])}{' ...' if len(counts) > 5 else ''})"
    else:
        boxes = (f"final boxes {total} each, same per class, max abs diff coordinates {box_diff:g} px, scores {score_diff:g}"
                 + (" (the filled random weights reject every corner pair)" if total == 0 else ""))
    return f"{views}; {boxes}"


def fill_check(path: Path, model: torch.nn.Module) -> str:
    """Our official-.pkl loader on the original-keys fill against our own fill of our model."""
    loaded = load_weights(str(path)).state_dict()
    ours = model.state_dict()
    if loaded.keys() != ours.keys():
        return "weights: the original-keys fill does not load into the same parameters as ours"
    diff = max(float((loaded[k].double() - ours[k].double()).abs().max()) if ours[k].numel() else 0.0 for k in ours)
    return f"weights: the fill computed from the original's keys, read by our .pkl loader, vs our fill: max abs diff {diff:g}"


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    begin(args.threads, model_label("golden", str(args.weights) if args.weights else None), args.repeats, args.warmup)
    image = args.image or args.original / "demo.jpg"
    name, pixels = load_images([image])[0]
    print(f"image: {name} ({pixels.shape[1]}x{pixels.shape[0]}); original: {args.original.resolve()}\n", flush=True)
    model = official_model("golden", str(args.weights) if args.weights else None)
    with tempfile.TemporaryDirectory(prefix="original-bench-") as tmp:
        folder = Path(tmp)
        weights = args.weights or original_fill(args, folder)
        checks = [] if args.weights else [fill_check(weights, model)]
        original = time_original(args, weights, image, folder)
    print(f"original: torch {original['torch']} ({original['threads']} threads), corner pools {original['pools']}, "
          f"soft-NMS {original['soft_nms']}", file=sys.stderr)
    base = statistics.median(original["seconds"])
    views = sum(len(call["locations"]) for call in original["crop_calls"])
    rows = [["original (princeton-vl/CornerNet-Lite)", str(views), f"{base:.3f}",
             f"{min(original['seconds']):.3f}-{max(original['seconds']):.3f}", "1.00"]]
    for backend in args.backends:
        label = f"ours, auto ({resolve_backend(backend, 'cpu')[0]})" if backend == "auto" else f"ours, {backend}"
        seconds, detections = time_ours(model, backend, pixels, args)
        median = statistics.median(seconds)
        print(f"  {label}: {median:.3f} s", file=sys.stderr, flush=True)
        rows.append([label, str(len(detections.trace.crops)), f"{median:.3f}", f"{min(seconds):.3f}-{max(seconds):.3f}",
                     f"{base / median:.2f}"])
        # a backend computing in less than fp32: its views and boxes may differ from the original's
        reduced = FAST_DTYPES.get(resolve_backend(backend, "cpu")[0], torch.float32) != torch.float32
        exactness = " (bf16 / fp16 arithmetic: not expected to be exact)" if reduced else ""
        checks.append(f"{label} vs original{exactness}: {compare(original, detections)}")
    print(f"original: torch {original['torch']} ({original['threads']} threads), corner pools {original['pools']}")
    print("whole detector per image (image decoding not timed); x original = original's median / this median\n")
    print(format_table(HEADER, rows, (False, True, True, True, True)))
    print()
    print("\n".join(checks))


if __name__ == "__main__":
    main()
