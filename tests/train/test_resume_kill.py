"""A run killed with SIGKILL (mid-training and mid-save) resumes to a bit-identical result.

All runs go through the command line (``python -m jaxprune.train --config ...
--config.field=value``), so this also checks that overrides reach the run.
"""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from trainer_helpers import run_train, small, train_command

import jaxprune
from jaxprune.train.config import load_config
from jaxprune.train.experiment import load_state
from jaxprune.train.metrics_log import read_metrics

TMP = ".orbax-checkpoint-tmp"
OVERRIDES = small(
  train__num_steps=400,
  checkpoint__every_steps=5,
  train__log_every_steps=25,
  pruning__sparsity=0.75,
)


def _committed(ckpts: Path) -> list[int]:
  names = os.listdir(ckpts) if ckpts.is_dir() else []
  return sorted(int(n) for n in names if n.isdigit())


def _latest(ckpts: Path) -> int:
  return (_committed(ckpts) or [0])[-1]


def _uncommitted(ckpts: Path) -> list[str]:
  return [n for n in os.listdir(ckpts) if TMP in n] if ckpts.is_dir() else []


def _start(workdir: Path, env: dict) -> subprocess.Popen:
  return subprocess.Popen(
    train_command(workdir, OVERRIDES),
    env=env,
    stdout=subprocess.DEVNULL,
    stderr=subprocess.PIPE,
    text=True,
    start_new_session=True,
  )


def _kill_when(proc: subprocess.Popen, ready, timeout: float = 120.0) -> None:
  """SIGKILLs ``proc`` as soon as ``ready()`` holds (polling every millisecond)."""
  deadline = time.monotonic() + timeout
  while not ready():
    if proc.poll() is not None:
      raise AssertionError(f"the run ended before it could be killed:\n{proc.stderr.read()}")
    if time.monotonic() > deadline:
      proc.kill()
      raise AssertionError("timed out waiting for the run to reach the kill point")
    time.sleep(0.001)
  os.killpg(proc.pid, signal.SIGKILL)
  proc.wait()
  assert proc.returncode == -signal.SIGKILL


def _same(a, b) -> bool:
  la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
  same_tree = jax.tree.structure(a) == jax.tree.structure(b)
  return same_tree and all(np.array_equal(x, y) for x, y in zip(la, lb, strict=True))


@pytest.mark.slow(seconds=39)
def test_sigkill_during_training_and_during_a_save_then_resume_is_bit_identical(tmp_path, env):
  reference, killed = tmp_path / "reference", tmp_path / "killed"
  ref = subprocess.Popen(
    train_command(reference, OVERRIDES),
    env=env,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
  )
  ckpts = killed / "checkpoints"

  # 1. Kill while a checkpoint is being written (its temporary folder exists), until one
  #    kill demonstrably lands mid-save (the temporary folder is left behind).
  hit_a_save = False
  for _ in range(4):
    before = _latest(ckpts)
    proc = _start(killed, env)
    _kill_when(proc, lambda b=before: _latest(ckpts) > b and _uncommitted(ckpts))
    assert not (killed / "summary.json").exists()
    if _uncommitted(ckpts):
      hit_a_save = True
      break
  assert hit_a_save, "no kill landed during a save"
  last_good = _latest(ckpts)

  # 2. Restart with the same command: it resumes from the last committed step; kill it
  #    again mid-training, a few checkpoints later.
  proc = _start(killed, env)
  _kill_when(proc, lambda: _latest(ckpts) >= last_good + 50)
  resumed_at = _latest(ckpts)
  assert resumed_at < 400 and not (killed / "summary.json").exists()

  # 3. Restart once more and let it finish.
  run_train(killed, OVERRIDES, env)
  ref_out, ref_err = ref.communicate()
  assert ref.returncode == 0, ref_err[-4000:]
  assert not _uncommitted(ckpts)

  # The reference run shows the command-line overrides took effect.
  config = json.loads((reference / "config.json").read_text())
  assert config["pruning"]["sparsity"] == 0.75 and config["train"]["num_steps"] == 400
  reference_summary = json.loads((reference / "summary.json").read_text())
  assert reference_summary["sparsity"] == pytest.approx(0.75)
  assert "test error" in ref_out and "theoretical speedup" in ref_out
  assert "orbax" not in ref_err.lower()  # checkpoint logging stays quiet

  summary = json.loads((killed / "summary.json").read_text())
  assert summary["steps"] == 400 and summary["resumed_from_step"] >= resumed_at
  config = load_config("default", OVERRIDES)
  a, b = load_state(config, reference), load_state(config, killed)
  assert int(a.step) == int(b.step) == 400
  assert _same(a.params, b.params)
  assert _same(jaxprune.masks_of(a.opt_state), jaxprune.masks_of(b.opt_state))
  assert _same(a.opt_state, b.opt_state)
  assert summary["test_loss"] == reference_summary["test_loss"]
  steps = [r["step"] for r in read_metrics(killed / "metrics.jsonl")]
  assert steps == list(range(25, 401, 25))
