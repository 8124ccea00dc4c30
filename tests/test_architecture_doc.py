"""docs/architecture.md names every module of the package (subpackage ``__init__.py`` files
when they hold code worth naming), and only modules that exist."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "cornernet_saccade"


def test_every_module_is_described_and_every_described_module_exists() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`((?:[a-z_][a-z0-9_]*/)?[a-z_][a-z0-9_]*\.py)`", text))  # digits too (module names may hold them)
    named = {name for name in named if not name.startswith("tests/")}
    modules = {path.relative_to(PACKAGE).as_posix() for path in PACKAGE.rglob("*.py")}
    modules -= {m for m in modules if m.endswith("/__init__.py") and m not in named}  # subpackage markers
    assert modules - named == set(), "modules missing from docs/architecture.md"
    assert named - modules == set(), "docs/architecture.md names modules that do not exist"


def test_every_python_name_the_docs_give_exists() -> None:
    """A dotted name such as ``cornernet_saccade.datasets.shapes.make_shapes_dataset`` in the README or
    docs/ can be imported (docs/datasets.md named a module that did not exist)."""
    import importlib

    texts = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    names = {name for path in texts for name in re.findall(r"\bcornernet_saccade(?:\.[A-Za-z_]\w*)+",
                                                            path.read_text(encoding="utf-8"))}
    names -= {"cornernet_saccade.py"}  # a file name, not a module
    assert "cornernet_saccade.datasets.shapes.make_shapes_dataset" in names
    missing = []
    for name in sorted(names):
        parts = name.split(".")
        for cut in range(len(parts), 0, -1):  # the longest importable module, then attributes
            try:
                found: object = importlib.import_module(".".join(parts[:cut]))
            except ImportError:
                continue
            for attribute in parts[cut:]:
                found = getattr(found, attribute, None)
            if found is None:
                missing.append(name)
            break
    assert missing == [], "names in the docs that do not exist"
