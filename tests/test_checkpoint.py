"""Checkpoints: the official layout, our formats, refusal of code payloads, clear errors."""
from __future__ import annotations

import json
import os
import pickle
import stat
import time

import pytest
import torch

from cornernet_saccade import CornerNetSaccade, load_checkpoint, read_checkpoint, save_checkpoint
from cornernet_saccade.bounds import LIMITS_ENV
from cornernet_saccade.errors import CheckpointError
from cornernet_saccade.outputs import atomic_write

SMALL = dict(num_classes=4, num_stacks=2, dims=(8, 8, 12, 16), stem_dim=8, pool_dim=8, head_dim=8)


def small_model(seed: int = 0, **overrides) -> CornerNetSaccade:
    torch.manual_seed(seed)
    model = CornerNetSaccade(**{**SMALL, **overrides})
    for buffer_name, buffer in model.named_buffers():
        if buffer_name.endswith("running_var"):
            buffer.uniform_(0.5, 1.5)
    return model.eval()


def outputs(model: CornerNetSaccade, x: torch.Tensor) -> list[torch.Tensor]:
    with torch.inference_mode():
        out = model(x)
    return [out.tl_heats[-1], out.br_tags[-1], out.tl_offs[-1], *out.attentions[-1]]


def test_official_layout_loads_and_reproduces_outputs(filled_official_model, tmp_path):
    """A legacy-serialised state_dict with the `module.` prefix, as CornerNet_Saccade_500000.pkl."""
    path = tmp_path / "CornerNet_Saccade_500000.pkl"
    official = {"module." + k: v for k, v in filled_official_model.state_dict().items()}
    torch.save(official, path, _use_new_zipfile_serialization=False)
    del official
    loaded = CornerNetSaccade.from_checkpoint(path)
    x = torch.randn(1, 3, 127, 127, generator=torch.Generator().manual_seed(1))
    for a, b in zip(outputs(loaded, x), outputs(filled_official_model, x)):
        assert torch.equal(a, b)


def test_project_checkpoint_carries_config(tmp_path):
    model = small_model()
    path = tmp_path / "model.pt"
    save_checkpoint(path, model, iteration=7)
    stored = read_checkpoint(path)
    assert stored.training_state["iteration"] == 7
    loaded = CornerNetSaccade.from_checkpoint(path)
    assert loaded.config == model.config
    x = torch.randn(1, 3, 127, 127)
    assert all(torch.equal(a, b) for a, b in zip(outputs(loaded, x), outputs(model, x)))


def test_safetensors_round_trip(tmp_path):
    model = small_model(seed=3)
    path = tmp_path / "model.safetensors"
    save_checkpoint(path, model)
    loaded = CornerNetSaccade.from_checkpoint(path)
    assert loaded.config == model.config
    x = torch.randn(1, 3, 127, 127)
    assert all(torch.equal(a, b) for a, b in zip(outputs(loaded, x), outputs(model, x)))


