"""BatchNorm recalibration in the trainer: after the run's last mask update (one-shot pruning).

``config.pruning.recalibrate_bn`` (``settings.pruning.recalibrate_bn``) sets it: the
BatchNorm statistics are re-estimated with `jaxprune.recalibrate_batch_stats` over that
many batches of the training split (the first full batches of ``train.batch_size``
examples, in index order, without augmentation) right after the step of the schedule's
last mask update, so the evaluations that follow (and a run whose one-shot pruning is at
its last step) read statistics of the pruned network, not the dense one's.

* ``-1`` (default): ``AUTO_BATCHES`` batches for models with BatchNorm statistics when
  the run updates masks; nothing otherwise.
* ``0``: off.
* ``N > 0``: ``N`` batches. An error for a model without BatchNorm, a run without
  pruning or a run whose masks never change (fixed ``initial_masks``), where it would
  be ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import jax
import numpy as np

import jaxprune
from jaxprune.data import eval_batches
from jaxprune.train.settings import Settings
from jaxprune.train.state import TrainState

AUTO_BATCHES = 20  # batches of the default (-1) for models with BatchNorm


def plan(
  settings: Settings,
  has_batch_stats: bool,
  mask_updates: np.ndarray,
  train_examples: int,
) -> tuple[int | None, int]:
  """``(step, batches)``: recalibrate after ``step`` (0-based) over ``batches`` batches.

  ``(None, 0)`` when the run does not recalibrate. Raises a ValueError for an explicit
  count that would be ignored or that the training split cannot fill.

  Args:
    settings: the run's settings (``pruning.recalibrate_bn``, ``train.batch_size``).
    has_batch_stats: whether the model has BatchNorm statistics.
    mask_updates: ``bool[total_steps]``, the steps that update masks
      (`jaxprune.train.optim.mask_update_steps`).
    train_examples: the size of the training split.

  Example:
    >>> from jaxprune.train.config import load_config
    >>> from jaxprune.train.optim import mask_update_steps
    >>> from jaxprune.train.settings import resolve
    >>> s = resolve(load_config("default", {"pruning.schedule.kind": "one_shot",
    ...   "pruning.schedule.unit": "steps", "pruning.schedule.begin": 30}))
    >>> updates = mask_update_steps(s.pruning, steps_per_epoch=10, total_steps=50)
    >>> plan(s, True, updates, train_examples=1280)
    (30, 10)
    >>> plan(s, False, updates, train_examples=1280)
    (None, 0)
  """
  pruning = settings.pruning
  asked = pruning.recalibrate_bn
  if asked == 0:
    return None, 0
  batch_size = settings.train.batch_size
  full = train_examples // batch_size
  updates = np.flatnonzero(mask_updates)
  if asked == -1:
    if not (has_batch_stats and len(updates)):
      return None, 0
    return int(updates[-1]), min(AUTO_BATCHES, full)
  why = None
  if not has_batch_stats:
    why = f"the model {settings.model.name!r} has no BatchNorm statistics"
  elif not pruning.enabled:
    why = "pruning is disabled (config.pruning.enabled=False)"
  elif not len(updates):
    why = "no step of the run updates the masks (fixed initial_masks)"
  if why:
    raise ValueError(
      f"config.pruning.recalibrate_bn={asked} would be ignored: {why}. Recalibration "
      "re-estimates BatchNorm statistics after the run's last mask update; use "
      "--config.pruning.recalibrate_bn=0 (off) or -1 (automatic) for this run."
    )
  if asked > full:
    raise ValueError(
      f"config.pruning.recalibrate_bn={asked} batches of {batch_size} need "
      f"{asked * batch_size} training examples; the split has {train_examples} ({full} full "
      f"batches). Use at most {full}, e.g. --config.pruning.recalibrate_bn={max(full, 1)}."
    )
  return int(updates[-1]), asked


def _images(dataset: Any, batch_size: int, put: Callable[[dict], dict]) -> Iterator[Any]:
  for batch in eval_batches(dataset, batch_size):
    if not np.all(batch["mask"]):
      return  # a padded batch would bias the statistics
    yield put({"image": batch["image"]})["image"]


def recalibrate(
  state: TrainState,
  dataset: Any,
  batch_size: int,
  num_batches: int,
  put: Callable[[dict], dict] = lambda b: b,
) -> TrainState:
  """``state`` with its ``batch_stats`` re-estimated over ``num_batches`` batches of ``dataset``.

  Args:
    state: the train state (a model with BatchNorm).
    dataset: the training split.
    batch_size: examples per batch (the training batch size).
    num_batches: how many full batches to average over.
    put: places a numpy batch on devices (e.g. sharded); identity by default.

  Returns:
    The state with new ``batch_stats`` (see `jaxprune.recalibrate_batch_stats`).
  """
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  new = jaxprune.recalibrate_batch_stats(
    state.apply_fn,
    variables,
    _images(dataset, batch_size, put),
    num_batches=num_batches,
    train=False,
  )
  new = jax.tree.map(lambda n, old: jax.device_put(n, old.sharding), new, state.batch_stats)
  return state.replace(batch_stats=new)
