"""Training: train state and steps, configs, checkpoints, the training loop, sweeps and reports.

The command line is ``jaxprune-train --config configs/default.py --workdir DIR`` (also
``python -m jaxprune.train``) and ``jaxprune-sweep``; from Python:

  from jaxprune.train import load_config, train_and_evaluate

  config = load_config("default", {"pruning.sparsity": 0.95})
  summary = train_and_evaluate(config, "runs/s95")

Modules: `settings` (the config resolved once into typed `Settings`; the only reader of
a config), `state` (`TrainState`), `steps` (`train_step`, `eval_step`), `tasks` (a run's
loss, metrics and data), `optim` (optimizer from the settings), `experiment` (data,
model, optimizer of a run; `load_state`), `checkpoint` (orbax, exact resume), `sharding`
(data parallel / FSDP over a `Mesh`), `loop` (`train_and_evaluate`, a story of named
stages), `evaluation`, `reporters` (metrics log, TensorBoard, progress bar), `report`
(table and plots), `sweep`, `lottery` (iterative magnitude pruning with rewinding),
`export` (masks and params as .npz), `text_task` and `lm_metrics` (language models on
text: token windows, bits per byte, perplexity), `models` (the model zoo). Names below are imported
on first use, so importing ``jaxprune.train.models`` stays light.

Example:
  >>> from jaxprune import train
  >>> train.load_config("default").pruning.sparsity
  0.9
"""

import importlib
from typing import Any

_EXPORTS = {
  "CheckpointMismatchError": "checkpoint",
  "Checkpointer": "checkpoint",
  "Experiment": "experiment",
  "Settings": "settings",
  "TrainState": "state",
  "bits_per_byte": "lm_metrics",
  "build": "experiment",
  "create_train_state": "state",
  "cross_entropy_sum": "lm_metrics",
  "eval_step": "steps",
  "load_config": "config",
  "load_state": "experiment",
  "make_optimizer": "optim",
  "next_token_nats": "lm_metrics",
  "override": "config",
  "perplexity": "lm_metrics",
  "resolve": "settings",
  "run_sweep": "sweep",
  "token_nats": "lm_metrics",
  "train_and_evaluate": "loop",
  "train_step": "steps",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
  if name in _EXPORTS:
    value = getattr(importlib.import_module(f"jaxprune.train.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value
  raise AttributeError(f"module 'jaxprune.train' has no attribute {name!r}")


def __dir__() -> list[str]:
  return sorted([*globals(), *_EXPORTS])