class _Payload:
    """Unpickling this would create the marker file."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("legacy", [False, True])
def test_code_payload_is_refused_and_never_runs(tmp_path, legacy):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    torch.save({"module.x": torch.zeros(1), "evil": _Payload(str(marker))}, path, _use_new_zipfile_serialization=not legacy)
    with pytest.raises(CheckpointError, match="evil.pkl"):
        CornerNetSaccade.from_checkpoint(path)
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch's note on the crafted file
def test_raw_pickle_payload_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps(_Payload(str(marker))))
    with pytest.raises(CheckpointError, match="evil.pth"):
        read_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "content", [b"", b"hello, this is not a checkpoint\n", b"PK\x03\x04garbage", b"\x80\x02}q\x00"]
)
def test_foreign_or_broken_file_gets_clear_error(tmp_path, content):
    path = tmp_path / "weights.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="weights.pt"):
        read_checkpoint(path)


def test_truncated_checkpoint_gets_clear_error(tmp_path):
    path = tmp_path / "model.pt"
    save_checkpoint(path, small_model())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="model.pt"):
        read_checkpoint(path)


def test_missing_file_gets_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="nope.pkl"):
        read_checkpoint(tmp_path / "nope.pkl")


def test_missing_unexpected_misshaped_keys_are_named(tmp_path):
    model = small_model()
    state = model.state_dict()
    state.pop("hg.pre.0.conv.weight")
    state["extra.weight"] = torch.zeros(1)
    state["tl_tags.0.1.bias"] = torch.zeros(3)
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(small_model(), path)
    message = str(info.value)
    assert "bad.pt" in message and "hg.pre.0.conv.weight" in message
    assert "extra.weight" in message and "tl_tags.0.1.bias" in message


def test_other_architecture_is_refused(tmp_path):
    path = tmp_path / "wide.pt"
    save_checkpoint(path, small_model(dims=(8, 8, 12, 20)))
    with pytest.raises(CheckpointError, match="mis-shaped"):
        load_checkpoint(small_model(), path)


def test_fine_tuning_to_other_classes_keeps_all_but_heat_heads(tmp_path):
    source = small_model(seed=1)
    path = tmp_path / "source.pt"
    save_checkpoint(path, source)
    target = small_model(seed=2, num_classes=7)
    fresh_heads = {k: v.clone() for k, v in target.state_dict().items() if k.split(".")[0] in ("tl_heats", "br_heats") and k.split(".")[2] == "1"}
    with pytest.warns(UserWarning, match="number of classes differs") as record:
        load_checkpoint(target, path)
    assert "tl_heats.0.1.weight" in str(record[0].message)
    loaded, original = target.state_dict(), source.state_dict()
    for key, value in loaded.items():
        if key in fresh_heads:
            assert torch.equal(value, fresh_heads[key])
        else:
            assert torch.equal(value, original[key]), key
    assert len(fresh_heads) == 2 * 2 * 2  # tl/br x 2 stacks x (weight, bias)


def test_atomic_write_keeps_previous_file_on_failure(tmp_path):
    path = tmp_path / "ckpt.pt"
    path.write_bytes(b"previous")

    def failing_write(tmp: str) -> None:
        with open(tmp, "wb") as handle:
            handle.write(b"partial")
        raise KeyboardInterrupt  # as if the process were stopped mid-write

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, failing_write)
    assert path.read_bytes() == b"previous"
    assert os.listdir(tmp_path) == ["ckpt.pt"]


def test_bundled_name_unknown_is_clear():
    with pytest.raises(CheckpointError, match="no bundled model named"):
        CornerNetSaccade.from_pretrained("does-not-exist")


def test_export_weights_keeps_config_and_class_names(tmp_path):
    from cornernet_saccade.cli import main
    from cornernet_saccade.model.checkpoint import read_checkpoint as read

    model = small_model(seed=5)
    source = tmp_path / "train.pt"
    save_checkpoint(source, model, class_names=["a", "b", "c", "d"], iteration=3)
    out = tmp_path / "model.safetensors"
    assert main(["export-weights", "--weights", str(source), "--out", str(out)]) == 0
    stored = read(out)
    assert stored.metadata["class_names"] == '["a", "b", "c", "d"]'
    loaded = CornerNetSaccade.from_checkpoint(out)
    x = torch.randn(1, 3, 127, 127)
    assert all(torch.equal(a, b) for a, b in zip(outputs(loaded, x), outputs(model, x)))


def _write_safetensors(path, model: CornerNetSaccade, **metadata: str):
    """``model``'s weights as safetensors with exactly the given metadata entries."""
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path), metadata=metadata)
    return path


def forbid_real_model_builds(monkeypatch) -> None:
    """From now on fail as soon as a CornerNetSaccade is built anywhere but on the meta device (where
    tensors have shapes and no memory): the checks must refuse a bad config before allocating."""
    original = CornerNetSaccade.__init__

    def guarded(self, *args, **kwargs):
        if torch.get_default_device().type != "meta":
            raise AssertionError("a model was built (memory allocated) before the config was checked")
        original(self, *args, **kwargs)

    monkeypatch.setattr(CornerNetSaccade, "__init__", guarded)


