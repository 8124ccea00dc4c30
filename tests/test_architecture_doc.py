"""docs/architecture.md names every module of the package (subpackage ``__init__.py`` files
when they hold code worth naming), and only modules that exist."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "cornernet_saccade"


def test_every_module_is_described_and_every_described_module_exists() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`((?:[a-z_]+/)?[a-z_]+\.py)`", text))
    named = {name for name in named if not name.startswith("tests/")}
    modules = {path.relative_to(PACKAGE).as_posix() for path in PACKAGE.rglob("*.py")}
    modules -= {m for m in modules if m.endswith("/__init__.py") and m not in named}  # subpackage markers
    assert modules - named == set(), "modules missing from docs/architecture.md"
    assert named - modules == set(), "docs/architecture.md names modules that do not exist"
