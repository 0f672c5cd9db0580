"""The folders are the architecture's layers: imports only go down, adapters never import each other.

Reads every module's imports (top-level and inside functions) with `ast`, so a lazy import that
climbs a layer is caught too. The order is ARCHITECTURE.md's table, lowest first.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "kvip"

# Lowest first. Packages on one row are siblings and may not import each other.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("core",),
    ("config",),
    ("runtime",),
    ("kube", "dataplane"),
    ("reconcile",),
    ("agent", "controller"),
    ("deploy",),
    ("lab",),
    ("cli",),
)
RANK = {name: rank for rank, row in enumerate(LAYERS) for name in row}
# The lab plays real agents (as processes, through the CLI) and real routers; it may use the product's
# domain values and runtime helpers, but never the adapters or the agent: its checkers must not trust
# the code they check.
LAB_MAY_IMPORT = {"core", "runtime", "deploy"}


def unit_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "kvip" or len(parts) < 2:
        return None
    return parts[1]


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                found.add(".".join(base + ([node.module] if node.module else [])))
            elif node.module:
                found.add(node.module)
    return {name for name in found if name.startswith("kvip.")}


def modules() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if p.name != "__main__.py")


def test_every_module_belongs_to_a_layer() -> None:
    strays = [module_name(p) for p in modules() if p.parent == SRC and p.stem not in RANK
              and p.stem != "__init__"]
    strays += [p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists() and p.name not in RANK]
    assert not strays, f"modules outside the layer table (add them to LAYERS and ARCHITECTURE.md): {strays}"


@pytest.mark.parametrize("path", modules(), ids=lambda p: module_name(p))
def test_imports_only_go_down(path: Path) -> None:
    here = unit_of(module_name(path))
    if here is None:
        return
    wrong = []
    for target in sorted(imports_of(path)):
        there = unit_of(target)
        if there is None or there == here:
            continue
        if here == "lab":
            if there not in LAB_MAY_IMPORT:
                wrong.append(f"{target} (the lab uses the product only as processes, and its core and runtime)")
            continue
        if there not in RANK or RANK[there] >= RANK[here]:
            wrong.append(f"{target} ({there} is not below {here})")
    assert not wrong, f"{module_name(path)} imports upward or sideways: {wrong}"


def test_no_import_cycles_between_modules() -> None:
    graph = {module_name(p): {t for t in imports_of(p)} for p in modules()}
    known = set(graph)
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            target = nxt if nxt in known else nxt.rpartition(".")[0]
            if target not in known or target == node:
                continue
            if state.get(target) == 1:
                return stack[stack.index(target):] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for name in sorted(graph):
        if name not in state:
            cycle = visit(name)
            assert cycle is None, f"import cycle: {' -> '.join(cycle)}"


def test_every_package_says_what_it_owns() -> None:
    silent = [module_name(p) for p in SRC.rglob("__init__.py") if not ast.get_docstring(ast.parse(p.read_text()))]
    assert not silent, f"packages whose __init__ has no docstring: {silent}"


def test_modules_stay_under_400_lines() -> None:
    long = {module_name(p): n for p in modules() if (n := len(p.read_text().splitlines())) >= 400}
    assert not long, f"modules of 400 lines or more: {long}"
