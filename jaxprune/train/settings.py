"""The one place that reads a config: `resolve` turns it into typed, checked `Settings`.

Every block of a config (``configs/default.py`` documents each field) becomes a frozen
dataclass with the same field names, converted to its type: ``settings.pruning.sparsity``
is ``float(config.pruning.sparsity)``. `resolve` refuses a field no stage reads (a typo,
or a setting that would be ignored) and every value that is unknown or contradicts
another, before any data is loaded or anything compiled. Every stage of the trainer
(`jaxprune.train.experiment`, `optim`, `loop`, `lottery`, `sweep`) takes what it needs
from the `Settings`, never from the config.

Variants of a run (a sweep's sparsities, a lottery's rounds, the settings of a fallback
dataset) are `derive`-d from the settings with dotted overrides, and checked again.

Example:
  >>> from jaxprune.train.config import load_config
  >>> s = resolve(load_config("default"))
  >>> s.pruning.sparsity, s.pruning.schedule.kind, s.optimizer.name
  (0.9, 'polynomial', 'adam')
  >>> derive(s, {"pruning.sparsity": 0.5}).pruning.sparsity
  0.5
"""

from __future__ import annotations

import dataclasses
import json
import re
import typing
from collections.abc import Mapping
from typing import Any

import ml_collections

from jaxprune import criteria, distributions, structures
from jaxprune.train.config import load_config, override
from jaxprune.train.text_settings import check_not_text_settings, check_settings, is_text

OPTIMIZERS = ("adam", "adamw", "sgd", "momentum", "lion")
LR_SCHEDULES = ("constant", "cosine", "linear", "step")
SCHEDULES = ("one_shot", "periodic", "polynomial")
PENALTIES = ("kl", "l0")
METHODS = ("masked", "static", "ste")
DROP_AND_GROW = ("rigl", "set")
LOTTERY_DISTRIBUTIONS = ("layerwise", "global")
LOTTERY_CONTROLS = ("reinit", "random")

_frozen = dataclasses.dataclass(frozen=True)


@_frozen
class Data:
  """``config.data``: which dataset, where it is, how it is split and fed."""

  name: str
  data_dir: str
  source_dir: str
  download: bool
  fallback: str
  fallback_config: str = ""
  validation_fraction: float = 0.0
  validation_seed: int = 0
  on_device: bool = True
  prefetch: int = 2
  num_workers: int = 0
  augment: str = ""
  image_size: int = 0
  seq_len: int = 0  # text: bytes per training window (see `jaxprune.train.text_task`)
  test_fraction: float = 0.0  # "text:PATH": the share held out for test


@_frozen
class Model:
  """``config.model``: the zoo name, its attributes and optional starting params."""

  name: str
  kwargs: dict = dataclasses.field(default_factory=dict)
  initial_params: str = ""


@_frozen
class Optimizer:
  """``config.optimizer``: the inner optax optimizer and its learning-rate schedule."""

  name: str
  learning_rate: float
  lr_schedule: str
  warmup_epochs: float
  end_lr_factor: float
  weight_decay: float
  momentum: float
  nesterov: bool
  grad_clip_norm: float
  decay_epochs: tuple[float, ...] = ()
  decay_factor: float = 0.1


@_frozen
class Train:
  """``config.train``: run length, batch sizes, evaluation and logging cadence, the loss."""

  batch_size: int
  num_epochs: float
  num_steps: int
  eval_batch_size: int
  eval_every_epochs: float
  log_every_steps: int
  label_smoothing: float
  start_step: int = 0
  penalty: str = ""
  penalty_weight: float = 1.0
  penalty_warmup_epochs: float = 0.0
  penalty_ramp_epochs: float = 0.0


@_frozen
class Schedule:
  """``config.pruning.schedule``: when masks change, in ``unit`` (epochs or steps)."""

  kind: str
  unit: str
  begin: float
  end: float = 0.0
  every: float = 1.0
  power: float = 3.0
  initial: float = 0.0


