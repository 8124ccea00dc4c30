"""Extract a compact copy of the original's golden_decode.npz (18 MB) as tests/data/decode_cases.npz.

Tags and offsets are kept in full. Each heatmap keeps only its logits ``>= T`` (sparse flat indices +
values); every other cell is refilled with the constant ``T - 1``. ``T`` is the smallest logit among
the top-K peaks (after sigmoid + peak keeping, as the decoder selects them) over both images, so:

* a kept cell ``v >= T`` keeps its peak status: neighbours that changed were ``< T <= v`` before and
  are ``T - 1 < v`` after, so the window maximum is unchanged;
* refilled cells score ``sigmoid(T - 1) < sigmoid(T)``, and cells below ``T`` scored below the K-th
  peak before (the golden meta records no tie at the K cut), so the top-K of each side is unchanged.

The script checks this: decoding the compacted inputs gives exactly the outputs of the full inputs.
Stored per case: the kwargs, the golden detections and per-side top-K arrays.

Run: ``python tests/data/make_decode_cases.py [/work/shared/reference]``.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from cornernet_saccade.inference.decode import decode_detections, top_corners

#: golden case -> (the case whose inputs it decodes, decoder kwargs).
CASES = {
    "saccade_default": ("saccade_default", dict(k=12, kernel=3, ae_threshold=0.3, num_dets=12, no_border=True)),
    "saccade_dense": ("saccade_dense", dict(k=12, kernel=3, ae_threshold=0.3, num_dets=12, no_border=True)),
    "saccade_kwargs_no_border_False": (
        "saccade_default",
        dict(k=12, kernel=3, ae_threshold=0.3, num_dets=12, no_border=False),
    ),
    "squeeze_kwargs": ("squeeze_kwargs", dict(k=20, kernel=3, ae_threshold=0.5, num_dets=100, no_border=False)),
    "decode_signature_defaults": (
        "decode_signature_defaults",
        dict(k=100, kernel=1, ae_threshold=1.0, num_dets=1000, no_border=False),
    ),
}
INPUTS = ("tl_heat", "br_heat", "tl_tag", "br_tag", "tl_off", "br_off")


def compact_heat(heat: np.ndarray, k: int, kernel: int) -> tuple[np.ndarray, np.ndarray, np.float32]:
    """(flat indices, logits, fill) of ``heat`` ``[B,C,H,W]`` keeping every logit >= the lowest top-k peak."""
    peaks = top_corners(torch.from_numpy(heat), k, kernel)
    cells = (peaks.classes * heat.shape[2] * heat.shape[3] + peaks.inds).numpy()  # [B,k] flat per image
    lowest = np.take_along_axis(heat.reshape(heat.shape[0], -1), cells, axis=1).min()
    keep = np.flatnonzero(heat.ravel() >= lowest)
    return keep.astype(np.int32), heat.ravel()[keep], np.float32(lowest - 1)


def expand_heat(shape: tuple[int, ...], inds: np.ndarray, values: np.ndarray, fill: np.float32) -> np.ndarray:
    """Inverse of :func:`compact_heat` (the cells below the threshold become ``fill``)."""
    heat = np.full(int(np.prod(shape)), fill, dtype=np.float32)
    heat[inds] = values
    return heat.reshape(shape)


def decode_all(inputs: dict[str, np.ndarray], kwargs: dict) -> dict[str, np.ndarray]:
    """Detections and per-side top-K of the decoder for one set of inputs."""
    t = {n: torch.from_numpy(inputs[n]) for n in INPUTS}
    out = {"detections": decode_detections(*(t[n] for n in INPUTS), **kwargs).numpy()}
    for side in ("tl", "br"):
        peaks = top_corners(t[f"{side}_heat"], kwargs["k"], kwargs["kernel"])
        out.update({f"{side}_scores": peaks.scores.numpy(), f"{side}_inds": peaks.inds.numpy(),
                    f"{side}_classes": peaks.classes.numpy()})
    return out


def main(reference: Path) -> None:
    golden = np.load(reference / "golden_decode.npz")
    out: dict[str, np.ndarray] = {}
    compacted: dict[str, dict[str, np.ndarray]] = {}
    for case, (source, kwargs) in CASES.items():
        full = {n: golden[f"{source}/in_{n}"] for n in INPUTS}
        if source not in compacted:
            compacted[source] = dict(full)
            for side in ("tl_heat", "br_heat"):
                inds, values, fill = compact_heat(full[side], kwargs["k"], kwargs["kernel"])
                out.update({f"{source}/{side}_shape": np.array(full[side].shape), f"{source}/{side}_inds": inds,
                            f"{source}/{side}_values": values, f"{source}/{side}_fill": fill})
                compacted[source][side] = expand_heat(full[side].shape, inds, values, fill)
            for name in ("tl_tag", "br_tag", "tl_off", "br_off"):
                out[f"{source}/{name}"] = full[name]
        from_full, from_compact = decode_all(full, kwargs), decode_all(compacted[source], kwargs)
        for key, value in from_full.items():
            assert np.array_equal(value, from_compact[key]), (case, key)
        out[f"{case}/source"] = np.array(source)
        for name, value in kwargs.items():
            out[f"{case}/kwargs/{name}"] = np.array(value)
        out[f"{case}/detections"] = golden[f"{case}/detections"]
        for side in ("tl", "br"):
            for field, golden_field in (("scores", "scores"), ("inds", "inds"), ("classes", "clses")):
                out[f"{case}/{side}_{field}"] = golden[f"{case}/{side}_topk_{golden_field}"]
    target = Path(__file__).with_name("decode_cases.npz")
    np.savez_compressed(target, **out)
    print(target, target.stat().st_size, "bytes")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/work/shared/reference"))
