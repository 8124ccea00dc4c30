"""Extract the compact CornerNet tester references (tests/data/tester_{squeeze,cornernet}.npz) from
golden_test_{squeeze,cornernet}.npz, recorded with the original ``cornernet_inference`` and the
crafted head weights (tests/cornernet_crafted.py).

Kept per run ``<image>/<config>`` (images: demo = tests/data/saccade_demo.jpg, pad127 =
tests/data/tester_pad127.png; img0 is left out to keep the data small, it takes the same code path
as demo): ``final`` ``[N, 6]`` x1, y1, x2, y2, score, 0-based class (all 80 classes, class order,
tester row order) and every scale's ``border``. For demo: every scale's valid rows after the flip
merge and in image coordinates (to test the map-back alone), the soft-NMS input and in-place output
of every class (to test soft-NMS and soft_nms_merge alone), and the sha256 of the scale-0.5 canvas.

Usage: python tests/data/make_tester_cases.py [/path/to/shared/reference]
"""
import hashlib
import sys
from pathlib import Path

import numpy as np

IMAGES = ("demo", "pad127")


def extract(golden: dict, model: str) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    runs = sorted({"/".join(k.split("/")[:2]) for k in golden if "/final/cls" in k})
    for run in runs:
        if run.split("/")[0] not in IMAGES:
            continue
        rows = [np.concatenate([golden[f"{run}/final/cls{j:02d}"], np.full((len(golden[f"{run}/final/cls{j:02d}"]), 1), j - 1,
                                                                          np.float32)], 1) for j in range(1, 81)]
        out[f"{run}/final"] = np.concatenate(rows).astype(np.float32)
        scales = sorted({k.split("/")[2] for k in golden if k.startswith(run + "/scale") and "/border" in k})
        for scale in scales:
            out[f"{run}/{scale}/border"] = golden[f"{run}/{scale}/border"]
            if run.startswith("demo/"):
                for key in ("scale", "output_hw", "dets_after_flip_merge_valid", "dets_image_coords_valid"):
                    out[f"{run}/{scale}/{key}"] = golden[f"{run}/{scale}/{key}"]
        if run.startswith("demo/"):
            for key in golden:
                if key.startswith(run + "/softnms_input/") or key.startswith(run + "/softnms_after_inplace/"):
                    out[key] = golden[key]
        canvas = f"{run}/scale0/input_canvas_uint8"
        if canvas in golden:
            out[canvas + "_sha256"] = np.array(hashlib.sha256(np.ascontiguousarray(golden[canvas]).tobytes()).hexdigest())
    return out


def main(reference: Path) -> None:
    for model in ("squeeze", "cornernet"):
        golden = dict(np.load(reference / f"golden_test_{model}.npz"))
        target = Path(__file__).with_name(f"tester_{model}.npz")
        np.savez_compressed(target, **extract(golden, model))
        print(target, target.stat().st_size, "bytes")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/reference"))