@_frozen
class Pruning:
  """``config.pruning``: the masking policy (criterion, schedule, distribution, structure)."""

  enabled: bool
  sparsity: float
  criterion: str
  schedule: Schedule
  distribution: str
  dense: str
  structure: str
  packed: bool
  seed: int
  scoring_temperature: float = 1.0
  initial_masks: str = ""
  recalibrate_bn: int = -1
  frozen_step: bool = True
  method: str = "masked"
  drop_fraction: float = 0.3
  decay: float = 0.0

  @property
  def fixed_masks(self) -> bool:
    """Whether the run trains with fixed ``initial_masks`` (given, and sparsity 0)."""
    return bool(self.initial_masks) and self.sparsity == 0.0

  @property
  def drop_and_grow(self) -> bool:
    """Whether the masks move by drop and grow (criterion ``rigl`` / ``set``, method masked)."""
    return self.method == "masked" and self.criterion in DROP_AND_GROW


@_frozen
class Checkpoint:
  """``config.checkpoint``: whether, how often and how many checkpoints are kept."""

  enabled: bool
  every_steps: int
  keep: int
  async_save: bool


@_frozen
class Sharding:
  """``config.sharding``: replicate the state, or shard its large leaves (FSDP)."""

  fsdp: bool
  fsdp_min_size: int


@_frozen
class Report:
  """``config.report``: the reporters of a run (plots, TensorBoard, progress bar)."""

  plots: bool
  progress: bool
  tensorboard: bool = False


@_frozen
class Lottery:
  """``config.lottery`` (configs/lottery.py): rounds of magnitude pruning with rewinding."""

  rounds: int
  rate: float
  output_rate: float
  output_layer: str
  distribution: str
  rewind_step: int
  controls: tuple[str, ...]
  reinit_rounds: frozenset[int] | None = None
  random_rounds: frozenset[int] | None = None

  def control_rounds(self, name: str) -> frozenset[int] | None:
    """The rounds control ``name`` runs in; None = every round >= 1."""
    return getattr(self, f"{name}_rounds")


@_frozen
class Settings:
  """A config resolved: one typed block per config block.

  Attributes:
    seed: ``config.seed``.
    data, model, optimizer, train, pruning, checkpoint, sharding, report: the blocks.
    lottery: the ``lottery`` block, or None.
    source: the config these settings were resolved from (written to ``config.json``,
      and the base of `derive`); no stage reads it.
  """

  seed: int
  data: Data
  model: Model
  optimizer: Optimizer
  train: Train
  pruning: Pruning
  checkpoint: Checkpoint
  sharding: Sharding
  report: Report
  lottery: Lottery | None = None
  source: ml_collections.ConfigDict | None = dataclasses.field(
    default=None, compare=False, repr=False
  )

  def as_json(self) -> dict[str, Any]:
    """The config as JSON (``config.json`` of a run)."""
    return json.loads(self.source.to_json_best_effort())

  def field(self, dotted: str) -> Any:
    """The setting at a dotted path, e.g. ``"pruning.schedule.kind"`` (blocks as dicts)."""
    node: Any = self
    for name in dotted.split("."):
      node = getattr(node, name)
    return dataclasses.asdict(node) if dataclasses.is_dataclass(node) else node


BLOCKS = {
  "data": Data,
  "model": Model,
  "optimizer": Optimizer,
  "train": Train,
  "pruning": Pruning,
  "checkpoint": Checkpoint,
  "sharding": Sharding,
  "report": Report,
}


# -- reading ---------------------------------------------------------------------------------


def _convert(kind: Any, value: Any, where: str) -> Any:
  if dataclasses.is_dataclass(kind):
    return _block(kind, value, where)
  if kind is bool:
    return bool(value)
  if kind is int:
    return int(value)
  if kind is float:
    return float(value)
  if kind is str:
    return str(value)
  if kind is dict:
    return value.to_dict() if isinstance(value, ml_collections.ConfigDict) else dict(value)
  if typing.get_origin(kind) is tuple:
    return tuple(float(v) for v in value)
  raise TypeError(f"no conversion to {kind} for config.{where}")


