"""Extract the small part of the original's golden_loss.npz that the target and loss tests need.

Writes ``tests/data/loss_golden.npz`` (compressed):

* ``sample/*``: every target array of the original sampler (without the 1.5 MB image), plus the final
  crop boxes and the scaled uncropped boxes the original target builder used (``final_dets_*``,
  ``orig_dets_*``);
* ``loss/total`` and the loss components of ``golden_loss_meta.json`` (``meta/*``);
* ``outputs_sha256``: sha256 over the golden network outputs (float32 bytes, in the order the
  test regenerates them), so the test can check that its regeneration from
  ``numpy.random.default_rng(2024)`` gives exactly the golden outputs.

Run: ``python tests/data/make_loss_golden.py [/work/shared/reference]``.
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np

STACKS = 3
#: Golden output arrays in the order they were drawn (one stack after the other).
OUTPUT_FIELDS = ("tl_heat", "br_heat", "tl_tag", "br_tag", "tl_off", "br_off",
                 "att_logit/{stack}/scale0", "att_logit/{stack}/scale1", "att_logit/{stack}/scale2")


def output_keys() -> list[str]:
    """Golden ``outputs/*`` keys in drawing order."""
    keys = []
    for stack in range(STACKS):
        for field in OUTPUT_FIELDS:
            name = field.format(stack=f"stack{stack}") if "{stack}" in field else f"{field}/stack{stack}"
            keys.append(f"outputs/{name}")
    return keys


def main(reference: Path) -> None:
    golden = np.load(reference / "golden_loss.npz")
    meta = json.loads((reference / "golden_loss_meta.json").read_text())["components"]
    arrays = {k: golden[k] for k in golden.files if k.startswith("sample/") and k != "sample/image"}
    arrays["loss/total"] = golden["loss/total"]
    for name in ("focal_tl_sum_over_stacks", "focal_br_sum_over_stacks", "att_per_scale(sum_stacks/3)",
                 "pull_per_stack_unweighted", "push_per_stack_unweighted", "off_per_stack(tl+br)"):
        arrays[f"meta/{name}"] = np.asarray(meta[name], np.float64)
    digest = hashlib.sha256()
    for key in output_keys():
        digest.update(np.ascontiguousarray(golden[key], np.float32).tobytes())
    arrays["outputs_sha256"] = np.asarray(digest.hexdigest())
    out = Path(__file__).with_name("loss_golden.npz")
    np.savez_compressed(out, **arrays)
    print(f"wrote {out} ({out.stat().st_size} bytes)")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/work/shared/reference"))
