"""The package's layers, checked on every import statement (function-local ones included).

Python only fails on a cycle of *module-level* imports, so a knot made of imports inside
functions can grow silently; this walks every ``import`` with ``ast`` and fails on an import
that points up the layers, between the sibling layers ``data`` and ``store``, or in a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "genreflow"

# lower number = lower layer; a module imports only from lower layers or its own sub-package
LAYERS = {
    "genreflow.errors": 0,
    "genreflow.core": 1,
    "genreflow.data": 2,
    "genreflow.store": 2,
    "genreflow.features": 3,
    "genreflow.model": 4,
    "genreflow.config": 5,
    "genreflow.stages": 6,
    "genreflow.cli": 7,
    "genreflow.api": 8,
    "genreflow.__main__": 9,
    "genreflow.testing": 1,
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _group(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2])


def _imports(module: str, path: Path, known: set[str]) -> set[str]:
    """Internal modules imported anywhere in ``path`` (resolved to the deepest known module)."""
    base = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = base.split(".")
                stem = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            names = [stem] + [f"{stem}.{a.name}" for a in node.names]
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name not in ("genreflow", module):
                targets.add(name)
    return targets


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {m: _imports(m, p, set(mods)) for m, p in mods.items() if m != "genreflow"}


def test_every_module_belongs_to_a_layer():
    unplaced = sorted(m for m in _graph() if _group(m) not in LAYERS)
    assert not unplaced, f"place these modules in LAYERS: {unplaced}"


def test_imports_point_down_the_layers():
    upward = []
    for module, targets in _graph().items():
        mine = _group(module)
        for target in targets:
            theirs = _group(target)
            if theirs == mine:
                continue
            if LAYERS[theirs] >= LAYERS[mine]:
                upward.append(f"{module} -> {target}")
    assert not upward, "imports that point up or sideways:\n" + "\n".join(sorted(upward))


def test_no_import_cycle():
    graph = _graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(trail[trail.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_ray_is_imported_only_in_stages():
    importers = sorted(m for m, p in _modules().items()
                       if _group(m) != "genreflow.stages" and _imports_ray(p))
    assert not importers, f"Ray imported outside genreflow.stages: {importers}"


def _imports_ray(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import) and any(a.name == "ray" or a.name.startswith("ray.") for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and not node.level and node.module and \
                (node.module == "ray" or node.module.startswith("ray.")):
            return True
    return False


def test_the_checker_sees_a_function_local_upward_import(tmp_path, monkeypatch):
    """The walk must count imports inside functions: a planted one is reported."""
    fake = tmp_path / "genreflow"
    (fake / "core").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "core" / "__init__.py").write_text("")
    (fake / "core" / "x.py").write_text("def f():\n    from genreflow.config import Config\n")
    (fake / "config.py").write_text("from genreflow.core import x\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", fake)
    graph = _graph()
    assert graph["genreflow.core.x"] == {"genreflow.config"}
    try:
        test_imports_point_down_the_layers()
    except AssertionError as exc:
        assert "genreflow.core.x -> genreflow.config" in str(exc)
    else:
        raise AssertionError("an upward function-local import was not reported")
