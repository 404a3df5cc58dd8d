"""The package's import graph: a DAG, with every jaxprune import at module level.

Every module of ``jaxprune`` is parsed with `ast` (nothing is imported), and each import
statement becomes an edge from the importing module to the jaxprune module it names:
``import jaxprune.a.b`` and ``from jaxprune.a import b`` (``b`` a submodule) name
``jaxprune.a.b``; ``from jaxprune.a import name`` (``name`` defined in ``a``) names ``a``;
relative imports are resolved against the importing module's package. Importing
``jaxprune.a.b`` also runs the ``__init__`` of package ``jaxprune.a``, so that is an edge too,
unless ``a`` is a package of the importing module itself (it is then already initialised or
initialising: ``jaxprune.masked`` importing ``jaxprune.masks`` does not depend on
``jaxprune/__init__.py``, but ``jaxprune.masked`` importing ``jaxprune.dynamic.reset`` runs
``jaxprune/dynamic/__init__.py`` and every module that imports).

An import inside a function dodges a circle instead of removing it, and hides the real
dependency from readers: only the optional heavy dependencies of `LAZY_THIRD_PARTY`, which
most users never load, may be imported there.
"""

import ast
import pathlib
import sys
from collections.abc import Iterator

import pytest

import jaxprune

PACKAGE = "jaxprune"
ROOT = pathlib.Path(jaxprune.__file__).parent

# Third-party modules that may be imported inside a function: heavy to import and needed by
# a few entry points only. Each needs a comment at the import saying so.
LAZY_THIRD_PARTY = {
  "tensorflow_datasets": "builds and describes TFDS datasets; reading prepared ones needs none",
  "matplotlib": "most of a second; figures of reports only",
  "orbax": "half a second; checkpoint writing outside the trainer (surgery's size check)",
  "sklearn": "a second; only the bundled digits dataset needs it",
}


def module_name(path: pathlib.Path, root: pathlib.Path = ROOT) -> str:
  """``root/a/b.py`` -> ``jaxprune.a.b``; ``root/a/__init__.py`` -> ``jaxprune.a``."""
  parts = [PACKAGE, *path.relative_to(root).with_suffix("").parts]
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules(root: pathlib.Path = ROOT) -> dict[str, pathlib.Path]:
  return {module_name(p, root): p for p in sorted(root.rglob("*.py"))}


class Import:
  """One import statement: the modules it may name, its line, and whether it is in a function."""

  def __init__(self, names: list[str], line: int, in_function: bool):
    self.names, self.line, self.in_function = names, line, in_function


def _imports(tree: ast.AST, in_function: bool = False) -> Iterator[tuple[ast.stmt, bool]]:
  """Yields every Import/ImportFrom node with whether a function body encloses it."""
  for node in ast.iter_child_nodes(tree):
    if isinstance(node, ast.Import | ast.ImportFrom):
      yield node, in_function
    inner = in_function or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    yield from _imports(node, inner)


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
  """The absolute module a ``from ... import`` names (relative levels resolved)."""
  if not node.level:
    return node.module
  package = module.split(".") if is_package else module.split(".")[:-1]
  base = package[: len(package) - (node.level - 1)]
  return ".".join([*base, *([node.module] if node.module else [])])


def imports_of(path: pathlib.Path, module: str) -> list[Import]:
  """The imports of one file, each with the candidate modules it names."""
  tree = ast.parse(path.read_text(), filename=str(path))
  is_package = path.name == "__init__.py"
  found = []
  for node, in_function in _imports(tree):
    if isinstance(node, ast.Import):
      names = [alias.name for alias in node.names]
    else:
      base = _absolute(node, module, is_package)
      names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
    found.append(Import(names, node.lineno, in_function))
  return found


def _targets(imp: Import, modules: dict[str, pathlib.Path]) -> list[str]:
  """The jaxprune modules an import runs: ``from a import b`` is ``a.b`` if that is a module."""
  if len(imp.names) == 1:  # `import x.y`
    return [n for n in imp.names if n in modules]
  base, *members = imp.names
  submodules = [m for m in members if m in modules]
  names_from_base = len(submodules) < len(members)
  return [*submodules, *([base] if base in modules and names_from_base else [])]


