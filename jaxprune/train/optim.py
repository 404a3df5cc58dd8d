"""Building the optimizer from a config: the inner optax optimizer wrapped in `jaxprune.masked`.

The config's ``optimizer`` block picks the inner optimizer and its learning-rate schedule;
the ``pruning`` block picks the criterion, the sparsity schedule (in epochs or steps), the
distribution over layers, the structure and the mask storage. See ``configs/default.py``
for every field.
"""

from __future__ import annotations

import re
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

import jaxprune
from jaxprune import distributions, dynamic, schedules, structures
from jaxprune.train import export

Config = ml_collections.ConfigDict

OPTIMIZERS = ("adam", "adamw", "sgd", "momentum", "lion")
LR_SCHEDULES = ("constant", "cosine", "linear", "step")
SCHEDULES = ("one_shot", "periodic", "polynomial")


def learning_rate(opt: Config, total_steps: int, steps_per_epoch: int) -> optax.Schedule:
  """The learning-rate schedule of ``opt`` (``config.optimizer``).

  ``"constant"``; ``"cosine"``: linear warm-up for ``warmup_epochs`` then cosine decay to
  ``learning_rate * end_lr_factor`` at ``total_steps``; ``"linear"``: the same warm-up then
  linear decay; ``"step"``: the same warm-up, then the peak multiplied by ``decay_factor``
  at each of ``decay_epochs`` (epochs from the start of the run).

  Example:
    >>> import ml_collections
    >>> opt = ml_collections.ConfigDict(dict(learning_rate=1.0, lr_schedule="cosine",
    ...                                      warmup_epochs=0.0, end_lr_factor=0.0))
    >>> lr = learning_rate(opt, total_steps=100, steps_per_epoch=10)
    >>> [round(float(lr(t)), 6) for t in (0, 25, 50, 100)]  # float32: 0.5 is 0.49999997
    [1.0, 0.853553, 0.5, 0.0]
  """
  peak = float(opt.learning_rate)
  if opt.lr_schedule == "constant":
    return optax.constant_schedule(peak)
  warmup = int(round(float(opt.warmup_epochs) * steps_per_epoch))
  end = peak * float(opt.end_lr_factor)
  decay = max(total_steps - warmup, 1)
  if opt.lr_schedule == "cosine":
    main = optax.cosine_decay_schedule(peak, decay, alpha=float(opt.end_lr_factor))
  elif opt.lr_schedule == "linear":
    main = optax.linear_schedule(peak, end, decay)
  elif opt.lr_schedule == "step":
    factor = float(opt.get("decay_factor", 0.1))
    bounds = [int(round(float(e) * steps_per_epoch)) - warmup for e in opt.get("decay_epochs", ())]
    main = optax.piecewise_constant_schedule(peak, {b: factor for b in bounds if b > 0})
  else:
    raise ValueError(
      f"Unknown config.optimizer.lr_schedule {opt.lr_schedule!r}; expected one of "
      f"{LR_SCHEDULES}, e.g. --config.optimizer.lr_schedule=cosine."
    )
  if warmup == 0:
    return main
  return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), main], [warmup])


def inner_optimizer(opt: Config, lr: optax.Schedule) -> optax.GradientTransformation:
  """The optimizer ``jaxprune.masked`` wraps: ``opt.name`` with ``lr``, optional clipping.

  Example:
    >>> import ml_collections, optax
    >>> opt = ml_collections.ConfigDict(dict(name="sgd", momentum=0.9, nesterov=True,
    ...                                      weight_decay=0.0, grad_clip_norm=0.0))
    >>> tx = inner_optimizer(opt, optax.constant_schedule(0.1))
  """
  name = opt.name
  if name == "adam":
    tx = optax.adam(lr)
  elif name == "adamw":
    tx = optax.adamw(lr, weight_decay=float(opt.weight_decay))
  elif name in ("sgd", "momentum"):
    momentum = float(opt.momentum) if name == "momentum" or opt.momentum else None
    tx = optax.sgd(lr, momentum=momentum, nesterov=bool(opt.nesterov) and bool(momentum))
  elif name == "lion":
    tx = optax.lion(lr, weight_decay=float(opt.weight_decay))
  else:
    raise ValueError(
      f"Unknown config.optimizer.name {name!r}; expected one of {OPTIMIZERS}, e.g. "
      "--config.optimizer.name=adamw."
    )
  if name in ("adam", "sgd", "momentum") and float(opt.weight_decay):
    tx = optax.chain(optax.add_decayed_weights(float(opt.weight_decay)), tx)
  if float(opt.grad_clip_norm):
    tx = optax.chain(optax.clip_by_global_norm(float(opt.grad_clip_norm)), tx)
  return tx


