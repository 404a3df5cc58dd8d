#!/usr/bin/env bash
# jaxprune's two entry points on a fresh machine; each sets itself up (.venv, install).
#   ./run.sh train [--config ...] [--workdir ...]   a real pruning run that prints results
#   ./run.sh test  [pytest args]                    lint, format check, tests, doctests
# train uses the accelerator JAX finds (GPU, TPU; else the CPU) and says which. The lock
# pins the CPU jaxlib; for a GPU or TPU add its extra: JAXPRUNE_EXTRAS=cuda12 ./run.sh train
# (or cuda13, tpu). Tests always run on the CPU (simulated devices).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
VENV="${JAXPRUNE_VENV:-.venv}"
EXTRAS="${JAXPRUNE_EXTRAS:-}"
case "$EXTRAS" in
  "" | cuda12 | cuda13 | tpu) ;;
  *) echo "JAXPRUNE_EXTRAS=$EXTRAS is not an extra of jaxprune; expected cuda12, cuda13 or tpu" >&2; exit 2 ;;
esac

setup() {
  python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
    echo "jaxprune needs Python >= 3.11 (python3 is $(python3 --version))" >&2; exit 1; }
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  local want stamp="$VENV/.jaxprune-installed"
  want="$( (cat pyproject.toml requirements.lock; echo "$EXTRAS") | sha256sum | cut -c1-16)"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
    # setuptools reports every editable install as a warning ("Editable installation.",
    # informational only); silence that one so set-up prints nothing unless something is wrong.
    PYTHONWARNINGS="ignore:Editable installation." "$VENV/bin/python" -m pip install -q \
      --disable-pip-version-check -c requirements.lock -e ".[test${EXTRAS:+,$EXTRAS}]"
    echo "$want" >"$stamp"
  fi
}

cmd="${1:-}"
shift || true
case "$cmd" in
  train)
    setup
    exec "$VENV/bin/jaxprune-train" --config configs/default.py --workdir runs/default "$@"
    ;;
  test)
    export JAX_PLATFORMS="${JAX_PLATFORMS:-cpu}"
    setup
    "$VENV/bin/ruff" check .
    "$VENV/bin/ruff" format --check .
    exec "$VENV/bin/python" -m pytest -n 2 --dist loadgroup "$@"
    ;;
  *)
    echo "usage: ./run.sh train [trainer flags] | ./run.sh test [pytest args]" >&2
    exit 2
    ;;
esac
