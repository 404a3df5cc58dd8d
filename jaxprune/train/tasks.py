"""What a run learns: its loss and metrics, and the data they read. The one place to add a task.

A `Task` bundles what differs between kinds of training:

* ``load_splits``: the train / validation / test data of its dataset kind (images with
  labels for `CLASSIFICATION`, from `jaxprune.train.input_pipeline.load_splits`);
* ``train_step``: ``(state, batch, **options) -> (state, metrics)`` with its loss (the
  options are those of `jaxprune.train.steps.train_step`);
* ``train_metrics``: the names of the step's metrics, averaged over each logging window
  into ``train_<name>`` records (and TensorBoard's ``train/<name>``);
* ``eval_step`` and ``eval_metrics``: per-batch sums over the real rows of an evaluation
  batch, and the metrics computed from their totals (``loss``, ``accuracy``, ``error``).

`for_settings` chooses the task of a run. Every other stage (`jaxprune.train.experiment`,
`steps.compile_steps`, `evaluation`, `loop`) asks the experiment's task and never branches
on the kind itself, so a new task (a language model's next-token loss on token windows,
reporting bits per byte, say) is one `Task` here, its data loader and its steps.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from jaxprune.train import evaluation, input_pipeline, steps
from jaxprune.train.settings import Data, Settings


@dataclasses.dataclass(frozen=True)
class Task:
  """The loss, metrics and data of one kind of training (see the module docstring)."""

  name: str
  load_splits: Callable[..., input_pipeline.Splits]
  train_step: Callable[..., tuple[Any, dict[str, Any]]]
  train_metrics: tuple[str, ...]
  eval_step: Callable[[Any, dict[str, Any]], dict[str, Any]]
  eval_metrics: Callable[[Mapping[str, float]], dict[str, float]]


CLASSIFICATION = Task(
  name="classification",
  load_splits=input_pipeline.load_splits,
  train_step=steps.train_step,
  train_metrics=("loss", "accuracy"),
  eval_step=steps.eval_step,
  eval_metrics=evaluation.classification_metrics,
)

TASKS = {task.name: task for task in (CLASSIFICATION,)}


def for_data(data: Data) -> Task:
  """The task of a run on ``data``: image classification for every dataset jaxprune loads.

  A task for another dataset kind adds its entry to `TASKS` and its choice here.
  """
  del data
  return CLASSIFICATION


def for_settings(settings: Settings) -> Task:
  """The task of a run (see `for_data`)."""
  return for_data(settings.data)
