"""The inference fast path: BatchNorm folding, fp32/bf16 outputs, compile fallback, detector backend."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from head_compare import (
    WIDE,
    assert_detector_runs_backend_like_model,
    assert_heads_close,
    assert_matches_original,
    filled_small_model,
    golden_input,
    max_rel_diff,
    random_images,
)
from torch import nn

from cornernet_saccade import CornerNetSaccade
from cornernet_saccade.backends.fast import FastNetwork, fold_batchnorm
from cornernet_saccade.backends.winograd import WinogradConv2d
from cornernet_saccade.model.heads import CornerPoolModule
from cornernet_saccade.model.hourglass import _merge_projection
from cornernet_saccade.model.layers import Convolution, CornerPool, Residual
from cornernet_saccade.testing import fill_model

#: bf16 keeps 8 significant bits; through ~100 layers of random-weight networks the largest output
#: error seen was 3.4e-2 x the output's abs max (official size), so outputs must stay within 5e-2.
BF16_REL_TOL = 5e-2


def has_batchnorm(module: nn.Module) -> bool:
    return any(isinstance(m, nn.BatchNorm2d) for m in module.modules())


@pytest.fixture(scope="module")
def small_model() -> CornerNetSaccade:
    return filled_small_model()


@pytest.fixture(scope="module")
def wide_model() -> CornerNetSaccade:
    return filled_small_model(WIDE)


@pytest.fixture(scope="module")
def reference(data_dir) -> dict[str, np.ndarray]:
    return dict(np.load(data_dir / "forward_reference.npz"))


@pytest.mark.parametrize(
    "build, channels",
    [
        (lambda: Convolution(3, 4, 6), 4),
        (lambda: Convolution(7, 4, 6, stride=2), 4),
        (lambda: Convolution(3, 4, 6, with_bn=False), 4),
        (lambda: Residual(6, 6), 6),  # identity skip
        (lambda: Residual(4, 6, stride=2), 4),  # projection skip: conv + BN in a Sequential
        (lambda: CornerPoolModule(6, 4, "top", "left"), 6),  # p_conv1/p_bn1, conv1/bn1, two Convolutions
        (lambda: _merge_projection(6), 6),
    ],
)
def test_folded_block_equals_block(build, channels):
    block = fill_model(build()).eval()
    before = {k: v.clone() for k, v in block.state_dict().items()}
    folded = fold_batchnorm(block)
    x = torch.randn(2, channels, 17, 19, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = block(x), folded(x)
    assert not has_batchnorm(folded) and not folded.training
    assert max_rel_diff(got, expected) <= 1e-5
    assert all(torch.equal(v, before[k]) for k, v in block.state_dict().items()), "original modified"


def test_fold_refuses_a_batchnorm_without_a_convolution():
    with pytest.raises(ValueError, match="BatchNorm"):
        fold_batchnorm(nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 3, 1)))


@pytest.mark.parametrize("winograd", [True, False])
def test_fast_fp32_matches_the_original_official_network(filled_official_model, reference, winograd):
    fast = FastNetwork(filled_official_model, winograd=winograd)
    assert (fast.winograd_convolutions > 100) == winograd  # all 110 3x3 stride-1 convolutions
    out = fast(golden_input())
    assert_matches_original(out, reference)
    assert len(out.tl_heats) == 1 and out.tl_heats[0].shape == (1, 80, 64, 64)
    assert not has_batchnorm(fast) and has_batchnorm(filled_official_model)
    pools = [m for m in filled_official_model.modules() if isinstance(m, CornerPool)]
    assert pools and not any(p.export_friendly for p in pools)


def test_fast_bf16_close_to_the_original_official_network(filled_official_model, reference):
    out = FastNetwork(filled_official_model, dtype=torch.bfloat16)(golden_input())
    assert out.tl_heats[-1].dtype == torch.float32
    assert_matches_original(out, reference, rel_tol=BF16_REL_TOL)


@pytest.mark.parametrize("channels_last", [True, False])
def test_fast_fp32_equals_eager_small(small_model, channels_last):
    images = random_images(2)
    with torch.inference_mode():
        expected = small_model(images)
    fast = FastNetwork(small_model, channels_last=channels_last)
    assert fast.winograd_convolutions == 0  # too narrow for Winograd to pay
    assert_heads_close(fast(images), expected)
    corners_only = fast(images, with_attention=False)
    assert corners_only.attentions == [] and torch.equal(corners_only.tl_heats[0], fast(images).tl_heats[0])


@pytest.mark.parametrize("channels_last", [True, False])
def test_fast_fp32_with_winograd_equals_eager(wide_model, channels_last):
    images = random_images(2, seed=5)
    with torch.inference_mode():
        expected = wide_model(images)
    fast = FastNetwork(wide_model, channels_last=channels_last)
    winograd = [m for m in fast.modules() if isinstance(m, WinogradConv2d)]
    assert len(winograd) == fast.winograd_convolutions > 30
    assert_heads_close(fast(images), expected)
    assert FastNetwork(wide_model, winograd=False).winograd_convolutions == 0


def test_saccade_detector_runs_the_winograd_network_like_the_model(wide_model):
    assert_detector_runs_backend_like_model(FastNetwork(wide_model), wide_model)


def test_fast_bf16_close_to_eager_small(small_model):
    images = random_images(2, seed=3)
    with torch.inference_mode():
        expected = small_model(images)
    assert_heads_close(FastNetwork(small_model, dtype=torch.bfloat16)(images), expected, BF16_REL_TOL)


def test_compile_failure_falls_back_to_eager(small_model, monkeypatch):
    def compile_that_fails_when_run(fn, **kwargs):
        def run(*args, **kw):
            raise RuntimeError("no C compiler")
        return run

    monkeypatch.setattr(torch, "compile", compile_that_fails_when_run)
    fast = FastNetwork(small_model, compile=True)
    assert fast.compiled
    images = random_images(1)
    with pytest.warns(RuntimeWarning, match="no C compiler"):
        out = fast(images)
    assert not fast.compiled
    with torch.inference_mode():
        assert_heads_close(out, small_model(images))


def test_compile_unavailable_warns_and_runs_eager(small_model, monkeypatch):
    def missing_compile(fn, **kwargs):
        raise RuntimeError("torch.compile is not supported on this Python")

    monkeypatch.setattr(torch, "compile", missing_compile)
    with pytest.warns(RuntimeWarning, match="not supported"):
        fast = FastNetwork(small_model, compile=True)
    assert not fast.compiled and fast(random_images(1)).tl_heats[0].shape == (1, 5, 64, 64)


def test_invalid_settings_and_inputs_are_rejected(small_model):
    with pytest.raises(ValueError, match="float16"):
        FastNetwork(small_model, dtype=torch.float16)
    with pytest.raises(ValueError, match="CUDA"):
        FastNetwork(small_model, cuda_graphs=True)
    with pytest.raises(ValueError, match="float32 only"):
        FastNetwork(small_model, dtype=torch.bfloat16, winograd=True)
    assert FastNetwork(small_model, dtype=torch.bfloat16).winograd_convolutions == 0
    with pytest.raises(ValueError, match=r"\[B,3,H,W\]"):
        FastNetwork(small_model)(torch.zeros(3, 255, 255))


def test_saccade_detector_runs_the_fast_network_like_the_model(small_model):
    assert_detector_runs_backend_like_model(FastNetwork(small_model), small_model)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize(
    "dtype, rel_tol", [(torch.float32, 1e-3), (torch.bfloat16, BF16_REL_TOL), (torch.float16, 1e-2)]
)
def test_cuda_graphs_replay_new_inputs(dtype, rel_tol, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # fp32 convolutions in full fp32
    model = filled_small_model().cuda()
    fast = FastNetwork(model, dtype=dtype, cuda_graphs=True)
    for seed in (0, 1, 0):  # later calls with this shape replay the captured graph on new data
        images = random_images(2, seed=seed).cuda()
        with torch.inference_mode():
            expected = model(images)
        assert_heads_close(fast(images), expected, rel_tol)
