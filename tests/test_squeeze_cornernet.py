"""CornerNet-Squeeze and CornerNet (Hourglass-104) against the originals: state_dict names and
shapes, parameter counts, the forward outputs recorded from the original code, checkpoint loading."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from cornernet_saccade import CornerNet, CornerNetSaccade, CornerNetSqueeze, SqueezeConfig
from cornernet_saccade.errors import CheckpointError, ConfigError
from cornernet_saccade.model.checkpoint import save_checkpoint
from cornernet_saccade.model.layers import Fire
from cornernet_saccade.testing import fill_model

REL_TOL = 1e-4  # max abs diff <= 1e-4 x the reference array's abs max
MODELS = {
    "squeeze": (CornerNetSqueeze, "state_dict_keys_CornerNet_Squeeze.tsv", 31_771_852),
    "cornernet": (CornerNet, "state_dict_keys_CornerNet.tsv", 201_035_212),
}
FIELDS = ("tl_heat", "br_heat", "tl_tag", "br_tag", "tl_off", "br_off")


def official_key_shapes(path) -> list[tuple[str, list[int]]]:
    rows = []
    for line in path.read_text().splitlines():
        key, shape, _dtype = line.split("\t")
        dims = shape.strip("[]")
        rows.append((key.removeprefix("module."), [int(d) for d in dims.split(",")] if dims else []))
    return rows


def build_on_meta(cls):
    """The official-size network without allocating its weights (names and shapes only)."""
    with torch.device("meta"):
        return cls()


@pytest.mark.parametrize("name", MODELS)
def test_state_dict_matches_official_checkpoint(data_dir, name):
    cls, key_file, _ = MODELS[name]
    mine = [(k, list(v.shape)) for k, v in build_on_meta(cls).state_dict().items()]
    assert mine == official_key_shapes(data_dir / key_file)


@pytest.mark.parametrize("name", MODELS)
def test_parameter_count_is_official(name):
    cls, _, count = MODELS[name]
    model = build_on_meta(cls)
    assert sum(p.numel() for p in model.parameters()) == count
    assert all(p.requires_grad for p in model.parameters())


def test_head_kernels_and_upsampling_differ_as_in_the_originals():
    squeeze, cornernet = build_on_meta(CornerNetSqueeze), build_on_meta(CornerNet)
    assert squeeze.tl_heats[0][0].conv.kernel_size == (1, 1)
    assert cornernet.tl_heats[0][0].conv.kernel_size == (3, 3)
    assert isinstance(squeeze.hg.hgs[0].up2, torch.nn.ConvTranspose2d)
    assert not list(cornernet.hg.hgs[0].up2.parameters())
    assert squeeze.hg.hgs[0].up1[0].conv_3x3.groups == 128
    assert torch.all(CornerNetSqueeze(num_classes=3, dims=(8, 8, 8), modules=(1, 1, 1), stem_dim=4,
                                      pool_dim=4, head_dim=4).br_heats[1][-1].bias == -2.19)


def test_small_configurations_give_the_output_strides():
    squeeze = CornerNetSqueeze(num_classes=3, dims=(16, 16, 24, 24, 32), modules=(1, 1, 1, 1, 2),
                               stem_dim=8, pool_dim=8, head_dim=8).train()
    out = squeeze(torch.randn(2, 3, 255, 255))
    assert len(out.tl_heats) == 2 and out.tl_heats[0].shape == (2, 3, 32, 32) and out.attentions == []
    assert out.br_offs[1].shape == (2, 2, 32, 32) and out.tl_tags[1].shape == (2, 1, 32, 32)
    cornernet = CornerNet(num_classes=4, num_stacks=1, dims=(16, 16, 24, 32), modules=(1, 1, 1, 2),
                          stem_dim=8, pool_dim=8, head_dim=8).eval()
    with torch.no_grad():
        out = cornernet(torch.randn(1, 3, 255, 255))
    assert len(out.tl_heats) == 1 and out.br_heats[0].shape == (1, 4, 64, 64) and out.attentions == []


def test_fire_module_adds_its_input_only_when_shape_is_kept():
    x = torch.randn(1, 8, 6, 6)
    kept, widened, strided = Fire(8, 8).eval(), Fire(8, 16).eval(), Fire(8, 8, stride=2).eval()
    for block in (kept, widened, strided):
        torch.nn.init.zeros_(block.bn2.weight)
        torch.nn.init.zeros_(block.bn2.bias)
    with torch.no_grad():
        assert torch.equal(kept(x), x.relu())
        assert torch.equal(widened(x), torch.zeros(1, 16, 6, 6))
        assert torch.equal(strided(x), torch.zeros(1, 8, 3, 3))


def test_invalid_configurations_are_rejected():
    with pytest.raises(ConfigError, match="even widths"):
        CornerNetSqueeze(dims=(16, 16, 24, 24, 33))
    with pytest.raises(ConfigError, match="same number of entries"):
        CornerNet(dims=(16, 16, 24))
    with pytest.raises(ConfigError, match="unknown key"):
        CornerNetSqueeze(head_kernel=3)
    assert CornerNetSqueeze(num_stacks=1, dims=(8, 8), modules=(1, 1), stem_dim=4, pool_dim=4, head_dim=4
                            ).config.__class__() == SqueezeConfig()


@pytest.fixture(scope="module", params=list(MODELS))
def forward_outputs(request, data_dir):
    """(reference, outputs of every stack) of the filled official network on the recorded input;
    the 201M-parameter model itself is dropped once its outputs are computed."""
    name = request.param
    reference = dict(np.load(data_dir / f"forward_{name}.npz"))
    x = np.random.default_rng(7).standard_normal((1, 3, 511, 511)).astype(np.float32)
    assert hashlib.sha256(x.tobytes()).hexdigest() == str(reference["input_sha256"])
    model = fill_model(MODELS[name][0]()).eval()
    with torch.inference_mode():
        out = model(torch.from_numpy(x), all_stacks=True)
    del model
    return reference, out


def assert_close_to_reference(reference: np.ndarray, mine: torch.Tensor, scale: float, name: str) -> None:
    diff = np.abs(mine.double().numpy() - reference).max()
    assert diff <= REL_TOL * scale, f"{name}: max abs diff {diff:.3g} > {REL_TOL} x {scale:.3g}"


def test_forward_last_stack_matches_original(forward_outputs):
    reference, out = forward_outputs
    for field in FIELDS:
        mine = getattr(out, field + "s")[-1]
        key = f"train/{field}/stack1"
        if "heat" in field:
            stored, absmax = mine[:, :8], float(reference[key + "_ch0to7/absmax"])
            assert abs(stored.abs().max().item() - absmax) <= REL_TOL * absmax
            channels = torch.from_numpy(reference["heat_channels"])
            assert_close_to_reference(reference[key + "_ch0to7/channels"], stored[:, channels], absmax, key)
            sumsq = float(reference[key + "_ch0to7/sumsq"])
            assert abs(stored.double().pow(2).sum().item() - sumsq) <= 1e-5 * sumsq, key
        else:
            assert_close_to_reference(reference[key], mine, float(np.abs(reference[key]).max()), key)


def test_forward_statistics_of_every_stack_match_original(forward_outputs):
    """Mean, std, min and max of every full head output of both stacks (all 80 heat channels)."""
    reference, out = forward_outputs
    for field in FIELDS:
        for stack in (0, 1):
            key = f"train/{field}/stack{stack}"
            mine = getattr(out, field + "s")[stack].double()
            want = reference[key + "/stats"]
            got = np.array([mine.mean().item(), mine.std(unbiased=False).item(), mine.min().item(), mine.max().item()])
            scale = max(abs(want[2]), abs(want[3]))
            assert np.abs(got - want).max() <= REL_TOL * scale, f"{key}: {got} vs {want}"


@pytest.mark.parametrize("name", MODELS)
def test_official_checkpoint_loads_unchanged(tmp_path, name):
    """A state_dict written the way the original writes it (``torch.save`` of the ``DataParallel``
    model's ``state_dict()``: ``module.`` prefix, legacy serialisation), as CornerNet_Squeeze_500000.pkl
    and CornerNet_500000.pkl: its class loads it, and ``load_model`` tells the network from its tensors."""
    from cornernet_saccade.model.registry import load_model

    cls = MODELS[name][0]
    written = {k: torch.full(v.shape, float(i % 997), dtype=v.dtype)  # each tensor its own value (fast to make)
               for i, (k, v) in enumerate(build_on_meta(cls).state_dict().items())}
    path = tmp_path / f"{cls.__name__}_500000.pkl"
    torch.save({"module." + k: v for k, v in written.items()}, path, _use_new_zipfile_serialization=False)
    for loaded in (cls.from_checkpoint(path), load_model(path)):
        assert not loaded.training and type(loaded) is cls
        mine = loaded.state_dict()
        assert mine.keys() == written.keys() and all(torch.equal(v, mine[k]) for k, v in written.items())
        del loaded, mine
    with pytest.raises(CheckpointError, match="does not fit the model"):
        CornerNetSaccade.from_checkpoint(path)


def test_checkpoint_round_trip_keeps_configuration(tmp_path):
    model = CornerNet(num_classes=2, num_stacks=1, dims=(8, 8, 16), modules=(1, 1, 2), stem_dim=4, pool_dim=4,
                      head_dim=4)
    save_checkpoint(tmp_path / "small.safetensors", model, class_names=["a", "b"])
    loaded = CornerNet.from_checkpoint(tmp_path / "small.safetensors")
    assert loaded.config == model.config and loaded.class_names == ["a", "b"]
    with pytest.raises(CheckpointError, match="holds a 'cornernet' network"):  # model_config.architecture
        CornerNetSqueeze.from_checkpoint(tmp_path / "small.safetensors", CornerNetSqueeze(
            num_classes=2, num_stacks=1, dims=(8, 8, 16), modules=(1, 1, 2), stem_dim=4, pool_dim=4, head_dim=4
        ).config)
