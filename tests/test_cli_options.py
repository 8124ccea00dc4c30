"""The commands' shared options and help texts: score thresholds refused at the command line,
``--full-size`` outside full mode, ``--set`` test settings, ``--version``, the ``train`` and ``export-weights`` help, and
``evaluate`` on data of another format."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import cornernet_saccade
from cornernet_saccade.cli import main
from cornernet_saccade.cli.common import add_detector_options, detector_settings


@pytest.mark.parametrize("value", ["1.5", "nan", "-0.1", "inf", "high"])
def test_score_threshold_outside_0_1_is_an_argparse_error(value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--weights", "shapes", "--data", "val.json", "--score-threshold", value])
    assert exit_info.value.code == 2
    assert "--score-threshold" in capsys.readouterr().err


def test_full_size_outside_full_mode_is_reported(capsys):
    args = argparse.Namespace(mode=None, full_size=500, score_threshold=None, max_crops=None)
    assert detector_settings(args) == {"full_size": 500}
    assert "--full-size 500 only applies to full mode" in capsys.readouterr().err
    args.mode = "full"
    assert detector_settings(args) == {"mode": "full", "full_size": 500}
    assert capsys.readouterr().err == ""


def test_set_gives_any_test_setting_and_named_options_win():
    parser = argparse.ArgumentParser()
    add_detector_options(parser)
    args = parser.parse_args(["--set", "init_sizes=[255, 383]", "--set", "att_max_crops=10", "--max-crops", "5",
                              "--set", "nms_sigma=0.5"])
    assert detector_settings(args) == {"init_sizes": [255, 383], "att_max_crops": 5, "nms_sigma": 0.5}


def test_set_of_an_unknown_setting_is_refused_by_name(capsys):
    code = main(["evaluate", "--weights", "shapes", "--data", "val.json", "--set", "init_size=[255]"])
    assert code != 0
    err = capsys.readouterr().err
    assert "init_size" in err and "init_sizes" in err and "Traceback" not in err


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"cornernet-saccade {cornernet_saccade.__version__}"


def help_text(command: str, capsys) -> str:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    return " ".join(capsys.readouterr().out.split())


def test_train_help_names_every_bundled_config(capsys):
    text = help_text("train", capsys)
    names = sorted(p.stem for p in (Path(cornernet_saccade.__file__).parent / "configs").glob("*.yaml"))
    assert len(names) >= 4
    for name in names:
        assert name in text


def test_export_weights_help_is_a_description_not_a_docstring(capsys):
    text = help_text("export-weights", capsys)
    assert "``" not in text
    assert ".safetensors" in text and "class names" in text


def test_evaluate_names_the_formats_it_takes(weights, tmp_path, capsys):
    data = tmp_path / "a.xml"
    data.write_text("<annotation/>")
    assert main(["evaluate", "--weights", str(weights), "--data", str(data), "--threads", "1"]) == 1
    err = capsys.readouterr().err
    assert f"{data}: cannot tell the annotation format from the extension '.xml'" in err
    assert "coco, voc, csv" in err and "Traceback" not in err


@pytest.mark.parametrize("config", [None, ""])
def test_train_without_config_or_resume_is_a_usage_error(config, capsys):
    argv = ["train"] if config is None else ["train", "--config", config]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "--config is required unless --resume is given" in capsys.readouterr().err


def test_weights_help_names_every_bundled_model(capsys):
    from cornernet_saccade.model.checkpoint import bundled_model_names

    text = help_text("detect", capsys)
    assert bundled_model_names() and all(name in text for name in bundled_model_names())
    assert "shapes, shapes-squeeze, trees" in text


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_device_cuda_without_cuda_names_the_option_to_use(weights, tmp_path, capsys):
    """The CLI flag, not the config syntax (``use device: cpu``)."""
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(image)
    assert main(["detect", str(image), "--weights", str(weights), "--out", str(tmp_path / "out"),
                 "--device", "cuda"]) == 1
    err = capsys.readouterr().err
    assert "CUDA is not available on this machine; run on the CPU (--device cpu" in err and "Traceback" not in err


@pytest.fixture
def torch_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_default_threads_leave_the_busy_cores_to_the_other_work(monkeypatch, torch_threads):
    """--threads 0 (the default) takes the cores the load average leaves free, never more than
    torch's own count, and says why; on a busy 2-core machine 2 threads ran 3-10x slower than 1."""
    from cornernet_saccade.backends import device

    monkeypatch.setattr(device, "usable_cores", lambda: 4)
    monkeypatch.setattr(device.os, "getloadavg", lambda: (1.2, 0.5, 0.5))
    torch.set_num_threads(4)
    choice = device.set_threads(0)
    assert (choice.threads, torch.get_num_threads()) == (3, 3) and choice.warning is None
    assert choice.why == "default: 3 of 4 cores free, load 1.2; --threads N to choose"
    monkeypatch.setattr(device.os, "getloadavg", lambda: (7.0, 7.0, 7.0))
    assert device.set_threads(0).threads == 1
    torch.set_num_threads(2)
    monkeypatch.setattr(device.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert device.set_threads(0).threads == 2, "at most torch's own count"


def test_threads_above_the_cores_are_kept_with_a_warning(weights, tmp_path, monkeypatch, capsys, torch_threads):
    from cornernet_saccade.backends import device

    monkeypatch.setattr(device, "usable_cores", lambda: 2)
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(image)
    assert main(["detect", str(image), "--weights", str(weights), "--out", str(tmp_path / "out"),
                 "--threads", "3", "--max-crops", "1"]) == 0
    err = capsys.readouterr().err
    assert "warning: 3 threads asked for on 2 cores: threads beyond the cores wait for each other" in err
    assert "3 CPU threads (as asked)" in err
