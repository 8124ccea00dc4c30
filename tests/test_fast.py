"""The inference fast path: BatchNorm folding, fp32/bf16 outputs, compile fallback, detector backend;
for CornerNet-Saccade and for CornerNet-Squeeze (fire modules) and CornerNet (Hourglass-104)."""
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

from cornernet_saccade import CornerNet, CornerNetSaccade, CornerNetSqueeze, Detector
from cornernet_saccade.backends import load_detector
from cornernet_saccade.backends.fast import FastNetwork, fold_batchnorm
from cornernet_saccade.backends.winograd import WinogradConv2d
from cornernet_saccade.inference.detector import SaccadeDetector
from cornernet_saccade.inference.settings import CornerNetTestConfig
from cornernet_saccade.model.checkpoint import save_checkpoint
from cornernet_saccade.model.heads import CornerPoolModule
from cornernet_saccade.model.hourglass import _merge_projection
from cornernet_saccade.model.layers import Convolution, CornerPool, Fire, Residual
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
        (lambda: Fire(6, 6), 6),  # identity skip; bn2 split over conv_1x1 and the depthwise conv_3x3
        (lambda: Fire(4, 6), 4),  # widening: no skip
        (lambda: Fire(6, 8, stride=2), 6),  # strided: no skip
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


def test_fold_refuses_a_batchnorm_wider_or_narrower_than_its_convolutions():
    fire = Fire(4, 6)
    fire.conv_3x3 = nn.Conv2d(3, 2, 3, padding=1, bias=False)  # 3 + 2 channels under a 6-channel bn2
    with pytest.raises(ValueError, match="bn2 has 6 channels"):
        fold_batchnorm(fire)
    fire.conv_3x3 = nn.Conv2d(3, 4, 3, padding=1, bias=False)  # 3 + 4 channels
    with pytest.raises(ValueError, match="BatchNorm channels 3-6 of 6"):
        fold_batchnorm(fire)


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


@pytest.mark.cuda
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


# ---------------------------------------------------------------- CornerNet-Squeeze and CornerNet

#: Small Squeeze / CornerNet networks (2 stacks, so the inter-stack merge is folded too) whose stem,
#: ``cnvs``, ``inters`` and corner-pool 3x3 convolutions are wide enough for Winograd; Squeeze's
#: fire modules (48-64 wide halves, depthwise 3x3) and transposed convolutions are not replaced.
FAMILY = {
    "squeeze": (CornerNetSqueeze, dict(num_classes=3, dims=(96, 96, 128, 128), modules=(1, 1, 1, 2),
                                        stem_dim=96, pool_dim=96, head_dim=32)),
    "cornernet": (CornerNet, dict(num_classes=3, dims=(96, 96, 128), modules=(1, 1, 2),
                                  stem_dim=96, pool_dim=96, head_dim=32)),
}
#: The small Squeeze configuration of the detector test (too narrow for Winograd).
SMALL_SQUEEZE = dict(num_classes=3, dims=(32, 32, 48, 64), modules=(1, 1, 1, 2), stem_dim=16, pool_dim=16, head_dim=32)
TINY = dict(num_classes=2, num_stacks=1, dims=(8, 8, 8, 8), modules=(1, 1, 1, 1), stem_dim=4, pool_dim=4, head_dim=4)


@pytest.fixture(scope="module", params=list(FAMILY))
def family_model(request) -> nn.Module:
    """A filled (non-trivial BatchNorm statistics and affine terms) eval-mode network of ``FAMILY``."""
    cls, config = FAMILY[request.param]
    return fill_model(cls(**config)).eval()


