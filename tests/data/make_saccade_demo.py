"""Copy the original's saccade trace on demo.jpg (golden_saccade_demo.npz) and demo.jpg into tests/data.

Writes ``saccade_demo.jpg`` (the 640x480 input) and ``saccade_demo.npz``: the 43 next locations after
the first round, the locations and offsets of both ``prepare_images`` calls (2 initial views, 30
zoomed crops) and the number of final boxes (0: the filled random weights reject every pair).

Run: ``python tests/data/make_saccade_demo.py [/work/shared/reference]``.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np


def main(reference: Path) -> None:
    golden = np.load(reference / "golden_saccade_demo.npz")
    out = {key: golden[key] for key in golden.files if not key.startswith("final_bboxes/")}
    out["num_final_boxes"] = np.array(sum(len(golden[k]) for k in golden.files if k.startswith("final_bboxes/")))
    here = Path(__file__).parent
    np.savez_compressed(here / "saccade_demo.npz", **out)
    shutil.copyfile(reference / "demo.jpg", here / "saccade_demo.jpg")
    for name in ("saccade_demo.npz", "saccade_demo.jpg"):
        print(here / name, (here / name).stat().st_size, "bytes")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/work/shared/reference"))
