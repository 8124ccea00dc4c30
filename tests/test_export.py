"""ONNX export and the onnxruntime backend: outputs equal torch's, dynamic batch and size, the
metadata, CLI (export, then detect with the exported file), errors; CornerNet-Squeeze and CornerNet
exports run by the CornerNet tester (detections equal eager's, images too large for the export)."""
from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import shutil

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
from PIL import Image

import cornernet_saccade.backends as backends_package
from cornernet_saccade import CornerNet, CornerNetSaccade, CornerNetSqueeze, save_checkpoint
from cornernet_saccade.backends import load_detector, make_backend, mode_input_size
from cornernet_saccade.backends.fast import HEAD_OUTPUT_NAMES, head_outputs_from_tensors, last_stack_tensors
from cornernet_saccade.backends.onnx import OnnxNetwork, export_input_sizes, export_onnx
from cornernet_saccade.cli import main
from cornernet_saccade.errors import CheckpointError, ConfigError, ImageError
from cornernet_saccade.inference.cornernet_tester import CornerNetDetector
from cornernet_saccade.model.geometry import padded_input_size
from cornernet_saccade.model.protocol import InputSizes
from cornernet_saccade.testing import fill_model


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


@pytest.mark.parametrize("shape", [(1, 3, 511, 255), (2, 3, 191, 383)])
def test_onnx_outputs_equal_torch_at_other_sizes(small_model, small_onnx, shape):
    images = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        expected = small_model(images)
    assert_heads_close(OnnxNetwork(small_onnx, intra_op_threads=2)(images), expected)


def test_onnx_graph_interface(small_onnx):
    graph = onnx.load(str(small_onnx)).graph
    assert [o.name for o in graph.output] == list(HEAD_OUTPUT_NAMES)
    (images,) = graph.input
    dims = images.type.tensor_type.shape.dim
    assert images.name == "images" and dims[0].dim_param and dims[1].dim_value == 3
    assert dims[2].dim_param and dims[3].dim_param and dims[2].dim_param != dims[3].dim_param
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


@pytest.fixture(scope="module")
def shapes_export(tmp_path_factory):
    """The bundled shapes model exported by the CLI with --verify: (path, exit code, printed text)."""
    path = tmp_path_factory.mktemp("cli") / "out" / "shapes.onnx"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["export-onnx", "--weights", "shapes", "--out", str(path), "--verify"])
    return path, code, printed.getvalue()


def test_cli_exports_and_verifies(shapes_export):
    path, code, printed = shapes_export
    assert code == 0
    assert f"wrote {path}" in printed and "H, W = 32k-1 up to 2047" in printed and "onnxruntime vs torch" in printed
    assert onnx.load(str(path)).graph.output[0].type.tensor_type.shape.dim[1].dim_value == 5  # shapes: 5 classes


def test_export_metadata_carries_what_detection_needs(shapes_export):
    path = shapes_export[0]
    model = CornerNetSaccade.from_pretrained("shapes")
    metadata = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert metadata["format"] == "cornernet_saccade"
    assert json.loads(metadata["model_config"]) == json.loads(json.dumps(dataclasses.asdict(model.config)))
    assert (metadata["input_size"], metadata["input_size_multiple"], metadata["input_size_max"]) == ("255", "32", "2047")
    network = OnnxNetwork(path)
    assert network.class_names == model.class_names and network.class_names
    assert network.test_settings == model.test_settings and network.num_classes == model.num_classes
    assert network.input_sizes == InputSizes(32, 2047)


def detections_of(out) -> list[dict]:
    return json.loads((out / "detections.json").read_text())


@pytest.mark.parametrize("mode", [["saccade"], ["full"], ["full", "--full-size", "500"], ["tiled", "--tile-size", "255"]])
def test_detect_runs_the_exported_file_like_eager(shapes_export, data_dir, tmp_path, monkeypatch, mode):
    image = str(data_dir.parent.parent / "examples" / "shapes_scene.jpg")

    def no_export(*args, **kwargs):
        raise AssertionError("the onnxruntime backend exported the model again")

    monkeypatch.setattr(backends_package, "export_onnx", no_export)
    common = [image, "--mode", *mode, "--score-threshold", "0.05", "--no-pictures"]
    exported = ["--weights", str(shapes_export[0]), "--backend", "onnxruntime", "--out", str(tmp_path / "onnx")]
    assert main(["detect", *exported, *common]) == 0
    assert main(["detect", "--weights", "shapes", "--backend", "eager", "--out", str(tmp_path / "eager"), *common]) == 0
    got, expected = detections_of(tmp_path / "onnx"), detections_of(tmp_path / "eager")
    assert len(got) == len(expected) > 0
    for a, b in zip(got, expected):
        assert a["category"] == b["category"] and a["category_id"] == b["category_id"]
        assert np.allclose(a["bbox"], b["bbox"], atol=0.02) and abs(a["score"] - b["score"]) <= 0.01


