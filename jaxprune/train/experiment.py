"""What a config describes, built once: data, model, optimizer, run length, state factory.

`build` is the set-up stage every run shares (`jaxprune.train.loop`, the lottery, the
sweep, analysis code): it resolves the config (`jaxprune.train.settings.resolve`),
chooses the dataset (falling back if the config allows), loads it, and builds the model,
the optimizer with its masking policy and the plan of the run in steps. `load_state`
restores the train state of a (finished or interrupted) run from its workdir.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import ml_collections
import numpy as np
import optax

import jaxprune
from jaxprune import criteria
from jaxprune.train import checkpoint, export, input_pipeline, models, optim, tasks
from jaxprune.train import penalty as penalty_lib
from jaxprune.train import settings as settings_lib
from jaxprune.train.settings import Settings
from jaxprune.train.state import TrainState, create_train_state

Config = ml_collections.ConfigDict | Settings


@dataclasses.dataclass(frozen=True)
class Experiment:
  """The pieces of a run, built from its settings.

  Attributes:
    settings: the resolved settings (on the fallback dataset, if the run fell back).
    task: what the run learns: its loss, metrics and data (`jaxprune.train.tasks`).
    splits: the train, validation and test datasets (`input_pipeline.Splits`).
    model: the Flax model.
    tx: the optimizer (``jaxprune.masked(inner, ...)`` unless pruning is disabled).
    learning_rate: the learning-rate schedule (step -> value).
    steps_per_epoch: full batches per epoch.
    total_steps: length of the run in steps.
    input_shape: one example's shape, e.g. ``(28, 28, 1)``.
    mask_updates: ``bool[total_steps]``: the steps whose schedule updates masks.
    initial_params: params replacing the initialisation (``model.initial_params``), or None.
  """

  settings: Settings
  task: tasks.Task
  splits: input_pipeline.Splits
  model: nn.Module
  tx: optax.GradientTransformation
  learning_rate: optax.Schedule
  steps_per_epoch: int
  total_steps: int
  input_shape: tuple[int, ...]
  mask_updates: np.ndarray
  initial_params: Any = None

  @property
  def create_state(self) -> Callable[[], TrainState]:
    """A function building the initial `TrainState` (also used under `jax.eval_shape`).

    It starts at ``train.start_step`` from ``initial_params`` if given; with
    ``pruning.initial_masks`` the params' pruned entries are zeroed from the start, so
    the first step already sees the sparse network.
    """
    s = self.settings
    create = functools.partial(
      create_train_state,
      self.model,
      self.tx,
      self.input_shape,
      s.seed,
      params=self.initial_params,
      step=s.train.start_step,
    )
    if not (s.pruning.enabled and s.pruning.initial_masks):
      return create

    def create_masked() -> TrainState:
      state = create()
      masks = jaxprune.masks_of(state.opt_state)
      return state.replace(params=jaxprune.apply_masks(state.params, masks))

    return create_masked

  @property
  def penalty(self) -> penalty_lib.Penalty | None:
    """``penalty(params, step)`` added to the training loss (``train.penalty``)."""
    return penalty_lib.make_penalty(
      self.settings.train, self.splits.train.num_examples, self.steps_per_epoch
    )

  @property
  def needs_activations(self) -> bool:
    """Whether the criterion needs the ``activations`` extra (e.g. ``"wanda"``)."""
    pruning = self.settings.pruning
    return pruning.enabled and "activations" in criteria.get(pruning.criterion).needs

  @property
  def pruning(self) -> bool:
    """Whether the run prunes (``pruning.enabled``)."""
    return self.settings.pruning.enabled

  @property
  def log_every(self) -> int:
    """Training metrics are logged every this many steps (``train.log_every_steps``)."""
    return max(self.settings.train.log_every_steps, 1)

  @property
  def eval_every(self) -> int:
    """The evaluations' interval in steps (``train.eval_every_epochs``, at least 1)."""
    return max(int(round(self.settings.train.eval_every_epochs * self.steps_per_epoch)), 1)


def run_length(train: settings_lib.Train, steps_per_epoch: int) -> int:
  """Total training steps: ``train.num_steps`` if > 0, else ``num_epochs`` epochs."""
  if train.num_steps > 0:
    return train.num_steps
  return max(int(round(train.num_epochs * steps_per_epoch)), 1)


def resolve_data(settings: Settings) -> tuple[Settings, str | None]:
  """The settings a run really uses: on the fallback dataset if ``data.name`` is unavailable.

  Returns:
    ``(settings, notice)``: ``settings`` itself and None when the dataset is available,
    else `jaxprune.train.settings.on_fallback` of them and the notice saying what was
    substituted.
  """
  name, notice = input_pipeline.resolve(settings.data)
  if name == settings.data.name:
    return settings, None
  new, changed = settings_lib.on_fallback(settings, name)
  if changed:
    fields = ", ".join(f"{k}={v}" for k, v in changed.items())
    notice += (
      f" Settings for {name!r} from configs/{settings.data.fallback_config}.py (fields this "
      f"config left at their defaults): {fields}."
    )
  return new, notice


