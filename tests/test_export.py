"""ONNX export and the onnxruntime backend: outputs equal torch's, dynamic batch, CLI, errors."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from head_compare import (
    SMALL,
    assert_detector_runs_backend_like_model,
    assert_heads_close,
    assert_matches_original,
    filled_small_model,
    golden_input,
    random_images,
)

from cornernet_saccade import CornerNetSaccade, save_checkpoint
from cornernet_saccade.backends.fast import HEAD_OUTPUT_NAMES, head_outputs_from_tensors, last_stack_tensors
from cornernet_saccade.backends.onnx import OnnxNetwork, export_onnx
from cornernet_saccade.cli import main
from cornernet_saccade.errors import CheckpointError, ConfigError


def op_types(path) -> set[str]:
    return {node.op_type for node in onnx.load(str(path)).graph.node}


@pytest.fixture(scope="module")
def small_model() -> CornerNetSaccade:
    return filled_small_model()


@pytest.fixture(scope="module")
def small_onnx(small_model, tmp_path_factory):
    return export_onnx(small_model, tmp_path_factory.mktemp("onnx") / "small.onnx")


@pytest.mark.parametrize("batch", [1, 3])
def test_onnx_outputs_equal_torch_with_dynamic_batch(small_model, small_onnx, batch):
    images = random_images(batch, seed=batch)
    with torch.inference_mode():
        expected = small_model(images)
    assert_heads_close(OnnxNetwork(small_onnx, intra_op_threads=2)(images), expected)


def test_onnx_graph_interface(small_onnx):
    graph = onnx.load(str(small_onnx)).graph
    assert [o.name for o in graph.output] == list(HEAD_OUTPUT_NAMES)
    (images,) = graph.input
    dims = images.type.tensor_type.shape.dim
    assert images.name == "images" and dims[0].dim_param and [d.dim_value for d in dims[1:]] == [3, 255, 255]
    assert "BatchNormalization" not in op_types(small_onnx)
    assert not small_onnx.with_name(small_onnx.name + ".data").exists(), "weights belong inside the file"


def test_onnx_without_attention_returns_corner_heads_only(small_onnx):
    network = OnnxNetwork(small_onnx)
    out, full = network(random_images(1), with_attention=False), network(random_images(1))
    assert out.attentions == [] and torch.equal(out.br_offs[0], full.br_offs[0])


def test_official_network_onnx_matches_the_original(filled_official_model, data_dir, tmp_path):
    path = export_onnx(filled_official_model, tmp_path / "official.onnx")
    network = OnnxNetwork(path, intra_op_threads=2)
    reference = dict(np.load(data_dir / "forward_reference.npz"))
    x = golden_input()
    assert_matches_original(network(x), reference)
    batch = network(torch.cat([random_images(1), x, random_images(1, seed=5)]))  # the same image inside a batch
    assert_matches_original(head_outputs_from_tensors([t[1:2] for t in last_stack_tensors(batch)]), reference)


def test_saccade_detector_runs_the_onnx_network_like_the_model(small_model, small_onnx):
    assert_detector_runs_backend_like_model(OnnxNetwork(small_onnx), small_model)


def test_cli_exports_and_verifies(tmp_path, capsys):
    weights = tmp_path / "small.pt"
    save_checkpoint(weights, filled_small_model())
    out = tmp_path / "out" / "model.onnx"
    assert main(["export-onnx", "--weights", str(weights), "--out", str(out), "--verify"]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "onnxruntime vs torch" in printed
    assert onnx.load(str(out)).graph.output[0].type.tensor_type.shape.dim[1].dim_value == 5


@pytest.mark.parametrize("option, message", [(["--size", "200"], "not divisible"), (["--opset", "13"], "opset")])
def test_cli_rejects_bad_size_and_opset(tmp_path, capsys, option, message):
    weights = tmp_path / "small.pt"
    save_checkpoint(weights, CornerNetSaccade(**SMALL))
    assert main(["export-onnx", "--weights", str(weights), "--out", str(tmp_path / "m.onnx"), *option]) == 1
    assert message in capsys.readouterr().err and not (tmp_path / "m.onnx").exists()


def test_onnx_network_rejects_foreign_files_and_wrong_sizes(small_onnx, tmp_path):
    bogus = tmp_path / "bogus.onnx"
    bogus.write_bytes(b"not a model")
    with pytest.raises(CheckpointError, match="bogus.onnx"):
        OnnxNetwork(bogus)
    relu = onnx.helper.make_graph(
        [onnx.helper.make_node("Relu", ["x"], ["y"])], "relu",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
    )
    onnx.save(onnx.helper.make_model(relu, opset_imports=[onnx.helper.make_opsetid("", 18)]), tmp_path / "relu.onnx")
    with pytest.raises(CheckpointError, match="not a CornerNet-Saccade export"):
        OnnxNetwork(tmp_path / "relu.onnx")
    with pytest.raises(ValueError, match="255"):
        OnnxNetwork(small_onnx)(torch.zeros(1, 3, 511, 511))
    with pytest.raises(ConfigError):
        export_onnx(CornerNetSaccade(**SMALL), tmp_path / "x.onnx", size=100)
