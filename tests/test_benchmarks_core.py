"""benchmarks/core.py imports without side effects and parses its options (nothing is timed)."""

import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _python(code: str) -> subprocess.CompletedProcess:
  return subprocess.run(
    [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(BENCHMARKS)!r}); {code}"],
    capture_output=True,
    text=True,
    timeout=120,
  )


def test_import_is_clean_and_options_parse():
  # jax must stay unimported until main() has chosen the backend.
  got = _python(
    "import core; assert 'jax' not in sys.modules, 'jax imported'; "
    "a = core.parse_args(['--backend', 'cpu', '--quick']); print(a.backend, a.repeats, a.steps); "
    "b = core.parse_args([]); print(b.backend, b.repeats, b.steps)"
  )
  assert got.returncode == 0, got.stderr
  assert got.stdout.split("\n")[:2] == ["cpu 3 2", "auto 9 3"]


def test_a_missing_backend_is_an_error_not_a_cpu_run():
  got = _python("import core; core._select_backend('tpu')")
  assert got.returncode != 0
  assert "--backend tpu" in got.stderr
