"""Extract the compact forward references of CornerNet-Squeeze and CornerNet (tests/data/
forward_squeeze.npz, forward_cornernet.npz) from golden_forward_{squeeze,cornernet}.npz and their metas.

Kept: the last stack's tags and offsets in full; of the stored heat logits (channels 0..7 of the last
stack) the channels in HEAT_CHANNELS (all 8 for Squeeze; 0, 3, 7 for CornerNet, whose maps are
4x larger) plus the 8-channel array's abs max and sum of squares; and [mean, std, min, max] of every
full array of both stacks (from the meta), so every element of every head output still counts. The
test-path detections are not kept (pure torch.topk tie order with this fill). The input is not
stored: the test rebuilds it from its seed and checks it against the stored sha256.

Usage: python tests/data/make_forward_squeeze_cornernet.py [/path/to/shared/reference]
"""
import json
import sys
from pathlib import Path

import numpy as np

HEAT_CHANNELS = {"squeeze": np.arange(8), "cornernet": np.array([0, 3, 7])}
STATS = ("mean", "std", "min", "max")


def extract(reference: Path, model: str) -> dict[str, np.ndarray]:
    golden = np.load(reference / f"golden_forward_{model}.npz")
    meta = json.loads((reference / f"golden_forward_{model}_meta.json").read_text())
    out: dict[str, np.ndarray] = {
        "input_sha256": np.array(meta["input_stats"]["sha256"]),
        "heat_channels": HEAT_CHANNELS[model],
    }
    for key in golden.files:
        if not key.startswith("train/"):
            continue
        array = golden[key]
        if "_heat/" in key:
            out[key + "/channels"] = array[:, HEAT_CHANNELS[model]]
            out[key + "/sumsq"] = np.array((array.astype(np.float64) ** 2).sum())
            out[key + "/absmax"] = np.array(np.abs(array).max())
        else:
            out[key] = array
    for key, stats in meta["stats_full_arrays_all_stacks"].items():
        out[key + "/stats"] = np.array([stats[name] for name in STATS], dtype=np.float64)
    return out


def main(reference: Path) -> None:
    for model in HEAT_CHANNELS:
        target = Path(__file__).with_name(f"forward_{model}.npz")
        np.savez_compressed(target, **extract(reference, model))
        print(target, target.stat().st_size, "bytes")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/reference"))
