"""The layers, as docs/ARCHITECTURE.md draws them: discordbot -> generation -> tracking -> veosite.

Read from the source with ``ast`` (every import, at the top of a module or inside a function):
only discordbot/ imports discord.py; generation/ never imports discordbot/; tracking/ imports
neither; veosite/ (settings, logging, the embedded database) imports none of the apps. No
module imports itself back through others, and none is longer than 400 lines.
"""

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("veosite", "tracking", "generation", "discordbot")
LAYER = {name: rank for rank, name in enumerate(PACKAGES)}  # a package may import the ones before it
MAX_LINES = 400


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.relative_to(ROOT).parts[:2]:
                continue  # Django's generated migrations
            dotted = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[dotted.removesuffix(".__init__")] = path
    return found


def imports(path: Path) -> set[str]:
    """Every module an import statement in ``path`` names: ``from a import b`` is a.b when that is
    a module of ours (a submodule), else a."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                names.add(submodule if submodule in MODULES else node.module)
    return names


MODULES = modules()
GRAPH = {name: {imported for imported in imports(path) if imported in MODULES} for name, path in MODULES.items()}
ALL_IMPORTS = {name: imports(path) for name, path in MODULES.items()}


def test_the_packages_are_read():
    assert {name.split(".")[0] for name in MODULES} == set(PACKAGES)
    assert "generation.engine" in MODULES and "discordbot.commands" in GRAPH
    assert "generation.engine" in GRAPH["generation.worker"]  # imports are really followed


def test_only_discordbot_imports_discord():
    outside = sorted(
        f"{name} imports {imported}"
        for name, found in ALL_IMPORTS.items()
        if not name.startswith("discordbot")
        for imported in found
        if imported == "discord" or imported.startswith("discord.")
    )
    assert outside == []


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_runs_up_a_layer(package):
    upward = sorted(
        f"{name} imports {imported}"
        for name, found in GRAPH.items()
        if name.split(".")[0] == package
        for imported in found
        if LAYER[imported.split(".")[0]] > LAYER[package]
    )
    assert upward == []


def test_no_module_imports_itself_back():
    cycles = [component for component in _strongly_connected(GRAPH) if len(component) > 1]
    assert cycles == []


def test_no_module_is_over_400_lines():
    long = {
        name: length for name, path in MODULES.items() if (length := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


def _strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm, iteratively (the graph is small, but recursion limits are not)."""
    index, low, on_stack, stack, components, counter = {}, {}, set(), [], [], [0]
    edges = defaultdict(set, graph)

    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                components.append(component)
    return components
