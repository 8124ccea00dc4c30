"""The crafted head weights of the CornerNet tester references (tests/data/tester_*.npz): the
reference fill (:mod:`cornernet_saccade.testing`) with only the last 1x1 conv of every heat, tag and
offset head replaced, so that random-feature backbones give real detections of classes 0..2.

Recipe (recorded with the original code): classes 3..79 get weight 0 and bias -9; class ``c`` of
side ``side`` gets fill row ``R`` times ``SCALE`` and bias ``BIAS``; tags and offsets are the fill
times a scale plus a bias. Products in float64, rounded to float32.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from cornernet_saccade.testing import filled_state_dict

KEPT_CLASSES = (0, 1, 2)
OTHER_CLASS_BIAS = -9.0
# heat[side][c] = (source fill row, scale, bias); tag[side] = (scale, bias); off[side] = ((sx, sy), (bx, by))
RECIPES = {
    "squeeze": {
        "heat": {"tl": ((3, 4.418, -7.24), (2, -3.76, -13.1), (3, -4.925, -17.56)),
                 "br": ((5, 3.282, -8.37), (6, 5.678, -16.26), (2, -3.866, -15.13))},
        "tag": {"tl": (0.3244, -0.171), "br": (0.528, 0.182)},
        "off": {"tl": ((0.1838, 0.1928), (0.647, 1.022)), "br": ((0.1316, 0.1946), (-0.028, -0.025))},
    },
    "cornernet": {
        "heat": {"tl": ((0, 0.123, -11.9), (5, -0.334, -27.0), (7, 0.07, -4.15)),
                 "br": ((3, -0.129, -12.58), (0, -0.172, -9.12), (7, 0.233, -15.05))},
        "tag": {"tl": (0.0268, -1.765), "br": (0.0684, 0.693)},
        "off": {"tl": ((0.0031, 0.0033), (-0.308, 1.339)), "br": ((0.0116, 0.0109), (0.051, 0.127))},
    },
}


def _scaled(weight: np.ndarray, scale: float) -> np.ndarray:
    return (weight.astype(np.float64) * float(scale)).astype(np.float32)


def crafted_state_dict(model: nn.Module, name: str) -> dict[str, torch.Tensor]:
    """The crafted weights of ``model`` (official CornerNetSqueeze / CornerNet layout), ``name`` in
    ``RECIPES``."""
    recipe = RECIPES[name]
    state = {k: v.numpy() for k, v in filled_state_dict(model).items()}
    for stack in range(model.config.num_stacks):
        for side in ("tl", "br"):
            weight = state[f"{side}_heats.{stack}.1.weight"]
            new_weight, new_bias = np.zeros_like(weight), np.full(weight.shape[0], OTHER_CLASS_BIAS)
            for c in KEPT_CLASSES:
                row, scale, bias = recipe["heat"][side][c]
                new_weight[c], new_bias[c] = _scaled(weight[row], scale), bias
            state[f"{side}_heats.{stack}.1.weight"] = new_weight
            state[f"{side}_heats.{stack}.1.bias"] = new_bias.astype(np.float32)
            scale, bias = recipe["tag"][side]
            state[f"{side}_tags.{stack}.1.weight"] = _scaled(state[f"{side}_tags.{stack}.1.weight"], scale)
            state[f"{side}_tags.{stack}.1.bias"] = np.array([bias], np.float32)
            scales, biases = recipe["off"][side]
            offsets = state[f"{side}_offs.{stack}.1.weight"]
            state[f"{side}_offs.{stack}.1.weight"] = np.stack([_scaled(offsets[ch], scales[ch]) for ch in range(2)])
            state[f"{side}_offs.{stack}.1.bias"] = np.array(biases, np.float32)
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}


def crafted_model(cls: type[nn.Module], name: str) -> nn.Module:
    """The official-size ``cls`` network with the crafted weights, in eval mode."""
    model = cls()
    model.load_state_dict(crafted_state_dict(model, name), strict=True)
    return model.eval()
