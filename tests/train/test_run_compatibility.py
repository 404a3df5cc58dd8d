"""A run started before the trainer resolved its config into settings resumes after it.

``data/run_before_settings`` was written by the trainer as it was before `settings` (the
config read by each stage): the default config on ``digits`` for 40 steps with a
checkpoint every 20 (``metrics.jsonl``, ``summary.json``, ``config.json`` and the
checkpoint of step 20; the one of step 40 is left out). Resuming it from step 20 with
today's trainer must restore that checkpoint and reproduce the old run's last 20 steps.
"""

import json
import shutil
from pathlib import Path

import pytest

from jaxprune.train.config import load_config
from jaxprune.train.loop import train_and_evaluate
from jaxprune.train.metrics_log import read_metrics

OLD_RUN = Path(__file__).parent / "data" / "run_before_settings"
OVERRIDES = {
  "data.name": "digits",
  "data.fallback": "",
  "train.num_steps": 40,
  "checkpoint.every_steps": 20,
  "report.plots": False,
  "report.progress": False,
  "report.tensorboard": False,
}
# Timing fields differ from run to run; the old run was not resumed.
UNTIMED = {
  "steps_per_second",
  "input_wait_fraction",
  "cpu_seconds_per_step",
  "train_time_s",
  "eval_time_s",
  "wall_time_s",
  "resumed_from_step",
}


def _close(new, old, where):
  if isinstance(old, dict):
    assert new.keys() == old.keys(), where
    for k in old:
      _close(new[k], old[k], f"{where}.{k}")
  elif isinstance(old, float):
    # Bit-identical on the machine that wrote the files; a little slack for other CPUs.
    assert new == pytest.approx(old, rel=1e-5, abs=1e-7), where
  else:
    assert new == old, where


def test_a_checkpoint_written_before_settings_resumes_and_reproduces_the_old_run(tmp_path):
  workdir = tmp_path / "run"
  shutil.copytree(OLD_RUN / "checkpoints", workdir / "checkpoints")
  config = load_config("default", OVERRIDES)
  assert json.loads((OLD_RUN / "config.json").read_text()) == json.loads(
    config.to_json_best_effort()
  )
  summary = train_and_evaluate(config, workdir, verbose=False)
  assert summary["resumed_from_step"] == 20
  old_summary = json.loads((OLD_RUN / "summary.json").read_text())
  _close(
    {k: v for k, v in summary.items() if k not in UNTIMED},
    {k: v for k, v in old_summary.items() if k not in UNTIMED},
    "summary",
  )
  old = [r for r in read_metrics(OLD_RUN / "metrics.jsonl") if r["step"] > 20]
  new = [r for r in read_metrics(workdir / "metrics.jsonl") if r["step"] > 20]
  assert [r["step"] for r in new] == [r["step"] for r in old] == [40]
  # Training means cover the logging window since the run (re)started, so they differ.
  window = {"train_loss", "train_accuracy"}
  for a, b in zip(new, old, strict=True):
    assert a.keys() == b.keys()
    _close({k: a[k] for k in a.keys() - window}, {k: b[k] for k in b.keys() - window}, "metrics")