def _unknown(node: ml_collections.ConfigDict, known: Any, where: str) -> None:
  unknown = sorted(set(node.keys()) - set(known))
  if unknown:
    prefix = f"config.{where}." if where else "config."
    raise ValueError(
      f"{', '.join(prefix + u for u in unknown)}: no such setting, so the trainer would "
      f"ignore it. Valid fields of {prefix.rstrip('.') or 'the config'}: {sorted(known)}. "
      "Remove it or correct its name (configs/default.py documents every field)."
    )


def _block(cls: type, node: ml_collections.ConfigDict, where: str) -> Any:
  """Reads the fields of ``cls`` from ``node`` (defaults for optional ones), typed."""
  hints = typing.get_type_hints(cls)
  fields = dataclasses.fields(cls)
  _unknown(node, [f.name for f in fields], where)
  values = {}
  for f in fields:
    if f.name in node:
      values[f.name] = _convert(hints[f.name], node[f.name], f"{where}.{f.name}")
    elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
      raise ValueError(
        f"config.{where} has no field {f.name!r}; start configs from configs/default.py "
        "(load_config('default')), which sets every field."
      )
  return cls(**values)


def _is_count(value: Any) -> bool:
  return isinstance(value, int | float) and int(value) == value and int(value) >= 0


def _control_rounds(lot: ml_collections.ConfigDict, name: str) -> frozenset[int] | None:
  spec = str(lot.get(f"{name}_rounds", "")).strip()
  if not spec:
    return None
  try:
    rounds = {int(r) for r in spec.split(",") if r.strip()}
  except ValueError:
    rounds = set()
  if not rounds or min(rounds) < 1:
    raise ValueError(
      f"config.lottery.{name}_rounds={spec!r}; expected comma-separated rounds >= 1 (the "
      f"controls of round 0, the dense network, do not exist), e.g. "
      f"--config.lottery.{name}_rounds=7,12, or '' for every round."
    )
  return frozenset(rounds)


def _lottery(lot: ml_collections.ConfigDict) -> Lottery:
  """Reads and checks ``config.lottery`` (rates, rounds, distribution, rewind step, controls)."""
  known = [f.name for f in dataclasses.fields(Lottery)]
  _unknown(lot, known, "lottery")
  if not 0.0 < float(lot.rate) < 1.0 or not 0.0 <= float(lot.output_rate) < 1.0:
    raise ValueError(
      f"config.lottery.rate={lot.rate} and output_rate={lot.output_rate} are fractions of "
      "the remaining weights removed per round; expected 0 < rate < 1 and 0 <= output_rate "
      "< 1, e.g. --config.lottery.rate=0.2 --config.lottery.output_rate=0.1."
    )
  if not _is_count(lot.rounds):
    raise ValueError(
      f"config.lottery.rounds={lot.rounds!r} counts the pruning rounds after the dense one; "
      "expected an integer >= 0, e.g. --config.lottery.rounds=15."
    )
  if lot.distribution not in LOTTERY_DISTRIBUTIONS:
    raise ValueError(
      f"Unknown config.lottery.distribution {lot.distribution!r}; expected one of "
      f"{LOTTERY_DISTRIBUTIONS}, e.g. --config.lottery.distribution=layerwise."
    )
  if not _is_count(lot.rewind_step):
    raise ValueError(
      f"config.lottery.rewind_step={lot.rewind_step!r} is the step of round 0 the later rounds "
      "rewind to; expected an integer >= 0 (0 = initialisation), e.g. "
      "--config.lottery.rewind_step=0."
    )
  controls = tuple(c.strip() for c in str(lot.controls).split(",") if c.strip())
  unknown = [c for c in controls if c not in LOTTERY_CONTROLS]
  if unknown:
    raise ValueError(
      f"Unknown config.lottery.controls {unknown}; expected a comma-separated subset of "
      f"{LOTTERY_CONTROLS}, e.g. --config.lottery.controls=reinit,random (or '' for none)."
    )
  only = {name: _control_rounds(lot, name) for name in LOTTERY_CONTROLS}
  for name, rounds in only.items():
    if rounds is None:
      continue
    if name not in controls:  # the setting would be ignored
      raise ValueError(
        f"config.lottery.{name}_rounds={lot.get(f'{name}_rounds')!r} but the {name!r} "
        f"control is not run (config.lottery.controls={lot.controls!r}); add it, e.g. "
        f"--config.lottery.controls=reinit,random, or set --config.lottery.{name}_rounds=''."
      )
    if max(rounds) > int(lot.rounds):
      raise ValueError(
        f"config.lottery.{name}_rounds={lot.get(f'{name}_rounds')!r} names rounds after the "
        f"last one (config.lottery.rounds={lot.rounds}); expected rounds in 1..{lot.rounds}, "
        f"e.g. --config.lottery.{name}_rounds={lot.rounds}."
      )
  return Lottery(
    rounds=int(lot.rounds),
    rate=float(lot.rate),
    output_rate=float(lot.output_rate),
    output_layer=str(lot.output_layer),
    distribution=str(lot.distribution),
    rewind_step=int(lot.rewind_step),
    controls=controls,
    reinit_rounds=only["reinit"],
    random_rounds=only["random"],
  )


