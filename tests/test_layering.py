"""The package's layering (docs/ARCHITECTURE.md), read from the imports of every module under fgi/.

Parts are the packages under fgi/ (``fgi.cli`` belongs to commands); everything else at the root is what
every part uses. A part imports the root, itself and the parts ``ARROWS`` allows; the root imports no part
except the arrows of ``ROOT_EXCEPTIONS``, each with its reason.
"""

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


PARTS = ("commands", "search", "tracking", "run", "method", "models", "data", "text")
ARROWS = {
    "commands": {"search", "tracking", "run", "method", "models", "data", "text"},
    "search": {"run", "tracking", "method", "models", "data", "text"},
    "run": {"method", "models", "data", "text"},
    "method": {"models"},
    "models": set(),
    "data": {"text"},  # prepare builds the text cache
    "text": set(),
    "tracking": set(),  # nothing that trains
    "root": set(),
}
ROOT_EXCEPTIONS = {
    # the dataset registry renders template contexts and checks template names, so that a config with an
    # unknown dataset or template fails when it is built
    ("fgi.datasets", "fgi.text.templates"),
}


def _part(name: str) -> str:
    parts = name.split(".")
    if name == "fgi.cli":
        return "commands"
    return parts[1] if len(parts) > 1 and parts[1] in PARTS else "root"


def test_every_arrow_is_allowed():
    bad = sorted(f"{m} -> {n}" for m in MODULES for n in _internal(m)
                 if _part(n) not in {"root", _part(m)} and _part(n) not in ARROWS[_part(m)]
                 and (m, n) not in ROOT_EXCEPTIONS)
    assert not bad, bad


def test_the_stated_exceptions_exist():
    # an exception that no longer happens is removed from the list, so the list says what the code does
    assert all(n in _internal(m) for m, n in ROOT_EXCEPTIONS)


@pytest.mark.parametrize("prefix", ["fgi.method", "fgi.models", "fgi.run"])
def test_training_core_knows_no_ray_or_mlflow(prefix):
    for name in (m for m in MODULES if m == prefix or m.startswith(prefix + ".")):
        bad = _third_party(name) & {"ray", "mlflow"}
        assert not bad, f"{name} reaches {sorted(bad)}"


def _importers(package: str) -> list[str]:
    return sorted(m for m, names in GRAPH.items() if any(n.split(".")[0] == package for n in names))


def test_only_tracking_imports_mlflow():
    assert all(_part(m) == "tracking" for m in _importers("mlflow")), _importers("mlflow")


def test_only_search_imports_ray_and_tracking_only_its_callback_interfaces():
    bad = [m for m in _importers("ray") if _part(m) not in {"search", "tracking"}]
    assert not bad, bad
    # tracking's loggers subclass Ray's callback interfaces (Tune's Callback, Train's UserCallback), no more
    tracking_ray = {n for m in MODULES if _part(m) == "tracking" for n in GRAPH[m] if n.split(".")[0] == "ray"}
    assert tracking_ray <= {"ray.tune", "ray.tune.Callback", "ray.train", "ray.train.UserCallback"}, tracking_ray


def test_only_the_commands_layer_imports_argparse():
    bad = sorted(m for m in _importers("argparse") if _part(m) != "commands")
    assert not bad, bad


def test_text_never_imports_data():
    for name in (m for m in MODULES if m.startswith("fgi.text")):
        bad = sorted(m for m in _reach(name) if _part(m) == "data")
        assert not bad, f"{name} reaches {bad}"


def test_tracking_reaches_nothing_that_trains():
    bad = sorted(m for m in _reach("fgi.tracking") if _part(m) in {"method", "models", "run", "data", "search"})
    assert not bad, bad


def test_every_part_says_what_it_owns():
    for part in PARTS:
        doc = ast.get_docstring(ast.parse((ROOT / part / "__init__.py").read_text()))
        assert doc and len(doc.split()) >= 15, part


def test_no_module_is_over_the_size_limit():
    limit = 450
    big = {name: n for name, p in MODULES.items() if (n := len(p.read_text().splitlines())) > limit}
    assert not big, big
