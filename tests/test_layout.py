"""The import graph points one way: model <- inference <- engine <- cli, backends beside inference.

Run in fresh interpreters so that modules imported by other tests do not hide a dependency.
"""
from __future__ import annotations

import subprocess
import sys

import pytest

#: Modules whose import must not load any module of the listed packages.
FORBIDDEN = {
    "cornernet_saccade.model": ("cornernet_saccade.inference", "cornernet_saccade.backends",
                                "cornernet_saccade.engine", "cornernet_saccade.cli", "cornernet_saccade.data"),
    "cornernet_saccade.inference": ("cornernet_saccade.engine", "cornernet_saccade.cli", "cornernet_saccade.data"),
    "cornernet_saccade.inference.batch": ("cornernet_saccade.engine", "cornernet_saccade.cli"),
    "cornernet_saccade.backends": ("cornernet_saccade.engine", "cornernet_saccade.cli"),
    "cornernet_saccade.data": ("cornernet_saccade.engine", "cornernet_saccade.cli", "cornernet_saccade.backends"),
    "cornernet_saccade.engine": ("cornernet_saccade.cli",),
    "cornernet_saccade": ("cornernet_saccade.engine", "cornernet_saccade.cli"),
}
#: What running a command loads: ``detect`` (inference only) must not load the training engine.
COMMANDS = {"detect": ("cornernet_saccade.engine",)}


def loaded_modules(code: str) -> set[str]:
    script = f"{code}\nimport sys\nprint('\\n'.join(sys.modules))"
    output = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    return {name for name in output.splitlines() if name.startswith("cornernet_saccade")}


@pytest.mark.parametrize("module", sorted(FORBIDDEN))
def test_imports_point_one_way(module: str) -> None:
    loaded = loaded_modules(f"import {module}")
    wrong = sorted(name for name in loaded for bad in FORBIDDEN[module] if name == bad or name.startswith(bad + "."))
    assert not wrong, f"importing {module} loads {wrong}"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_command_loads_only_its_layers(command: str, tmp_path) -> None:
    code = ("from cornernet_saccade.cli import build_parser\n"
            f"build_parser().parse_args([{command!r}, '--weights', 'x', 'img', '--out', {str(tmp_path)!r}])\n"
            f"import cornernet_saccade.cli.{command}")
    loaded = loaded_modules(code)
    wrong = sorted(name for name in loaded for bad in COMMANDS[command] if name == bad or name.startswith(bad + "."))
    assert not wrong, f"the {command} command loads {wrong}"