def structure_from_string(spec: str) -> Any:
  """Parses ``config.pruning.structure``.

  ``"unstructured"``, ``"channels"`` (whole output neurons / filters), ``"N:M"`` (keep N
  of every M along the input axis, e.g. ``"2:4"``), ``"block:RxC"`` (tiles, e.g.
  ``"block:4x4"``), ``"rows"`` (unstructured with the same count per output neuron).

  Example:
    >>> structure_from_string("2:4")
    NOfM(n=2, m=4, axis=None)
    >>> structure_from_string("block:4x4")
    Block(shape=(4, 4))
  """
  spec = spec.strip().lower()
  if spec in ("", "unstructured"):
    return structures.unstructured()
  if spec == "rows":
    return structures.unstructured(within=-1)
  if spec in ("channels", "units", "neurons"):
    return structures.channels()
  if m := re.fullmatch(r"(\d+):(\d+)", spec):
    return structures.n_of_m(int(m.group(1)), int(m.group(2)))
  if m := re.fullmatch(r"block:(\d+(?:x\d+)*)", spec):
    return structures.block(tuple(int(d) for d in m.group(1).split("x")))
  raise ValueError(
    f"Unknown config.pruning.structure {spec!r}; expected 'unstructured', 'channels', "
    "'rows', 'N:M' (e.g. '2:4') or 'block:RxC' (e.g. 'block:4x4'). "
    "Example: --config.pruning.structure=channels."
  )


def _to_steps(value: float, unit: str, steps_per_epoch: int) -> int:
  return int(round(float(value) * (steps_per_epoch if unit == "epochs" else 1)))


def pruning_schedule(sched: Config, steps_per_epoch: int) -> schedules.Schedule:
  """The sparsity schedule of ``config.pruning.schedule``, converted to steps.

  ``begin``, ``end`` and ``every`` are in ``unit`` (``"epochs"`` or ``"steps"``); epochs
  become ``round(value * steps_per_epoch)`` steps (``every`` at least 1).

  Example:
    >>> import ml_collections
    >>> sched = ml_collections.ConfigDict(dict(kind="polynomial", unit="epochs", begin=1.0,
    ...                                        end=5.0, every=0.5, power=3.0, initial=0.0))
    >>> pruning_schedule(sched, steps_per_epoch=100)
    Polynomial(begin=100, end=500, every=50, power=3.0, initial=0.0)
  """
  if sched.unit not in ("epochs", "steps"):
    raise ValueError(
      f"config.pruning.schedule.unit must be 'epochs' or 'steps'; got {sched.unit!r}. "
      "Example: --config.pruning.schedule.unit=steps."
    )
  begin = _to_steps(sched.begin, sched.unit, steps_per_epoch)
  if sched.kind == "one_shot":
    return schedules.one_shot(begin)
  every = max(_to_steps(sched.every, sched.unit, steps_per_epoch), 1)
  end = _to_steps(sched.end, sched.unit, steps_per_epoch)
  if sched.kind == "periodic":
    return schedules.periodic(every, begin, end if end > begin else None)
  if sched.kind == "polynomial":
    end = max(end, begin + 1)
    return schedules.polynomial(begin, end, every, float(sched.power), float(sched.initial))
  raise ValueError(
    f"Unknown config.pruning.schedule.kind {sched.kind!r}; expected one of {SCHEDULES}, "
    "e.g. --config.pruning.schedule.kind=one_shot."
  )


def last_mask_update(sched: Config, steps_per_epoch: int) -> int | None:
  """The step of the schedule's last mask update (None for periodic without an end).

  A run must be longer than this step to reach the target sparsity.

  Example:
    >>> import ml_collections
    >>> sched = ml_collections.ConfigDict(dict(kind="one_shot", unit="epochs", begin=2.0))
    >>> last_mask_update(sched, steps_per_epoch=100)
    200
  """
  built = pruning_schedule(sched, steps_per_epoch)
  if isinstance(built, schedules.OneShot):
    return built.step
  return built.end


