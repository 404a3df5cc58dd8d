"""Building the optimizer from resolved settings: the inner optax optimizer in `jaxprune.masked`.

``settings.optimizer`` (`jaxprune.train.settings.Optimizer`) picks the inner optimizer and
its learning-rate schedule; ``settings.pruning`` (`jaxprune.train.settings.Pruning`) picks
the criterion, the sparsity schedule (in epochs or steps), the distribution over layers,
the structure and the mask storage. The settings are checked when resolved, so the
functions here only build. See ``configs/default.py`` for every field.
"""

from __future__ import annotations

import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxprune
from jaxprune import distributions, dynamic, schedules
from jaxprune.train import export
from jaxprune.train.settings import Optimizer, Pruning, Schedule, Settings, structure_from_string


def learning_rate(opt: Optimizer, total_steps: int, steps_per_epoch: int) -> optax.Schedule:
  """The learning-rate schedule of ``opt`` (``settings.optimizer``).

  ``"constant"``; ``"cosine"``: linear warm-up for ``warmup_epochs`` then cosine decay to
  ``learning_rate * end_lr_factor`` at ``total_steps``; ``"linear"``: the same warm-up then
  linear decay; ``"step"``: the same warm-up, then the peak multiplied by ``decay_factor``
  at each of ``decay_epochs`` (epochs from the start of the run).

  Example:
    >>> from jaxprune.train.settings import Optimizer
    >>> opt = Optimizer(name="adam", learning_rate=1.0, lr_schedule="cosine", warmup_epochs=0.0,
    ...                 end_lr_factor=0.0, weight_decay=0.0, momentum=0.9, nesterov=False,
    ...                 grad_clip_norm=0.0)
    >>> lr = learning_rate(opt, total_steps=100, steps_per_epoch=10)
    >>> [round(float(lr(t)), 6) for t in (0, 25, 50, 100)]  # float32: 0.5 is 0.49999997
    [1.0, 0.853553, 0.5, 0.0]
  """
  peak = opt.learning_rate
  if opt.lr_schedule == "constant":
    return optax.constant_schedule(peak)
  warmup = int(round(opt.warmup_epochs * steps_per_epoch))
  end = peak * opt.end_lr_factor
  decay = max(total_steps - warmup, 1)
  if opt.lr_schedule == "cosine":
    main = optax.cosine_decay_schedule(peak, decay, alpha=opt.end_lr_factor)
  elif opt.lr_schedule == "linear":
    main = optax.linear_schedule(peak, end, decay)
  else:  # "step" (`jaxprune.train.settings.check` refused any other name)
    bounds = [int(round(e * steps_per_epoch)) - warmup for e in opt.decay_epochs]
    main = optax.piecewise_constant_schedule(peak, {b: opt.decay_factor for b in bounds if b > 0})
  if warmup == 0:
    return main
  return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), main], [warmup])


def inner_optimizer(opt: Optimizer, lr: optax.Schedule) -> optax.GradientTransformation:
  """The optimizer ``jaxprune.masked`` wraps: ``opt.name`` with ``lr``, optional clipping.

  Example:
    >>> import optax
    >>> from jaxprune.train.settings import Optimizer
    >>> opt = Optimizer(name="sgd", learning_rate=0.1, lr_schedule="constant", warmup_epochs=0.0,
    ...                 end_lr_factor=0.0, weight_decay=0.0, momentum=0.9, nesterov=True,
    ...                 grad_clip_norm=0.0)
    >>> tx = inner_optimizer(opt, optax.constant_schedule(0.1))
  """
  name = opt.name
  if name == "adam":
    tx = optax.adam(lr)
  elif name == "adamw":
    tx = optax.adamw(lr, weight_decay=opt.weight_decay)
  elif name in ("sgd", "momentum"):
    momentum = opt.momentum if name == "momentum" or opt.momentum else None
    tx = optax.sgd(lr, momentum=momentum, nesterov=opt.nesterov and bool(momentum))
  else:  # "lion" (`jaxprune.train.settings.check` refused any other name)
    tx = optax.lion(lr, weight_decay=opt.weight_decay)
  if name in ("adam", "sgd", "momentum") and opt.weight_decay:
    tx = optax.chain(optax.add_decayed_weights(opt.weight_decay), tx)
  if opt.grad_clip_norm:
    tx = optax.chain(optax.clip_by_global_norm(opt.grad_clip_norm), tx)
  return tx


def _to_steps(value: float, unit: str, steps_per_epoch: int) -> int:
  return int(round(value * (steps_per_epoch if unit == "epochs" else 1)))


