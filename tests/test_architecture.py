"""The layout's promises, checked from the code's own imports (docs/architecture.md, "Layout").

- `command/` (the domain) never imports `feeds/` or `layouts/`; only its CLI entry point does.
- `feeds/` (the adapters) never imports `layouts/` (the web app); a page may read what feeds report.
- No import cycle between the project's modules, counting imports inside functions too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

from .conftest import ROOT

PACKAGES = ("command", "feeds", "layouts")
CLI_ENTRY = "command.__main__"


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    mods = {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    mods["app"] = ROOT / "app.py"
    return mods


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Project modules that `name` imports anywhere in its body (resolved to the longest known name)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()

    def resolve(target: str) -> None:
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != name:
            out.add(target)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                resolve(a.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base if is_pkg else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            for a in node.names:  # `from pkg import module` names a module
                full = f"{mod}.{a.name}"
                resolve(full if full in known else mod)
    return out


@pytest.fixture(scope="module")
def graph() -> nx.DiGraph:
    mods = _modules()
    g = nx.DiGraph()
    for name, path in mods.items():
        g.add_node(name)
        for dep in _imports(name, path, set(mods)):
            g.add_edge(name, dep)
    return g


def test_the_domain_imports_no_adapter_and_no_page(graph):
    bad = [(a, b) for a, b in graph.edges
           if a.startswith("command") and a != CLI_ENTRY and b.split(".")[0] in ("feeds", "layouts", "app")]
    assert bad == []


def test_feeds_never_import_the_web_app(graph):
    bad = [(a, b) for a, b in graph.edges if a.startswith("feeds") and b.split(".")[0] in ("layouts", "app")]
    assert bad == []


def test_no_import_cycle(graph):
    cycles = [sorted(c) for c in nx.strongly_connected_components(graph) if len(c) > 1]
    assert cycles == []


def test_the_checker_sees_function_level_imports(graph):
    # the CLI entry assembles every layer with imports inside its functions: the graph must see them
    assert any(b.startswith("feeds") for b in graph.successors(CLI_ENTRY))