@pytest.mark.parametrize("winograd", [True, False])
def test_fast_fp32_equals_eager_for_squeeze_and_cornernet(family_model, winograd):
    images = random_images(1, size=127, seed=11)
    with torch.inference_mode():
        expected = family_model(images)
    fast = FastNetwork(family_model, winograd=winograd)
    assert (fast.winograd_convolutions > 0) == winograd
    out = fast(images)
    assert_heads_close(out, expected)
    stride = 8 if isinstance(family_model, CornerNetSqueeze) else 4
    assert out.tl_heats[0].shape == (1, 3, 128 // stride, 128 // stride) and out.attentions == []
    assert not has_batchnorm(fast) and has_batchnorm(family_model)
    assert [type(m) for m in fast.modules() if isinstance(m, nn.Upsample | nn.ConvTranspose2d)] == [
        type(m) for m in family_model.modules() if isinstance(m, nn.Upsample | nn.ConvTranspose2d)
    ]


def test_squeeze_depthwise_convolutions_stay_direct_and_fold_into_a_bias():
    cls, config = FAMILY["squeeze"]
    fires = [m for m in FastNetwork(cls(**config).eval()).modules() if isinstance(m, Fire)]
    assert fires and all(type(f.conv_3x3) is nn.Conv2d and f.conv_3x3.groups == f.conv_3x3.out_channels > 1
                         for f in fires)
    assert all(f.conv1.bias is not None and f.conv_1x1.bias is not None and f.conv_3x3.bias is not None
               for f in fires)


def test_fast_bf16_close_to_eager_squeeze():
    model = fill_model(CornerNetSqueeze(**SMALL_SQUEEZE)).eval()
    images = random_images(1, size=127, seed=4)
    with torch.inference_mode():
        expected = model(images)
    assert_heads_close(FastNetwork(model, dtype=torch.bfloat16)(images), expected, BF16_REL_TOL)


def test_load_detector_runs_squeeze_weights_on_the_fast_backend(tmp_path):
    weights = tmp_path / "squeeze.safetensors"
    save_checkpoint(weights, fill_model(CornerNetSqueeze(**SMALL_SQUEEZE)).eval(), class_names=["a", "b", "c"])
    image = np.random.default_rng(2).integers(0, 256, size=(100, 130, 3), dtype=np.uint8)
    # random weights: corners pair up only with a loose tag distance
    expected = load_detector(weights, backend="eager", device="cpu", ae_threshold=5.0)(image)
    fast = load_detector(weights, backend="fast", device="cpu", ae_threshold=5.0)
    assert isinstance(fast.model, FastNetwork) and fast.class_names == ["a", "b", "c"]
    got = fast(image)
    assert len(expected.boxes) > 10
    np.testing.assert_array_equal(got.labels, expected.labels)
    np.testing.assert_allclose(got.boxes, expected.boxes, atol=1e-3)
    np.testing.assert_allclose(got.scores, expected.scores, atol=1e-5)


def test_detector_of_a_fast_network_is_that_of_its_model():
    squeeze = CornerNetSqueeze(**TINY).eval()
    assert Detector(FastNetwork(squeeze)).config == CornerNetTestConfig.squeeze() == Detector(squeeze).config
    assert Detector(FastNetwork(CornerNet(**TINY).eval())).config == CornerNetTestConfig()
    assert isinstance(Detector(FastNetwork(CornerNetSaccade(**TINY).eval())), SaccadeDetector)



@pytest.mark.parametrize("model_class", [CornerNetSaccade, CornerNetSqueeze])
def test_detector_of_a_fast_network_runs_the_stored_settings_and_class_names(model_class):
    """A detector built on ``FastNetwork(model)`` (the README's fast-path example) runs what the
    weights file stored with ``model``, as ``Detector(model)`` does, not the official defaults."""
    settings = {"top_k": 7, "num_dets": 5, "max_per_image": 3}
    model = model_class(**TINY, class_names=["cat", "dog"], test_settings=settings).eval()
    fast = FastNetwork(model)
    assert (fast.class_names, fast.test_settings, fast.num_classes) == (["cat", "dog"], model.test_settings, 2)
    detector = Detector(fast)
    assert (detector.config.top_k, detector.config.num_dets, detector.config.max_per_image) == (7, 5, 3)
    assert detector.config == Detector(model).config and detector.class_names == ["cat", "dog"]
