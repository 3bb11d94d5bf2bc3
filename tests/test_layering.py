"""The package's layering (DESIGN.md), read from the imports of every module under fgi/."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import fgi

ROOT = Path(fgi.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in ROOT.rglob("*.py")}


def _imports(path: Path) -> set[str]:
    """Every absolute module name imported anywhere in the file, function-level imports included."""
    tree = ast.parse(path.read_text(), str(path))
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in MODULES)
    return names


GRAPH = {name: _imports(path) for name, path in MODULES.items()}


def _internal(name: str) -> set[str]:
    return {m for m in GRAPH[name] if m in MODULES and m != name}


def _reach(name: str) -> set[str]:
    """fgi modules reachable from ``name`` through imports."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        for m in _internal(todo.pop()):
            if m not in seen:
                seen.add(m)
                todo.append(m)
    return seen


def _third_party(name: str) -> set[str]:
    """Top-level third-party packages imported by ``name`` or any fgi module it imports."""
    return {m.split(".")[0] for mod in {name, *_reach(name)} for m in GRAPH[mod] if not m.startswith("fgi")}


def _find_cycle() -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        # a package's __init__ re-exporting its own submodules is not a circle of design
        for nxt in sorted(_internal(node)):
            if node.startswith(nxt + ".") or (MODULES[node].name == "__init__.py" and nxt.startswith(node + ".")):
                continue
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for name in sorted(MODULES):
        if name not in state:
            found = visit(name)
            if found:
                return found
    return None


def test_no_import_circle():
    cycle = _find_cycle()
    assert cycle is None, " -> ".join(cycle or [])


@pytest.mark.parametrize("prefix", ["fgi.engine", "fgi.models", "fgi.method", "fgi.loop", "fgi.metrics"])
def test_training_core_knows_no_ray_or_mlflow(prefix):
    for name in (m for m in MODULES if m == prefix or m.startswith(prefix + ".")):
        bad = _third_party(name) & {"ray", "mlflow"}
        assert not bad, f"{name} reaches {sorted(bad)}"


def test_only_tracking_imports_mlflow():
    importers = sorted(m for m, names in GRAPH.items() if any(n.split(".")[0] == "mlflow" for n in names))
    assert importers == ["fgi.tracking"], importers


def test_only_the_commands_layer_imports_argparse():
    importers = {m for m, names in GRAPH.items() if "argparse" in names}
    bad = sorted(m for m in importers if not (m == "fgi.cli" or m.startswith("fgi.commands")))
    assert not bad, bad


def test_text_never_imports_data():
    for name in (m for m in MODULES if m.startswith("fgi.text")):
        bad = sorted(m for m in _reach(name) if m == "fgi.data" or m.startswith("fgi.data."))
        assert not bad, f"{name} reaches {bad}"


def test_tracking_imports_nothing_that_trains():
    trains = ("fgi.engine", "fgi.loop", "fgi.distributed", "fgi.data", "fgi.models", "fgi.method", "fgi.evaluation")
    bad = sorted(m for m in _reach("fgi.tracking") if m in trains or m.startswith(tuple(t + "." for t in trains)))
    assert not bad, bad


def test_no_module_is_over_the_size_limit():
    limit = 450
    big = {name: n for name, p in MODULES.items() if (n := len(p.read_text().splitlines())) > limit}
    assert not big, big