@pytest.mark.parametrize("dims", [[2048, 8, 12, 16], [2000, 8, 12, 16]])
def test_model_config_too_big_for_the_file_is_refused_before_allocation(tmp_path, monkeypatch, dims):
    """A small file whose model_config asks for a huge network: refused from shapes alone, quickly."""
    config = {**SMALL, "dims": dims, "modules": [1, 1, 1, 1]}
    path = _write_safetensors(tmp_path / "huge.safetensors", small_model(), model_config=json.dumps(config))
    forbid_real_model_builds(monkeypatch)
    start = time.monotonic()
    with pytest.raises(CheckpointError, match="huge.safetensors: does not fit the model config") as info:
        CornerNetSaccade.from_checkpoint(path)
    assert time.monotonic() - start < 10
    assert "mis-shaped keys" in str(info.value) and "values, the file holds" in str(info.value)


def test_model_config_asking_for_more_blocks_than_tensors_is_refused(tmp_path, monkeypatch):
    """num_stacks=10**6 (its bound raised on purpose) would take hours even to build on the meta
    device: refused from counts."""
    monkeypatch.setenv(LIMITS_ENV, "num_stacks=1000000")
    config = {**SMALL, "num_stacks": 10**6}
    path = _write_safetensors(tmp_path / "deep.safetensors", small_model(), model_config=json.dumps(config))
    forbid_real_model_builds(monkeypatch)
    with pytest.raises(CheckpointError, match="deep.safetensors: .* needs at least 4000000 tensors"):
        CornerNetSaccade.from_checkpoint(path)


@pytest.mark.parametrize(
    "metadata, problem",
    [
        ({"model_config": "{not json"}, "'model_config' is not valid JSON"),
        ({"model_config": "[1, 2]"}, "model_config: expected a mapping"),
        ({"model_config": json.dumps({**SMALL, "dims": "wide"})}, "model_config.dims: expected a list"),
        ({"model_config": json.dumps({**SMALL, "num_stacks": 0})}, "num_classes and num_stacks must be >= 1"),
        ({"model_config": json.dumps({**SMALL, "layers": 3})}, "unknown key"),
        ({"class_names": "[\"a\", "}, "'class_names' is not valid JSON"),
        ({"class_names": "{\"a\": 1}"}, "class_names is not a list of strings"),
        ({"class_names": "[1, 2, 3, 4]"}, "class_names is not a list of strings"),
        ({"test_settings": "3"}, "test_settings is not a mapping"),
    ],
)
def test_malformed_safetensors_metadata_gets_clear_error(tmp_path, metadata, problem):
    base = {"model_config": json.dumps(SMALL)}
    path = _write_safetensors(tmp_path / "meta.safetensors", small_model(), **{**base, **metadata})
    with pytest.raises(CheckpointError, match="meta.safetensors") as info:
        CornerNetSaccade.from_checkpoint(path)
    assert problem in str(info.value)


@pytest.mark.parametrize("entry", [{"class_names": 5}, {"class_names": ["a", None]}, {"test_settings": [1]},
                                   {"model_config": "small"}])
