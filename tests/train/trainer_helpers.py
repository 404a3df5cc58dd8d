"""Helpers of the trainer tests: a seconds-long config on the bundled digits data."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# LeNet-300-100 on 8x8 digits, batch 64 (20 steps per epoch of the 1,293 examples the
# validation split leaves), pruning in steps, no plots.
SMALL = {
  "data.name": "digits",
  "train.batch_size": 64,
  "train.num_steps": 60,
  "train.eval_every_epochs": 1000.0,
  "train.log_every_steps": 10,
  "optimizer.lr_schedule": "constant",
  "pruning.schedule.unit": "steps",
  "pruning.schedule.begin": 4.0,
  "pruning.schedule.end": 40.0,
  "pruning.schedule.every": 4.0,
  "checkpoint.every_steps": 20,
  "checkpoint.keep": 5,
  "report.plots": False,
  "report.progress": False,
}


# The run the `reference` fixture trains once per test worker: test metrics every epoch,
# plots and the progress bar on.
REFERENCE = {
  **SMALL,
  "train.eval_every_epochs": 1.0,
  "report.plots": True,
  "report.progress": True,
}


def small(**changes) -> dict:
  """`SMALL` with dotted overrides given as keyword arguments (dots as double underscores)."""
  return {**SMALL, **{k.replace("__", "."): v for k, v in changes.items()}}


def cli_flags(overrides: dict) -> list[str]:
  """``{"train.num_steps": 5}`` -> ``["--config.train.num_steps=5"]``."""
  return [f"--config.{k}={v}" for k, v in overrides.items()]


def subprocess_env(cache_dir: Path) -> dict:
  """Environment for trainer subprocesses: CPU, and a shared persistent compilation cache."""
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env["JAX_COMPILATION_CACHE_DIR"] = str(cache_dir)
  env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0.2"
  env.pop("XLA_FLAGS", None)
  return env


def train_command(workdir: Path, overrides: dict, config: str = "configs/default.py") -> list:
  """``python -m jaxprune.train --config CONFIG --workdir DIR --config.a.b=v ...``."""
  return [
    sys.executable,
    "-m",
    "jaxprune.train",
    "--config",
    str(REPO / config),
    "--workdir",
    str(workdir),
    *cli_flags(overrides),
  ]


def run_train(workdir: Path, overrides: dict, env: dict, **kwargs) -> subprocess.CompletedProcess:
  """Runs the trainer to completion in a subprocess; raises with its output on failure."""
  result = subprocess.run(
    train_command(workdir, overrides), env=env, capture_output=True, text=True, **kwargs
  )
  if result.returncode != 0:
    raise AssertionError(f"trainer failed ({result.returncode}):\n{result.stderr[-4000:]}")
  return result
