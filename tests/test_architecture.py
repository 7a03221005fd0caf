"""The package's layering: subpackages in pipeline order, imports only downward, no cycles.

Order (docs/ARCHITECTURE.md): core < inputs < synth < sfm < matching < store < learn < reports
< pipeline < commands. A module may import from its own subpackage and from lower ones, never
from a higher one; pycolmap conversions live in core/colmap.py only.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "xseason"
LAYERS = ["core", "inputs", "synth", "sfm", "matching", "store", "learn", "reports", "pipeline", "commands"]
TOP_LEVEL = {"__init__": -1, "cli": len(LAYERS)}  # xseason/__init__.py below everything, cli.py above


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> int:
    parts = module.split(".")
    if len(parts) == 1:
        return -1
    if parts[1] in LAYERS:
        return LAYERS.index(parts[1])
    return TOP_LEVEL[parts[1]]


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute xseason module) of every import of an xseason module in `path`, lazy ones included."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "xseason"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] == "xseason":
                found.append((node.lineno, target))
    return found


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_layers_cover_every_subpackage():
    subpackages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert subpackages == set(LAYERS)
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    assert modules == set(TOP_LEVEL)


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_only_go_downward(path):
    own = _layer(_module_name(path))
    upward = [f"line {line}: {target}" for line, target in _imports(path) if _layer(target) > own]
    assert not upward, f"{path.relative_to(PACKAGE)} imports from a higher layer: {upward}"


def test_no_import_cycles_between_modules():
    graph: dict[str, set[str]] = {}
    names = {_module_name(p) for p in _sources()}
    for path in _sources():
        targets = set()
        for _, target in _imports(path):
            while target not in names and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in names and target != _module_name(path):
                targets.add(target)
        graph[_module_name(path)] = targets
    # package __init__ files re-export their modules: a module importing its own package is not a cycle
    for name in graph:
        graph[name] = {t for t in graph[name] if not name.startswith(t + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(nxt_ := node, set())):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt) :] + [nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[nxt_] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_pycolmap_conversions_only_in_the_adapter():
    """Pixel-convention shifts and pose/camera constructions from pycolmap objects live in core/colmap.py."""
    offenders = []
    for path in _sources():
        if path == PACKAGE / "core" / "colmap.py":
            continue
        text = path.read_text()
        for needle in (
            "pycolmap.Rigid3d(",
            "pycolmap.logging.minloglevel",
            ".cam_from_world().matrix()",
            "point3D_id for p in",
        ):
            if needle in text:
                offenders.append(f"{path.relative_to(PACKAGE)}: {needle}")
    assert not offenders, offenders