def pruning_schedule(sched: Schedule, steps_per_epoch: int) -> schedules.Schedule:
  """The sparsity schedule of ``settings.pruning.schedule``, converted to steps.

  ``begin``, ``end`` and ``every`` are in ``unit`` (``"epochs"`` or ``"steps"``); epochs
  become ``round(value * steps_per_epoch)`` steps (``every`` at least 1).

  Example:
    >>> from jaxprune.train.settings import Schedule
    >>> sched = Schedule(kind="polynomial", unit="epochs", begin=1.0, end=5.0, every=0.5)
    >>> pruning_schedule(sched, steps_per_epoch=100)
    Polynomial(begin=100, end=500, every=50, power=3.0, initial=0.0)
  """
  begin = _to_steps(sched.begin, sched.unit, steps_per_epoch)
  if sched.kind == "one_shot":
    return schedules.one_shot(begin)
  every = max(_to_steps(sched.every, sched.unit, steps_per_epoch), 1)
  end = _to_steps(sched.end, sched.unit, steps_per_epoch)
  if sched.kind == "periodic":
    return schedules.periodic(every, begin, end if end > begin else None)
  end = max(end, begin + 1)  # "polynomial" (`jaxprune.train.settings.check` refused others)
  return schedules.polynomial(begin, end, every, sched.power, sched.initial)


def last_mask_update(sched: Schedule, steps_per_epoch: int) -> int | None:
  """The step of the schedule's last mask update (None for periodic without an end).

  A run must be longer than this step to reach the target sparsity.

  Example:
    >>> from jaxprune.train.settings import Schedule
    >>> last_mask_update(Schedule(kind="one_shot", unit="epochs", begin=2.0), steps_per_epoch=100)
    200
  """
  built = pruning_schedule(sched, steps_per_epoch)
  if isinstance(built, schedules.OneShot):
    return built.step
  return built.end


def mask_update_steps(pruning: Pruning, steps_per_epoch: int, total_steps: int) -> np.ndarray:
  """Which steps of the run update masks: ``bool[total_steps]`` from the pruning schedule.

  All False when pruning is disabled or the masks are fixed. The trainer compiles a
  second step without the mask-update branch (``masks_frozen=True``) and uses it wherever
  this is False.

  Example:
    >>> from jaxprune.train.config import load_config
    >>> from jaxprune.train.settings import resolve
    >>> s = resolve(load_config("default", {"pruning.schedule.unit": "steps",
    ...   "pruning.schedule.begin": 2, "pruning.schedule.end": 6, "pruning.schedule.every": 2}))
    >>> mask_update_steps(s.pruning, steps_per_epoch=10, total_steps=8).nonzero()[0].tolist()
    [2, 4, 6]
  """
  if not pruning.enabled or pruning.fixed_masks:
    return np.zeros(total_steps, bool)
  schedule = pruning_schedule(pruning.schedule, steps_per_epoch)
  target = pruning.sparsity
  update = jax.jit(jax.vmap(lambda t: schedule(t, target)[0]))
  return np.asarray(update(jnp.arange(total_steps, dtype=jnp.int32)), bool)


def distribution_from_config(pruning: Pruning) -> Any:
  """``pruning.distribution``, with the leaves matching ``pruning.dense`` kept dense.

  ``dense`` is a regex over "/"-joined parameter paths (full match), e.g. ``"Dense_2/.*"``
  to leave LeNet's output layer unpruned; it combines with ``"uniform"`` only (which
  `jaxprune.train.settings.check` ensures).

  Example:
    >>> from jaxprune.train.config import load_config
    >>> from jaxprune.train.settings import resolve
    >>> dist = distribution_from_config(resolve(load_config("channels")).pruning)
    >>> type(dist).__name__
    'ByPath'
  """
  if not pruning.dense:
    return distributions.get(pruning.distribution)
  pattern = re.compile(pruning.dense)
  sparsity = pruning.sparsity

  def rule(path: str, leaf: Any) -> float | None:
    if pattern.fullmatch(path) or not distributions.default_prunable(path, leaf):
      return None
    return sparsity

  return distributions.ByPath(rule)