def test_exported_file_with_another_backend_names_the_one_that_runs_it(shapes_export, tmp_path, capsys):
    path = shapes_export[0]
    assert main(["detect", "--weights", str(path), "--backend", "fast", "x.jpg", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert str(path) in err and "ONNX export" in err and "--backend onnxruntime" in err and "Traceback" not in err
    with pytest.raises(CheckpointError, match="only the onnxruntime backend runs it"):
        CornerNetSaccade.from_checkpoint(path)


def test_detect_refuses_a_size_the_export_cannot_take(shapes_export, tmp_path, capsys):
    path = shapes_export[0]
    args = ["detect", "--weights", str(path), "--backend", "onnxruntime", "x.jpg", "--out", str(tmp_path)]
    assert main([*args, "--mode", "full", "--full-size", "2100"]) == 1  # canvas 2111 > --max-size 2047
    err = capsys.readouterr().err
    assert f"{path}: this export takes inputs of side 32k-1 up to 2047" in err and "not 2111" in err
    assert "--max-size 2111 or more" in err and "Traceback" not in err


def test_export_onnx_never_replaces_its_input_or_an_existing_file(shapes_export, capsys):
    path = shapes_export[0]
    before = path.read_bytes()
    assert main(["export-onnx", "--weights", "shapes", "--out", str(path)]) == 1
    assert f"{path}: already exists" in capsys.readouterr().err and path.read_bytes() == before
    assert main(["export-onnx", "--weights", str(path), "--out", str(path), "--overwrite"]) == 1
    assert "would replace the input" in capsys.readouterr().err and path.read_bytes() == before


def test_mode_input_size_is_the_padded_canvas_the_detector_feeds():
    assert [mode_input_size("saccade", 500), mode_input_size("full"), mode_input_size("full", 500)] == [255, 511, 511]
    assert mode_input_size("full", 1000) == padded_input_size(1000) == 1023


def test_onnxruntime_backend_takes_any_full_size(small_model):
    # the temporary export is made for the padded canvas (511), not for full_size itself
    network = make_backend(small_model, "onnxruntime", input_size=mode_input_size("full", 500))
    assert network.input_sizes == InputSizes(0, 511)


def test_export_input_sizes():
    model = CornerNetSaccade(**SMALL)
    assert export_input_sizes(model, 255, True, 2047) == InputSizes(32, 2047)
    assert export_input_sizes(model, 511, False, 2047) == InputSizes(0, 511)
    fixed, dynamic = InputSizes(0, 255), InputSizes(64, 1023)
    assert fixed.accepts(255) and not fixed.accepts(511)
    assert all(dynamic.accepts(s) for s in (63, 255, 511, 1023)) and not any(dynamic.accepts(s) for s in (256, 1087))
    with pytest.raises(ConfigError, match="dynamic-size export takes sizes 32k-1"):
        export_input_sizes(model, 256, True, 2047)


@pytest.mark.parametrize("option, message", [(["--size", "200"], "takes sides 32k-1"), (["--opset", "13"], "opset")])
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
    for shape in ((1, 3, 256, 255), (1, 3, 255, 2079)):
        with pytest.raises(ValueError, match="32k-1 up to 2047"):
            OnnxNetwork(small_onnx)(torch.zeros(shape))
    for size in (100, 256):  # 256 gives a 64x64 map too, but is not a side the network takes (32k-1)
        with pytest.raises(ConfigError, match="takes sides 32k-1"):
            export_onnx(CornerNetSaccade(**SMALL), tmp_path / "x.onnx", size=size)


# --- CornerNet-Squeeze and CornerNet: the CornerNet tester on an export (canvases 128k-1) ---------

#: Tiny one-stack networks (every hourglass level halves a 128k-1 canvas's map) and their classes.
TESTER_NETWORKS = {
    "squeeze": (CornerNetSqueeze, dict(num_classes=3, num_stacks=1, dims=(16, 16, 24, 32), modules=(1, 1, 1, 2),
                                       stem_dim=8, pool_dim=8, head_dim=16)),
    "cornernet": (CornerNet, dict(num_classes=3, num_stacks=1, dims=(16, 16, 24, 32), modules=(1, 1, 1, 2),
                                  stem_dim=8, pool_dim=8, head_dim=16)),
}
TESTER_CLASSES = ["ant", "bee", "cat"]
#: The largest side of the tester exports: tester_pad127.png (383x511) at scale 1 fits, at 1.5 not.
TESTER_MAX_SIZE = 511


def detecting_network(name: str) -> torch.nn.Module:
    """The tiny ``name`` network with the reference fill and its tag heads' last weights zeroed
    (every corner pair matches), so that it finds boxes on tester_pad127.png."""
    network, config = TESTER_NETWORKS[name]
    model = fill_model(network(**config))
    with torch.no_grad():
        for head in (*model.tl_tags, *model.br_tags):
            head[-1].weight.zero_()
    return model.eval()


@pytest.fixture(scope="module")
def tester_exports(tmp_path_factory):
    """Per network name: (weights file, export written by the CLI with --verify, exit code, printed text)."""
    folder = tmp_path_factory.mktemp("tester")
    exports = {}
    for name in TESTER_NETWORKS:
        weights, path = folder / f"{name}.safetensors", folder / f"{name}.onnx"
        save_checkpoint(weights, detecting_network(name), class_names=TESTER_CLASSES)
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            code = main(["export-onnx", "--weights", str(weights), "--out", str(path), "--verify",
                         "--max-size", str(TESTER_MAX_SIZE)])
        exports[name] = (weights, path, code, printed.getvalue())
    return exports


@pytest.mark.parametrize("name", list(TESTER_NETWORKS))
def test_cli_exports_and_verifies_tester_networks(tester_exports, name):
    weights, path, code, printed = tester_exports[name]
    assert code == 0, printed
    assert f"H, W = 128k-1 up to {TESTER_MAX_SIZE}" in printed and "onnxruntime vs torch" in printed
    assert [o.name for o in onnx.load(str(path)).graph.output] == list(HEAD_OUTPUT_NAMES[:6])  # no attention maps
    assert "BatchNormalization" not in op_types(path)  # folded, fire modules included
    metadata = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert metadata["architecture"] == name and json.loads(metadata["class_names"]) == TESTER_CLASSES
    network = OnnxNetwork(path)
    assert network.input_sizes == InputSizes(128, TESTER_MAX_SIZE) and not network.has_attention
    assert network.output_stride == {"squeeze": 8, "cornernet": 4}[name]


def assert_same_detections(got, expected) -> None:
    """Every detection of ``got`` is one of ``expected`` (same class, box within 0.02 pixel, score within
    1e-4), as many of each; the order may differ where scores differ by less than the tolerance."""
    assert len(got.boxes) == len(expected.boxes) > 0 and got.class_names == expected.class_names
    for box, score, label in zip(got.boxes, got.scores, got.labels):
        same = (expected.labels == label) & (np.abs(expected.scores - score) <= 1e-4)
        assert (np.abs(expected.boxes[same] - box) <= 0.02).all(1).any(), (box, score, label)


@pytest.mark.parametrize("name", list(TESTER_NETWORKS))
def test_onnxruntime_tester_detections_equal_eager(tester_exports, data_dir, name):
    weights, path = tester_exports[name][:2]
    scales = {"test_scales": (1.0, 0.5)}  # canvases 383x511 and 255x255 (CornerNet: and their mirror images)
    exported, eager = load_detector(path, backend="onnxruntime", **scales), load_detector(weights, backend="eager", **scales)
    assert isinstance(exported, CornerNetDetector) and isinstance(exported.model, OnnxNetwork)
    assert exported.config == eager.config and exported.config.flip == (name == "cornernet")
    assert exported.class_names == eager.class_names == TESTER_CLASSES
    image = data_dir / "tester_pad127.png"
    assert_same_detections(exported(image), eager(image))


def test_tester_refuses_an_image_larger_than_the_export(tester_exports, data_dir, tmp_path, capsys):
    path = tester_exports["squeeze"][1]
    image = data_dir / "tester_pad127.png"
    with pytest.raises(ImageError) as caught:
        load_detector(path, backend="onnxruntime", test_scales=(1.0, 1.5))(image)
    message = str(caught.value)
    assert message.startswith(f"{image}: at scale 1.5 the 383x511 image is padded to a 639x767 canvas")
    assert f"128k-1 up to {TESTER_MAX_SIZE}" in message and "--max-size 767 or more" in message
    big = tmp_path / "big.png"
    Image.fromarray(np.zeros((400, 600, 3), np.uint8)).save(big)
    main(["detect", str(big), "--weights", str(path), "--backend", "onnxruntime", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert f"skipped {big}: at scale 1 the 400x600 image is padded to a 511x639 canvas" in err and "Traceback" not in err


def test_onnxruntime_backend_exports_tester_weights_for_every_canvas(tester_exports, monkeypatch):
    weights, exported = tester_exports["cornernet"][:2]
    calls = []

    def recorded_export(model, path, **options):  # the real export is the CLI's above; this one reuses it
        calls.append(options)
        shutil.copyfile(exported, path)
        return path

    monkeypatch.setattr(backends_package, "export_onnx", recorded_export)
    detector = load_detector(weights, backend="onnxruntime", device="cpu")
    assert calls == [{"size": 255, "dynamic_size": True}]
    assert isinstance(detector, CornerNetDetector) and isinstance(detector.model, OnnxNetwork)
    assert detector.class_names == TESTER_CLASSES and detector.config.flip


def test_tester_export_sizes_and_refusals(tmp_path):
    squeeze = CornerNetSqueeze(**TESTER_NETWORKS["squeeze"][1])
    assert export_input_sizes(squeeze, 383, True, 2047) == InputSizes(128, 2047)
    with pytest.raises(ConfigError, match="takes sides 128k-1 .*the CornerNet tester pads images to one"):
        export_onnx(squeeze, tmp_path / "x.onnx", size=319)  # a saccade side (32k-1), not a tester canvas
    assert not (tmp_path / "x.onnx").exists()
