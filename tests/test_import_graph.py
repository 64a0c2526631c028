"""The package's layers stay visible: the import graph of mmrec_motor (every import, also those inside
functions) has no cycle and no chain longer than MAX_LEVELS modules; motor/ imports nothing from the
runtime; no module is longer than MAX_LINES lines.

A module is a node (``mmrec_motor.models.graphs``; a package is its ``__init__``); ``import a.b`` and
``from a.b import c`` are an edge to ``a.b``, and also to ``a.b.c`` when that is a module. The level
of a module is 1 + the largest level of what it imports (a module that imports nothing of the package
is level 1), so the depth of the graph is the number of modules on its longest import chain.
Modules named by a string and imported with importlib (the backbones by ``get_model``, the commands of
``mmrec_motor.cli.COMMANDS``) are not edges; :func:`test_every_command_resolves` checks the commands.
"""
import ast
from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Set

from tests.conftest import REPO

PACKAGE = REPO / "mmrec_motor"
MAX_LEVELS = 8
MAX_LINES = 450


def module_name(path: Path, root: Path = REPO) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def import_graph(package: Path = PACKAGE) -> Dict[str, Set[str]]:
    """{module: the package's modules it imports}."""
    files = {module_name(p, package.parent): p for p in package.rglob("*.py")}
    graph: Dict[str, Set[str]] = {}
    for name, path in files.items():
        is_package = path.name == "__init__.py"
        here = name if is_package else name.rsplit(".", 1)[0]
        targets: Set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here.split(".")
                    base = base[:len(base) - (node.level - 1)]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                targets.add(source)
                targets |= {f"{source}.{alias.name}" for alias in node.names}
        graph[name] = {t for t in targets if t in files and t != name}
    return graph


def find_cycle(graph: Dict[str, Set[str]]) -> List[str]:
    """One import cycle as [a, b, ..., a], or [] when there is none."""
    state: Dict[str, int] = {}
    stack: List[str] = []

    def visit(node: str) -> List[str]:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return []


def longest_chain(graph: Dict[str, Set[str]]) -> List[str]:
    """The longest import chain (acyclic graph), importer first."""
    @lru_cache(maxsize=None)
    def chain(node: str) -> tuple:
        best = max((chain(n) for n in graph[node]), key=len, default=())
        return (node,) + best

    return list(max((chain(n) for n in sorted(graph)), key=len))


def test_no_import_cycle():
    assert find_cycle(import_graph()) == []


def test_import_depth():
    chain = longest_chain(import_graph())
    assert len(chain) <= MAX_LEVELS, " -> ".join(chain)


def test_motor_imports_nothing_from_the_runtime():
    graph = import_graph()
    outside = {m: sorted(t for t in targets if not t.startswith("mmrec_motor.motor"))
               for m, targets in graph.items() if m.startswith("mmrec_motor.motor")}
    assert {m: t for m, t in outside.items() if t} == {}


def test_no_module_is_too_long():
    lengths = {module_name(p): len(p.read_text(encoding="utf-8").splitlines()) for p in PACKAGE.rglob("*.py")}
    assert {m: n for m, n in lengths.items() if n > MAX_LINES} == {}


def test_every_command_resolves():
    """The CLI names the commands of other modules ("module:function"): each must import."""
    from mmrec_motor import cli

    assert all(callable(cli.command(name)) for name in cli.COMMANDS)


def test_the_graph_reader_on_a_small_package(tmp_path):
    root = tmp_path / "pkg"
    (root / "sub").mkdir(parents=True)
    (root / "__init__.py").write_text("from .a import x\n")
    (root / "a.py").write_text("def f():\n    from pkg.sub import b\nx = 1\n")
    (root / "sub" / "__init__.py").write_text("")
    (root / "sub" / "b.py").write_text("from .. import a\nimport os\n")
    graph = import_graph(root)
    assert graph == {"pkg": {"pkg.a"}, "pkg.a": {"pkg.sub", "pkg.sub.b"}, "pkg.sub": set(),
                     "pkg.sub.b": {"pkg", "pkg.a"}}
    cycle = find_cycle(graph)
    assert cycle[0] == cycle[-1] and "pkg.sub.b" in cycle
    del graph["pkg.sub.b"]
    graph["pkg.a"] = {"pkg.sub"}
    assert find_cycle(graph) == []
    assert longest_chain({"a": {"b"}, "b": {"c"}, "c": set(), "d": {"c"}}) == ["a", "b", "c"]
