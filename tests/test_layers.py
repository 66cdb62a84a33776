"""The import directions between spanlog's layers (docs/design.md, "Layout"), read from the
source with ``ast``: nothing is imported, so a module that needs an optional dependency is
checked like any other.

- The SDK (``spanlog`` outside ``spanlog.server``) never imports the collector, nor the command
  line that runs one (``spanlog.cli`` and the demo it starts, which may import both).
- Inside the collector, each layer imports only the layers below it: ``rows`` nothing else,
  ``query`` nothing else, ``store`` those two, ``http`` and ``commands`` those three. So
  ``store``, ``query`` and ``rows`` never import ``http``.
- The SDK's transports move bytes and know nothing about spans.
- No import cycle among the collector's modules (from their top-level imports, which run when
  a module is first imported).

The first three count every import, also those inside functions: a deferred import is still a
dependency. The last tests run each check on small made-up source trees that break its rule.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"

COLLECTOR = "spanlog.server"
# The command line: it starts collectors (`spanlog serve`, `spanlog demo`), so it may import
# the collector and the SDK alike; nothing in the SDK imports it.
COMMAND_LINE = frozenset({"spanlog.cli", "spanlog._demo"})

# What each layer of the collector may import of the collector.
LAYERS: Mapping[str, frozenset[str]] = {
    "spanlog.server.rows": frozenset({"rows"}),
    "spanlog.server.query": frozenset({"query"}),
    "spanlog.server.store": frozenset({"store", "rows", "query"}),
    "spanlog.server.http": frozenset({"http", "store", "rows", "query"}),
    "spanlog.server.commands": frozenset({"commands", "store", "rows", "query"}),
}

TRANSPORTS = ("spanlog._transport", "spanlog._fetch_transport")
SPAN_MODULES = frozenset({"spanlog._span", "spanlog._logger", "spanlog._traced",
                          "spanlog._buffer", "spanlog._delivery"})


@dataclass(frozen=True)
class Module:
    """One module of the source tree: its dotted name, its file, whether it is a package."""

    name: str
    path: Path
    is_package: bool

    @property
    def package(self) -> str:
        """The package relative imports in this module start from."""
        return self.name if self.is_package else self.name.rpartition(".")[0]


def find_modules(src: Path) -> dict[str, Module]:
    """Every module under ``src/spanlog``, by dotted name."""
    modules: dict[str, Module] = {}
    for path in sorted((src / "spanlog").rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        name = ".".join(parts)
        modules[name] = Module(name, path, is_package)
    return modules


def _import_nodes(tree: ast.AST, top_level_only: bool) -> Iterator[ast.Import | ast.ImportFrom]:
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif top_level_only and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                  ast.Lambda)):
            continue  # runs when called, not when the module is imported
        yield from _import_nodes(node, top_level_only)


def imports_of(module: Module, modules: Mapping[str, Module], *,
               top_level_only: bool = False) -> set[str]:
    """The modules of ``modules`` that ``module`` imports (``from p import m`` of a module
    ``p.m`` counts as importing ``p.m``; of any other name, as importing ``p``)."""
    tree = ast.parse(module.path.read_text(encoding="utf-8"), str(module.path))
    found: set[str] = set()
    for node in _import_nodes(tree, top_level_only):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
            continue
        base = node.module or ""
        if node.level:
            anchor = module.package.split(".")
            anchor = anchor[:len(anchor) - (node.level - 1)]
            base = ".".join([*anchor, *([base] if base else [])])
        for alias in node.names:
            inner = f"{base}.{alias.name}"
            found.add(inner if inner in modules else base)
    return {name for name in found if name in modules}


def import_graph(modules: Mapping[str, Module], *, top_level_only: bool = False,
                 within: str = "spanlog") -> dict[str, set[str]]:
    """Module -> the modules it imports, for the modules named ``within`` or below it."""
    def inside(name: str) -> bool:
        return name == within or name.startswith(within + ".")

    return {name: {target for target in imports_of(module, modules,
                                                   top_level_only=top_level_only)
                   if inside(target)}
            for name, module in modules.items() if inside(name)}


def _is_in(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def sdk_violations(graph: Mapping[str, Iterable[str]]) -> list[str]:
    """SDK modules that import the collector or the command line."""
    out = []
    for name, targets in sorted(graph.items()):
        if _is_in(name, COLLECTOR) or name in COMMAND_LINE:
            continue
        for target in sorted(targets):
            if _is_in(target, COLLECTOR) or target in COMMAND_LINE:
                out.append(f"{name} imports {target}")
    return out


def layer_violations(graph: Mapping[str, Iterable[str]]) -> list[str]:
    """Collector modules that import a layer their own layer may not use."""
    out = []
    for name, targets in sorted(graph.items()):
        layer = next((layer for layer in LAYERS if _is_in(name, layer)), None)
        if layer is None:
            continue
        allowed = LAYERS[layer]
        for target in sorted(targets):
            if not target.startswith(COLLECTOR + "."):
                continue  # the collector's own package (spanlog/server/__init__.py)
            used = target[len(COLLECTOR) + 1:].split(".")[0]
            if used not in allowed:
                out.append(f"{name} imports {target}: {layer} may import only "
                           f"{', '.join(sorted(allowed))}")
    return out


def reached_span_modules(graph: Mapping[str, Iterable[str]], start: str) -> list[str]:
    """Each span module that ``start`` reaches through imports, with the path that does."""
    seen = {start: [start]}
    queue = [start]
    out = []
    while queue:
        name = queue.pop(0)
        for target in sorted(graph.get(name, ())):
            if target in seen:
                continue
            seen[target] = [*seen[name], target]
            if target in SPAN_MODULES:
                out.append(" -> ".join(seen[target]))
            queue.append(target)
    return out


def import_cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """One cycle (first module repeated at the end) per group of modules that import each
    other, found as the strongly connected components of ``graph`` (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(name: str) -> None:
        index[name] = low[name] = len(index)
        stack.append(name)
        on_stack.add(name)
        for target in sorted(graph.get(name, ())):
            if target not in index:
                visit(target)
                low[name] = min(low[name], low[target])
            elif target in on_stack:
                low[name] = min(low[name], index[target])
        if low[name] == index[name]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == name:
                    break
            if len(group) > 1 or name in graph.get(name, ()):
                groups.append(sorted(group))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return [_cycle_through(graph, group) for group in groups]


def _cycle_through(graph: Mapping[str, Iterable[str]], group: list[str]) -> list[str]:
    # The shortest way from the group's first module back to itself, inside the group.
    start, members = group[0], set(group)
    paths = {start: [start]}
    queue = [start]
    while queue:
        name = queue.pop(0)
        for target in sorted(graph.get(name, ())):
            if target == start:
                return [*paths[name], start]
            if target in members and target not in paths:
                paths[target] = [*paths[name], target]
                queue.append(target)
    raise AssertionError(f"no cycle through {group}")  # a component always has one


# ---- the rules, on spanlog's own source ---------------------------------------------------

@pytest.fixture(scope="module")
def modules() -> dict[str, Module]:
    found = find_modules(SRC)
    # Guard against checking nothing: the tree must be where this test expects it.
    assert {"spanlog._transport", "spanlog.server.http._app", "spanlog.server.rows._json",
            "spanlog.server.store._engine", "spanlog.server.query._syntax"} <= set(found)
    return found


def test_the_sdk_never_imports_the_collector(modules: dict[str, Module]) -> None:
    """No module of the SDK imports spanlog.server (or the command line), even lazily."""
    assert sdk_violations(import_graph(modules)) == []


def test_each_collector_layer_imports_only_the_layers_below_it(
        modules: dict[str, Module]) -> None:
    """store, query and rows never import http; rows and query import no other layer."""
    assert layer_violations(import_graph(modules, within=COLLECTOR)) == []


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_the_transports_import_nothing_about_spans(modules: dict[str, Module],
                                                   transport: str) -> None:
    """A transport reaches none of the span, logger, buffer or delivery modules, directly or
    through another module."""
    assert reached_span_modules(import_graph(modules), transport) == []


def test_no_import_cycle_among_the_collector_modules(modules: dict[str, Module]) -> None:
    """The collector's modules, linked by their top-level imports, form no cycle."""
    cycles = import_cycles(import_graph(modules, top_level_only=True, within=COLLECTOR))
    assert cycles == [], "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


# ---- each check fails on a tree that breaks its rule --------------------------------------

def _tree(tmp_path: Path, files: Mapping[str, str]) -> dict[str, Module]:
    for relative, text in files.items():
        path = tmp_path / "spanlog" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return find_modules(tmp_path)


_PACKAGES = {"__init__.py": "", "server/__init__.py": "", "server/http/__init__.py": "",
             "server/store/__init__.py": "", "server/rows/__init__.py": ""}


def test_sdk_check_fails_on_a_lazy_import_of_the_collector(tmp_path: Path) -> None:
    found = _tree(tmp_path, {**_PACKAGES, "server/http/_app.py": "",
                             "_flush.py": "def f():\n    from .server.http import _app\n"})
    assert sdk_violations(import_graph(found)) == [
        "spanlog._flush imports spanlog.server.http._app"]


def test_layer_check_fails_when_the_store_imports_http(tmp_path: Path) -> None:
    found = _tree(tmp_path, {**_PACKAGES, "server/http/_context.py": "",
                             "server/store/_engine.py":
                                 "from spanlog.server.http._context import STORE\n"})
    assert layer_violations(import_graph(found, within=COLLECTOR)) == [
        "spanlog.server.store._engine imports spanlog.server.http._context: "
        "spanlog.server.store may import only query, rows, store"]


def test_transport_check_fails_on_a_span_module_reached_indirectly(tmp_path: Path) -> None:
    found = _tree(tmp_path, {**_PACKAGES, "_span.py": "", "_config.py": "from . import _span\n",
                             "_transport.py": "from ._config import Config\n"})
    assert reached_span_modules(import_graph(found), "spanlog._transport") == [
        "spanlog._transport -> spanlog._config -> spanlog._span"]


def test_cycle_check_fails_naming_the_cycle(tmp_path: Path) -> None:
    found = _tree(tmp_path, {
        **_PACKAGES,
        "server/http/_app.py": "from spanlog.server.http._viewer import setup\n",
        "server/http/_viewer.py": "from spanlog.server.http import _app\n",
        "server/rows/_json.py": "def f():\n    from spanlog.server.rows import _model\n",
        "server/rows/_model.py": "from spanlog.server.rows import _json\n"})
    graph = import_graph(found, top_level_only=True, within=COLLECTOR)
    # The rows pair imports each other only inside a function: not a cycle at import time.
    assert import_cycles(graph) == [["spanlog.server.http._app", "spanlog.server.http._viewer",
                                     "spanlog.server.http._app"]]
