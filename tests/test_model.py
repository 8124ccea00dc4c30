"""The network against the original: state_dict names/shapes, parameter count, forward outputs."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from cornernet_saccade import CornerNetSaccade
from cornernet_saccade.errors import ConfigError
from cornernet_saccade.model.cornernet_saccade import CornerNetSaccadeConfig

REL_TOL = 1e-4  # max abs diff <= 1e-4 x the reference array's abs max


def official_key_shapes(data_dir) -> list[tuple[str, list[int]]]:
    rows = []
    for line in (data_dir / "state_dict_keys.tsv").read_text().splitlines():
        key, shape, _dtype = line.split("\t")
        dims = shape.strip("[]")
        rows.append((key.removeprefix("module."), [int(d) for d in dims.split(",")] if dims else []))
    return rows


def test_state_dict_matches_official_checkpoint(data_dir):
    model = CornerNetSaccade()
    mine = [(k, list(v.shape)) for k, v in model.state_dict().items()]
    assert mine == official_key_shapes(data_dir)


def test_parameter_count_is_official():
    model = CornerNetSaccade()
    assert sum(p.numel() for p in model.parameters()) == 116_969_339
    assert all(p.requires_grad for p in model.parameters())


def test_prior_bias_on_heat_and_attention_heads():
    model = CornerNetSaccade(num_stacks=1, dims=(16, 16, 16, 16), stem_dim=8, pool_dim=8, head_dim=8)
    for head in [model.tl_heats[0], model.br_heats[0], *model.att_modules[0]]:
        assert torch.all(head[-1].bias == -2.19)


def test_small_configuration_shapes():
    model = CornerNetSaccade(num_classes=5, num_stacks=2, dims=(16, 24, 24, 32), stem_dim=8, pool_dim=8, head_dim=16)
    model.train()
    out = model(torch.randn(2, 3, 255, 255))
    assert len(out.tl_heats) == 2 and out.tl_heats[-1].shape == (2, 5, 64, 64)
    assert out.tl_tags[0].shape == (2, 1, 64, 64) and out.br_offs[1].shape == (2, 2, 64, 64)
    assert [a.shape[-1] for a in out.attentions[0]] == [16, 32, 64]
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 511, 511), with_attention=False)
    assert len(out.tl_heats) == 1 and out.tl_heats[0].shape == (1, 5, 128, 128) and out.attentions == []


def test_invalid_configuration_is_rejected():
    with pytest.raises(ConfigError, match="unknown key"):
        CornerNetSaccade(num_clases=3)
    with pytest.raises(ConfigError):
        CornerNetSaccade(dims=(16, 16))
    assert CornerNetSaccadeConfig() == CornerNetSaccade(num_stacks=1).config.__class__()


@pytest.fixture(scope="module")
def forward_outputs(filled_official_model, data_dir):
    reference = dict(np.load(data_dir / "forward_reference.npz"))
    x = np.random.default_rng(7).standard_normal((1, 3, 255, 255)).astype(np.float32)
    assert hashlib.sha256(x.tobytes()).hexdigest() == str(reference["input_sha256"])
    with torch.inference_mode():
        out = filled_official_model(torch.from_numpy(x), all_stacks=True)
    return reference, out


def assert_close_to_reference(reference: np.ndarray, mine: torch.Tensor, name: str) -> None:
    mine = mine.double().numpy()
    scale = max(np.abs(reference).max(), 1e-12)
    diff = np.abs(mine - reference).max()
    assert diff <= REL_TOL * scale, f"{name}: max abs diff {diff:.3g} > {REL_TOL} x {scale:.3g}"


@pytest.mark.parametrize("stack", [0, 1, 2])
@pytest.mark.parametrize("field", ["tl_tag", "br_tag", "tl_off", "br_off"])
def test_forward_matches_original_embeddings_offsets(forward_outputs, field, stack):
    reference, out = forward_outputs
    assert_close_to_reference(reference[f"train/{field}/stack{stack}"], getattr(out, field + "s")[stack], field)


@pytest.mark.parametrize("stack", [0, 1, 2])
@pytest.mark.parametrize("field", ["tl_heat", "br_heat"])
def test_forward_matches_original_heatmaps(forward_outputs, field, stack):
    reference, out = forward_outputs
    key = f"train/{field}/stack{stack}"
    mine = getattr(out, field + "s")[stack]
    absmax = float(reference[key + "/absmax"])
    assert abs(mine.abs().max().item() - absmax) <= REL_TOL * absmax
    channels = torch.from_numpy(reference["heat_channels"])
    assert_close_to_reference(reference[key + "/channels"], mine[:, channels], key)
    sumsq = float(reference[key + "/sumsq"])
    assert abs(mine.double().pow(2).sum().item() - sumsq) <= 1e-5 * sumsq


@pytest.mark.parametrize("stack", [0, 1, 2])
@pytest.mark.parametrize("scale", [0, 1, 2])
def test_forward_matches_original_attention_logits(forward_outputs, stack, scale):
    reference, out = forward_outputs
    assert_close_to_reference(reference[f"train/att_logit/stack{stack}/scale{scale}"], out.attentions[stack][scale], "att")


def test_eval_mode_returns_last_stack_attention_sigmoid(filled_official_model, forward_outputs):
    reference, _ = forward_outputs
    x = torch.from_numpy(np.random.default_rng(7).standard_normal((1, 3, 255, 255)).astype(np.float32))
    with torch.inference_mode():
        out = filled_official_model(x)
    assert len(out.tl_heats) == 1 and len(out.attentions) == 1
    for scale in range(3):
        assert_close_to_reference(reference[f"test/att_sigmoid/scale{scale}"], out.attentions[-1][scale].sigmoid(), "att")