def test_wrong_typed_entries_of_a_torch_checkpoint_get_clear_error(tmp_path, entry):
    path = tmp_path / "model.pt"
    save_checkpoint(path, small_model())
    payload = torch.load(path, weights_only=True)
    torch.save({**payload, **entry}, path)
    with pytest.raises(CheckpointError, match="model.pt"):
        CornerNetSaccade.from_checkpoint(path)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_nonfinite_weights_are_refused(tmp_path, value, suffix):
    model = small_model()
    with torch.no_grad():
        model.state_dict()["tl_heats.1.1.weight"][0, 0, 0, 0] = value
        model.state_dict()["hg.pre.0.bn.running_var"][1] = value
    path = tmp_path / f"broken{suffix}"
    save_checkpoint(path, model)
    with pytest.raises(CheckpointError, match=f"broken{suffix}: non-finite weights") as info:
        CornerNetSaccade.from_checkpoint(path)
    assert "tl_heats.1.1.weight" in str(info.value) and "hg.pre.0.bn.running_var" in str(info.value)
    with pytest.raises(CheckpointError, match="non-finite"):
        load_checkpoint(small_model(), path)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_saved_files_honour_the_umask(tmp_path, suffix):
    """Weights are created like any file (0666 minus the umask), not 0600 as a bare mkstemp file."""
    previous = os.umask(0o022)
    try:
        save_checkpoint(tmp_path / f"model{suffix}", small_model())
        os.umask(0o027)
        save_checkpoint(tmp_path / f"other{suffix}", small_model())
    finally:
        os.umask(previous)
    assert stat.S_IMODE(os.stat(tmp_path / f"model{suffix}").st_mode) == 0o644
    assert stat.S_IMODE(os.stat(tmp_path / f"other{suffix}").st_mode) == 0o640


def test_a_failed_write_is_an_output_error_naming_the_path(tmp_path, capsys):
    from cornernet_saccade.cli import main
    from cornernet_saccade.errors import OutputError

    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match=f"{blocker / 'sub' / 'w.pt'}: cannot write"):
        atomic_write(blocker / "sub" / "w.pt", lambda tmp: None)
    assert main(["export-weights", "--weights", "shapes", "--out", str(blocker / "w.safetensors")]) == 1
    err = capsys.readouterr().err
    assert f"{blocker / 'w.safetensors'}: cannot write" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == [blocker], "no temp file left behind"


def test_export_weights_never_replaces_its_input_or_an_existing_file(tmp_path, capsys):
    from cornernet_saccade.cli import main

    out = tmp_path / "w.safetensors"
    assert main(["export-weights", "--weights", "shapes", "--out", str(out)]) == 0
    first = out.read_bytes()
    assert main(["export-weights", "--weights", str(out), "--out", str(out), "--overwrite"]) == 1
    assert "would replace the input" in capsys.readouterr().err and out.read_bytes() == first
    mine = tmp_path / "mine.safetensors"
    mine.write_text("keep")
    assert main(["export-weights", "--weights", "shapes", "--out", str(mine)]) == 1
    assert "already exists" in capsys.readouterr().err and mine.read_text() == "keep"
    assert main(["export-weights", "--weights", "shapes", "--out", str(mine), "--overwrite"]) == 0


def test_export_weights_takes_every_network_and_stores_test_settings(tmp_path, capsys):
    """A Squeeze training checkpoint exports (CornerNetSaccade.from_checkpoint refused it before);
    ``--set`` stores test settings that the detector then uses, and a setting the network's
    detector does not have is refused."""
    from cornernet_saccade import CornerNetSqueeze
    from cornernet_saccade.backends import load_detector
    from cornernet_saccade.cli import main

    tiny = CornerNetSqueeze(num_classes=2, num_stacks=1, dims=(8, 8, 8, 8), modules=(1, 1, 1, 1), stem_dim=4,
                            pool_dim=4, head_dim=4)
    save_checkpoint(tmp_path / "run.pt", tiny, class_names=["a", "b"])
    out = tmp_path / "w.safetensors"
    assert main(["export-weights", "--weights", str(tmp_path / "run.pt"), "--out", str(out),
                 "--set", "test_scales=[1, 1.5]", "--set", "max_per_image=50"]) == 0
    loaded = CornerNetSqueeze.from_checkpoint(out)
    assert loaded.class_names == ["a", "b"] and loaded.test_settings == {"test_scales": [1, 1.5], "max_per_image": 50}
    detector = load_detector(out, device="cpu")
    assert detector.config.test_scales == (1, 1.5) and detector.config.max_per_image == 50
    assert main(["export-weights", "--weights", str(out), "--out", str(tmp_path / "x.safetensors"),
                 "--set", "att_max_crops=3"]) == 1
    err = capsys.readouterr().err
    assert "att_max_crops" in err and "Traceback" not in err and not (tmp_path / "x.safetensors").exists()
