"""What a run learns: its loss and metrics, and the data they read. The one place to add a task.

A `Task` bundles what differs between kinds of training:

* ``load_splits``: the train / validation / test data of its dataset kind (images with
  labels for `CLASSIFICATION`, from `jaxprune.train.input_pipeline.load_splits`);
* ``train_step``: ``(state, batch, **options) -> (state, metrics)`` with its loss (the
  options are those of `jaxprune.train.steps.train_step`);
* ``train_metrics``: the names of the step's metrics, averaged over each logging window
  into ``train_<name>`` records (and TensorBoard's ``train/<name>``);
* ``eval_step`` and ``eval_metrics``: per-batch sums over the real rows of an evaluation
  batch, and the metrics computed from their totals (``loss``, ``accuracy``, ``error``,
  and any more the task reports, logged as ``<split>_<name>``);
* ``feed``: the training batches (`jaxprune.train.input_pipeline.TrainFeed` or one with its
  interface) and ``eval_batches``: ``(split, batch_size) -> batches`` for evaluation.

Two tasks exist: `CLASSIFICATION` (images with labels) and `LANGUAGE_MODEL` (next-byte
prediction on windows of text, `jaxprune.train.text_task`, reporting nats and bits per byte
and perplexity).

`for_settings` chooses the task of a run. Every other stage (`jaxprune.train.experiment`,
`steps.compile_steps`, `evaluation`, `loop`) asks the experiment's task and never branches
on the kind itself, so a new task is one `Task` here, its data loader and its steps.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from jaxprune.data import eval_batches
from jaxprune.train import evaluation, input_pipeline, steps, text_task
from jaxprune.train.settings import Data, Settings
from jaxprune.train.text_settings import is_text


@dataclasses.dataclass(frozen=True)
class Task:
  """The loss, metrics and data of one kind of training (see the module docstring)."""

  name: str
  load_splits: Callable[..., input_pipeline.Splits]
  train_step: Callable[..., tuple[Any, dict[str, Any]]]
  train_metrics: tuple[str, ...]
  eval_step: Callable[[Any, dict[str, Any]], dict[str, Any]]
  eval_metrics: Callable[[Mapping[str, float]], dict[str, float]]
  feed: Callable[..., Any]
  eval_batches: Callable[[Any, int], Iterable[dict[str, Any]]]


CLASSIFICATION = Task(
  name="classification",
  load_splits=input_pipeline.load_splits,
  train_step=steps.train_step,
  train_metrics=("loss", "accuracy"),
  eval_step=steps.eval_step,
  eval_metrics=evaluation.classification_metrics,
  feed=input_pipeline.TrainFeed,
  eval_batches=eval_batches,
)

# Next-byte prediction: the same steps (logits [B, T, 256] against labels [B, T] give a
# per-token cross-entropy; evaluation weights each scored byte once by its mask).
LANGUAGE_MODEL = Task(
  name="language_model",
  load_splits=text_task.load_splits,
  train_step=steps.train_step,
  train_metrics=("loss", "accuracy"),
  eval_step=steps.eval_step,
  eval_metrics=text_task.lm_metrics,
  feed=text_task.TextFeed,
  eval_batches=text_task.eval_batches,
)

TASKS = {task.name: task for task in (CLASSIFICATION, LANGUAGE_MODEL)}


def for_data(data: Data) -> Task:
  """The task of a run on ``data``: a language model on text, else image classification.

  A task for another dataset kind adds its entry to `TASKS` and its choice here.
  """
  return LANGUAGE_MODEL if is_text(data) else CLASSIFICATION


def for_settings(settings: Settings) -> Task:
  """The task of a run (see `for_data`)."""
  return for_data(settings.data)
