"""No module-level import cycle inside raycross/.

The graph is built from the AST of every module's top-level imports (imports inside functions are lazy
by design, e.g. the documented ``CrossEncoder.fit`` -> ``raycross.fit`` import, and ``if TYPE_CHECKING:``
blocks never run). Importing ``a.b.c`` runs the ``__init__`` of ``a.b`` too, so a module also depends on
the packages above what it imports (except its own ancestors, which are already initializing).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "raycross"


def _modules() -> dict[str, Path]:
    modules = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if any(not p.isidentifier() for p in parts):  # data folders such as resources/wordnet-mini
            continue
        modules[".".join(parts)] = path
    return modules


def _top_level_imports(tree: ast.Module) -> list[ast.stmt]:
    """Import statements that run at import time: module body, including try/if/with blocks, excluding
    ``if TYPE_CHECKING:`` and anything inside a function or class body."""
    found: list[ast.stmt] = []

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                found.append(node)
            elif isinstance(node, ast.If):
                test = ast.unparse(node.test)
                if "TYPE_CHECKING" not in test:
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)
                visit(node.orelse)
                visit(node.finalbody)
            elif isinstance(node, ast.With):
                visit(node.body)

    visit(tree.body)
    return found


def _targets(node: ast.stmt, module: str, is_package: bool, modules: dict[str, Path]) -> set[str]:
    names: set[str] = set()
    if isinstance(node, ast.Import):
        names = {alias.name for alias in node.names}
    else:
        if node.level:
            base = module.split(".") if is_package else module.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            source = ".".join(base + ([node.module] if node.module else []))
        else:
            source = node.module or ""
        submodules = {f"{source}.{alias.name}" for alias in node.names if f"{source}.{alias.name}" in modules}
        names = set(submodules)
        if len(submodules) < len(node.names):  # `from pkg import submodule` needs the submodule, not pkg's names
            names.add(source)
    return {n for n in names if n == PACKAGE or n.startswith(PACKAGE + ".")}


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        own_ancestors = {".".join(name.split(".")[:i]) for i in range(1, len(name.split(".")))}
        for node in _top_level_imports(ast.parse(path.read_text(encoding="utf8"))):
            for target in _targets(node, name, is_package, modules):
                while target not in modules and "." in target:  # `import a.b.attr` style names
                    target = target.rsplit(".", 1)[0]
                parts = target.split(".")
                for i in range(1, len(parts) + 1):
                    dep = ".".join(parts[:i])
                    if dep in modules and dep != name and (dep not in own_ancestors or dep == target):
                        graph[name].add(dep)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state:
                cycle = visit(dep)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_graph_sees_real_imports():
    graph = import_graph()
    assert "raycross.config.spec" in graph["raycross.cli"] or "raycross.config" in graph["raycross.cli"]
    assert "raycross.data.contract" in graph["raycross.losses._base"]
    assert "raycross.data" in graph["raycross.training.trainer"]


def test_find_cycle_reports_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_level_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "module-level import cycle: " + " -> ".join(cycle)


def test_no_library_module_imports_the_cli():
    # Lazy imports count here too: the CLI sits on top of the library, never below it.
    importers = []
    for name, path in _modules().items():
        if name in ("raycross.cli", "raycross.__main__"):  # __main__ is the CLI's `python -m raycross` door
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf8"))):
            if isinstance(node, ast.Import | ast.ImportFrom) and any(
                    t == "raycross.cli" for t in _targets(node, name, path.name == "__init__.py", {"raycross.cli": path})):
                importers.append(name)
    assert importers == [], f"library modules importing raycross.cli: {importers}"
