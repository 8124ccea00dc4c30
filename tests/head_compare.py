"""Shared by the fast-path and export tests: a small filled network, inputs, output comparisons."""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from cornernet_saccade import CornerNetSaccade
from cornernet_saccade.backends.fast import HEAD_OUTPUT_NAMES, last_stack_tensors
from cornernet_saccade.inference.detector import SaccadeDetector
from cornernet_saccade.model.heads import HeadOutputs
from cornernet_saccade.testing import fill_model

REL_TOL = 1e-4  # max abs diff <= 1e-4 x the reference array's abs max (docs/reference.md §B4)
SMALL = dict(num_classes=5, num_stacks=2, dims=(16, 24, 24, 32), stem_dim=8, pool_dim=8, head_dim=16)
#: One stack with every 3x3 convolution wide enough for the fast path's Winograd convolutions.
WIDE = dict(num_classes=5, num_stacks=1, dims=(96, 96, 96, 128), stem_dim=96, pool_dim=96, head_dim=96)


def filled_small_model(config: dict = SMALL) -> CornerNetSaccade:
    """A small network (eval mode, ``SMALL`` or ``WIDE``) with every weight and BatchNorm statistic
    filled by the reference rule (docs/reference.md §B2), so that BatchNorm folding is not trivial."""
    return fill_model(CornerNetSaccade(**config)).eval()


def random_images(batch: int, size: int = 255, seed: int = 0) -> Tensor:
    """Standard-normal ``[batch,3,size,size]`` images."""
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def golden_input() -> Tensor:
    """The ``[1,3,255,255]`` input of ``forward_reference.npz`` (see test_model)."""
    return torch.from_numpy(np.random.default_rng(7).standard_normal((1, 3, 255, 255)).astype(np.float32))


def max_rel_diff(got: Tensor, expected: Tensor) -> float:
    """``max |got - expected| / max |expected|``."""
    expected = expected.double().cpu()
    return float((got.double().cpu() - expected).abs().max() / expected.abs().max().clamp_min(1e-12))


def assert_heads_close(got: HeadOutputs, expected: HeadOutputs, rel_tol: float = REL_TOL) -> None:
    """Every last-stack output of ``got`` within ``rel_tol`` x abs max of ``expected``'s, same shapes."""
    got_t, expected_t = last_stack_tensors(got), last_stack_tensors(expected)
    assert len(got_t) == len(expected_t)
    for name, g, e in zip(HEAD_OUTPUT_NAMES, got_t, expected_t):
        assert g.shape == e.shape and g.dtype == torch.float32, name
        assert max_rel_diff(g, e) <= rel_tol, f"{name}: {max_rel_diff(g, e):.3g} > {rel_tol}"


def assert_matches_original(out: HeadOutputs, reference: dict[str, np.ndarray], rel_tol: float = REL_TOL) -> None:
    """Last-stack outputs within ``rel_tol`` x abs max of the original's (``forward_reference.npz``,
    stack 2, batch 1; heatmaps: 8 stored channels and the abs max)."""
    for field in ("tl_tag", "br_tag", "tl_off", "br_off"):
        expected = torch.from_numpy(reference[f"train/{field}/stack2"])
        assert max_rel_diff(getattr(out, field + "s")[-1], expected) <= rel_tol, field
    channels = torch.from_numpy(reference["heat_channels"])
    for field in ("tl_heat", "br_heat"):
        heat = getattr(out, field + "s")[-1]
        expected = torch.from_numpy(reference[f"train/{field}/stack2/channels"])
        assert max_rel_diff(heat[:, channels], expected) <= rel_tol, field
        absmax = float(reference[f"train/{field}/stack2/absmax"])
        assert abs(heat.abs().max().item() - absmax) <= rel_tol * absmax, field
    for scale, att in enumerate(out.attentions[-1]):
        expected = torch.from_numpy(reference[f"train/att_logit/stack2/scale{scale}"])
        assert max_rel_diff(att, expected) <= rel_tol, f"attention scale {scale}"


def assert_detector_runs_backend_like_model(backend: nn.Module, model: CornerNetSaccade) -> None:
    """``SaccadeDetector(backend)`` on a random 180x240 image: the same views (so the same attention
    peaks), attention maps and boxes as ``SaccadeDetector(model)``, within float32 noise."""
    image = np.random.default_rng(0).integers(0, 256, size=(180, 240, 3), dtype=np.uint8)
    expected = SaccadeDetector(model)(image)
    got = SaccadeDetector(backend)(image)
    assert len(expected.trace.crops) > 2, "the test image should trigger zoomed crops"
    assert got.trace.crops == expected.trace.crops
    for mine, theirs in zip(got.trace.attention_maps, expected.trace.attention_maps, strict=True):
        np.testing.assert_allclose(mine, theirs, atol=1e-5)
    np.testing.assert_allclose(got.boxes, expected.boxes, atol=1e-3)
    np.testing.assert_allclose(got.scores, expected.scores, atol=1e-5)