def mask_update_steps(config: Config, steps_per_epoch: int, total_steps: int) -> np.ndarray:
  """Which steps of the run update masks: ``bool[total_steps]`` from the pruning schedule.

  The trainer compiles a second step without the mask-update branch
  (``masks_frozen=True``) and uses it wherever this is False.

  Example:
    >>> from jaxprune.train.config import load_config
    >>> config = load_config("default", {"pruning.schedule.unit": "steps",
    ...   "pruning.schedule.begin": 2, "pruning.schedule.end": 6, "pruning.schedule.every": 2})
    >>> mask_update_steps(config, steps_per_epoch=10, total_steps=8).nonzero()[0].tolist()
    [2, 4, 6]
  """
  pruning = config.pruning
  if fixed_masks(pruning):
    return np.zeros(total_steps, bool)
  schedule = pruning_schedule(pruning.schedule, steps_per_epoch)
  target = float(pruning.sparsity)
  update = jax.jit(jax.vmap(lambda t: schedule(t, target)[0]))
  return np.asarray(update(jnp.arange(total_steps, dtype=jnp.int32)), bool)


def distribution_from_config(pruning: Config) -> Any:
  """``config.pruning.distribution``, with the leaves matching ``pruning.dense`` kept dense.

  ``dense`` is a regex over "/"-joined parameter paths (full match), e.g. ``"Dense_2/.*"``
  to leave LeNet's output layer unpruned; it combines with ``"uniform"`` only.

  Example:
    >>> import ml_collections
    >>> pruning = ml_collections.ConfigDict(
    ...   dict(distribution="uniform", dense="Dense_2/.*", sparsity=0.9))
    >>> dist = distribution_from_config(pruning)
    >>> type(dist).__name__
    'ByPath'
  """
  name, dense = pruning.distribution, pruning.dense
  if not dense:
    return distributions.get(name)
  if name != "uniform":
    raise ValueError(
      f"config.pruning.dense={dense!r} (leaves kept dense) works with the 'uniform' "
      f"distribution only; got distribution={name!r}. Use --config.pruning.dense='' or "
      "--config.pruning.distribution=uniform."
    )
  pattern = re.compile(dense)
  sparsity = float(pruning.sparsity)

  def rule(path: str, leaf: Any) -> float | None:
    if pattern.fullmatch(path) or not distributions.default_prunable(path, leaf):
      return None
    return sparsity

  return distributions.ByPath(rule)


def dynamic_optimizer(
  inner: optax.GradientTransformation, pruning: Config, steps_per_epoch: int
) -> optax.GradientTransformation | None:
  """The `jaxprune.dynamic` optimizer ``pruning`` asks for, or None for plain `masked`.

  * ``criterion`` ``"rigl"`` / ``"set"``: drop and grow from random initial masks, on the
    periodic ``schedule`` (its ``end`` is where the drop fraction, ``drop_fraction`` at
    step 0, reaches 0);
  * ``method="static"``: masks from the data-free ``criterion`` at initialisation, fixed;
  * ``method="ste"``: straight-through training, SR-STE with ``decay`` > 0.

  ``method``, ``drop_fraction`` and ``decay`` are optional fields (configs/rigl.py,
  configs/static_erk.py, configs/sr_ste.py set them).
  """
  method = pruning.get("method", "masked")
  sparsity = float(pruning.sparsity)
  schedule = pruning_schedule(pruning.schedule, steps_per_epoch)
  common = dict(
    distribution=distribution_from_config(pruning),
    structure=structure_from_string(pruning.structure),
  )
  if method == "ste":
    return dynamic.ste(
      inner,
      sparsity,
      schedule=schedule,
      decay=float(pruning.get("decay", 0.0)),
      criterion=pruning.criterion,
      seed=int(pruning.seed),
      **common,
    )
  if method == "static":
    key = jax.random.key(int(pruning.seed))
    masks = lambda p: jaxprune.prune(p, sparsity, criterion=pruning.criterion, key=key, **common)[1]
    return dynamic.static(inner, masks, packed=bool(pruning.packed))
  if method != "masked":
    raise ValueError(
      f"Unknown config.pruning.method {method!r}; expected 'masked', 'static' or 'ste'. "
      "Drop and grow is method 'masked' with criterion 'rigl' or 'set'."
    )
  if pruning.criterion not in ("rigl", "set"):
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
    alpha=float(pruning.get("drop_fraction", 0.3)),
    packed=bool(pruning.packed),
    seed=int(pruning.seed),
    **common,
  )


