"""Runs the ORIGINAL CornerNet-Saccade tester (princeton-vl/CornerNet-Lite) for benchmarks/original.py.

Run by benchmarks/original.py with the original's own Python (its separate virtual environment),
never imported by this project: it needs only torch, numpy, opencv and the user's clone of the
original, whose files it does not change. Two jobs, each writing a JSON file:

* ``--keys OUT``: the original model's checkpoint keys (``module.`` prefix, as
  ``NetworkFactory.load_pretrained_params`` expects them), shapes and dtypes, from which
  benchmarks/original.py computes the reference fill;
* ``--weights PKL --image IMG --out OUT``: load ``PKL`` through the original's ``Base`` detector
  (``load_pretrained_params``), then time its ``__call__`` on the image (``--warmup`` untimed
  calls, ``--repeats`` timed ones) and write the seconds, the final boxes of the last call per class
  and the crop locations of each ``prepare_images`` call.

CPU shims, applied from outside before the original is imported (its code assumes a GPU):

* ``torch.Tensor.cuda`` and ``nn.Module.cuda`` return the object unchanged, and
  ``torch.cuda.FloatTensor(...)`` makes a CPU float32 tensor;
* ``pkg_resources`` (imported by the original's ``core/paths.py``, gone from setuptools >= 81)
  gets a stand-in when missing; its one function is not used by the tester;
* corner pools: the compiled C++ ops ``top_pool``... (built from the clone's ``_cpools``) when
  importable; otherwise, or with ``--pools torch``, stand-in modules computing the same maxima with
  ``torch.cummax`` (max is exact, so the values are identical; only the speed differs);
* a wrapper around the tester's ``prepare_images`` copies the crop locations it is given (a
  few small numpy copies per call) so that benchmarks/original.py can compare them with ours.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
import types
from collections.abc import Callable
from typing import Any


def cpu_shims() -> None:
    import torch
    from torch import nn

    torch.Tensor.cuda = lambda self, *args, **kwargs: self  # type: ignore[method-assign]
    nn.Module.cuda = lambda self, *args, **kwargs: self  # type: ignore[method-assign]
    torch.cuda.FloatTensor = lambda *args: torch.FloatTensor(*args)  # type: ignore[attr-defined]
    try:
        import pkg_resources  # noqa: F401
    except ImportError:
        stand_in = types.ModuleType("pkg_resources")
        stand_in.resource_filename = lambda package, path: os.path.join(  # type: ignore[attr-defined]
            os.path.dirname(sys.modules[package].__file__ or ""), path)
        sys.modules["pkg_resources"] = stand_in


def cummax_pool(dim: int, reverse: bool) -> types.ModuleType:
    """A stand-in for one compiled corner-pool module: ``forward(x)`` returns ``[y]`` with ``y`` the
    running maximum of ``x`` along ``dim`` (from the far end when ``reverse``)."""
    import torch

    def forward(x: torch.Tensor) -> list[torch.Tensor]:
        if reverse:
            return [torch.cummax(x.flip(dim), dim)[0].flip(dim)]
        return [torch.cummax(x, dim)[0]]

    module = types.ModuleType("cummax_pool")
    module.forward = forward  # type: ignore[attr-defined]
    return module


#: Compiled module name -> (dimension, from the far end): top = max of the rows at and below.
POOLS = {"top_pool": (2, True), "bottom_pool": (2, False), "left_pool": (3, True), "right_pool": (3, False)}


def corner_pools(choice: str) -> str:
    """Make ``import top_pool`` etc. work; returns which pools the original runs with."""
    if choice != "torch":
        try:
            for name in POOLS:
                __import__(name)
            return "compiled C++ (clone's _cpools)"
        except ImportError:
            if choice == "compiled":
                raise
    for name, (dim, reverse) in POOLS.items():
        sys.modules[name] = cummax_pool(dim, reverse)
    return "pure-torch stand-in (torch.cummax; the compiled _cpools were not importable)" if choice == "auto" \
        else "pure-torch stand-in (torch.cummax, as asked)"


def network(original: str) -> tuple[Any, Callable[[], Any]]:
    """The original's CornerNet-Saccade db config and NetworkFactory, as its detector class builds them."""
    from core.base import load_cfg, load_nnet
    from core.config import SystemConfig
    from core.dbs.coco import COCO
    from core.models.CornerNet_Saccade import model

    cfg_sys, cfg_db = load_cfg(os.path.join(original, "configs", "CornerNet_Saccade.json"))
    sys_cfg = SystemConfig().update_config(cfg_sys)
    return COCO(cfg_db), lambda: load_nnet(sys_cfg, model())


def dump_keys(original: str, out: str) -> None:
    _, make_nnet = network(original)
    state = make_nnet().model.state_dict()
    entries = [[key, list(value.shape), str(value.dtype).replace("torch.", "")] for key, value in state.items()]
    with open(out, "w") as file:
        json.dump(entries, file)


def time_tester(args: argparse.Namespace) -> None:
    import cv2
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from core.base import Base

    # the module itself (core/test/__init__.py rebinds its name to a function of the same name)
    tester = importlib.import_module("core.test.cornernet_saccade")

    db, make_nnet = network(args.original)
    detector = Base(db, make_nnet(), tester.cornernet_saccade_inference, model=args.weights)
    image = cv2.imread(args.image)
    if image is None:
        raise SystemExit(f"cannot read {args.image}")

    calls: list[dict[str, list[list[float]]]] = []
    prepare_images = tester.prepare_images

    def recording_prepare_images(db: Any, image: Any, locs: Any, flipped: bool = True) -> Any:
        images, offsets = prepare_images(db, image, locs, flipped=flipped)
        calls.append({"locations": np.asarray(locs)[:, :3].tolist(), "offsets": offsets.tolist()})
        return images, offsets

    tester.prepare_images = recording_prepare_images  # type: ignore[attr-defined]
    for _ in range(args.warmup):
        detector(image)
    seconds = []
    for _ in range(max(1, args.repeats)):
        calls.clear()
        start = time.perf_counter()
        boxes = detector(image)
        seconds.append(time.perf_counter() - start)
    result = {
        "seconds": seconds,
        "boxes": [np.asarray(value, dtype=np.float64).reshape(-1, 5).tolist() for value in boxes.values()],
        "crop_calls": calls,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "pools": args.pools_used,
        "soft_nms": tester.soft_nms.__module__ + " from " + str(getattr(sys.modules[tester.soft_nms.__module__], "__file__", "?")),
        "image_hw": list(image.shape[:2]),
    }
    with open(args.out, "w") as file:
        json.dump(result, file)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n\n")[0])
    parser.add_argument("--original", required=True, help="the clone of princeton-vl/CornerNet-Lite")
    parser.add_argument("--keys", help="write the checkpoint keys, shapes and dtypes to this JSON file and stop")
    parser.add_argument("--weights", help="checkpoint to load (module.-prefixed state_dict)")
    parser.add_argument("--image")
    parser.add_argument("--out")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--pools", choices=("auto", "compiled", "torch"), default="auto")
    args = parser.parse_args()
    args.original = os.path.abspath(args.original)
    sys.path[0] = args.original  # instead of this script's folder: nothing of this project is importable
    cpu_shims()
    args.pools_used = corner_pools(args.pools)
    if args.keys:
        dump_keys(args.original, args.keys)
    else:
        time_tester(args)


if __name__ == "__main__":
    main()