def _with_packages(target: str, importer: str, modules: dict[str, pathlib.Path]) -> list[str]:
  """``target`` and the packages above it whose ``__init__`` importing it runs."""
  parts = target.split(".")
  packages = [".".join(parts[:i]) for i in range(1, len(parts))]
  own = {".".join(importer.split(".")[:i]) for i in range(1, importer.count(".") + 2)}
  return [p for p in packages if p in modules and p not in own] + [target]


def import_graph(root: pathlib.Path = ROOT) -> dict[str, dict[str, list[int]]]:
  """``{module: {imported jaxprune module: [lines]}}`` over module- and function-level imports."""
  modules = all_modules(root)
  graph = {m: {} for m in modules}
  for module, path in modules.items():
    for imp in imports_of(path, module):
      for target in _targets(imp, modules):
        for runs in _with_packages(target, module, modules):
          lines = graph[module].setdefault(runs, [])
          if imp.line not in lines:
            lines.append(imp.line)
  return graph


def find_cycle(graph: dict[str, dict[str, list[int]]]) -> list[str] | None:
  """One import cycle as ``[a, b, ..., a]``, or None when the graph is a DAG."""
  state = {}  # 1: on the current path, 2: finished
  path = []

  def visit(node: str) -> list[str] | None:
    state[node] = 1
    path.append(node)
    for nxt in sorted(graph[node]):
      if state.get(nxt) == 1:
        return [*path[path.index(nxt) :], nxt]
      if nxt not in state and (cycle := visit(nxt)):
        return cycle
    path.pop()
    state[node] = 2
    return None

  for node in sorted(graph):
    if node not in state and (cycle := visit(node)):
      return cycle
  return None


def _reachable(graph: dict[str, dict[str, list[int]]], start: str) -> set[str]:
  seen, todo = set(), [start]
  while todo:
    for nxt in graph[todo.pop()]:
      if nxt not in seen:
        seen.add(nxt)
        todo.append(nxt)
  return seen


def circles(graph: dict[str, dict[str, list[int]]]) -> list[list[str]]:
  """The modules that import each other in circles, one sorted group per circle system.

  A group is a strongly connected component of the graph with more than one module (or a
  module that imports itself).
  """
  reach = {m: _reachable(graph, m) for m in graph}
  groups = {tuple(sorted({m} | {n for n in reach[m] if m in reach[n]})) for m in graph}
  return sorted(list(g) for g in groups if len(g) > 1 or g[0] in reach[g[0]])


def all_cycles(graph: dict[str, dict[str, list[int]]]) -> list[list[str]]:
  """One cycle in each circle system of the graph (none when the graph is a DAG)."""
  found = []
  for group in circles(graph):
    inside = {m: {n: e for n, e in graph[m].items() if n in group} for m in group}
    found.append(find_cycle(inside))
  return found


def _describe(cycle: list[str], graph: dict[str, dict[str, list[int]]]) -> str:
  steps = [f"{a} (line {graph[a][b][0]})" for a, b in zip(cycle, cycle[1:], strict=False)]
  return " -> ".join([*steps, cycle[-1]])


def function_level_imports(root: pathlib.Path = ROOT) -> list[tuple[str, int, str]]:
  """``(module, line, imported name)`` for every import inside a function body."""
  found = []
  for module, path in all_modules(root).items():
    for imp in imports_of(path, module):
      if imp.in_function:
        found.append((module, imp.line, (_targets(imp, all_modules(root)) or imp.names)[0]))
  return found


def _is_jaxprune(name: str) -> bool:
  return name == PACKAGE or name.startswith(PACKAGE + ".")


def test_import_graph_has_no_cycle():
  graph = import_graph()
  cycles = all_cycles(graph)
  assert not cycles, "jaxprune's modules import each other in circles, e.g.:\n" + "\n".join(
    f"{_describe(c, graph)}\n  (all in this circle: {', '.join(g)})"
    for c, g in zip(cycles, circles(graph), strict=True)
  )


def test_no_function_level_import_of_jaxprune():
  found = [f"{m}:{line} imports {name}" for m, line, name in function_level_imports()]
  inside = [f for f in found if _is_jaxprune(f.rsplit(" ", 1)[1])]
  assert not inside, (
    "Import jaxprune modules at the top of the module (a function-level import hides a "
    "dependency or dodges a cycle):\n" + "\n".join(inside)
  )


def test_function_level_third_party_imports_are_allowlisted():
  found = []
  for module, line, name in function_level_imports():
    top = name.split(".")[0]
    if _is_jaxprune(name) or top in sys.stdlib_module_names or top in LAZY_THIRD_PARTY:
      continue
    found.append(f"{module}:{line} imports {name}")
  assert not found, (
    f"Only the optional heavy dependencies {sorted(LAZY_THIRD_PARTY)} may be imported inside "
    "a function; import these at the top of the module:\n" + "\n".join(found)
  )


