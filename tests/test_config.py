"""Configuration files: every key validated, numbers read as people write them."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from cornernet_saccade.config import config_from_dict, read_yaml
from cornernet_saccade.errors import ConfigError


@dataclass(frozen=True)
class Example:
    lr: float = 0.1
    steps: tuple[int, ...] = (1, 2)
    name: str = "x"


def test_exponent_without_dot_is_a_float(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("lr: 1e-4\nother: 2.5E+3\nname: 1e-4x\n")
    data = read_yaml(path)
    assert data == {"lr": 1e-4, "other": 2500.0, "name": "1e-4x"}


def test_unknown_key_names_source_and_key():
    with pytest.raises(ConfigError, match=r"train.yaml.*unknown key\(s\) \['lrr'\]"):
        config_from_dict(Example, {"lrr": 1.0}, "train.yaml")


def test_wrong_type_names_the_key():
    with pytest.raises(ConfigError, match=r"c.steps\[1\]"):
        config_from_dict(Example, {"steps": [1, "two"]}, "c")
    assert config_from_dict(Example, {"lr": 1, "steps": [3]}, "c") == Example(lr=1.0, steps=(3,))


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml"):
        read_yaml(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        read_yaml(bad)
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        read_yaml(listing)
