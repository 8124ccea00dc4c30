"""Extract the original's post-processing goldens (golden_postproc.npz) as tests/data/postproc_cases.npz.

Kept as they are: the soft-NMS sets (input, ``result_rows_0to5``, ``keep_len`` per method),
``location_nms``, ``get_ref_locs``, ``decode_atts`` (attention in / after ``att_nms``, view zooms and
offsets, both outputs) and ``rescale_remap``. The ``prepare_images`` crops (4 x 3 x 255 x 255 float32,
3 MB) are reduced to every 5th pixel plus each crop channel's float64 sum and sum of squares (every
pixel still counts); they are crops of demo.jpg, which make_saccade_demo.py copies to
tests/data/saccade_demo.jpg.

The original's record (docs/reference.md §B7) does not state the view zooms of the ``ignore_same`` call; its rows are reproduced by
zooms ``[1, z]`` with any ``z > 2`` (the second view proposes nothing), stored as ``[1, 3]``.

Run: ``python tests/data/make_postproc_cases.py [/work/shared/reference]``.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

CROP_STRIDE = 5
IGNORE_SAME_SCALES = np.array([1.0, 3.0], dtype=np.float32)
KEPT_PREFIXES = ("location_nms/", "get_ref_locs/", "decode_atts/", "rescale_remap/", "prepare_images/locations",
                 "prepare_images/offsets")


def main(reference: Path) -> None:
    golden = np.load(reference / "golden_postproc.npz")
    out: dict[str, np.ndarray] = {"decode_atts/ignore_same_scales": IGNORE_SAME_SCALES}
    for key in golden.files:
        if key.startswith("softnms/") and not key.endswith("boxes_after(inplace)"):
            out[key] = golden[key]
        elif key.startswith(KEPT_PREFIXES):
            out[key] = golden[key]
    crops = golden["prepare_images/images_0to1_before_norm"]
    out["prepare_images/crops_strided"] = crops[:, :, ::CROP_STRIDE, ::CROP_STRIDE]
    out["prepare_images/crop_stride"] = np.array(CROP_STRIDE)
    out["prepare_images/crops_sum"] = crops.astype(np.float64).sum(axis=(2, 3))
    out["prepare_images/crops_sumsq"] = (crops.astype(np.float64) ** 2).sum(axis=(2, 3))
    target = Path(__file__).with_name("postproc_cases.npz")
    np.savez_compressed(target, **out)
    print(target, target.stat().st_size, "bytes")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/work/shared/reference"))
