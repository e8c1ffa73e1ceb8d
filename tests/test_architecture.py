"""The package's shape, read from the source with ast (nothing is imported):

- no import cycle between mlcli modules, counting imports made inside functions too;
- no TensorFlow or keras imported at module level on the start-up path, the modules `import mlcli.cli`
  runs (every command's --help, validate, config errors stay fast and TensorFlow-free).
"""

from __future__ import annotations

import ast
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from conftest import REPO

HEAVY = ("tensorflow", "keras")


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # a module of the package, or an outside top-level name such as "tensorflow"
    line: int
    module_level: bool  # runs when the module is imported (not inside a function or `if TYPE_CHECKING:`)


def package_modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py under the package directory `root`."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


def _known(name: str, modules: dict[str, Path]) -> str:
    """The longest prefix of a dotted name that is a module of the package, else its top-level name."""
    probe = name
    while probe and probe not in modules:
        probe = probe.rpartition(".")[0]
    return probe or name.partition(".")[0]


def _targets(module: str, node: ast.Import | ast.ImportFrom, modules: dict[str, Path]) -> list[str]:
    if isinstance(node, ast.Import):
        return [_known(alias.name, modules) for alias in node.names]
    base = node.module or ""
    if node.level:  # from . import x, from ..pkg import y: relative to the importing module's package
        package = module.split(".")
        if modules[module].name != "__init__.py":
            package = package[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join(package + ([node.module] if node.module else []))
    # `from pkg import name`: name is a submodule when the package has one by that name
    return [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else _known(base, modules)
            for alias in node.names]


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(module: str, modules: dict[str, Path]) -> list[Import]:
    found: list[Import] = []

    def visit(node: ast.AST, module_level: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.extend(Import(module, target, child.lineno, module_level)
                             for target in _targets(module, child, modules))
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                visit(child, False)
            elif isinstance(child, ast.If) and _is_type_checking(child):
                visit(child, False)
            else:
                visit(child, module_level)

    visit(ast.parse(modules[module].read_text(), filename=str(modules[module])), True)
    return found


def import_graph(root: Path) -> tuple[dict[str, Path], list[Import]]:
    modules = package_modules(root)
    return modules, [imp for name in modules for imp in imports_of(name, modules)]


def _ancestors(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def import_cycles(modules: dict[str, Path], imports: list[Import]) -> list[str]:
    """One message per cycle: the modules in order, and the line of each import that closes it.

    A module importing its own package (`from mlcli.cli import x` inside mlcli.cli.y) is not counted:
    Python runs the package first, so that direction is always safe.
    """
    edges: dict[str, dict[str, Import]] = {name: {} for name in modules}
    for imp in imports:
        if imp.target in modules and imp.target != imp.source and imp.target not in _ancestors(imp.source):
            edges[imp.source].setdefault(imp.target, imp)
    messages = []
    for component in _strongly_connected(edges):
        if len(component) < 2:
            continue
        start = min(component)
        path = _path_back(start, edges, component)
        steps = []
        for source, target in zip(path, path[1:]):
            imp = edges[source][target]
            where = "" if imp.module_level else " (inside a function)"
            steps.append(f"  {source}:{imp.line} imports {target}{where}")
        messages.append("import cycle: " + " -> ".join(path) + "\n" + "\n".join(steps))
    return messages


def _strongly_connected(edges: dict[str, dict[str, Import]]) -> list[set[str]]:
    """Tarjan's algorithm, iterative (the package is deep enough to matter for recursion)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(edges[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(edges[successor])))
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            else:
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


def _path_back(start: str, edges: dict[str, dict[str, Import]], component: set[str]) -> list[str]:
    """The shortest path start -> ... -> start inside one strongly connected component."""
    came_from: dict[str, str | None] = {start: None}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for successor in edges[node]:
            if successor == start:
                return [*_chain(node, came_from), start]
            if successor in component and successor not in came_from:
                came_from[successor] = node
                queue.append(successor)
    raise AssertionError(f"{start} is in a cycle but no path leads back to it")


def _chain(module: str, came_from: dict[str, str | None]) -> list[str]:
    """The modules a breadth-first walk went through to reach `module`, first to last."""
    chain = [module]
    while came_from[chain[-1]] is not None:
        chain.append(came_from[chain[-1]])
    return chain[::-1]


def heavy_on_start_up(start: str, modules: dict[str, Path], imports: list[Import]) -> list[str]:
    """Every module-level import of TensorFlow or keras that `import start` runs, with the chain to it.

    Importing a module runs its packages' __init__ first, so those are on the path too.
    """
    module_level: dict[str, list[Import]] = {name: [] for name in modules}
    for imp in imports:
        if imp.module_level:
            module_level[imp.source].append(imp)
    came_from: dict[str, str | None] = {}
    queue: deque[str] = deque()
    for first in [*_ancestors(start), start]:
        came_from[first] = None
        queue.append(first)
    found = []
    while queue:
        module = queue.popleft()
        for imp in module_level[module]:
            if imp.target.partition(".")[0] in HEAVY:
                found.append(f"{' -> '.join(_chain(module, came_from))}: {module}:{imp.line} "
                             f"imports {imp.target} at module level")
            if imp.target not in modules:
                continue
            for reached in [*_ancestors(imp.target), imp.target]:
                if reached in modules and reached not in came_from:
                    came_from[reached] = module
                    queue.append(reached)
    return found


def test_no_import_cycle_between_mlcli_modules():
    modules, imports = import_graph(REPO / "mlcli")
    cycles = import_cycles(modules, imports)
    assert not cycles, "\n\n".join(cycles)


def test_no_tensorflow_or_keras_on_the_start_up_path():
    modules, imports = import_graph(REPO / "mlcli")
    found = heavy_on_start_up("mlcli.cli", modules, imports)
    assert not found, "TensorFlow or keras on the start-up path of `import mlcli.cli`:\n" + "\n".join(found)


def test_the_reader_resolves_the_ways_mlcli_imports():
    # Guards the two checks above against passing because the reader sees nothing.
    modules, imports = import_graph(REPO / "mlcli")
    seen = {(imp.source, imp.target, imp.module_level) for imp in imports}
    assert ("mlcli.cli", "mlcli.cli.train", True) in seen  # from mlcli.cli import train
    assert ("mlcli.cli.app", "mlcli.console", True) in seen  # from mlcli import console
    assert ("mlcli.cli.validate", "mlcli.config", False) in seen  # inside the command
    assert ("mlcli.runtime", "tensorflow", False) in seen  # import tensorflow as tf, inside a function


def test_the_checks_name_a_planted_cycle_and_a_planted_tensorflow(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "cli.py").write_text("from . import a\n")
    (package / "a.py").write_text("from .sub import b\n")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "b.py").write_text("import tensorflow as tf\n\ndef f():\n    from pkg import a\n")
    modules, imports = import_graph(package)
    cycles = import_cycles(modules, imports)
    assert len(cycles) == 1 and cycles[0].startswith("import cycle: pkg.a -> pkg.sub.b -> pkg.a"), cycles
    assert "pkg.sub.b:4 imports pkg.a (inside a function)" in cycles[0]
    assert heavy_on_start_up("pkg.cli", modules, imports) == [
        "pkg.cli -> pkg.a -> pkg.sub.b: pkg.sub.b:1 imports tensorflow at module level"
    ]


def _unexplained_function_imports(modules: dict[str, Path]) -> list[str]:
    """Imports inside functions with no reason written beside them (on the line, or in a comment on
    the line above the group of imports it starts)."""
    found = []
    for name, path in modules.items():
        lines = path.read_text().split("\n")
        for function in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(function):
                if not isinstance(node, (ast.Import, ast.ImportFrom)):
                    continue
                above = node.lineno - 2
                while above >= 0 and lines[above].lstrip().startswith(("import ", "from ")) and "#" not in lines[above]:
                    above -= 1
                if "#" not in lines[node.lineno - 1] and not (above >= 0 and lines[above].lstrip().startswith("#")):
                    found.append(f"{name}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    return found


def test_every_import_inside_a_function_says_why():
    # Imports inside functions are for deferring TensorFlow, pyarrow and other heavy modules (or an
    # optional package); anything else belongs at the top of the module, where a reader looks for it.
    found = _unexplained_function_imports(package_modules(REPO / "mlcli"))
    assert not found, "imports inside functions without a reason comment:\n" + "\n".join(sorted(set(found)))


def test_an_unexplained_function_import_is_found(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text(
        "def f():\n    import json\n\n\ndef g():\n    # deferred: imports TensorFlow\n"
        "    import tensorflow\n    import keras\n\n\ndef h():\n    import numpy  # deferred: a reason\n"
    )
    assert _unexplained_function_imports(package_modules(package)) == ["pkg.a:2: import json"]