def fixed_masks(pruning: Config) -> bool:
  """Whether the run trains with fixed ``initial_masks`` (given, and sparsity 0).

  Example:
    >>> import ml_collections
    >>> fixed_masks(ml_collections.ConfigDict(dict(initial_masks="m.npz", sparsity=0.0)))
    True
  """
  return bool(pruning.get("initial_masks")) and float(pruning.sparsity) == 0.0


def initial_masks(pruning: Config) -> Any:
  """``params -> masks`` read from ``pruning.initial_masks`` (an .npz), or None if unset.

  The file is read once, at the first call, and checked against the params' paths and
  shapes (`jaxprune.train.export.load_tree`).
  """
  path = pruning.get("initial_masks")
  if not path:
    return None
  loaded: list[Any] = []

  def masks(params: Any) -> Any:
    if not loaded:
      loaded.append(export.load_tree(path, params, what="masks"))
    return jax.tree.map(jnp.asarray, loaded[0])

  return masks


def target_sparsity(pruning: Config) -> float | None:
  """``config.pruning.sparsity`` for `jaxprune.masked`: ``None`` for threshold criteria.

  Criteria such as ``"log_alpha"`` learn the sparsity, so the config must leave it at 0
  (a nonzero value would be ignored, which is an error).

  Example:
    >>> import ml_collections
    >>> target_sparsity(ml_collections.ConfigDict(dict(criterion="log_alpha", sparsity=0.0)))
    >>> target_sparsity(ml_collections.ConfigDict(dict(criterion="magnitude", sparsity=0.9)))
    0.9
  """
  value = float(pruning.sparsity)
  if jaxprune.criteria.get(pruning.criterion).threshold is None:
    return value
  if value != 0.0:
    raise ValueError(
      f"config.pruning.criterion={pruning.criterion!r} learns the sparsity (a threshold "
      f"criterion), so config.pruning.sparsity={value} would be ignored. Leave it at 0: "
      "--config.pruning.sparsity=0."
    )
  return None


def make_optimizer(
  config: Config, steps_per_epoch: int, total_steps: int
) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """The run's optimizer: ``jaxprune.masked(inner, ...)``, or ``inner`` when pruning is off.

  Args:
    config: the experiment config (``optimizer`` and ``pruning`` blocks are read).
    steps_per_epoch: training steps per epoch (to convert epoch-based schedules).
    total_steps: length of the run in steps (for the learning-rate decay).

  Returns:
    ``(tx, learning_rate_schedule)``.

  Example:
    >>> from jaxprune.train.config import load_config
    >>> config = load_config("default", {"pruning.criterion": "snip"})
    >>> tx, lr = make_optimizer(config, steps_per_epoch=468, total_steps=9360)
  """
  lr = learning_rate(config.optimizer, total_steps, steps_per_epoch)
  start = int(config.train.get("start_step", 0))
  # A run started at step k (rewound) has a fresh optimizer whose count starts at 0.
  inner_lr = lr if start == 0 else (lambda count: lr(count + start))
  inner = inner_optimizer(config.optimizer, inner_lr)
  pruning = config.pruning
  if not pruning.enabled:
    return inner, lr
  masks = initial_masks(pruning)
  dynamic_tx = dynamic_optimizer(inner, pruning, steps_per_epoch)
  if dynamic_tx is not None:
    if masks is not None:
      raise ValueError(
        f"config.pruning.initial_masks={pruning.initial_masks!r} works with "
        "config.pruning.method='masked' and a pruning (not drop-and-grow) criterion; got "
        f"method={pruning.get('method', 'masked')!r}, criterion={pruning.criterion!r}. Use "
        "--config.pruning.method=masked --config.pruning.criterion=magnitude."
      )
    return dynamic_tx, lr
  fixed = fixed_masks(pruning)
  tx = jaxprune.masked(
    inner,
    None if fixed else target_sparsity(pruning),
    criterion=pruning.criterion,
    schedule=None if fixed else pruning_schedule(pruning.schedule, steps_per_epoch),
    distribution=distribution_from_config(pruning),
    structure=structure_from_string(pruning.structure),
    packed=bool(pruning.packed),
    seed=int(pruning.seed),
    initial_masks=masks,
  )
  return tx, lr
