"""No import cycles in the installed `kdsnn`, counting the imports inside functions too.

A function-level import hides a cycle from Python (it runs after both modules are loaded)
but not from a reader: the two modules still need each other. Every module of the installed
package is parsed with `ast` (nothing is executed), each `kdsnn.*` import is resolved to
the module it names, and the strongly connected components of that graph must be single
modules. Sub-packages (`kdsnn.compiler`, `kdsnn.backends`) must not need each other in a
circle either.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import pkgutil
from pathlib import Path

ROOT = "kdsnn"


def _spec_file(name: str) -> tuple[Path, bool] | None:
    """(source file, is a package) of module `name`. Only `kdsnn` and its direct sub-packages
    are looked up by the import system (setuptools' package-dir maps `kdsnn.compiler` to the
    repository's compiler/ in an editable install); below them the folders are read, so no
    module is executed but `kdsnn/__init__.py`."""
    head, _, tail = name.rpartition(".")
    if head.count(".") == 0 and head in ("", ROOT):
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            return None
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            return None
        return Path(spec.origin), spec.submodule_search_locations is not None
    parent = _spec_file(head)
    if parent is None or not parent[1]:
        return None
    folder = parent[0].parent
    if (folder / tail / "__init__.py").is_file():
        return folder / tail / "__init__.py", True
    if (folder / f"{tail}.py").is_file():
        return folder / f"{tail}.py", False
    return None


def _imports(tree: ast.Module, name: str, is_pkg: bool, exists) -> set[str]:
    """Modules of the package that `name` imports, anywhere in its body."""
    package = name if is_pkg else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if not _ours(mod):
                continue
            for a in node.names:  # `from pkg import sub` names a module when sub is one
                sub = f"{mod}.{a.name}"
                out.add(sub if exists(sub) else mod)
    return {m for m in out if _ours(m)}


def _ours(module: str) -> bool:
    return module == ROOT or module.startswith(ROOT + ".")


@functools.cache
def import_graph() -> dict[str, set[str]]:
    """{module: the package's modules it imports} over every module reachable from `kdsnn`
    (sub-packages listed in their folders, and every module some module imports)."""
    files: dict[str, tuple[Path, bool] | None] = {}

    def find(name: str) -> tuple[Path, bool] | None:
        if name not in files:
            files[name] = _spec_file(name)
        return files[name]

    def is_module(name: str) -> bool:
        parent = find(name.rpartition(".")[0])  # only a package has sub-modules: a module is
        return bool(parent and parent[1]) and find(name) is not None  # never imported here

    graph: dict[str, set[str]] = {}
    todo = [ROOT]
    while todo:
        name = todo.pop()
        if name in graph or find(name) is None:
            continue
        path, is_pkg = find(name)  # type: ignore[misc]
        deps = _imports(ast.parse(path.read_text(), str(path)), name, is_pkg, is_module)
        deps = {d for d in deps if find(d) is not None}
        graph[name] = deps - {name}
        todo.extend(deps)
        todo.append(name.rpartition(".")[0])  # its package, whose folder lists its siblings
        if is_pkg:
            todo.extend(f"{name}.{m.name}" for m in pkgutil.iter_modules([str(path.parent)]))
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _package_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 and parts[1] in ("compiler", "backends") else ROOT


def test_the_graph_covers_the_package():
    g = import_graph()
    for m in ("kdsnn.cli", "kdsnn.deploy", "kdsnn.train", "kdsnn.compiler.nir.read",
              "kdsnn.compiler.profile.build", "kdsnn.backends.lava.build",
              "kdsnn.teachers.onnx_teacher"):
        assert m in g, m
    assert len(g) > 60


def test_no_import_cycles_between_modules():
    found = cycles(import_graph())
    assert not found, "import cycles (function-level imports included): " + "; ".join(
        " <-> ".join(c) for c in found)


def test_no_import_cycles_between_compiler_and_backends():
    pk: dict[str, set[str]] = {}
    for m, deps in import_graph().items():
        a = _package_of(m)
        if a == ROOT:
            continue
        pk.setdefault(a, set()).update(b for b in map(_package_of, deps) if b not in (a, ROOT))
    assert not cycles(pk), pk


def test_the_checker_finds_a_function_level_cycle(tmp_path):
    a = ast.parse("def f():\n    from kdsnn.b import x\n")
    b = ast.parse("import kdsnn.a\n")
    exists = {"kdsnn.a", "kdsnn.b"}.__contains__
    g = {"kdsnn.a": _imports(a, "kdsnn.a", False, exists), "kdsnn.b": _imports(b, "kdsnn.b", False, exists)}
    assert cycles(g) == [["kdsnn.a", "kdsnn.b"]]
    rel = _imports(ast.parse("from . import b\nfrom .b import y\n"), "kdsnn.a", False, exists)
    assert rel == {"kdsnn.b"}
