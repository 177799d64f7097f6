"""The builder package's shape: no module imports, however indirectly, a module that imports it.

Every `import builder.x` and `from builder.x import y` counts, at module level, inside functions
and under `if TYPE_CHECKING:` alike: an import deferred into a function is still a circle, and the
next refactor that hoists it fails at import time.
"""

from __future__ import annotations

import ast

from conftest import REPO

PACKAGE = REPO / "builder"


def module_name(path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, ast.Module]:
    trees = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        tree.is_package = path.name == "__init__.py"  # where its relative imports start
        trees[module_name(path)] = tree
    return trees


def import_graph(trees: dict[str, ast.Module]) -> dict[str, set[str]]:
    """Module -> the builder modules it imports (a package's __init__ counts: importing a.b runs a)."""

    def with_packages(name: str) -> set[str]:
        parts = name.split(".")
        return {".".join(parts[:i]) for i in range(1, len(parts) + 1)} & trees.keys()

    graph: dict[str, set[str]] = {name: set() for name in trees}
    for name, tree in trees.items():
        package = name if getattr(tree, "is_package", False) else name.rpartition(".")[0]
        for node in ast.walk(tree):
            targets: set[str] = set()
            if isinstance(node, ast.Import):
                targets = {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from . import x, from ..a import b
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                # `from a import b` imports module a.b where there is one, else a name of a
                targets = {f"{base}.{alias.name}" if f"{base}.{alias.name}" in trees else base for alias in node.names}
            for target in targets:
                if target == "builder" or target.startswith("builder."):
                    graph[name] |= with_packages(target) - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as [a, b, ..., a], or None (depth-first search, colours)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_graph_sees_imports_inside_functions():
    """The check itself: a deferred import is an edge, and a circle through one is found."""
    tree = ast.parse("def f():\n    from builder.b import x\n")
    trees = {"builder": ast.parse(""), "builder.a": tree, "builder.b": ast.parse("import builder.a\n")}
    graph = import_graph(trees)
    assert graph["builder.a"] == {"builder", "builder.b"}
    assert find_cycle(graph) == ["builder.a", "builder.b", "builder.a"]
    assert cycles(graph) == [(["builder.a", "builder.b"], ["builder.a", "builder.b", "builder.a"])]


def cycles(graph: dict[str, set[str]]) -> list[tuple[list[str], list[str]]]:
    """Each group of modules that reach each other (a strongly connected part), with one cycle of it."""
    reach = {}
    for start in graph:
        seen, stack = set(), list(graph[start])
        while stack:
            node = stack.pop()
            if node not in seen:
                seen.add(node)
                stack.extend(graph[node])
        reach[start] = seen
    parts = {frozenset(b for b in graph if b in reach[a] and a in reach[b]) for a in graph if a in reach[a]}
    found = []
    for part in sorted(parts, key=sorted):
        found.append((sorted(part), find_cycle({node: graph[node] & part for node in part})))
    return found


def test_no_import_cycles():
    found = cycles(import_graph(modules()))
    assert not found, "import cycles (move what they share into a module below both):\n" + "\n".join(
        f"{' -> '.join(cycle)} (the circle joins {', '.join(part)})" for part, cycle in found
    )


def test_only_source_tree_finds_builders_own_files():
    """One way for builder to find its files (builder/source_tree.py: the checkout, or the wheel's
    copy). A module that builds a path from `__file__` reads the repo's layout, which an installed
    wheel does not have: `launch` once failed that way (owner_credentials' env contract)."""
    readers = sorted(
        name
        for name, tree in modules().items()
        if name != "builder.source_tree"
        and any(isinstance(node, ast.Name) and node.id == "__file__" for node in ast.walk(tree))
    )
    assert readers == []
