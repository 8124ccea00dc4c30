"""Peak memory and time of ``detect`` on a large tiled TIFF, which it reads by windows.

Writes a ``--side`` x ``--side`` tiled TIFF (Deflate, 256 px tiles) that repeats
``examples/shapes_scene.jpg`` (its objects included), then runs ``cornernet-saccade detect --weights
shapes IMAGE --views auto`` in a child process and reports the child's peak resident memory
(``ru_maxrss`` of the children, one child per measurement), its seconds and the views it ran (from
``detections.jsonl``). The same command on the small scene itself gives the baseline (Python, torch,
the model).

    python benchmarks/large_image.py --side 10000 --threads 2
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from cornernet_saccade.images import read_image
from cornernet_saccade.testing import write_tiled_tiff

ROOT = Path(__file__).resolve().parent.parent
SCENE = ROOT / "examples" / "shapes_scene.jpg"


def write_repeated_scene(path: Path, side: int) -> None:
    """A ``side`` x ``side`` tiled TIFF of the scene repeated (image pixels ``y % H, x % W``)."""
    scene = read_image(SCENE)
    height, width = scene.shape[:2]

    def paint(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        return scene[np.arange(y0, y1)[:, None] % height, np.arange(x0, x1)[None, :] % width]

    write_tiled_tiff(path, side, side, 256, paint)


def measure(image: Path, out: Path, threads: int, extra: list[str]) -> dict[str, float]:
    """Run ``detect`` on ``image`` in a child process: peak RSS (MB), seconds, views."""
    command = [sys.executable, "-m", "cornernet_saccade", "detect", "--weights", "shapes", str(image), "--out",
               str(out), "--views", "auto", "--threads", str(threads), "--overwrite", *extra]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # the largest child so far
    record = json.loads((out / "detections.jsonl").read_text().splitlines()[-1])
    return {"peak MB": peak_kib / 1024, "seconds": seconds, "views": record["crops"],
            "detections": len(record["results"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--side", type=int, default=10000, help="image side, pixels (default: 10000)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], help="passed to detect as --set")
    args = parser.parse_args()
    extra = [item for value in args.set for item in ("--set", value)]
    with tempfile.TemporaryDirectory() as folder:
        big = Path(folder) / f"scene_{args.side}.tif"
        write_repeated_scene(big, args.side)
        print(f"{big.name}: {big.stat().st_size / 1e6:.1f} MB on disk, "
              f"{args.side * args.side * 3 / 1e6:.0f} MB as RGB uint8", flush=True)
        small = measure(SCENE, Path(folder) / "small", args.threads, extra)  # the baseline first: peaks only grow
        print(f"{SCENE.name} (1065x748): {json.dumps(small)}", flush=True)
        large = measure(big, Path(folder) / "large", args.threads, extra)
        print(f"{big.name} ({args.side}x{args.side}): {json.dumps(large)}", flush=True)


if __name__ == "__main__":
    main()
