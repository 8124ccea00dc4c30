"""Helpers shared by the tests and benchmarks: the deterministic weight fill of the reference data
(docs/reference.md §B2).

The reference outputs of the original (tests/data/) were computed with these weights, applied by
state_dict key name, so a model filled this way must reproduce them. Rule (keys sorted as Python
strings, every key counts, seed 1000 + index):
``num_batches_tracked`` 0; ``running_mean`` 0.1*N(0,1); ``running_var`` U(0.5, 1.5); BatchNorm
weight 1 + 0.1*N(0,1); conv weight N(0,1)/sqrt(fan_in); bias 0.1*N(0,1); float64 then float32.
"""
from __future__ import annotations

import math

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