def dynamic_optimizer(
  inner: optax.GradientTransformation, pruning: Pruning, steps_per_epoch: int
) -> optax.GradientTransformation | None:
  """The `jaxprune.dynamic` optimizer ``pruning`` asks for, or None for plain `masked`.

  * ``criterion`` ``"rigl"`` / ``"set"``: drop and grow from random initial masks, on the
    periodic ``schedule`` (its ``end`` is where the drop fraction, ``drop_fraction`` at
    step 0, reaches 0);
  * ``method="static"``: masks from the data-free ``criterion`` at initialisation, fixed;
  * ``method="ste"``: straight-through training, SR-STE with ``decay`` > 0.

  ``method``, ``drop_fraction`` and ``decay`` are optional fields (configs/rigl.py,
  configs/static_erk.py, configs/sr_ste.py set them).

  Raises:
    ValueError: for drop and grow on a schedule that is not periodic with an end, in
      steps of this run.
  """
  sparsity = pruning.sparsity
  schedule = pruning_schedule(pruning.schedule, steps_per_epoch)
  common = dict(
    distribution=distribution_from_config(pruning),
    structure=structure_from_string(pruning.structure),
  )
  if pruning.method == "ste":
    return dynamic.ste(
      inner,
      sparsity,
      schedule=schedule,
      decay=pruning.decay,
      criterion=pruning.criterion,
      seed=pruning.seed,
      **common,
    )
  if pruning.method == "static":
    key = jax.random.key(pruning.seed)
    masks = lambda p: jaxprune.prune(p, sparsity, criterion=pruning.criterion, key=key, **common)[1]
    return dynamic.static(inner, masks, packed=pruning.packed)
  if not pruning.drop_and_grow:
    return None
  if not isinstance(schedule, schedules.Periodic) or schedule.end is None:
    raise ValueError(
      f"criterion={pruning.criterion!r} moves connections on a periodic schedule that ends "
      f"(where the drop fraction reaches 0); got {schedule!r}. Use "
      "--config.pruning.schedule.kind=periodic with schedule.end > schedule.begin."
    )
  build = dynamic.rigl if pruning.criterion == "rigl" else dynamic.set_
  return build(
    inner,
    sparsity,
    every=schedule.every,
    begin=schedule.begin,
    end=schedule.end,
    alpha=pruning.drop_fraction,
    packed=pruning.packed,
    seed=pruning.seed,
    **common,
  )


def initial_masks(pruning: Pruning) -> Any:
  """``params -> masks`` read from ``pruning.initial_masks`` (an .npz), or None if unset.

  The file is read once, at the first call, and checked against the params' paths and
  shapes (`jaxprune.train.export.load_tree`).
  """
  path = pruning.initial_masks
  if not path:
    return None
  loaded: list[Any] = []

  def masks(params: Any) -> Any:
    if not loaded:
      loaded.append(export.load_tree(path, params, what="masks"))
    return jax.tree.map(jnp.asarray, loaded[0])

  return masks


def target_sparsity(pruning: Pruning) -> float | None:
  """``pruning.sparsity`` for `jaxprune.masked`: ``None`` for threshold criteria.

  Criteria such as ``"log_alpha"`` learn the sparsity (the settings leave it at 0).

  Example:
    >>> from jaxprune.train.config import load_config
    >>> from jaxprune.train.settings import resolve
    >>> target_sparsity(resolve(load_config("variational_dropout")).pruning)
    >>> target_sparsity(resolve(load_config("default")).pruning)
    0.9
  """
  if jaxprune.criteria.get(pruning.criterion).threshold is None:
    return pruning.sparsity
  return None


def make_optimizer(
  settings: Settings, steps_per_epoch: int, total_steps: int
) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """The run's optimizer: ``jaxprune.masked(inner, ...)``, or ``inner`` when pruning is off.

  Args:
    settings: the resolved settings (``optimizer``, ``pruning`` and ``train.start_step``
      are read).
    steps_per_epoch: training steps per epoch (to convert epoch-based schedules).
    total_steps: length of the run in steps (for the learning-rate decay).

  Returns:
    ``(tx, learning_rate_schedule)``.

  Example:
    >>> from jaxprune.train.config import load_config
    >>> from jaxprune.train.settings import resolve
    >>> s = resolve(load_config("default", {"pruning.criterion": "snip"}))
    >>> tx, lr = make_optimizer(s, steps_per_epoch=468, total_steps=9360)
    >>> round(float(lr(0)), 6)
    0.001
  """
  lr = learning_rate(settings.optimizer, total_steps, steps_per_epoch)
  start = settings.train.start_step
  # A run started at step k (rewound) has a fresh optimizer whose count starts at 0.
  inner_lr = lr if start == 0 else (lambda count: lr(count + start))
  inner = inner_optimizer(settings.optimizer, inner_lr)
  pruning = settings.pruning
  if not pruning.enabled:
    return inner, lr
  dynamic_tx = dynamic_optimizer(inner, pruning, steps_per_epoch)
  if dynamic_tx is not None:
    return dynamic_tx, lr
  fixed = pruning.fixed_masks
  tx = jaxprune.masked(
    inner,
    None if fixed else target_sparsity(pruning),
    criterion=pruning.criterion,
    schedule=None if fixed else pruning_schedule(pruning.schedule, steps_per_epoch),
    distribution=distribution_from_config(pruning),
    structure=structure_from_string(pruning.structure),
    packed=pruning.packed,
    seed=pruning.seed,
    initial_masks=initial_masks(pruning),
  )
  return tx, lr
