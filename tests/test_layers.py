"""The package's layers, read from the source: no module imports a layer above its own, and no circles.

``dokuei/{agent,tools,knowledge,ui}`` are links to top-level folders (they stop PyPI's ``tools`` and
``agent`` from shadowing ours), which hides from a reader of the tree how the layers stack. This test
parses every module (AST, nothing is imported) and checks every ``import``, lazy ones inside
functions included; only imports under ``if TYPE_CHECKING:`` are skipped, since they never run.

Layers, lowest first (a module may import its own layer and those below):

    low        dokuei/__init__, errors, device, weights, settings, offline, testdata, patient, cancel, atomic,
               and the reference-data loader dokuei/knowledge/__init__
    io         dokuei/io/*
    domain     dokuei/{signals,ct,lymph,models,phantoms,reports}/*
    knowledge  dokuei/knowledge/* (the report archive)
    tools      tools/*
    agent      agent/*
    app        dokuei/cli, demo, batch, ui/* and any top-level module not named here
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: top-level folder → package it is imported as
PACKAGES = {"dokuei": "dokuei", "tools": "dokuei.tools", "agent": "dokuei.agent",
            "knowledge": "dokuei.knowledge", "ui": "dokuei.ui"}

LAYERS = ("low", "io", "domain", "knowledge", "tools", "agent", "app")
LOW_MODULES = frozenset({"dokuei", "dokuei.errors", "dokuei.device", "dokuei.weights", "dokuei.settings",
                         "dokuei.offline", "dokuei.testdata", "dokuei.knowledge",
                         "dokuei.llm_install", "dokuei.llm_hook", "dokuei.cancel", "dokuei.atomic",
                         "dokuei.fonts", "dokuei.field_labels"})
DOMAIN_PACKAGES = ("signals", "ct", "lymph", "models", "phantoms", "reports")

#: import circles tolerated (none: cli ↔ demo ended when parse_patient moved to dokuei/patient.py, and
#: ui ↔ cli when the doctor report moved to dokuei/doctor.py)
KNOWN_CIRCLES: frozenset[frozenset[str]] = frozenset()


def module_files() -> dict[str, Path]:
    """Every module of the package by dotted name, read through the real folders (not the links)."""
    modules: dict[str, Path] = {}
    for folder, package in PACKAGES.items():
        base = ROOT / folder
        for path in sorted(base.rglob("*.py")):
            rel = path.relative_to(base)
            if folder == "dokuei" and rel.parts[0] in PACKAGES:
                continue  # the links; their folders are read under their own names
            parts = [*package.split("."), *rel.with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def layer_of(module: str) -> str:
    if module in LOW_MODULES:
        return "low"
    parts = module.split(".")
    second = parts[1] if len(parts) > 1 else ""
    if second == "io":
        return "io"
    if second in DOMAIN_PACKAGES:
        return "domain"
    if second in ("knowledge", "tools", "agent"):
        return second
    return "app"


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def imports_of(module: str, path: Path, known: set[str]) -> set[str]:
    """The package modules ``module`` imports (``from a import b`` counts as ``a.b`` when b is a module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in _import_nodes(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, node.module] if node.module else anchor)
            else:
                base = node.module or ""
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for name in names:
            if name in known:
                found.add(name)
            elif name.split(".")[0] == "dokuei":  # `import dokuei.io.volume` or an attribute of a module
                parent = name.rsplit(".", 1)[0]
                if parent in known and parent != "dokuei":
                    found.add(parent)
    found.discard(module)
    return found


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    known = set(files)
    return {module: imports_of(module, path, known) for module, path in files.items()}


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    rank = {name: i for i, name in enumerate(LAYERS)}
    bad = []
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            if rank[layer_of(target)] > rank[layer_of(module)]:
                bad.append(f"{module} ({layer_of(module)}) imports {target} ({layer_of(target)})")
    return bad


def circles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[frozenset[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(frozenset(component))
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph()


def test_the_reader_sees_the_whole_package(graph: dict[str, set[str]]) -> None:
    # A reader that found nothing would pass every check below; these modules and edges must be seen.
    assert {"dokuei.errors", "dokuei.io.volume", "dokuei.tools.base", "dokuei.agent.router",
            "dokuei.knowledge.archive", "dokuei.lymph.study"} <= set(graph)
    assert "dokuei.errors" in graph["dokuei.io.volume"]
    assert "dokuei.tools.base" in graph["dokuei.agent.router"]


def test_no_module_imports_a_higher_layer(graph: dict[str, set[str]]) -> None:
    assert upward_imports(graph) == []


def test_no_import_circles(graph: dict[str, set[str]]) -> None:
    unexpected = [sorted(c) for c in circles(graph) if c not in KNOWN_CIRCLES]
    assert unexpected == []


def test_the_checks_catch_what_they_are_for() -> None:
    # The layer rule and the circle finder on a made-up graph: io importing tools is upward, agent
    # importing tools is not, and a three-module loop is found as one circle.
    made_up = {"dokuei.io.volume": {"dokuei.tools.base"}, "dokuei.agent.graph": {"dokuei.tools.base"},
               "dokuei.tools.base": set(), "dokuei.ct.a": {"dokuei.ct.b"}, "dokuei.ct.b": {"dokuei.ct.c"},
               "dokuei.ct.c": {"dokuei.ct.a"}}
    assert upward_imports(made_up) == ["dokuei.io.volume (io) imports dokuei.tools.base (tools)"]
    assert circles(made_up) == [frozenset({"dokuei.ct.a", "dokuei.ct.b", "dokuei.ct.c"})]


def test_lazy_and_relative_imports_are_read(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from dokuei.agent import graph\n"
                      "def f():\n    from dokuei.tools.base import Tool\n    from . import grid\n")
    known = {"dokuei.tools.base", "dokuei.agent.graph", "dokuei.io.grid", "dokuei.io.m"}
    assert imports_of("dokuei.io.m", source, known) == {"dokuei.tools.base", "dokuei.io.grid"}
