#!/usr/bin/env bash
# The accelerator numbers of benchmarks/RESULTS.md in one go, on a GPU or TPU machine with
# jaxprune installed (e.g. JAXPRUNE_EXTRAS=cuda12 ./run.sh train once, then
# PATH=.venv/bin:$PATH). Each command's output goes to $LOGS/<name>.log (default
# /tmp/jaxprune-accelerator) and its last lines to the screen.
#   bash benchmarks/accelerator.sh
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/.."
LOGS="${LOGS:-/tmp/jaxprune-accelerator}"
mkdir -p "$LOGS"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
start=$(date +%s)
step() {  # name time-limit command...
  local name=$1 limit=$2
  shift 2
  echo "=== $name (at $(($(date +%s) - start)) s)"
  timeout "$limit" "$@" >"$LOGS/$name.log" 2>&1
  echo "exit status $?" >>"$LOGS/$name.log"
  grep -v '^\s*$' "$LOGS/$name.log" | tail -n 12
}
step train 600 python -m jaxprune.train --config configs/default.py --workdir "$LOGS/run_default"
step dynamic_speed 300 python benchmarks/dynamic_speed.py --repeats 30
step core 600 python benchmarks/core.py --repeats 15 --steps 10
step resnet20 600 python benchmarks/trainer_throughput.py --case=resnet20 --steps=300 --repeats=3
step input_wait 300 python benchmarks/input_pipeline.py wait --case=mnist --workers=2 --prefetch=4 --steps=2000
step input_wait_chunk1 300 python benchmarks/input_pipeline.py wait --case=mnist --workers=2 --prefetch=4 --steps=2000 --chunk=1
echo "done in $(($(date +%s) - start)) s; logs in $LOGS"
