"""No import cycle among the package's modules, counting every import statement: at the top of a
module, inside functions (deferred) and under ``TYPE_CHECKING``. Read from the source (``ast``), so
an import that a test run never executes still counts."""
from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "cornernet_saccade"


def module_names(package: Path) -> dict[str, Path]:
    """Dotted name -> file of every module of ``package`` (a subpackage by its ``__init__.py``)."""
    names = {}
    for path in package.rglob("*.py"):
        parts = path.relative_to(package.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def imported_modules(name: str, path: Path, known: set[str]) -> Iterator[str]:
    """The package modules ``name`` (file ``path``) imports anywhere in its source: ``from a import b``
    counts as ``a.b`` when that is a module, else as ``a``."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package holding this module
                anchor = name.split(".")[: len(name.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                target = f"{base}.{alias.name}"
                if target in known:
                    yield target
                elif base in known:
                    yield base


def import_graph(package: Path) -> dict[str, set[str]]:
    modules = module_names(package)
    return {name: set(imported_modules(name, path, set(modules))) - {name} for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_among_the_package_modules() -> None:
    graph = import_graph(PACKAGE)
    assert len(graph) > 50 and graph["cornernet_saccade.inference.detector"]  # the walk saw the package
    found = cycles(graph)
    assert not found, "import cycles (deferred and TYPE_CHECKING imports counted):\n" + "\n".join(
        " <-> ".join(component) for component in found)


def test_a_deferred_import_cycle_is_found(tmp_path: Path) -> None:
    """The check itself: a cycle closed by an import inside a function, and one through a relative
    import, are reported; a one-way package is not."""
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg import b\n")
    (package / "b.py").write_text("def f():\n    from pkg.a import g\n")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "c.py").write_text("from . import d\n")
    (package / "sub" / "d.py").write_text("import pkg.sub.c\n")
    (package / "e.py").write_text("import pkg.a\n")
    assert cycles(import_graph(package)) == [["pkg.a", "pkg.b"], ["pkg.sub.c", "pkg.sub.d"]]
