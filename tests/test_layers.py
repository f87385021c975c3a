"""fbcache's imports go one way: no circle, and no package imports one of a higher layer.

The graph is read from the source with ``ast``, so imports inside functions and ``TYPE_CHECKING``
blocks count as much as those at the top: hiding a circle does not remove it. Importing
``fbcache.a.b`` from outside ``fbcache.a`` also runs ``fbcache/a/__init__.py``, so that counts too.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "fbcache"

#: every package (or top-level module) of fbcache and its layer; a module imports only its own
#: package or a lower layer. Configuration schema at the bottom, then the registries and their
#: implementations, then what reads them: history, verdicts, render, alerts, plugin, CLI.
LAYERS: dict[str, int] = {
    "fbcache": 0,
    "fbcache.errors": 0,
    "fbcache.markup": 0,
    "fbcache.config": 1,
    "fbcache.metrics": 2,
    "fbcache.backends": 2,
    "fbcache.quant": 3,
    "fbcache.models": 4,
    "fbcache.configure": 5,
    "fbcache.history": 6,
    "fbcache.explain": 6,
    "fbcache.verdicts": 7,
    "fbcache.render": 8,
    "fbcache.alerts": 9,
    "fbcache.plugin": 10,
    "fbcache.cli": 11,
    "fbcache.__main__": 12,
}


def module_names() -> dict[str, Path]:
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def _existing(name: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of a dotted name that is a module of ours (``fbcache.a.b.attr`` -> ``fbcache.a.b``)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every fbcache module that importing ``name`` imports directly, wherever the import statement is."""
    is_package = path.name == "__init__.py"
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:  # ``from pkg import module`` imports the module
                targets.add(f"{module}.{alias.name}" if f"{module}.{alias.name}" in modules else module)
    found: set[str] = set()
    for target in targets:
        resolved = _existing(target, modules) if target.startswith("fbcache") else None
        while resolved and resolved != "fbcache":
            if resolved != name and not name.startswith(resolved + "."):  # a package's own __init__ is not an edge
                found.add(resolved)
            resolved = resolved.rpartition(".")[0]  # importing a.b.c runs a.b's __init__ first
    return found


def import_graph() -> dict[str, set[str]]:
    modules = module_names()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def circles(graph: dict[str, set[str]]) -> list[tuple[list[str], list[str]]]:
    """Each strongly connected component (Tarjan): one circle through it, as a path back to its start, and
    all its modules."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [(_path_through(sorted(component), graph), sorted(component)) for component in components]


def _path_through(component: list[str], graph: dict[str, set[str]]) -> list[str]:
    """A shortest circle from the component's first module back to it."""
    members = set(component)
    start = component[0]
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph[node] & members):
                if nxt == start:
                    return paths[node] + [start]
                if nxt not in paths:
                    paths[nxt] = paths[node] + [nxt]
                    following.append(nxt)
        frontier = following
    return component  # pragma: no cover - a component always has a circle


def layer_of(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_the_graph_sees_imports_inside_functions_and_type_checking_blocks(tmp_path):
    package = tmp_path / "fbcache"
    (package / "a").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "a" / "__init__.py").write_text("from . import b\n")
    (package / "a" / "b.py").write_text("def f():\n    from fbcache.c import thing\n")
    (package / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a.b import f\n")
    modules = {".".join(p.relative_to(tmp_path).with_suffix("").parts).removesuffix(".__init__"): p
               for p in package.rglob("*.py")}
    graph = {name: imports_of(name, path, modules) for name, path in modules.items()}
    assert graph["fbcache.a"] == {"fbcache.a.b"}
    assert graph["fbcache.a.b"] == {"fbcache.c"}
    assert graph["fbcache.c"] == {"fbcache.a", "fbcache.a.b"}
    assert circles(graph) == [(["fbcache.a", "fbcache.a.b", "fbcache.c", "fbcache.a"], ["fbcache.a", "fbcache.a.b", "fbcache.c"])]


def test_no_import_circle():
    found = circles(import_graph())
    assert found == [], "import circles:\n" + "\n".join(
        f"{' -> '.join(circle)} (all of: {', '.join(members)})" for circle, members in found)


def test_every_package_has_a_layer():
    assert sorted({layer_of(name) for name in module_names()} - set(LAYERS)) == []


def test_imports_go_down_the_layers_only():
    upward = [f"{module} ({LAYERS[layer_of(module)]}) imports {target} ({LAYERS[layer_of(target)]})"
              for module, targets in sorted(import_graph().items()) for target in sorted(targets)
              if LAYERS.get(layer_of(target), 99) > LAYERS.get(layer_of(module), -1)]
    assert upward == [], "upward imports:\n" + "\n".join(upward)


def test_the_registries_and_the_option_table_load_without_torch():
    """Listing every extension (for --help, `fbcache nightly` and `fbcache agree`) imports no heavy library."""
    code = ("import sys\nfrom fbcache import configure\nfrom fbcache.cli import build_parser\n"
            "configure.options()\nbuild_parser()\n"
            "heavy = sorted({'torch', 'diffusers', 'transformers', 'torchao'} & set(sys.modules))\n"
            "assert not heavy, heavy\n")
    env = {**os.environ, "PYTHONPATH": str(PACKAGE.parent)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PACKAGE.parent, env=env)
    assert done.returncode == 0, done.stderr
