"""The code's shape: no import circle in `resilience/` and no module over 450 lines.

The import graph is built from the source with `ast`, from EVERY import statement: module level,
inside functions and under `if TYPE_CHECKING:` alike. An import hidden in a function or kept for
type checking still ties the two modules together (a reader must know both to change either), so
moving an import out of sight does not break a circle; moving the shared piece to its owner does.

Granularity is the module: a package's `__init__` is a node of its own; `import a.b` is an edge to
`a.b` (not to the parents it also executes); `from a import b` is an edge to the submodule `a.b`
when there is one, else to `a`.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "resilience"
ROOT = Path(__file__).resolve().parents[2] / PACKAGE
MAX_LINES = 450

Graph = dict[str, set[str]]


def module_name(path: Path) -> str:
    """`resilience/load/__init__.py` -> `resilience.load`; `resilience/run.py` -> `resilience.run`."""
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_files() -> list[Path]:
    return sorted(ROOT.rglob("*.py"))


def imports_of(name: str, is_package: bool, tree: ast.AST, modules: set[str]) -> set[str]:
    """The modules of `modules` that `name`'s source imports, anywhere in it."""
    here = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in modules else target)
    return {module for module in found if module in modules and module != name}


def import_graph() -> Graph:
    files = source_files()
    modules = {module_name(path) for path in files}
    return {module_name(path): imports_of(module_name(path), path.name == "__init__.py",
                                          ast.parse(path.read_text(), str(path)), modules)
            for path in files}


def find_cycles(graph: Graph) -> list[list[str]]:
    """Every strongly connected part of more than one node (or a node importing itself): its
    members, sorted; Tarjan's algorithm, iteratively (no recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    parts: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                part = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    part.append(member)
                    if member == node:
                        break
                if len(part) > 1 or node in graph.get(node, ()):
                    parts.append(sorted(part))
    return sorted(parts)


def circle_through(graph: Graph, part: list[str]) -> list[str]:
    """One path from the part's first member back to itself, inside the part (for the message)."""
    members = set(part)
    start = part[0]
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for child in sorted(graph.get(node, ())):
            if child == start:
                return paths[node] + [start]
            if child in members and child not in paths:
                paths[child] = paths[node] + [child]
                queue.append(child)
    return part  # not reached for a strongly connected part


# --- the cycle finder on hand-built graphs -------------------------------------------------------

def test_no_cycle_in_a_tree_or_a_diamond() -> None:
    assert find_cycles({"a": {"b", "c"}, "b": {"d"}, "c": {"d"}, "d": set()}) == []


def test_a_two_node_circle() -> None:
    graph = {"a": {"b"}, "b": {"a"}, "c": {"a"}}
    assert find_cycles(graph) == [["a", "b"]]
    assert circle_through(graph, ["a", "b"]) == ["a", "b", "a"]


def test_a_longer_circle_and_a_separate_one_are_both_named() -> None:
    graph = {"run": {"deps"}, "deps": {"cluster"}, "cluster": {"deps", "target"}, "target": set(),
             "w": {"m"}, "m": {"f"}, "f": {"w"}}
    assert find_cycles(graph) == [["cluster", "deps"], ["f", "m", "w"]]
    assert circle_through(graph, ["f", "m", "w"]) == ["f", "w", "m", "f"]


def test_a_self_import_and_edges_to_unknown_nodes() -> None:
    assert find_cycles({"a": {"a", "elsewhere"}}) == [["a"]]


def test_import_resolution_counts_functions_type_checking_and_submodules() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "from . import sibling, NAME\n"
        "from .. import results\n"
        "if TYPE_CHECKING:\n"
        "    from resilience.load.cluster import ClusterLoad\n"
        "def f():\n"
        "    import resilience.config\n")
    modules = {"resilience", "resilience.results", "resilience.config", "resilience.load",
               "resilience.load.sibling", "resilience.load.cluster", "resilience.load.process"}
    found = imports_of("resilience.load.process", False, ast.parse(source), modules)
    assert found == {"resilience.load.sibling", "resilience.load", "resilience.results",
                     "resilience.load.cluster", "resilience.config"}


# --- the rules on the real code ------------------------------------------------------------------

def test_no_import_cycles() -> None:
    graph = import_graph()
    cycles = find_cycles(graph)
    assert not cycles, "import circles (move the shared piece to the module that owns it):\n" + "\n".join(
        f"{', '.join(part)}: e.g. {' -> '.join(circle_through(graph, part))}" for part in cycles)


def test_no_module_over_the_line_limit() -> None:
    long = {str(path.relative_to(ROOT.parent)): lines for path in source_files()
            if (lines := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (split them by noun): {long}"


def test_no_two_test_files_share_a_name() -> None:
    """pytest imports test files by their name (no packages under tests/): two alike in different folders stop
    the collection of a whole run ("import file mismatch"), as tests/stack and tests/unit once did."""
    from collections import Counter
    names = Counter(p.name for p in Path(__file__).resolve().parents[1].rglob("test_*.py"))
    assert [n for n, count in names.items() if count > 1] == []
