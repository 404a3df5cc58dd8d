"""The doctests of the scripts in benchmarks/ run with the suite's doctest settings.

benchmarks/ is no package and its scripts import heavy things (or choose a backend) when
run, so it is not in pytest's doctest collection: each script with a ``>>>`` example is
imported here by itself (``__name__`` is not ``"__main__"``, so nothing is benchmarked)
and its examples run with the option flags of ``pyproject.toml``.
"""

import doctest
import importlib.util
import io
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
WITH_EXAMPLES = sorted(p.name for p in BENCHMARKS.glob("*.py") if ">>>" in p.read_text())
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE  # as [tool.pytest.ini_options]


def test_the_scripts_with_examples_are_found():
  assert "reproduce.py" in WITH_EXAMPLES


@pytest.mark.parametrize("script", WITH_EXAMPLES)
def test_doctests(script, monkeypatch):
  monkeypatch.syspath_prepend(str(BENCHMARKS))  # the scripts import their siblings
  name = script.removesuffix(".py")
  module = sys.modules.get(name)
  if module is None or Path(module.__file__).resolve() != BENCHMARKS / script:
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / script)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
  tests = [t for t in doctest.DocTestFinder().find(module, name) if t.examples]
  assert tests, f"{script} has '>>>' but no doctest was found"
  out = io.StringIO()
  runner = doctest.DocTestRunner(optionflags=FLAGS)
  for test in tests:
    runner.run(test, out=out.write)
  result = runner.summarize(verbose=False)
  assert result.failed == 0, out.getvalue()
  assert result.attempted == sum(len(t.examples) for t in tests)
