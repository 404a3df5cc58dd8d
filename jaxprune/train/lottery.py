"""Lottery tickets: iterative magnitude pruning with rewinding, and its two controls.

`run` trains ``lottery.rounds + 1`` rounds with the ordinary trainer
(`jaxprune.train.loop.train_and_evaluate`), each in its own workdir ``round_<r>``:

1. round 0 trains the dense network from its initialisation;
2. after round r, magnitude pruning of the trained weights (`jaxprune.prune`) removes
   ``rate`` of the weights each layer still has (``output_rate`` for ``output_layer``),
   so round r has per-layer sparsity ``1 - (1 - rate) ** r``: exact counts, ``n -
   round(s * n)`` weights kept, and nested (pruned weights are exactly 0 after training,
   so they rank lowest; `next_masks` checks it);
3. round r starts from those masks (``pruning.initial_masks``: fixed, static sparse
   training) and the surviving weights rewound (``model.initial_params``) to their values
   at initialisation (Frankle & Carbin 2019) or, with ``rewind_step`` k > 0, at step k of
   round 0 (Frankle et al. 2020), training steps k to the end (``train.start_step``);
4. the optimizer starts fresh every round.

Controls, for every round r >= 1, each a trained run at the same per-layer sparsity:
``reinit`` (the ticket's masks, weights drawn afresh from the initialiser) and ``random``
(masks drawn at random with the ticket's per-layer counts, weights rewound like the
ticket's). They live in ``controls/<name>/round_<r>``. ``lottery.<name>_rounds`` limits a
control to some rounds (e.g. ``"7,12"``: the 21% and 7% rounds of LeNet), "" = every round.

Every run checkpoints in its workdir, so a killed lottery run started again with the
same command resumes the round it was in. Each round's masks are in
``round_<r>/masks.npz`` (`jaxprune.train.export`), usable by any run through
``--config.pruning.initial_masks``. ``lottery.json`` and ``lottery.png`` hold test error,
validation error and the early-stopping step (minimum validation loss) per round.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

import jaxprune
from jaxprune._tree import leaves_with_paths
from jaxprune.train import experiment, export, optim
from jaxprune.train import settings as settings_lib
from jaxprune.train.config import load_config
from jaxprune.train.loop import train_and_evaluate, write_json
from jaxprune.train.metrics_log import read_metrics
from jaxprune.train.report import save_figure
from jaxprune.train.settings import Lottery, Settings
from jaxprune.train.state import create_train_state

PyTree = Any
CONTROLS = settings_lib.LOTTERY_CONTROLS
DISTRIBUTIONS = settings_lib.LOTTERY_DISTRIBUTIONS


def cumulative_sparsity(rate: float, round_: int) -> float:
  """Sparsity after ``round_`` rounds removing ``rate`` of the remaining weights each.

  Example:
    >>> [round(cumulative_sparsity(0.2, r), 4) for r in range(4)]
    [0.0, 0.2, 0.36, 0.488]
  """
  return 1.0 - (1.0 - float(rate)) ** int(round_)


def prunable_paths(settings: Settings, params: PyTree) -> list[str]:
  """The paths of the leaves the run's masks prune (the settings' distribution decides)."""
  named = leaves_with_paths(params)
  dist = optim.distribution_from_config(settings.pruning)
  dist = jaxprune.distributions.get(dist)
  on = dist.prunable([p for p, _ in named], [x for _, x in named])
  return [p for (p, _), yes in zip(named, on, strict=True) if yes]


def _rates(lottery: Lottery, paths: Sequence[str]) -> tuple[list, list]:
  """Splits ``paths`` into (the output layer's, the others'), by ``lottery.output_layer``."""
  pattern = lottery.output_layer
  out = [p for p in paths if pattern and re.fullmatch(pattern, p)]
  if pattern and not out:
    raise ValueError(
      f"config.lottery.output_layer={pattern!r} matches no pruned parameter; the pruned "
      f"paths are {list(paths)}. Example: --config.lottery.output_layer='Dense_2/kernel', or "
      "'' to prune every layer at config.lottery.rate."
    )
  return out, [p for p in paths if p not in out]


def next_masks(
  params: PyTree,
  masks: PyTree,
  round_: int,
  lottery: Lottery,
  paths: Sequence[str],
) -> PyTree:
  """The masks of round ``round_`` by magnitude pruning of round ``round_ - 1``'s ``params``.

  ``layerwise``: each leaf in ``paths`` reaches ``cumulative_sparsity(rate, round_)``
  (``output_rate`` for ``output_layer``); ``global``: one magnitude threshold over the
  leaves other than the output layer, which is pruned on its own at ``output_rate``.

  Args:
    params: the trained params of the previous round (pruned entries exactly 0).
    masks: that round's masks (bool pytree like params).
    round_: the round the new masks are for (>= 1).
    lottery: ``settings.lottery``.
    paths: the pruned leaves (`prunable_paths`).

  Returns:
    Bool masks like ``params``; all True outside ``paths``.

  Raises:
    RuntimeError: if a weight pruned before would be kept (the masks must be nested).
  """
  named = dict(leaves_with_paths(params))
  out_paths, rest = _rates(lottery, paths)
  out_rate = lottery.output_rate if out_paths else lottery.rate
  s_rest = cumulative_sparsity(lottery.rate, round_)
  s_out = cumulative_sparsity(out_rate, round_)
  new: dict[str, jax.Array] = {}
  if lottery.distribution == "layerwise":
    targets = {p: (s_out if p in out_paths else s_rest) for p in paths}
    groups = [({p: named[p]}, targets[p], "uniform") for p in paths]
  elif lottery.distribution == "global":
    groups = [({p: named[p]}, s_out, "uniform") for p in out_paths]
    groups.append(({p: named[p] for p in rest}, s_rest, "global"))
  else:
    raise ValueError(
      f"Unknown config.lottery.distribution {lottery.distribution!r}; expected one of "
      f"{DISTRIBUTIONS}, e.g. --config.lottery.distribution=layerwise."
    )
  for group, sparsity, dist in groups:
    if sparsity > 0 and group:
      new.update(jaxprune.prune(group, sparsity, criterion="magnitude", distribution=dist)[1])
  old = dict(leaves_with_paths(masks))
  result = []
  for path, leaf in named.items():
    m = new.get(path, jnp.ones(jnp.shape(leaf), bool))
    revived = int(jnp.sum(m & ~jnp.asarray(old[path])))
    if revived:
      raise RuntimeError(
        f"Round {round_}: magnitude pruning would keep {revived} weights of {path!r} that an "
        "earlier round pruned; the trained params must have their pruned entries at exactly "
        "0 (train with jaxprune.masked and the previous round's masks)."
      )
    result.append(m)
  return jax.tree.unflatten(jax.tree.structure(params), result)


def random_masks(masks: PyTree, paths: Sequence[str], key: jax.Array) -> PyTree:
  """Random masks with the per-leaf kept counts of ``masks`` on ``paths`` (all True elsewhere).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> masks = {"w": jnp.arange(10).reshape(2, 5) < 3}
    >>> new = random_masks(masks, ["w"], jax.random.key(1))
    >>> int(new["w"].sum()), bool((new["w"] == masks["w"]).all())
    (3, False)
  """
  named = leaves_with_paths(masks)
  keys = jax.random.split(key, max(len(named), 1))
  result = []
  for i, (path, m) in enumerate(named):
    m = jnp.asarray(m)
    if path not in paths:
      result.append(jnp.ones(m.shape, bool))
      continue
    kept = int(m.sum())
    order = jax.random.permutation(keys[i], m.size)
    flat = jnp.zeros(m.size, bool).at[order[:kept]].set(True)
    result.append(flat.reshape(m.shape))
  return jax.tree.unflatten(jax.tree.structure(masks), result)


def early_stopping(workdir: str | os.PathLike) -> dict[str, Any]:
  """The step of minimum validation loss in a run's ``metrics.jsonl``, and its metrics.

  Returns:
    ``{"early_stop_step", "early_stop_validation_loss", "early_stop_validation_error"}``
    (None values if the run has no validation records).
  """
  records = [r for r in read_metrics(Path(workdir) / "metrics.jsonl") if "validation_loss" in r]
  if not records:
    return dict.fromkeys(
      ("early_stop_step", "early_stop_validation_loss", "early_stop_validation_error")
    )
  best = min(records, key=lambda r: (r["validation_loss"], r["step"]))
  return {
    "early_stop_step": int(best["step"]),
    "early_stop_validation_loss": float(best["validation_loss"]),
    "early_stop_validation_error": 1.0 - float(best["validation_accuracy"]),
  }


def round_settings(
  settings: Settings | ml_collections.ConfigDict,
  masks: str | os.PathLike,
  params: str | os.PathLike | None,
) -> Settings:
  """The trainer settings of one run: fixed ``masks``, weights from ``params``, rewind step.

  Args:
    settings: the lottery's settings (or its config).
    masks: the run's masks (``.npz``).
    params: its starting weights (``.npz``), or None to initialise from the seed (round 0,
      which also starts at step 0).
  """
  settings = settings_lib.ensure(settings)
  return settings_lib.derive(
    settings,
    {
      "pruning.enabled": True,
      "pruning.sparsity": 0.0,
      "pruning.initial_masks": os.fspath(masks),
      "model.initial_params": "" if params is None else os.fspath(params),
      "train.start_step": 0 if params is None else settings.lottery.rewind_step,
    },
  )


# Fields every round sets itself (`round_settings`): a lottery config leaves them at these
# values; another value would be overridden, so it is refused with the setting to use.
SET_BY_ROUNDS: dict[str, tuple[Any, str]] = {
  "pruning.enabled": (
    True,
    "every round trains with its masks (round 0 with all-True ones); "
    "--config.lottery.rounds=0 trains the dense network alone",
  ),
  "pruning.sparsity": (
    0.0,
    "round r's sparsity is 1 - (1 - lottery.rate) ** r (lottery.output_rate for "
    "lottery.output_layer); set --config.lottery.rate and --config.lottery.rounds instead",
  ),
  "pruning.initial_masks": (
    "",
    "each round's masks come from pruning the round before; to train once from given masks "
    "use configs/default.py with --config.pruning.initial_masks=FILE --config.pruning.sparsity=0",
  ),
  "model.initial_params": (
    "",
    "round 0 starts from the initialisation of --config.seed and the later rounds rewind to "
    "it (or to step k of round 0 with --config.lottery.rewind_step=k)",
  ),
  "train.start_step": (
    0,
    "round 0 starts at step 0 and the later rounds at the rewind step; set "
    "--config.lottery.rewind_step=k instead",
  ),
}
# Fields no round reads: masks are fixed within a round and pruned by magnitude between
# rounds. A value other than configs/default.py's would be ignored, so it is refused.
NOT_READ: dict[str, str] = {
  "pruning.criterion": "the rounds prune by the magnitude of the trained weights",
  "pruning.schedule": (
    "masks are fixed within a round; the sparsity grows from round to round by "
    "--config.lottery.rate"
  ),
  "pruning.distribution": (
    "the rounds prune each layer by its own rate, or with one threshold with "
    "--config.lottery.distribution=global (--config.pruning.dense=REGEX keeps layers dense)"
  ),
  "pruning.structure": "the rounds prune single weights",
  "pruning.scoring_temperature": "magnitude pruning scores no loss",
  "pruning.seed": (
    "magnitude pruning draws nothing; the random control's masks are drawn from --config.seed"
  ),
}


def _differences(value: Any, default: Any, dotted: str) -> list[str]:
  """``["dotted.field=value", ...]`` where ``value`` (a field or a dict of them) differs."""
  if isinstance(default, dict):
    return [
      item
      for key in default
      for item in _differences(value.get(key, default[key]), default[key], f"{dotted}.{key}")
    ]
  return [] if value == default else [f"{dotted}={value!r}"]


def check(config: Settings | ml_collections.ConfigDict) -> None:
  """Refuses a lottery config the run cannot follow, before anything is trained or written.

  The ``lottery`` block's own values (rates, rounds, distribution, rewind step, controls)
  are checked when the config is resolved (`jaxprune.train.settings.resolve`); this adds
  that the settings every round sets itself (`SET_BY_ROUNDS`) and those no round reads
  (`NOT_READ`) are left as configs/lottery.py has them: another value would be silently
  overridden or ignored. `check_experiment` adds the checks that need the model and data.

  Args:
    config: a config with a ``lottery`` block, or its settings.

  Raises:
    ValueError: naming the setting, why the lottery cannot use it, and the flag to use.

  Example:
    >>> check(load_config("lottery"))
    >>> check(load_config("lottery", {"pruning.sparsity": 0.5}))
    Traceback (most recent call last):
    ...
    ValueError: A lottery run sets config.pruning.sparsity itself; got 0.5, which it would ...
  """
  settings = settings_lib.ensure(config)
  if not settings.checkpoint.enabled:
    raise ValueError(
      "A lottery run resumes from its rounds' checkpoints; got config.checkpoint.enabled="
      "False. Use --config.checkpoint.enabled=True."
    )
  for dotted, (expected, why) in SET_BY_ROUNDS.items():
    value = settings.field(dotted)
    if value != expected:
      raise ValueError(
        f"A lottery run sets config.{dotted} itself; got {value!r}, which it would "
        f"override: {why}. Leave --config.{dotted}={expected!r} (as configs/lottery.py has it)."
      )
  default = settings_lib.resolve(load_config("default"))
  for dotted, why in NOT_READ.items():
    changed = _differences(settings.field(dotted), default.field(dotted), dotted)
    if changed:
      raise ValueError(
        f"A lottery run does not read config.{dotted}; got {', '.join(changed)}, which it "
        f"would ignore: {why}. Leave config.{dotted} at configs/lottery.py's value "
        f"({default.field(dotted)!r})."
      )


def check_experiment(
  settings: Settings | ml_collections.ConfigDict, paths: Sequence[str], total_steps: int
) -> None:
  """The checks of a lottery config that need its model and data, before round 0 trains.

  Args:
    settings: the lottery's settings (or its config).
    paths: the pruned leaves (`prunable_paths`).
    total_steps: the length of each round in steps (`jaxprune.train.experiment.Experiment`).

  Raises:
    ValueError: if ``lottery.output_layer`` matches no pruned leaf, or
      ``lottery.rewind_step`` is not a step of the run.

  Example:
    >>> config = load_config("lottery", {"lottery.rewind_step": 100})
    >>> check_experiment(config, ["Dense_0/kernel", "Dense_2/kernel"], total_steps=100)
    Traceback (most recent call last):
    ...
    ValueError: config.lottery.rewind_step=100 is not a step of round 0's 100 steps; ...
  """
  lottery = settings_lib.ensure(settings).lottery
  _rates(lottery, paths)
  rewind_step = lottery.rewind_step
  if not 0 <= rewind_step < total_steps:
    raise ValueError(
      f"config.lottery.rewind_step={rewind_step} is not a step of round 0's {total_steps} "
      f"steps; expected 0 to {total_steps - 1}, e.g. --config.lottery.rewind_step=0 "
      "(rewind to initialisation), or lengthen the rounds (--config.train.num_steps)."
    )


def _train(settings: Settings, workdir: Path, **kwargs: Any) -> dict[str, Any]:
  """Trains (or resumes) one run; a run whose ``summary.json`` exists is finished."""
  summary = workdir / "summary.json"
  if summary.is_file() and "stop_step" not in kwargs:
    return json.loads(summary.read_text())
  return train_and_evaluate(settings, workdir, verbose=False, **kwargs)


def _mask_stats(masks: PyTree, paths: Sequence[str]) -> dict[str, Any]:
  named = dict(leaves_with_paths(masks))
  layers = {p: int(np.sum(named[p])) for p in paths}
  total = sum(int(np.size(named[p])) for p in paths)
  return {"weights_remaining": sum(layers.values()) / total, "kept": layers}


def _entry(workdir: Path, summary: dict[str, Any]) -> dict[str, Any]:
  return {
    "test_error": summary["test_error"],
    "validation_error": summary["validation_error"],
    "steps": summary["steps"],
    **early_stopping(workdir),
  }


def run(
  config: ml_collections.ConfigDict | Settings,
  workdir: str | os.PathLike,
  *,
  verbose: bool = True,
) -> dict[str, Any]:
  """Runs (or resumes) the lottery experiment of ``config`` in ``workdir``.

  Args:
    config: a config with a ``lottery`` block (``configs/lottery.py``), or its settings.
    workdir: the experiment folder: ``rewind.npz``, ``round_<r>/`` (trainer workdirs with
      ``masks.npz``), ``controls/<name>/round_<r>/``, ``lottery.json``, ``lottery.png``.
    verbose: print one line per finished run.

  Returns:
    The contents of ``lottery.json``: per round, the weights remaining and per-layer kept
    counts, and for the ticket and each control its test and validation error and
    early-stopping step.
  """
  settings = settings_lib.ensure(config)
  check(settings)
  # Every setting is checked before anything is trained or written.
  dense = experiment.build(settings, verbose=False)
  shapes = jax.eval_shape(dense.create_state).params
  check_experiment(settings, prunable_paths(dense.settings, shapes), dense.total_steps)
  workdir = Path(workdir)
  exp0 = _round_0(settings, workdir, shapes, verbose)
  base = exp0.settings  # on the fallback data, if it fell back
  like = jax.eval_shape(exp0.create_state).params
  paths = prunable_paths(base, like)
  results = []
  for r in range(base.lottery.rounds + 1):
    results.append(_round(base, exp0, workdir, r, like, paths, verbose))
    out = _result(base, exp0.splits.name, paths, results)
    write_json(workdir / "lottery.json", out)
  if base.report.plots:
    plot(out, workdir / "lottery.png")
  return out


def _round_0(
  settings: Settings, workdir: Path, shapes: PyTree, verbose: bool
) -> experiment.Experiment:
  """Round 0's experiment (dense: all-True masks); writes the rewind point if missing.

  The rewind point is round 0's params at step ``lottery.rewind_step``: its
  initialisation, or a run of round 0 stopped there.
  """
  masks0 = workdir / "round_0" / "masks.npz"
  if not masks0.is_file():
    export.save_tree(masks0, jax.tree.map(lambda x: np.ones(x.shape, bool), shapes))
  exp0 = experiment.build(round_settings(settings, masks0, None), verbose=verbose)
  rewind = workdir / "rewind.npz"
  if not rewind.is_file():
    if exp0.settings.lottery.rewind_step == 0:
      export.save_tree(rewind, exp0.create_state().params)
    else:
      stop = exp0.settings.lottery.rewind_step
      _train(exp0.settings, workdir / "round_0", stop_step=stop)
      export.save_tree(rewind, experiment.load_state(exp0.settings, workdir / "round_0").params)
  return exp0


def _round(
  base: Settings,
  exp0: experiment.Experiment,
  workdir: Path,
  r: int,
  like: PyTree,
  paths: Sequence[str],
  verbose: bool,
) -> dict[str, Any]:
  """Round ``r``: its masks (pruned from round r - 1's), the ticket and the controls."""
  rewind = workdir / "rewind.npz"
  rdir = workdir / f"round_{r}"
  masks_path = rdir / "masks.npz"
  if r > 0 and not masks_path.is_file():
    prev = workdir / f"round_{r - 1}"
    previous = round_settings(base, prev / "masks.npz", None if r == 1 else rewind)
    trained = experiment.load_state(previous, prev)
    masks_of = jaxprune.masks_of(trained.opt_state)
    export.save_tree(masks_path, next_masks(trained.params, masks_of, r, base.lottery, paths))
  masks = export.load_tree(masks_path, like, what="masks")
  ticket = round_settings(base, masks_path, None if r == 0 else rewind)
  row = {"round": r, **_mask_stats(masks, paths)}
  row["ticket"] = _entry(rdir, _train(ticket, rdir))
  if verbose:
    print(_line(r, "ticket", row), flush=True)
  for name in base.lottery.controls if r > 0 else ():
    only = base.lottery.control_rounds(name)
    if only is not None and r not in only:
      continue
    cdir = workdir / "controls" / name / f"round_{r}"
    control = _control(base, exp0, name, r, cdir, masks_path, masks, paths, rewind)
    row[name] = _entry(cdir, _train(control, cdir))
    if verbose:
      print(_line(r, name, row), flush=True)
  return row


def _control(
  base: Settings,
  exp0: experiment.Experiment,
  name: str,
  r: int,
  cdir: Path,
  masks_path: Path,
  masks: PyTree,
  paths: Sequence[str],
  rewind: Path,
) -> Settings:
  """The settings of control ``name`` at round ``r`` (writes its params or masks once)."""
  seq = np.random.SeedSequence([base.seed, r, CONTROLS.index(name)])
  seed = int(seq.generate_state(1)[0] % 2**31)
  if name == "reinit":
    start = cdir / "params.npz"
    if not start.is_file():
      fresh = create_train_state(exp0.model, exp0.tx, exp0.input_shape, seed).params
      export.save_tree(start, fresh)
    return round_settings(base, masks_path, start)
  cmasks = cdir / "masks.npz"
  if not cmasks.is_file():
    export.save_tree(cmasks, random_masks(masks, paths, jax.random.key(seed)))
  return round_settings(base, cmasks, rewind)


def _result(
  base: Settings, dataset: str, paths: Sequence[str], rounds: list[dict[str, Any]]
) -> dict[str, Any]:
  lot = base.lottery
  return {
    "rate": lot.rate,
    "output_rate": lot.output_rate,
    "output_layer": lot.output_layer,
    "distribution": lot.distribution,
    "rewind_step": lot.rewind_step,
    "seed": base.seed,
    "dataset": dataset,
    "model": base.model.name,
    "paths": list(paths),
    "rounds": rounds,
  }


def _line(r: int, name: str, row: dict[str, Any]) -> str:
  e = row[name]
  return (
    f"round {r:2d} {name:6s} weights {row['weights_remaining']:7.2%}  test error "
    f"{e['test_error']:.4f}  validation error {e['validation_error']:.4f}  early stop at "
    f"step {e['early_stop_step']}"
  )


def plot(result: dict[str, Any], path: str | os.PathLike) -> Path:
  """Test error and early-stopping step vs weights remaining, tickets and controls.

  Args:
    result: `run`'s result (``lottery.json``).
    path: the PNG to write.

  Returns:
    The path written.
  """
  from matplotlib.figure import Figure  # heavy; only the plot needs it

  fig = Figure(figsize=(11, 4))
  ax_err, ax_stop = fig.subplots(1, 2)
  for name in ("ticket", *CONTROLS):
    rows = [r for r in result["rounds"] if name in r]
    if not rows:
      continue
    x = [100 * r["weights_remaining"] for r in rows]
    ax_err.plot(x, [100 * r[name]["test_error"] for r in rows], "o-", label=name)
    stops = [r[name]["early_stop_step"] for r in rows]
    if all(s is not None for s in stops):
      ax_stop.plot(x, stops, "o-", label=name)
  for ax in (ax_err, ax_stop):
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.set_xlabel("weights remaining (%)")
    ax.grid(alpha=0.3)
    ax.legend()
  ax_err.set(ylabel="test error (%)", title="test error at the end of training")
  ax_stop.set(ylabel="step", title="early-stopping step (minimum validation loss)")
  fig.suptitle(
    f"{result['model']} on {result['dataset']}: iterative magnitude pruning, "
    f"{result['rate']:.0%}/round, rewind to step {result['rewind_step']}, seed {result['seed']}"
  )
  fig.tight_layout()
  return save_figure(fig, path)


def aggregate(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
  """Mean and sd over seeds (several `run` results with the same rounds) of each error.

  Returns:
    One row per round: ``weights_remaining`` and, per run kind, ``test_error_mean``,
    ``test_error_sd`` (sample sd, ``ddof=1``; 0 for one seed) and ``early_stop_step_mean``.
  """
  rows = []
  for rounds in zip(*[r["rounds"] for r in results], strict=True):
    row: dict[str, Any] = {"round": rounds[0]["round"]}
    row["weights_remaining"] = rounds[0]["weights_remaining"]
    for name in ("ticket", *CONTROLS):
      if not all(name in r for r in rounds):
        continue
      errs = np.array([r[name]["test_error"] for r in rounds])
      stops = [r[name]["early_stop_step"] for r in rounds]
      row[name] = {
        "test_error_mean": float(errs.mean()),
        "test_error_sd": float(errs.std(ddof=1)) if len(errs) > 1 else 0.0,
        "early_stop_step_mean": (
          float(np.mean(stops)) if all(s is not None for s in stops) else math.nan
        ),
        "seeds": len(errs),
      }
    rows.append(row)
  return rows


def main(config: ml_collections.ConfigDict | Settings, workdir: str) -> None:
  """The command line's entry for configs with a ``lottery`` block."""
  run(config, workdir)
  print(f"lottery results in {os.path.join(workdir, 'lottery.json')}", file=sys.stderr)