def resolve(config: ml_collections.ConfigDict) -> Settings:
  """Reads and checks every field of ``config``: the only reader of a config.

  Args:
    config: an experiment config (``configs/<name>.py``'s ``get_config()``, e.g. from
      `jaxprune.train.config.load_config`).

  Returns:
    The `Settings`.

  Raises:
    ValueError: for a field no stage reads, an unknown name (optimizer, schedule,
      structure, criterion...) or settings that contradict each other; the message names
      the field and shows the flag that fixes it.

  Example:
    >>> from jaxprune.train.config import load_config
    >>> resolve(load_config("default", {"optimizer.name": "adagrad"}))
    Traceback (most recent call last):
    ...
    ValueError: Unknown config.optimizer.name 'adagrad'; expected one of ...
  """
  _unknown(config, ["seed", *BLOCKS, "lottery"], "")
  blocks = {name: _block(cls, config[name], name) for name, cls in BLOCKS.items()}
  lottery = _lottery(config.lottery) if "lottery" in config else None
  source = config.copy_and_resolve_references()
  source.lock()
  settings = Settings(int(config.seed), **blocks, lottery=lottery, source=source)
  check(settings)
  return settings


def ensure(config: ml_collections.ConfigDict | Settings) -> Settings:
  """``config`` resolved (see `resolve`); `Settings` are returned as they are."""
  return config if isinstance(config, Settings) else resolve(config)


def derive(settings: Settings, changes: Mapping[str, Any]) -> Settings:
  """The settings with dotted fields changed (as ``--config.a.b=value`` would), checked again.

  Example:
    >>> from jaxprune.train.config import load_config
    >>> s = derive(resolve(load_config("default")), {"pruning.schedule.kind": "one_shot"})
    >>> s.pruning.schedule.kind
    'one_shot'
  """
  config = settings.source.copy_and_resolve_references()
  with config.unlocked():
    override(config, changes)
  config.lock()
  return resolve(config)


# -- checking --------------------------------------------------------------------------------


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


def _check_optimizer(opt: Optimizer) -> None:
  if opt.lr_schedule not in LR_SCHEDULES:
    raise ValueError(
      f"Unknown config.optimizer.lr_schedule {opt.lr_schedule!r}; expected one of "
      f"{LR_SCHEDULES}, e.g. --config.optimizer.lr_schedule=cosine."
    )
  if opt.name not in OPTIMIZERS:
    raise ValueError(
      f"Unknown config.optimizer.name {opt.name!r}; expected one of {OPTIMIZERS}, e.g. "
      "--config.optimizer.name=adamw."
    )


