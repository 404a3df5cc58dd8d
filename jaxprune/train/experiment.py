"""What a config describes, built once: data, model, optimizer, run length, state factory.

`build` is shared by the training loop and by analysis code: `load_state` restores the
train state of a (finished or interrupted) run from its workdir with the same config.
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
import optax

import jaxprune
from jaxprune import criteria
from jaxprune.train import checkpoint, export, input_pipeline, models, optim
from jaxprune.train import penalty as penalty_lib
from jaxprune.train.config import load_config
from jaxprune.train.state import TrainState, create_train_state


@dataclasses.dataclass(frozen=True)
class Experiment:
  """The pieces of a run, derived from its config.

  Attributes:
    config: the config it was built from.
    splits: the train, validation and test datasets (`input_pipeline.Splits`).
    model: the Flax model.
    tx: the optimizer (``jaxprune.masked(inner, ...)`` unless pruning is disabled).
    learning_rate: the learning-rate schedule (step -> value).
    steps_per_epoch: full batches per epoch.
    total_steps: length of the run in steps.
    input_shape: one example's shape, e.g. ``(28, 28, 1)``.
    initial_params: params replacing the initialisation (``config.model.initial_params``),
      or None.
  """

  config: ml_collections.ConfigDict
  splits: input_pipeline.Splits
  model: nn.Module
  tx: optax.GradientTransformation
  learning_rate: optax.Schedule
  steps_per_epoch: int
  total_steps: int
  input_shape: tuple[int, ...]
  initial_params: Any = None

  @property
  def create_state(self) -> Callable[[], TrainState]:
    """A function building the initial `TrainState` (also used under `jax.eval_shape`).

    It starts at ``config.train.start_step`` from ``initial_params`` if given; with
    ``config.pruning.initial_masks`` the params' pruned entries are zeroed from the start,
    so the first step already sees the sparse network.
    """
    create = functools.partial(
      create_train_state,
      self.model,
      self.tx,
      self.input_shape,
      int(self.config.seed),
      params=self.initial_params,
      step=int(self.config.train.get("start_step", 0)),
    )
    if not (self.config.pruning.enabled and self.config.pruning.get("initial_masks")):
      return create

    def create_masked() -> TrainState:
      state = create()
      masks = jaxprune.masks_of(state.opt_state)
      return state.replace(params=jaxprune.apply_masks(state.params, masks))

    return create_masked

  @property
  def penalty(self) -> penalty_lib.Penalty | None:
    """``penalty(params, step)`` added to the training loss (``config.train.penalty``)."""
    return penalty_lib.make_penalty(
      self.config.train, self.splits.train.num_examples, self.steps_per_epoch
    )

  @property
  def needs_activations(self) -> bool:
    """Whether the criterion needs the ``activations`` extra (e.g. ``"wanda"``)."""
    pruning = self.config.pruning
    return bool(pruning.enabled) and "activations" in criteria.get(pruning.criterion).needs


def run_length(config: ml_collections.ConfigDict, steps_per_epoch: int) -> int:
  """Total training steps: ``train.num_steps`` if > 0, else ``num_epochs`` epochs."""
  if config.train.num_steps > 0:
    return int(config.train.num_steps)
  return max(int(round(float(config.train.num_epochs) * steps_per_epoch)), 1)


def _flat(config: ml_collections.ConfigDict, prefix: str = "") -> dict[str, object]:
  out: dict[str, object] = {}
  for key, value in config.items():
    if isinstance(value, ml_collections.ConfigDict) and len(value):
      out.update(_flat(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = value
  return out


def fallback_settings(
  config: ml_collections.ConfigDict, dataset: str
) -> tuple[ml_collections.ConfigDict, dict[str, object]]:
  """``config`` for a run on the fallback ``dataset``, with settings that suit it.

  The fields that ``configs/<config.data.fallback_config>.py`` sets differently from
  ``configs/default.py`` (run length, evaluation and pruning schedule in epochs of the
  fallback data...) replace the values ``config`` still has at their default; values the
  config chose itself (its own file or command-line overrides) are kept.

  Args:
    config: the run's config.
    dataset: the dataset the run falls back to.

  Returns:
    ``(new config, {dotted field: value} of the settings it changed)``.

  Example:
    >>> from jaxprune.train.config import load_config
    >>> config = load_config("default", {"train.num_epochs": 5.0})
    >>> new, changed = fallback_settings(config, "digits")
    >>> new.data.name, new.train.num_epochs, changed["pruning.schedule.end"]
    ('digits', 5.0, 20.0)
  """
  new = config.copy_and_resolve_references()
  changed: dict[str, object] = {}
  with new.unlocked():
    new.data.name = dataset
    if config.data.get("fallback_config"):
      base = _flat(load_config("default"))
      alt = _flat(load_config(config.data.fallback_config))
      current = _flat(config)
      for path, value in alt.items():
        if path == "data.name" or path not in base or path not in current:
          continue
        if value != base[path] and current[path] == base[path]:
          *parents, leaf = path.split(".")
          node = new
          for name in parents:
            node = node[name]
          node[leaf] = value
          changed[path] = value
  new.lock()
  return new, changed


def resolve_data(config: ml_collections.ConfigDict) -> tuple[ml_collections.ConfigDict, str | None]:
  """The config a run really uses: on the fallback dataset if ``data.name`` is unavailable.

  Returns:
    ``(config, notice)``: ``config`` itself and None when the dataset is available, else
    `fallback_settings` of it and the notice saying what was substituted.
  """
  name, notice = input_pipeline.resolve(config.data)
  if name == config.data.name:
    return config, None
  new, changed = fallback_settings(config, name)
  if changed:
    fields = ", ".join(f"{k}={v}" for k, v in changed.items())
    notice += (
      f" Settings for {name!r} from configs/{config.data.fallback_config}.py (fields this "
      f"config left at their defaults): {fields}."
    )
  return new, notice


def build(config: ml_collections.ConfigDict, *, verbose: bool = True) -> Experiment:
  """Loads the data and builds the model and optimizer of ``config``.

  If ``config.data.name`` is unavailable and the config names a fallback, the experiment
  is built from `resolve_data`'s config (``Experiment.config``), not ``config``.

  Args:
    config: the experiment config.
    verbose: print notices (dataset fallback, a schedule longer than the run) to stderr.

  Returns:
    The `Experiment`.

  Example:
    >>> from jaxprune.train.config import load_config
    >>> exp = build(load_config("digits"))
    >>> exp.splits.name, exp.steps_per_epoch, exp.total_steps, exp.input_shape
    ('digits', 10, 300, (8, 8, 1))
  """
  config, notice = resolve_data(config)
  if notice and verbose:
    print(notice, file=sys.stderr, flush=True)
  splits = dataclasses.replace(
    input_pipeline.load_splits(config.data, verbose=False), notice=notice
  )
  train = splits.train
  batch_size = int(config.train.batch_size)
  if not 1 <= batch_size <= train.num_examples:
    raise ValueError(
      f"config.train.batch_size={batch_size} does not fit the {train.num_examples} training "
      f"examples of {train.name!r}; expected 1 to {train.num_examples}, e.g. "
      "--config.train.batch_size=128."
    )
  steps_per_epoch = train.num_examples // batch_size
  total_steps = run_length(config, steps_per_epoch)
  model = models.get_model(
    config.model.name, num_classes=train.num_classes, **config.model.kwargs.to_dict()
  )
  start_step = int(config.train.get("start_step", 0))
  if not 0 <= start_step < total_steps:
    raise ValueError(
      f"config.train.start_step={start_step} is outside the run's {total_steps} steps; "
      f"expected 0 to {total_steps - 1}, e.g. --config.train.start_step=0."
    )
  tx, lr = optim.make_optimizer(config, steps_per_epoch, total_steps)
  initial_params = None
  if config.model.get("initial_params"):
    like = jax.eval_shape(
      functools.partial(create_train_state, model, tx, tuple(train.image_shape), 0)
    ).params
    initial_params = export.load_tree(config.model.initial_params, like, what="params")
  if config.pruning.enabled and not optim.fixed_masks(config.pruning) and verbose:
    last = optim.last_mask_update(config.pruning.schedule, steps_per_epoch)
    if last is not None and last >= total_steps:
      print(
        f"WARNING: the pruning schedule's last mask update is at step {last}, but the run has "
        f"{total_steps} steps ({steps_per_epoch} per epoch), so the final sparsity stays below "
        f"the target {config.pruning.sparsity}. Lengthen the run (--config.train.num_epochs) "
        "or end the schedule earlier (--config.pruning.schedule.end).",
        file=sys.stderr,
        flush=True,
      )
  return Experiment(
    config,
    splits,
    model,
    tx,
    lr,
    steps_per_epoch,
    total_steps,
    tuple(train.image_shape),
    initial_params,
  )


def load_state(
  config: ml_collections.ConfigDict, workdir: str | os.PathLike, step: int | None = None
) -> TrainState:
  """Restores the train state a run with ``config`` saved in ``workdir``.

  Args:
    config: the config the run was started with (same command-line overrides).
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
