"""Extract the small part of the original's golden_loss_{squeeze,cornernet}.npz the CornerNet target,
sampler and loss tests need.

Writes ``tests/data/loss_cornernet_golden.npz`` (compressed), per model ``m`` in ``squeeze``, ``cornernet``:

* ``m/heat/{tl,br}_{index,value}``: the nonzero entries of the sampler's heatmaps (flat index into
  ``[2, 80, S, S]`` and value), the other targets ``m/sample/*`` as they are;
* ``m/final_dets/b*``, ``m/crop_in_dets/b*``, ``m/crop_out_dets/b*``, ``m/resized_dets/b*``: the
  boxes the original's crop, resize, clip and flip steps produced;
* ``m/loss/total`` and the loss components of the meta (``m/meta/*``), ``m/outputs_sha256`` (one
  sha256 per output array, in drawing order, from the meta's ``outputs_stats``);
* ``draws/b*``: the random draws of each batch element (scale, ctx, cty, flip uniform).

Run: ``python tests/data/make_loss_cornernet_golden.py [/work/shared/reference]``.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

MODELS = ("squeeze", "cornernet")
COMPONENTS = ("focal_tl_per_stack", "focal_br_per_stack", "pull_per_stack_unweighted",
              "push_per_stack_unweighted", "off_tl_per_stack", "off_br_per_stack")
SAMPLE_KEYS = ("gt_tag_mask", "gt_tl_off", "gt_br_off", "gt_tl_ind", "gt_br_ind")


def main(reference: Path) -> None:
    arrays: dict[str, np.ndarray] = {}
    for model in MODELS:
        golden = np.load(reference / f"golden_loss_{model}.npz")
        meta = json.loads((reference / f"golden_loss_{model}_meta.json").read_text())
        for corner in ("tl", "br"):
            heat = golden[f"sample/gt_{corner}_heat"]
            flat = heat.reshape(-1)
            index = np.flatnonzero(flat)
            arrays[f"{model}/heat/{corner}_index"] = index.astype(np.int32)
            arrays[f"{model}/heat/{corner}_value"] = flat[index]
            arrays[f"{model}/heat/shape"] = np.asarray(heat.shape)
        for key in SAMPLE_KEYS:
            arrays[f"{model}/sample/{key}"] = golden[f"sample/{key}"]
        for b in range(2):
            for name, key in (("final_dets", "final_dets_input_coords"), ("crop_in_dets", "random_crop_in_dets"),
                              ("crop_out_dets", "random_crop_out_dets"), ("resized_dets", "resized_dets"),
                              ("clipped_dets", "clipped_dets")):
                arrays[f"{model}/{name}/b{b}"] = golden[f"sampler/b{b}/{key}"]
        arrays[f"{model}/loss/total"] = golden["loss/total"]
        for name in COMPONENTS:
            arrays[f"{model}/meta/{name}"] = np.asarray(meta["components"][name], np.float64)
        arrays[f"{model}/outputs_sha256"] = np.asarray([v["sha256"] for v in meta["outputs_stats"].values()])
        arrays[f"{model}/outputs_names"] = np.asarray(list(meta["outputs_stats"]))
        draws = meta["random_draws_in_call_order"]
        np_draws = [d["result"] for d in draws if d["src"] == "np.random"]
        arrays["draws"] = np.asarray(np_draws, np.float64).reshape(2, 4)
    out = Path(__file__).with_name("loss_cornernet_golden.npz")
    np.savez_compressed(out, **arrays)
    print(f"wrote {out} ({out.stat().st_size} bytes)")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/work/shared/reference"))