def _check_run(settings: Settings, train: Any, total_steps: int) -> None:
  batch_size = settings.train.batch_size
  if not 1 <= batch_size <= train.num_examples:
    raise ValueError(
      f"config.train.batch_size={batch_size} does not fit the {train.num_examples} training "
      f"examples of {train.name!r}; expected 1 to {train.num_examples}, e.g. "
      "--config.train.batch_size=128."
    )
  start_step = settings.train.start_step
  if not 0 <= start_step < total_steps:
    raise ValueError(
      f"config.train.start_step={start_step} is outside the run's {total_steps} steps; "
      f"expected 0 to {total_steps - 1}, e.g. --config.train.start_step=0."
    )


def _warn_short_run(settings: Settings, steps_per_epoch: int, total_steps: int) -> None:
  pruning = settings.pruning
  if not pruning.enabled or pruning.fixed_masks:
    return
  last = optim.last_mask_update(pruning.schedule, steps_per_epoch)
  if last is not None and last >= total_steps:
    print(
      f"WARNING: the pruning schedule's last mask update is at step {last}, but the run has "
      f"{total_steps} steps ({steps_per_epoch} per epoch), so the final sparsity stays below "
      f"the target {pruning.sparsity}. Lengthen the run (--config.train.num_epochs) "
      "or end the schedule earlier (--config.pruning.schedule.end).",
      file=sys.stderr,
      flush=True,
    )


def build(config: Config, *, verbose: bool = True) -> Experiment:
  """Resolves ``config``, loads the data and builds the model and optimizer.

  If ``data.name`` is unavailable and the config names a fallback, the experiment is
  built from `resolve_data`'s settings (``Experiment.settings``).

  Args:
    config: the experiment config, or its `jaxprune.train.settings.Settings`.
    verbose: print notices (dataset fallback, a schedule longer than the run) to stderr.

  Returns:
    The `Experiment`.

  Example:
    >>> from jaxprune.train.config import load_config
    >>> exp = build(load_config("digits"))
    >>> exp.splits.name, exp.steps_per_epoch, exp.total_steps, exp.input_shape
    ('digits', 10, 300, (8, 8, 1))
  """
  settings, notice = resolve_data(settings_lib.ensure(config))
  if notice and verbose:
    print(notice, file=sys.stderr, flush=True)
  task = tasks.for_settings(settings)
  splits = dataclasses.replace(task.load_splits(settings.data, verbose=False), notice=notice)
  train = splits.train
  steps_per_epoch = train.num_examples // max(settings.train.batch_size, 1)
  total_steps = run_length(settings.train, steps_per_epoch)
  _check_run(settings, train, total_steps)
  model = models.get_model(
    settings.model.name, num_classes=train.num_classes, **settings.model.kwargs
  )
  tx, lr = optim.make_optimizer(settings, steps_per_epoch, total_steps)
  input_shape = tuple(train.image_shape)
  initial_params = None
  if settings.model.initial_params:
    like = jax.eval_shape(functools.partial(create_train_state, model, tx, input_shape, 0)).params
    initial_params = export.load_tree(settings.model.initial_params, like, what="params")
  if verbose:
    _warn_short_run(settings, steps_per_epoch, total_steps)
  updates = optim.mask_update_steps(settings.pruning, steps_per_epoch, total_steps)
  return Experiment(
    settings,
    task,
    splits,
    model,
    tx,
    lr,
    steps_per_epoch,
    total_steps,
    input_shape,
    updates,
    initial_params,
  )


def load_state(config: Config, workdir: str | os.PathLike, step: int | None = None) -> TrainState:
  """Restores the train state a run with ``config`` saved in ``workdir``.

  Args:
    config: the config the run was started with (same command-line overrides), or its
      settings.
    workdir: the run's folder.
    step: which checkpoint (default: the latest).

  Returns:
    The restored `TrainState`, on one device whatever the run's device count. Its masks
    are ``jaxprune.masks_of(state.opt_state)``.

  Raises:
    FileNotFoundError: if ``workdir`` holds no checkpoint.
  """
  exp = build(config, verbose=False)
  directory = Path(workdir) / "checkpoints"
  if not directory.is_dir():
    raise FileNotFoundError(
      f"No checkpoints in {os.fspath(directory)!r}; expected the --workdir of a run started "
      "with config.checkpoint.enabled=True."
    )
  ckpt = checkpoint.Checkpointer(
    directory, every_steps=1, keep=1 << 30, async_save=False, cleanup_tmp=False
  )
  try:
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    target = checkpoint.abstract_like(
      jax.eval_shape(exp.create_state),
      jax.tree.map(lambda _: device, jax.eval_shape(exp.create_state)),
    )
    restored = ckpt.restore(target, step)
  finally:
    ckpt.close()
  if restored is None:
    raise FileNotFoundError(
      f"{os.fspath(directory)!r} holds no committed checkpoint; train first with "
      f"jaxprune-train --config CONFIG --workdir {os.fspath(workdir)}."
    )
  return restored[0]
