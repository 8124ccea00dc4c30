"""Helpers shared by the tests and benchmarks: the deterministic weight fill of the reference data
(docs/reference.md §B2) and a tiled TIFF writer (:func:`write_tiled_tiff`) for large test images.

The reference outputs of the original (tests/data/) were computed with these weights, applied by
state_dict key name, so a model filled this way must reproduce them. Rule (keys sorted as Python
strings, every key counts, seed 1000 + index):
``num_batches_tracked`` 0; ``running_mean`` 0.1*N(0,1); ``running_var`` U(0.5, 1.5); BatchNorm
weight 1 + 0.1*N(0,1); conv weight N(0,1)/sqrt(fan_in); bias 0.1*N(0,1); float64 then float32.
"""
from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn


def filled_value(index: int, key: str, shape: tuple[int, ...], keys: set[str]) -> np.ndarray:
    """Value of the ``index``-th key (in sorted order) under the fill rule."""
    if key.endswith("num_batches_tracked"):
        return np.zeros(shape, dtype=np.int64)
    rng = np.random.default_rng(1000 + index)
    if key.endswith("running_mean"):
        value = 0.1 * rng.standard_normal(size=shape)
    elif key.endswith("running_var"):
        value = rng.uniform(0.5, 1.5, size=shape)
    elif key.endswith("weight") and key[: -len("weight")] + "running_mean" in keys:
        value = 1.0 + 0.1 * rng.standard_normal(size=shape)
    elif key.endswith("weight"):
        fan_in = shape[1] * shape[2] * shape[3]
        value = rng.standard_normal(size=shape) * (1.0 / math.sqrt(fan_in))
    elif key.endswith("bias"):
        value = 0.1 * rng.standard_normal(size=shape)
    else:
        raise ValueError(f"no fill rule for {key}")
    return value.astype(np.float32)


def filled_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The fill-rule state_dict for ``model`` (keys must be the official, unprefixed names)."""
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    keys = sorted(shapes)
    key_set = set(keys)
    return {k: torch.from_numpy(filled_value(i, k, shapes[k], key_set)) for i, k in enumerate(keys)}


def fill_model(model: nn.Module) -> nn.Module:
    """Load the fill-rule weights into ``model`` (strict) and return it."""
    model.load_state_dict(filled_state_dict(model), strict=True)
    return model


def write_tiled_tiff(path: str | Path, height: int, width: int, tile: int,
                     paint: Callable[[int, int, int, int], np.ndarray], deflate: bool = True) -> None:
    """Write a little-endian tiled RGB TIFF (8 bits, interleaved, Deflate or uncompressed), one tile
    at a time, so images larger than memory can be made (Pillow writes only strips).

    ``paint(y0, y1, x0, x1)`` returns the ``uint8 [y1 - y0, x1 - x0, 3]`` pixels of that part of the
    image (image pixels); tiles past the image edge are padded with zeros, as TIFF stores them.
    """
    offsets, counts = [], []
    with open(path, "wb") as file:
        file.write(b"II*\x00\x00\x00\x00\x00")  # the directory offset is patched at the end
        for y0 in range(0, height, tile):
            for x0 in range(0, width, tile):
                y1, x1 = min(y0 + tile, height), min(x0 + tile, width)
                block = np.zeros((tile, tile, 3), np.uint8)
                block[: y1 - y0, : x1 - x0] = paint(y0, y1, x0, x1)
                data = zlib.compress(block.tobytes(), 1) if deflate else block.tobytes()
                offsets.append(file.tell())
                counts.append(len(data))
                file.write(data + b"\x00" * (len(data) % 2))
        entries = [(256, 4, [width]), (257, 4, [height]), (258, 3, [8, 8, 8]), (259, 3, [8 if deflate else 1]),
                   (262, 3, [2]), (277, 3, [3]), (284, 3, [1]), (322, 4, [tile]), (323, 4, [tile]),
                   (324, 4, offsets), (325, 4, counts)]
        directory = file.tell()
        extra = directory + 2 + 12 * len(entries) + 4  # out-of-line values follow the entries
        table, values = b"", b""
        for tag, kind, items in entries:
            packed = struct.pack(f"<{len(items)}{'H' if kind == 3 else 'I'}", *items)
            if len(packed) <= 4:
                table += struct.pack("<HHI", tag, kind, len(items)) + packed.ljust(4, b"\x00")
            else:
                table += struct.pack("<HHII", tag, kind, len(items), extra + len(values))
                values += packed
        file.write(struct.pack("<H", len(entries)) + table + b"\x00\x00\x00\x00" + values)
        file.seek(4)
        file.write(struct.pack("<I", directory))