def _check_schedule(sched: Schedule) -> None:
  if sched.unit not in ("epochs", "steps"):
    raise ValueError(
      f"config.pruning.schedule.unit must be 'epochs' or 'steps'; got {sched.unit!r}. "
      "Example: --config.pruning.schedule.unit=steps."
    )
  if sched.kind not in SCHEDULES:
    raise ValueError(
      f"Unknown config.pruning.schedule.kind {sched.kind!r}; expected one of {SCHEDULES}, "
      "e.g. --config.pruning.schedule.kind=one_shot."
    )


def _check_distribution(pruning: Pruning) -> None:
  if not pruning.dense:
    distributions.get(pruning.distribution)  # an unknown name lists the known ones
  elif pruning.distribution != "uniform":
    raise ValueError(
      f"config.pruning.dense={pruning.dense!r} (leaves kept dense) works with the 'uniform' "
      f"distribution only; got distribution={pruning.distribution!r}. Use "
      "--config.pruning.dense='' or --config.pruning.distribution=uniform."
    )


def _check_method(pruning: Pruning) -> None:
  if pruning.method not in METHODS:
    raise ValueError(
      f"Unknown config.pruning.method {pruning.method!r}; expected 'masked', 'static' or "
      "'ste'. Drop and grow is method 'masked' with criterion 'rigl' or 'set'."
    )
  dynamic = pruning.method != "masked" or pruning.drop_and_grow
  if dynamic and pruning.initial_masks:
    raise ValueError(
      f"config.pruning.initial_masks={pruning.initial_masks!r} works with "
      "config.pruning.method='masked' and a pruning (not drop-and-grow) criterion; got "
      f"method={pruning.method!r}, criterion={pruning.criterion!r}. Use "
      "--config.pruning.method=masked --config.pruning.criterion=magnitude."
    )
  if dynamic or pruning.fixed_masks or criteria.get(pruning.criterion).threshold is None:
    return
  if pruning.sparsity != 0.0:
    raise ValueError(
      f"config.pruning.criterion={pruning.criterion!r} learns the sparsity (a threshold "
      f"criterion), so config.pruning.sparsity={pruning.sparsity} would be ignored. Leave it "
      "at 0: --config.pruning.sparsity=0."
    )


def _check_pruning(pruning: Pruning) -> None:
  if pruning.recalibrate_bn < -1:
    raise ValueError(
      f"config.pruning.recalibrate_bn={pruning.recalibrate_bn}; expected -1 (automatic), 0 "
      "(off) or a number of batches, e.g. --config.pruning.recalibrate_bn=20."
    )
  if not pruning.enabled:
    return
  _check_schedule(pruning.schedule)
  _check_distribution(pruning)
  structure_from_string(pruning.structure)
  criteria.get(pruning.criterion)  # an unknown name lists the known ones
  _check_method(pruning)


def check(settings: Settings) -> None:
  """Refuses unknown names and contradictory values (`resolve` calls it).

  The checks that need the data or the model (batch size against the training split,
  the start step against the run length, BatchNorm recalibration) run when the
  `jaxprune.train.experiment` is built, still before anything compiles.
  """
  _check_optimizer(settings.optimizer)
  if settings.train.penalty and settings.train.penalty not in PENALTIES:
    raise ValueError(
      f"config.train.penalty={settings.train.penalty!r} is not a known penalty; expected '' "
      "(none), 'kl' (variational dropout) or 'l0' (L0 gates), e.g. --config.train.penalty=kl."
    )
  _check_pruning(settings.pruning)
  if is_text(settings.data):
    check_settings(settings.data)
  else:
    check_not_text_settings(settings.data)


# -- the fallback dataset --------------------------------------------------------------------


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


def on_fallback(settings: Settings, dataset: str) -> tuple[Settings, dict[str, object]]:
  """The settings of a run that falls back to ``dataset`` (see `fallback_settings`)."""
  config, changed = fallback_settings(settings.source, dataset)
  return resolve(config), changed
