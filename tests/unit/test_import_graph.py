"""The package's modules form layers: no import loop, counting the imports made inside
functions too (a lazy import still ties two modules together for a reader)."""
from __future__ import annotations

import ast
import os

PKG_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGES = ("libcontainer", "runner")


def _module_name(path: str) -> str:
    rel = os.path.relpath(path, PKG_ROOT)[:-3].replace(os.sep, ".")
    return rel[:-len(".__init__")] if rel.endswith(".__init__") else rel


def _resolve(module: str, is_pkg: bool, level: int, target: str | None) -> str:
    parts = module.split(".")
    base = parts if is_pkg else parts[:-1]
    if level > 1:
        base = base[:-(level - 1)]
    return ".".join(base + ([target] if target else []))


def import_graph() -> dict:
    files = {}
    for pkg in PACKAGES:
        for d, _, names in os.walk(os.path.join(PKG_ROOT, pkg)):
            for n in names:
                if n.endswith(".py"):
                    path = os.path.join(d, n)
                    files[_module_name(path)] = path
    graph = {}
    for mod, path in files.items():
        is_pkg = path.endswith("__init__.py")
        edges = set()
        with open(path) as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                base = (_resolve(mod, is_pkg, node.level, node.module) if node.level
                        else node.module or "")
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    edges.add(sub if sub in files else base)
            elif isinstance(node, ast.Import):
                edges.update(a.name for a in node.names)
        graph[mod] = {e for e in edges if e in files and e != mod}
    return graph


def find_cycle(graph: dict):
    """One cycle as a list of modules, or None."""
    state: dict = {}
    stack: list = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            # a package's __init__ importing its own submodules is how packages are made
            if n.startswith(m + "."):
                continue
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state:
                found = visit(n)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_no_import_loop():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import loop: " + " -> ".join(cycle)


def test_the_checker_sees_a_loop():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_plan_data_is_at_the_bottom():
    assert import_graph()["libcontainer.ops"] == set()
