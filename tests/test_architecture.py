"""The package's import graph stays layered: no import cycle between modules of different
folders, and the expression core imports nothing above it. Lazy imports inside functions count
(they are arrows too); `if TYPE_CHECKING:` blocks do not."""

from __future__ import annotations

import ast
from pathlib import Path

import afsearch

ROOT = Path(afsearch.__file__).parent
#: modules at the package's top level that any folder may use (leaf modules, no upward arrows)
SHARED = {"afsearch.errors", "afsearch.files", "afsearch.defaults", "afsearch.jsonsafe"}


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                   and "TYPE_CHECKING" in ast.unparse(node.test) for n in ast.walk(node)}
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([node.module] if node.module else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in MODULES else base)
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _folder(name: str) -> str:
    parts = name.split(".")
    is_package = MODULES[name].name == "__init__.py"
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and is_package) else "(top)"


def _cycles() -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in GRAPH:
        if root in index:
            continue
        work = [(root, iter(sorted(GRAPH[root])))]
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
                    work.append((child, iter(sorted(GRAPH[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
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
    return found


def test_no_import_cycle_crosses_a_folder() -> None:
    crossing = [c for c in _cycles() if len({_folder(m) for m in c}) > 1]
    assert crossing == []


def test_the_expression_core_imports_nothing_above_it() -> None:
    upward = {name: sorted(d for d in deps if _folder(d) != "expr" and d not in SHARED)
              for name, deps in GRAPH.items() if _folder(name) == "expr"}
    assert {k: v for k, v in upward.items() if v} == {}


def test_layers_and_compile_do_not_import_search_spaces_or_strategies() -> None:
    below = {"expr", "compile", "layers"}
    upward = {name: sorted(d for d in deps if _folder(d) not in below and d not in SHARED)
              for name, deps in GRAPH.items() if _folder(name) in below}
    assert {k: v for k, v in upward.items() if v} == {}


def test_the_graph_is_read_at_all() -> None:  # guards the checks above against reading nothing
    assert len(GRAPH) > 50 and "afsearch.expr.tree" in GRAPH["afsearch.expr.parser"]