def test_lazy_imports_say_why():
  unexplained = []
  for module, path in all_modules().items():
    lines = path.read_text().splitlines()
    for imp in imports_of(path, module):
      if imp.in_function and imp.names[0].split(".")[0] in LAZY_THIRD_PARTY:
        here, above = lines[imp.line - 1], lines[imp.line - 2].strip()
        if "#" not in here and not above.startswith("#"):
          unexplained.append(f"{module}:{imp.line}")
  assert not unexplained, (
    "A lazy import of an optional dependency carries a comment saying why:\n"
    + "\n".join(unexplained)
  )


# The checker itself, on small made-up packages.


def _write(root: pathlib.Path, files: dict[str, str]) -> pathlib.Path:
  for name, text in files.items():
    (root / name).parent.mkdir(parents=True, exist_ok=True)
    (root / name).write_text(text)
  return root


def test_checker_finds_a_cycle_through_relative_and_from_imports(tmp_path):
  root = _write(
    tmp_path,
    {
      "__init__.py": "from jaxprune import a\n",
      "a.py": "from . import b\n",
      "b.py": "from jaxprune.sub import helper\n",
      "sub/__init__.py": "",
      "sub/helper.py": "def f():\n  from ..a import x\n",
    },
  )
  graph = import_graph(root)
  assert graph["jaxprune.b"] == {"jaxprune.sub": [1], "jaxprune.sub.helper": [1]}
  assert graph["jaxprune.sub.helper"] == {"jaxprune.a": [2]}  # jaxprune.sub is its own
  assert all_cycles(graph) == [["jaxprune.a", "jaxprune.b", "jaxprune.sub.helper", "jaxprune.a"]]
  assert function_level_imports(root) == [("jaxprune.sub.helper", 2, "jaxprune.a")]


def test_checker_accepts_a_dag(tmp_path):
  root = _write(
    tmp_path,
    {
      "__init__.py": "from jaxprune.a import f\nimport jaxprune.b\n",
      "a.py": "import os\nfrom jaxprune import b\nclass C:\n  from jaxprune.b import g\n",
      "b.py": "def g():\n  import matplotlib  # optional\n",
    },
  )
  graph = import_graph(root)
  assert graph["jaxprune"] == {"jaxprune.a": [1], "jaxprune.b": [2]}
  assert graph["jaxprune.a"] == {"jaxprune.b": [2, 4]}  # a class body runs at import
  assert all_cycles(graph) == []
  assert function_level_imports(root) == [("jaxprune.b", 2, "matplotlib")]


@pytest.mark.parametrize(
  "text, expected",
  [
    ("from jaxprune.sub import thing\n", "jaxprune.sub"),  # a name of the package __init__
    ("from .sub import helper\n", "jaxprune.sub.helper"),  # and jaxprune.sub, which runs first
    ("import jaxprune.sub.helper as h\n", "jaxprune.sub.helper"),
  ],
)
def test_checker_resolves_targets(tmp_path, text, expected):
  root = _write(tmp_path, {"__init__.py": "", "m.py": text, "sub/__init__.py": "thing = 1\n"})
  (root / "sub/helper.py").write_text("")
  assert set(import_graph(root)["jaxprune.m"]) == {"jaxprune.sub", expected}


def test_checker_sees_a_cycle_through_a_package_init(tmp_path):
  # m imports pkg.leaf, which runs pkg/__init__.py, which imports pkg.user, which imports m.
  root = _write(
    tmp_path,
    {
      "__init__.py": "",
      "m.py": "from jaxprune.pkg.leaf import f\n",
      "pkg/__init__.py": "from jaxprune.pkg import user\n",
      "pkg/leaf.py": "",
      "pkg/user.py": "import jaxprune.m\n",
    },
  )
  graph = import_graph(root)
  assert graph["jaxprune.m"] == {"jaxprune.pkg": [1], "jaxprune.pkg.leaf": [1]}
  assert circles(graph) == [["jaxprune.m", "jaxprune.pkg", "jaxprune.pkg.user"]]
  assert all_cycles(graph) == [["jaxprune.m", "jaxprune.pkg", "jaxprune.pkg.user", "jaxprune.m"]]
