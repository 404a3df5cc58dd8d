"""A config is resolved once into typed settings; bad settings fail there, before any work."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from trainer_helpers import small

from jaxprune.train import experiment, input_pipeline, settings, tasks
from jaxprune.train.config import load_config
from jaxprune.train.loop import train_and_evaluate
from jaxprune.train.metrics_log import read_metrics

CONFIGS = sorted(p.stem for p in (Path(__file__).resolve().parents[2] / "configs").glob("*.py"))


@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_resolves_to_typed_settings(name):
  config = load_config(name)
  s = settings.resolve(config)
  assert s.pruning.sparsity == float(config.pruning.sparsity)
  assert type(s.train.batch_size) is int and type(s.optimizer.learning_rate) is float
  assert s.as_json()["model"]["name"] == config.model.name
  assert (s.lottery is None) == ("lottery" not in config)


def test_a_field_no_stage_reads_is_refused_with_the_valid_ones():
  config = load_config("default")
  with config.unlocked():
    config.pruning.sparsty = 0.5  # misspelt: the run would prune at the default 0.9
  with pytest.raises(ValueError, match=r"config.pruning.sparsty: no such setting.*'sparsity'"):
    experiment.build(config, verbose=False)
  with config.unlocked():
    del config.pruning["sparsty"]
    config.evaluation = {"every": 1}
  with pytest.raises(ValueError, match=r"config.evaluation: no such setting"):
    settings.resolve(config)


@pytest.mark.parametrize(
  "changes, match",
  [
    ({"optimizer.name": "adagrad"}, "Unknown config.optimizer.name 'adagrad'"),
    ({"optimizer.lr_schedule": "exp"}, "Unknown config.optimizer.lr_schedule 'exp'"),
    ({"pruning.schedule.unit": "hours"}, "schedule.unit must be 'epochs' or 'steps'"),
    ({"pruning.structure": "filters"}, "Unknown config.pruning.structure"),
    ({"train.penalty": "l2"}, "config.train.penalty='l2' is not a known penalty"),
    ({"pruning.recalibrate_bn": -2}, "expected -1 .automatic., 0 .off."),
    ({"pruning.criterion": "log_alpha"}, "learns the sparsity"),
  ],
)
def test_bad_settings_fail_before_the_data_is_touched(monkeypatch, changes, match):
  def touched(*args, **kwargs):
    raise AssertionError("the dataset was resolved before the settings were checked")

  monkeypatch.setattr(input_pipeline, "resolve", touched)
  with pytest.raises(ValueError, match=match):
    experiment.build(load_config("default", changes), verbose=False)


def test_derived_settings_are_checked_again_and_keep_the_rest():
  base = settings.resolve(load_config("default"))
  derived = settings.derive(base, {"pruning.sparsity": 0.5, "train.num_steps": 7})
  assert (derived.pruning.sparsity, derived.train.num_steps) == (0.5, 7)
  assert derived.optimizer == base.optimizer and derived.data == base.data
  assert derived.as_json()["pruning"]["sparsity"] == 0.5  # config.json says what ran
  with pytest.raises(ValueError, match="learns the sparsity"):
    settings.derive(base, {"pruning.criterion": "log_alpha"})


def test_the_lottery_block_is_read_with_its_controls():
  lot = settings.resolve(load_config("lottery", {"lottery.random_rounds": "7, 12"})).lottery
  assert lot.controls == ("reinit", "random") and lot.rounds == 15
  assert lot.control_rounds("random") == {7, 12} and lot.control_rounds("reinit") is None


def test_the_loop_takes_its_loss_metrics_from_the_task(tmp_path, monkeypatch):
  # A task reporting one more training metric: the loop logs it with no other change.
  base = tasks.CLASSIFICATION

  def train_step(state, batch, **options):
    state, metrics = base.train_step(state, batch, **options)
    return state, {**metrics, "error": 1.0 - metrics["accuracy"]}

  task = dataclasses.replace(
    base, name="with_error", train_step=train_step, train_metrics=("loss", "accuracy", "error")
  )
  monkeypatch.setattr(tasks, "for_data", lambda data: task)
  config = load_config("default", small(train__num_steps=10, checkpoint__enabled=False))
  train_and_evaluate(config, tmp_path, verbose=False)
  records = [r for r in read_metrics(tmp_path / "metrics.jsonl") if "train_loss" in r]
  assert [r["step"] for r in records] == [10]
  np.testing.assert_allclose(records[0]["train_error"], 1.0 - records[0]["train_accuracy"])
