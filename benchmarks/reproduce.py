"""The reproduction table: published LeNet/MNIST pruning results, rerun with the papers' recipes.

Each `Row` names a paper's number, the config and overrides that follow its recipe, the
deviations from it (and why), and what to read from the runs. For every row this script:

1. chooses the hyperparameters listed in ``Row.grid`` (if any) on the validation split,
   with seed 0 (never on test);
2. trains ``--seeds`` seeds with the chosen values (``jaxprune-train`` workdirs under
   ``--out/<row>/seed_<s>``; a rerun resumes or reuses finished runs);
3. reports test error and compression as mean ± sd over the seeds (and, for runs with L0
   gates, the neurons left per layer).

A row with ``cited`` takes its numbers from another benchmark's ``results.json``
(``--dynamic-results``) instead of a rerun. With
``--dry-run`` it prints the commands. ``--out/reproduction.json`` accumulates: the rows run
now replace their entries and the others keep theirs, so one row can be rerun alone. With
``--write`` it replaces the section between the ``reproduction`` markers of
``benchmarks/RESULTS.md`` and writes ``benchmarks/reproduction.png`` (test error vs
compression, ours and the papers').

Every row run writes the per-seed values it averages to
``benchmarks/results/reproduce_<row>.json`` (`per_seed_record`; read them back with
``python benchmarks/results_files.py FILE``). ``--set key=value`` runs the rows with an
extra config override, e.g. a shorter budget, in ``--out/set_<key=value>/`` with its
per-seed files there; such a variant never enters the table (``--write`` is refused).

  python benchmarks/reproduce.py --dry-run
  python benchmarks/reproduce.py --rows frankle2019_lenet300 --seeds 0,1,2 --out runs/repro
  python benchmarks/reproduce.py --write --dynamic-results runs/dynamic_mnist/results.json
  python benchmarks/reproduce.py --rows molchanov2017_lenet300 --set train.num_epochs=20

Where a row trains fewer iterations than its paper (CPU time), its ``deviations`` say so.

Every run trains on its row's dataset or not at all: the runs are started without the
trainer's fallback to ``digits`` (`NO_FALLBACK`), a finished run found on another dataset
is refused, and `aggregate` checks ``summary["dataset"]`` of every run it averages.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import itertools
import json
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from results_files import RESULTS_DIR, write_per_seed

from jaxprune.train.files import atomic_open
from jaxprune.train.loop import write_json
from jaxprune.train.metrics_log import read_metrics

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
BEGIN, END = "<!-- reproduction:begin -->", "<!-- reproduction:end -->"
DATE = "2026-11-30"  # The date the table's runs were made, written with it.


@dataclasses.dataclass(frozen=True)
class Row:
  """One published result and how we rerun it.

  Attributes:
    name: short identifier (workdir name, ``--rows``).
    paper: citation as shown in the table.
    setting: model and target, e.g. ``"LeNet-300-100, 98% sparsity"``.
    paper_error: the paper's test error (fraction), None where the paper has no such number.
    paper_compression: the paper's compression (dense weights / kept weights), or None.
    config: ``configs/<config>.py``, or None where no recipe exists yet.
    overrides: dotted config overrides that follow the paper's recipe.
    grid: ``{dotted field: [values]}`` chosen on validation error with seed 0.
    recipe: the recipe the runs follow, in a few words.
    deviations: how the run departs from the paper's recipe, and why.
    lottery_weights: for lottery rows, the fractions of weights remaining to report.
    curve: report the validation curve (rows cut short of the paper's budget), so a
      longer run can be judged against where this one stopped.
    cited: ``(benchmark, key)``: the row's numbers come from that benchmark's
      ``results.json`` (``--dynamic-results``) instead of a rerun.
    paper_neurons: for neuron-pruning rows, the paper's neurons left per layer, e.g.
      ``"219-214-100"`` (the runs report theirs as mean ± sd per layer).
    dataset: the dataset every run of the row must have trained on.
  """

  name: str
  paper: str
  setting: str
  paper_error: float | None
  paper_compression: float | None
  config: str | None
  overrides: dict[str, Any] = dataclasses.field(default_factory=dict)
  grid: dict[str, list[Any]] = dataclasses.field(default_factory=dict)
  recipe: str = ""
  deviations: str = ""
  lottery_weights: tuple[float, ...] = ()
  curve: bool = False
  cited: tuple[str, str] | None = None
  paper_neurons: str = ""
  dataset: str = "mnist"


# Every run: no per-run plots, TensorBoard events or progress bar (CPU time; the table and
# its plot are the outputs).
QUIET = {"report.plots": False, "report.tensorboard": False, "report.progress": False}
# Every run: a dataset that is not prepared is an error, never a run on the fallback digits.
NO_FALLBACK = {"data.fallback": ""}
LENET300 = {"model.name": "lenet300100"}
LENET5 = {"model.name": "lenet5"}
LOTTERY_STEPS = 5_000  # Iterations per lottery round (the paper: 50,000).
VD_EPOCHS = 200.0  # Sparse VD epochs, as in the paper.
LENET5_VD_EPOCHS = 10.0  # Sparse VD epochs of LeNet-5-Caffe (the paper: 200).
L0_EPOCHS = 200.0  # L0 epochs, as in the paper.
# Lee et al. 2019: SGD momentum 0.9, weight decay 5e-4, batch 100, lr 0.1 multiplied by 0.1
# every 25k iterations. 54,000 training images (6,000 held out): 540 iterations per epoch.
SNIP_SGD = {
  "optimizer.name": "momentum",
  "optimizer.learning_rate": 0.1,
  "optimizer.weight_decay": 5e-4,
  "optimizer.lr_schedule": "step",
  "optimizer.decay_epochs": (25_000 / 540,),
  "train.batch_size": 100,
  "train.num_steps": 30_000,
  "train.eval_every_epochs": 10.0,
}
SNIP_RECIPE = (
  "one-shot SNIP at initialisation (one batch, global threshold), then SGD momentum 0.9, "
  "lr 0.1 ×0.1 at iteration 25k, weight decay 5e-4, batch 100, 30k iterations"
)
SNIP_DEVIATION = (
  "the run stops at 30k iterations, after the first decay (CPU time); the paper keeps "
  "decaying every 25k over a longer run"
)

# Why the LeNet-5 row's compression (nonzero parameters) exceeds its masks' count.
SNIP_LENET5_ZEROS = (
  "Compression counts nonzero parameters: the masks keep 4,305 of the 430,500 kernel weights, "
  "which with all 580 biases would be 88.25×; the rest are fc1 (Dense_0) biases that stay "
  "exactly 0. Each belongs to a unit that the mask leaves with no incoming and no outgoing "
  "weight and whose bias got no gradient at the first (still dense) step; after it, such a "
  "unit's pre-activation is its bias, 0, where JAX's ReLU gradient is 0, and no kept weight "
  "carries its output, so the bias never moves from its initial 0. In the first 30 steps of "
  "seeds 0–2 there are 14, 40 and 21 such biases (88.50×, 88.97×, 88.63×; mean 88.70×; "
  "fields zero_biases and compression of benchmarks/results/"
  "snip2019_lenet5_first_30_steps.json, from `python benchmarks/reproduce.py --rows "
  "snip2019_lenet5 --set train.num_steps=30`)"
)

ROWS = (
  Row(
    "han2015_lenet300",
    "Han et al. 2015",
    "LeNet-300-100, 12×",
    0.0159,
    12.0,
    "default",
    {**LENET300, "pruning.sparsity": 1 - 1 / 12},
    grid={"optimizer.learning_rate": [1e-3, 3e-3]},
    recipe=(
      "Adam, cosine decay, batch 128, 20 epochs; magnitude pruning of every kernel to 91.7%, "
      "cubic ramp from epoch 1 to 10 (Zhu & Gupta); lr from {1e-3, 3e-3} on validation"
    ),
    deviations="gradual magnitude pruning (Zhu & Gupta) instead of prune-then-retrain cycles",
  ),
  Row(
    "snip2019_lenet300",
    "Lee et al. 2019 (SNIP)",
    "LeNet-300-100, 98% sparsity",
    0.024,
    50.0,
    "snip",
    {**LENET300, **SNIP_SGD, "pruning.sparsity": 0.98},
    recipe=SNIP_RECIPE,
    deviations=SNIP_DEVIATION,
  ),
  Row(
    "snip2019_lenet5",
    "Lee et al. 2019 (SNIP)",
    "LeNet-5-Caffe, 99% sparsity",
    0.011,
    100.0,
    "snip",
    {**LENET5, **SNIP_SGD, "pruning.sparsity": 0.99},
    recipe=SNIP_RECIPE,
    deviations=SNIP_DEVIATION + ". " + SNIP_LENET5_ZEROS,
    curve=True,
  ),
  Row(
    "molchanov2017_lenet300",
    "Molchanov et al. 2017 (sparse VD)",
    "LeNet-300-100",
    0.0192,
    68.0,
    "variational_dropout",
    {**LENET300, "train.num_epochs": VD_EPOCHS},
    recipe=(
      "variational dense layers, KL ramped in over 10 epochs, Adam 1e-3 cosine decay, "
      f"batch 100, {VD_EPOCHS:g} epochs; weights kept while log α < 3"
    ),
    deviations=(
      "the learning-rate schedule is ours (cosine decay to 0 over the run), as is the "
      "10-epoch KL ramp"
    ),
  ),
  Row(
    "molchanov2017_lenet5",
    "Molchanov et al. 2017 (sparse VD)",
    "LeNet-5-Caffe",
    0.0075,
    280.0,
    "variational_dropout",
    {
      **LENET5,
      "train.num_epochs": LENET5_VD_EPOCHS,
      "train.penalty_ramp_epochs": 1.0,
      "train.eval_every_epochs": 1.0,
    },
    recipe=(
      "variational conv and dense layers, Adam 1e-3 cosine decay, batch 100, KL ramped in "
      f"over 1 epoch, {LENET5_VD_EPOCHS:g} epochs; weights kept while log α < 3"
    ),
    deviations=(
      f"{LENET5_VD_EPOCHS:g} epochs instead of 200, with the KL ramp shortened to match "
      "(CPU time: about a minute per epoch here); compression keeps rising with longer "
      "training (LeNet-300-100: 106× at 200 epochs, the row above; 41.5× at 20 epochs, from "
      "an earlier run of this row with 20 epochs, commit f82bee0; regenerate with `python "
      "benchmarks/reproduce.py --rows molchanov2017_lenet300 --set train.num_epochs=20`)"
    ),
    curve=True,
  ),
  Row(
    "louizos2018_lenet300",
    "Louizos et al. 2018 (L0)",
    "LeNet-300-100, neurons left per layer",
    0.014,
    266_610 / 88_510,  # Implied by 219-214-100: 219·300 + 214·100 + 100·10 weights + 410 biases.
    "l0",
    {**LENET300, "train.num_epochs": L0_EPOCHS},
    recipe=(
      "hard-concrete gates on the inputs of every Dense layer (β 2/3, γ −0.1, ζ 1.1; initial "
      "drop rate 0.2 on the pixels, 0.5 after), λ = 0.1/N per layer on the expected L0 norm, "
      f"Adam 1e-3 constant, batch 100, {L0_EPOCHS:g} epochs; evaluated with the deterministic "
      "test-time gates, neurons counted where those are nonzero"
    ),
    deviations=(
      "N = 54,000 in λ (6,000 training images held out for validation); none of the "
      "authors' code's extras: no running average of the parameters for evaluation, no "
      "clipping of log α to [log 0.01, log 100]. At about the paper's architecture our error "
      "is higher; with Adam's rate constant the validation error swings by ±0.25 points "
      "between evaluations late in training, and we believe the missing parameter average "
      "is most of the gap (not tested)"
    ),
    paper_neurons="219-214-100",
  ),
  Row(
    "frankle2019_lenet300",
    "Frankle & Carbin 2019",
    "LeNet-300-100, tickets at 21% and 7% of weights",
    None,  # The paper's claim: at most the dense network's error (read from its figure).
    None,
    "lottery",
    {
      "train.num_steps": LOTTERY_STEPS,
      "train.eval_every_epochs": 250 / 900,  # Validation every 250 iterations (900 / epoch).
      "lottery.rounds": 12,
      "lottery.controls": "reinit,random",
      "lottery.random_rounds": "7,12",
    },
    recipe=(
      "Adam 1.2e-3 constant, batch 60; per round 20% of each layer's remaining weights "
      "(10% of the output layer) pruned by magnitude, survivors rewound to initialisation, "
      "Adam reset; 12 rounds; re-initialisation control every round, random masks at the "
      "21% and 7% rounds"
    ),
    deviations=(
      f"{LOTTERY_STEPS:,} iterations per round instead of 50,000 (CPU time); the test error "
      "is the one at the end of the round, not at the early-stopping iteration"
    ),
    lottery_weights=(1.0, 0.21, 0.07),
  ),
  Row(
    "wang2020_grasp_lenet300",
    "Wang et al. 2020 (GraSP)",
    "LeNet-300-100, 98% sparsity (the paper has no MNIST result)",
    None,
    None,
    "grasp",
    {**LENET300, **SNIP_SGD, "pruning.sparsity": 0.98},
    recipe=SNIP_RECIPE.replace("one-shot SNIP", "one-shot GraSP (logits / 200 for scoring)"),
    deviations=(
      "GraSP's own experiments are CIFAR-10/100 (VGG-19, ResNet-32) and Tiny-ImageNet, out "
      "of this offline machine's reach; the closest setting we run is SNIP's LeNet-300-100 "
      "at 98% above, with the same recipe, so the two criteria compare directly. " + SNIP_DEVIATION
    ),
  ),
  Row(
    "evci2020_rigl_lenet300",
    "Evci et al. 2020 (RigL)",
    "LeNet-300-100, 98% sparsity (the paper has no MNIST result)",
    None,
    None,
    None,
    recipe=(
      "RigL from random ERK masks, drop and grow every 100 steps, α 0.3 cosine-decayed to 0 "
      "at 75% of training, adamw (decay 0.05) with the lr cosine-decayed to 0, batch 100, "
      "20 epochs; lr from {1e-3, 3e-3} on validation (mean of seeds 0 and 1)"
    ),
    deviations=(
      "the closest setting we have run (the paper's smallest is CIFAR-10); optimizer, decay "
      "and schedule were chosen on validation, not taken from the paper; not rerun here"
    ),
    cited=("dynamic_mnist", "rigl@0.98"),
  ),
)


def _value(v: Any) -> str:
  """A config value as a flag writes it (tuples with their parentheses)."""
  return f"({','.join(map(str, v))},)" if isinstance(v, tuple) else str(v)


def command(row: Row, workdir: Path, extra: dict[str, Any]) -> list[str]:
  """The ``jaxprune-train`` command of one run of ``row`` (from the repository root).

  Example:
    >>> row = next(r for r in ROWS if r.name == "snip2019_lenet300")
    >>> cmd = command(row, Path("runs/x"), {"seed": 1})
    >>> cmd[:5], cmd[-1], "--config.optimizer.decay_epochs=(46.2962962962963,)" in cmd
    (['python', '-m', 'jaxprune.train', '--config', 'configs/snip.py'], '--config.seed=1', True)
    >>> "--config.data.fallback=" in cmd  # no fallback to digits
    True
  """
  settings = {**QUIET, **NO_FALLBACK, **row.overrides, **extra}
  flags = [f"--config.{k}={_value(v)}" for k, v in settings.items()]
  config = f"configs/{row.config}.py"
  return ["python", "-m", "jaxprune.train", "--config", config, "--workdir", str(workdir)] + flags


def check_dataset(row: Row, summary: dict[str, Any], where: str) -> None:
  """Refuses a run (``summary.json`` or ``lottery.json``) on another dataset than ``row``'s.

  Example:
    >>> check_dataset(ROWS[0], {"dataset": "mnist"}, "runs/x")
    >>> check_dataset(ROWS[0], {"dataset": "digits"}, "runs/x")
    Traceback (most recent call last):
    ...
    ValueError: runs/x trained on 'digits', but han2015_lenet300 reports 'mnist' results; ...
  """
  got = summary.get("dataset")
  if got != row.dataset:
    raise ValueError(
      f"{where} trained on {got!r}, but {row.name} reports {row.dataset!r} results; a run "
      f"that fell back to another dataset never enters the table. Prepare {row.dataset!r} "
      f"(python -m jaxprune.data prepare {row.dataset} --from DIR, see the README's Data "
      "section), remove that run's folder and run the row again."
    )


def run_one(row: Row, workdir: Path, extra: dict[str, Any]) -> dict[str, Any]:
  """Trains (or resumes) one run in-process; returns its summary (lottery: lottery.json).

  The run never falls back to another dataset (`NO_FALLBACK`), and a finished run on
  another dataset than ``row.dataset`` is refused (`check_dataset`).
  """
  from jaxprune.train import lottery
  from jaxprune.train.config import load_config
  from jaxprune.train.loop import train_and_evaluate

  config = load_config(row.config, {**QUIET, **NO_FALLBACK, **row.overrides, **extra})
  summary = workdir / "summary.json"
  if "lottery" in config:
    result = lottery.run(config, workdir)
  elif summary.is_file():
    result = json.loads(summary.read_text())
  else:
    result = train_and_evaluate(config, workdir, verbose=False)
  check_dataset(row, result, str(workdir))
  return result


def _tag(point: dict[str, Any]) -> str:
  return "_".join(f"{k.split('.')[-1]}={v}" for k, v in point.items())


def choose(row: Row, out: Path) -> tuple[dict[str, Any], dict[str, float]]:
  """The grid point of ``row`` with the lowest validation error (seed 0), and every point's.

  Returns:
    ``(chosen point, {tag: validation error})``; ``({}, {})`` for a row without a grid.
  """
  if not row.grid:
    return {}, {}
  keys = list(row.grid)
  best, best_err, seen = {}, np.inf, {}
  for values in itertools.product(*row.grid.values()):
    point = dict(zip(keys, values, strict=True))
    summary = run_one(row, out / row.name / "grid" / _tag(point), {**point, "seed": 0})
    seen[_tag(point)] = float(summary["validation_error"])
    if summary["validation_error"] < best_err:
      best, best_err = point, summary["validation_error"]
  return best, seen


def workdir_of(row: Row, out: Path, chosen: dict[str, Any], seed: int) -> Path:
  """Where seed ``seed`` of ``row`` runs: the chosen grid point's run for seed 0 (the same run)."""
  if chosen and seed == 0:
    return out / row.name / "grid" / _tag(chosen)
  return out / row.name / f"seed_{seed}"


def curve(workdirs: Sequence[Path]) -> list[dict[str, float]]:
  """Validation error and pruned fraction, mean over the runs, at the steps all evaluated.

  Example:
    >>> curve([Path("/nonexistent")])
    []
  """
  runs = []
  for workdir in workdirs:
    points, sparsity = {}, 0.0
    for r in read_metrics(workdir / "metrics.jsonl"):
      sparsity = r.get("sparsity", sparsity)
      if "validation_accuracy" in r:
        points[r["step"]] = (r["epoch"], 1.0 - r["validation_accuracy"], sparsity)
    runs.append(points)
  if not runs or not all(runs):
    return []
  steps = sorted(set.intersection(*(set(p) for p in runs)))
  return [
    {
      "step": step,
      "epoch": runs[0][step][0],
      "validation_error": float(np.mean([p[step][1] for p in runs])),
      "sparsity": float(np.mean([p[step][2] for p in runs])),
    }
    for step in steps
  ]


def curve_table(points: Sequence[dict[str, float]], rows: int = 10) -> str:
  """At most ``rows`` evenly spaced points of a `curve`, the last one included.

  Example:
    >>> print(curve_table([{"step": 540, "epoch": 1.0, "validation_error": 0.02,
    ...                     "sparsity": 0.9}]))
    | epoch | step | validation error | weights pruned |
    |---|---|---|---|
    | 1 | 540 | 2.00% | 90.00% |
  """
  picks = sorted({round(i * (len(points) - 1) / max(rows - 1, 1)) for i in range(rows)})
  lines = ["| epoch | step | validation error | weights pruned |", "|---|---|---|---|"]
  for p in (points[i] for i in picks):
    lines.append(
      f"| {p['epoch']:g} | {p['step']} | {100 * p['validation_error']:.2f}% | "
      f"{100 * p['sparsity']:.2f}% |"
    )
  return "\n".join(lines)


def _sd(x: np.ndarray) -> float:
  return float(x.std(ddof=1)) if len(x) > 1 else 0.0


def aggregate(row: Row, summaries: Sequence[dict[str, Any]]) -> dict[str, Any]:
  """Mean ± sd (ddof=1) of test and validation error and compression over seeds.

  Every summary must be of a run on ``row.dataset`` (`check_dataset`).

  Example:
    >>> runs = [{"test_error": e, "validation_error": e, "compression": 10.0, "dataset": "mnist"}
    ...         for e in (0.01, 0.02, 0.03)]
    >>> agg = aggregate(ROWS[0], runs)
    >>> round(agg["test_error_mean"], 4), round(agg["test_error_sd"], 4), agg["seeds"]
    (0.02, 0.01, 3)

  Runs with L0 gates add the neurons left per layer (mean, sd, of how many, per seed):

    >>> runs = [{**r, "neurons": {"a": {"total": 9, "remaining": k}}, "architecture": str(k)}
    ...         for r, k in zip(runs, (4, 5, 6))]
    >>> agg = aggregate(ROWS[0], runs)
    >>> agg["neurons_mean"], agg["neurons_sd"], agg["neurons_total"], agg["architectures"]
    ([5.0], [1.0], [9], ['4', '5', '6'])
  """
  for i, summary in enumerate(summaries):
    check_dataset(row, summary, f"run {i} of {row.name}")
  if row.lottery_weights:
    from jaxprune.train import lottery

    return {"lottery": lottery.aggregate(summaries), "seeds": len(summaries)}
  err = np.array([s["test_error"] for s in summaries])
  val = np.array([s["validation_error"] for s in summaries])
  comp = np.array([s["compression"] for s in summaries])
  out = {
    "test_error_mean": float(err.mean()),
    "test_error_sd": _sd(err),
    "test_errors": err.tolist(),
    "validation_error_mean": float(val.mean()),
    "compression_mean": float(comp.mean()),
    "compression_sd": _sd(comp),
    "seeds": len(err),
  }
  if all(s.get("neurons") for s in summaries):  # L0 gates: neurons left per layer
    left = np.array([[c["remaining"] for c in s["neurons"].values()] for s in summaries], float)
    out["neurons_mean"] = left.mean(axis=0).tolist()
    out["neurons_sd"] = [_sd(col) for col in left.T]
    out["neurons_total"] = [c["total"] for c in summaries[0]["neurons"].values()]
    out["architectures"] = [s["architecture"] for s in summaries]
  return out


# The fields of a run's summary that `aggregate` reads, and the counts behind them.
SUMMARY_FIELDS = (
  "dataset",
  "test_error",
  "validation_error",
  "compression",
  "params_total",
  "params_remaining",
  "sparsity",
  "neurons",
  "architecture",
)


def per_seed_record(seed: int, workdir: Path | str, summary: dict[str, Any]) -> dict[str, Any]:
  """What one run contributes to its row: the fields `aggregate` averages, and counts.

  For a run's ``summary.json``: `SUMMARY_FIELDS`, plus ``zero_biases`` and
  ``zero_kernel_entries`` (exact zeros in the 1-D leaves and in the others, from the
  summary's per-leaf counts), so that a compression counted on the masks alone (all
  parameters / (all − kernel zeros)) can be recomputed beside the nonzero count's. For a
  lottery run (``lottery.json``): per round, each run kind's test error and early-stopping
  step. `aggregate` of the records gives the row's numbers again.

  Example:
    >>> s = {"dataset": "mnist", "test_error": 0.02, "validation_error": 0.03,
    ...      "compression": 2.0, "params_total": 6, "params_remaining": 3,
    ...      "layers": {"w": {"shape": [2, 2], "size": 4, "nonzero": 2},
    ...                 "b": {"shape": [2], "size": 2, "nonzero": 1}}}
    >>> r = per_seed_record(1, "runs/x/seed_1", s)
    >>> r["seed"], r["compression"], r["zero_biases"], r["zero_kernel_entries"]
    (1, 2.0, 1, 2)
  """
  record: dict[str, Any] = {"seed": seed, "workdir": str(workdir)}
  if "rounds" in summary:  # lottery.json
    record["dataset"] = summary.get("dataset")
    record["rounds"] = [
      {
        "round": r["round"],
        "weights_remaining": r["weights_remaining"],
        **{
          name: {k: r[name][k] for k in ("test_error", "early_stop_step")}
          for name in ("ticket", "reinit", "random")
          if name in r
        },
      }
      for r in summary["rounds"]
    ]
    return record
  record.update({k: summary[k] for k in SUMMARY_FIELDS if k in summary})
  layers = summary.get("layers", {})
  record["zero_biases"] = sum(
    v["size"] - v["nonzero"] for v in layers.values() if len(v["shape"]) == 1
  )
  record["zero_kernel_entries"] = sum(
    v["size"] - v["nonzero"] for v in layers.values() if len(v["shape"]) > 1
  )
  return record


def write_row_seeds(
  row: Row, records: Sequence[dict[str, Any]], directory: Path, command: str, variant: str = ""
) -> Path:
  """Writes ``records`` (`per_seed_record` per seed) to ``directory/reproduce_<row>.json``.

  ``variant`` names the ``--set`` overrides of a run that is not the table's recipe.
  """
  table = f"Reproduction table: {row.paper}, {row.setting}"
  if variant:
    table += f"; a variant, not the table's recipe: {variant}"
  return write_per_seed(
    directory / f"reproduce_{row.name}.json", table, command, {row.name: records}
  )


def parse_sets(items: Sequence[str]) -> dict[str, Any]:
  """``["train.num_epochs=20"]`` -> ``{"train.num_epochs": 20}`` (Python literals, else strings).

  Example:
    >>> parse_sets(["train.num_epochs=20", "optimizer.name=sgd"])
    {'train.num_epochs': 20, 'optimizer.name': 'sgd'}
  """
  out = {}
  for item in items:
    key, sep, value = item.partition("=")
    if not sep or not key:
      raise ValueError(
        f"--set takes key=value with a dotted config field; got {item!r}, e.g. "
        "--set train.num_epochs=20"
      )
    try:
      out[key] = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      out[key] = value
  return out


def cited(row: Row, dynamic_results: Path | None) -> dict[str, Any] | None:
  """The numbers of a ``cited`` row from ``benchmarks/dynamic_mnist.py``'s ``results.json``.

  Returns None where the file is not given or lacks the row's key.
  """
  if row.cited is None or dynamic_results is None or not dynamic_results.is_file():
    return None
  entry = json.loads(dynamic_results.read_text()).get(row.cited[1])
  if entry is None:
    return None
  errs = np.array(entry["test_errors"]) / 100  # dynamic_mnist.py records percentages.
  out = {
    "chosen": {"optimizer.learning_rate": entry["lr"]},
    "test_error_mean": float(errs.mean()),
    "test_error_sd": _sd(errs),
    "test_errors": errs.tolist(),
    "seeds": len(errs),
    "source": f"benchmarks/{row.cited[0]}.py ({row.cited[1]})",
  }
  if "compressions" in entry:  # all parameters / nonzero ones, as the other rows count
    comp = np.array(entry["compressions"], float)
    return {
      **out,
      "compression_mean": float(comp.mean()),
      "compression_sd": _sd(comp),
      "compression_basis": "all parameters",
    }
  # Files written before dynamic_mnist.py recorded it: the kernels' kept fraction only.
  return {
    **out,
    "compression_mean": 1.0 / float(entry["kept"]),
    "compression_sd": 0.0,
    "compression_basis": "kernels",
  }


def write_section(text: str, path: Path = RESULTS) -> None:
  """Replaces the text between the reproduction markers of ``path`` (appends them if absent)."""
  current = path.read_text()
  block = f"{BEGIN}\n{text.rstrip()}\n{END}"
  if BEGIN in current and END in current:
    head, rest = current.split(BEGIN, 1)
    current = head + block + rest.split(END, 1)[1]
  else:
    current = current.rstrip() + "\n\n## Reproduction table (`benchmarks/reproduce.py`)\n\n" + block
  with atomic_open(path) as f:  # a crash never leaves RESULTS.md cut short
    f.write(current + ("" if current.endswith("\n") else "\n"))


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rows", default="", help="comma-separated row names (default: all)")
  parser.add_argument("--seeds", default="0,1,2")
  parser.add_argument("--out", type=Path, default=Path("runs/reproduce"))
  parser.add_argument("--dry-run", action="store_true", help="print the commands only")
  parser.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md")
  parser.add_argument(
    "--dynamic-results",
    type=Path,
    default=None,
    help="results.json of benchmarks/dynamic_mnist.py, for the rows it supplies",
  )
  parser.add_argument(
    "--set",
    action="append",
    default=[],
    metavar="KEY=VALUE",
    help="extra config override for every run of --rows (a variant: runs in "
    "--out/set_<key=value>, never written to RESULTS.md), e.g. --set train.num_epochs=20",
  )
  parser.add_argument(
    "--per-seed-dir",
    type=Path,
    default=None,
    help="where reproduce_<row>.json goes (default: benchmarks/results, or "
    "--out/set_<...>/per_seed with --set)",
  )
  args = parser.parse_args(argv)
  wanted = {r for r in args.rows.split(",") if r}
  unknown = wanted - {r.name for r in ROWS}
  if unknown:
    parser.error(f"unknown rows {sorted(unknown)}; the rows are {[r.name for r in ROWS]}")
  try:
    sets = parse_sets(args.set)
  except ValueError as e:
    parser.error(str(e))
  if sets:
    ran = [r for r in ROWS if not wanted or r.name in wanted]
    if not wanted or any(r.cited is not None for r in ran) or args.write:
      parser.error(
        f"--set {' '.join(args.set)} makes a variant of the rows it runs: name them with "
        "--rows (rows taken from another benchmark cannot take it), and leave out --write, "
        "since a variant is not the table's recipe; e.g. --rows molchanov2017_lenet300 "
        "--set train.num_epochs=20"
      )
    args.out = args.out / f"set_{_tag(sets)}"  # never mixed with the table's own runs
  per_seed_dir = args.per_seed_dir or (args.out / "per_seed" if sets else RESULTS_DIR)
  flags = f" --seeds {args.seeds}" + "".join(f" --set {item}" for item in args.set)
  if args.dynamic_results is not None and not args.dynamic_results.is_file():
    parser.error(
      f"--dynamic-results {args.dynamic_results} is not a file (dynamic_mnist.py's "
      "results.json, e.g. --dynamic-results /tmp/dynamic_mnist/results.json)"
    )
  seeds = [int(s) for s in args.seeds.split(",")]
  results = {}
  for row in ROWS:
    if wanted and row.name not in wanted:
      continue
    row = dataclasses.replace(row, overrides={**row.overrides, **sets})
    cmd = f"python benchmarks/reproduce.py --rows {row.name}{flags}"
    if row.cited is not None:
      found = cited(row, args.dynamic_results)
      if found is not None:  # else the row keeps its earlier result (reproduction.json)
        results[row.name] = found  # its per-seed values: dynamic_mnist.py's --record file
      print(f"# {row.name}: from {row.cited[0]} ({'found' if found else 'missing'})")
      continue
    if args.dry_run:
      print(f"# {row.name}: {row.paper}, {row.setting}")
      grid = itertools.product(*row.grid.values()) if row.grid else ()
      points = [dict(zip(row.grid, v, strict=True)) for v in grid]
      for point in points:  # Seed 0 of each grid point; the lowest validation error is chosen.
        print(shlex.join(command(row, args.out / row.name / "grid" / _tag(point), point)))
      for seed in seeds:
        if points and seed == 0:
          continue  # The chosen grid point's run.
        extra = {**dict.fromkeys(row.grid, "CHOSEN"), "seed": seed}
        print(shlex.join(command(row, args.out / row.name / f"seed_{seed}", extra)))
      continue
    chosen, grid = choose(row, args.out)
    dirs = [workdir_of(row, args.out, chosen, s) for s in seeds]
    runs = [run_one(row, d, {**chosen, "seed": s}) for s, d in zip(seeds, dirs, strict=True)]
    results[row.name] = {"chosen": chosen, "grid": grid, **aggregate(row, runs)}
    records = [per_seed_record(s, d, r) for s, d, r in zip(seeds, dirs, runs, strict=True)]
    write_row_seeds(row, records, per_seed_dir, cmd, " ".join(args.set))
    print(row.name, json.dumps(results[row.name], default=str), flush=True)
  if args.dry_run:
    return
  args.out.mkdir(parents=True, exist_ok=True)
  previous = args.out / "reproduction.json"
  if previous.is_file():  # rows not run now keep their earlier results
    results = {**json.loads(previous.read_text()), **results}
  for row in ROWS:
    res = results.get(row.name)
    if row.curve and res and "chosen" in res:
      dirs = [workdir_of(row, args.out, res["chosen"], s) for s in seeds]
      points = curve(dirs)
      if points:  # else the row keeps the curve it has (its workdirs were removed)
        res["curve"] = points
  write_json(args.out / "reproduction.json", results)
  if args.write:
    write_section(table(results, args.out, seeds))
    plot(results, RESULTS.with_name("reproduction.png"))


def _pm(mean: float, sd: float) -> str:
  return f"{100 * mean:.2f} ± {100 * sd:.2f}%"


def _ours(res: dict[str, Any]) -> str:
  """Test error at compression, and the neurons left per layer where the runs count them.

  Example:
    >>> print(_ours({"test_error_mean": 0.014, "test_error_sd": 0.001, "compression_mean": 9.0,
    ...              "neurons_mean": [219.0, 213.7], "neurons_sd": [2.0, 0.6],
    ...              "neurons_total": [784, 300]}))
    1.40 ± 0.10% at 9.0×; neurons left 219 ± 2.0 – 214 ± 0.6 (of 784-300)
  """
  text = f"{_pm(res['test_error_mean'], res['test_error_sd'])} at {res['compression_mean']:.1f}×"
  if "neurons_mean" in res:
    left = " – ".join(
      f"{m:.0f} ± {sd:.1f}" for m, sd in zip(res["neurons_mean"], res["neurons_sd"], strict=True)
    )
    text += f"; neurons left {left} (of {'-'.join(map(str, res['neurons_total']))})"
  return text


def _paper(row: Row) -> str:
  if row.paper_error is None:
    return "≤ dense" if row.lottery_weights else "—"
  comp = f"{row.paper_compression:g}×" if row.paper_compression else "—"
  if row.paper_neurons:
    implied = f" ({row.paper_compression:.1f}× implied)" if row.paper_compression else ""
    comp = f"{row.paper_neurons} neurons{implied}"
  return f"{100 * row.paper_error:.2f}% / {comp}"


def _chosen(res: dict[str, Any]) -> str:
  if not res.get("grid"):
    return ""
  vals = ", ".join(f"{k}: {100 * v:.2f}%" for k, v in res["grid"].items())
  return f"; chosen on validation error ({vals})"


def _lottery_level(res: dict[str, Any], frac: float) -> dict[str, Any]:
  return min(res["lottery"], key=lambda r: abs(r["weights_remaining"] - frac))


def table(results: dict[str, Any], out: Path, seeds: Sequence[int]) -> str:
  """The markdown of ``results``: the table, then the lottery rounds and the commands.

  Lottery rows get one line per reported fraction of weights, and rows supplied by another
  benchmark name it.
  """
  lines = [
    "| paper | setting | paper: test error / compression | ours: test error (mean ± sd) at "
    "compression | recipe; deviations | command |",
    "|---|---|---|---|---|---|",
  ]
  commands = []
  for row in ROWS:
    res = results.get(row.name)
    cmd = f"`python benchmarks/reproduce.py --rows {row.name}`"
    recipe = f"{row.recipe}; **deviations:** {row.deviations}" if row.deviations else row.recipe
    if row.config:
      chosen = (res or {}).get("chosen", {})
      cmd_s = shlex.join(command(row, out / row.name / "seed_S", {**chosen, "seed": "S"}))
      seed0 = " (seed 0: the chosen grid point's run)" if chosen else ""
      commands.append(f"- `{row.name}`{seed0}: `{cmd_s}`")
    if res is None:
      continue
    if row.cited is not None:
      basis = ""
      if res.get("compression_basis", "kernels") == "kernels":  # older results: kernels only
        basis = (
          " (ERK kernels only: kernel weights / kept kernel weights, biases not counted, "
          "unlike the other rows)"
        )
      lines.append(
        f"| {row.paper} | {row.setting} | {_paper(row)} | {_ours(res)}{basis} | "
        f"{recipe} | from `{res['source']}`: see *Sparse training from scratch* |"
      )
      continue
    if "lottery" in res:
      dense = _lottery_level(res, 1.0)["ticket"]
      for frac in row.lottery_weights:
        near = _lottery_level(res, frac)
        parts = [
          f"{name} {_pm(near[name]['test_error_mean'], near[name]['test_error_sd'])}"
          for name in ("ticket", "reinit", "random")
          if name in near
        ]
        level = f"{100 * near['weights_remaining']:.1f}% of weights"
        paper = "dense" if frac == 1.0 else _paper(row)
        if frac == 1.0:
          parts = [f"dense {_pm(dense['test_error_mean'], dense['test_error_sd'])}"]
        lines.append(
          f"| {row.paper} | {row.setting} | {paper} | {level}: {'; '.join(parts)} | "
          f"{recipe} | {cmd} |"
        )
        recipe = "〃"
      continue
    lines.append(
      f"| {row.paper} | {row.setting} | {_paper(row)} | {_ours(res)} | "
      f"{recipe}{_chosen(res)} | {cmd} |"
    )
  lines.append(
    f"\n{DATE}. Seeds {', '.join(map(str, seeds))}; test error at the end of training, mean ± sd "
    "(ddof 1); compression = all parameters / nonzero parameters (biases included; a bias "
    "that is exactly 0 counts as removed). Per-seed values: `benchmarks/results/"
    "reproduce_<row>.json` where committed (see *Per-seed data* below the table). "
    "Hyperparameters that are not the paper's were chosen on the validation split (6,000 of "
    "the 60,000 training images), seed 0. Plot: `benchmarks/reproduction.png`."
  )
  if any(res and "neurons_mean" in res for res in results.values()):
    lines[-1] += (
      " Neurons left (L0): the inputs of each Dense layer (pixels, then hidden units) whose "
      "test-time gate clip(σ(log α)(ζ − γ) + γ, 0, 1) is nonzero, mean ± sd over the seeds; "
      "compression counts the kernels with those gates folded in."
    )
  for row in ROWS:
    if row.name in results and results[row.name] and "lottery" in results[row.name]:
      lines += [
        "",
        f"Lottery rounds ({row.paper}, {row.setting.split(',')[0]}): test error mean ± sd over "
        "the seeds; *stop* is the mean early-stopping iteration (minimum validation loss, "
        "validation every 250 iterations).",
        "",
        lottery_table(results[row.name]["lottery"]),
      ]
  for row in ROWS:
    if results.get(row.name) and results[row.name].get("curve"):
      lines += [
        "",
        f"Validation curve, {row.paper}, {row.setting} (cut short of the paper's budget; "
        "mean over the seeds):",
        "",
        curve_table(results[row.name]["curve"]),
      ]
  lines += ["", "Per-seed commands (S = 0, 1, 2; `reproduce.py` runs them in-process):", ""]
  lines += commands
  return "\n".join(lines)


def lottery_table(rounds: Sequence[dict[str, Any]]) -> str:
  """Per round: weights remaining, test error and early-stopping iteration of each run kind.

  Example:
    >>> one = {"test_error_mean": 0.02, "test_error_sd": 0.001, "early_stop_step_mean": 4500}
    >>> print(lottery_table([{"round": 0, "weights_remaining": 1.0, "ticket": one}]))
    | round | weights remaining | ticket | reinit | random |
    |---|---|---|---|---|
    | 0 | 100.0% | 2.00 ± 0.10% (stop 4500) | — | — |
  """
  lines = [
    "| round | weights remaining | ticket | reinit | random |",
    "|---|---|---|---|---|",
  ]
  for r in rounds:
    cells = []
    for name in ("ticket", "reinit", "random"):
      e = r.get(name)
      cells.append(
        f"{_pm(e['test_error_mean'], e['test_error_sd'])} (stop {e['early_stop_step_mean']:.0f})"
        if e
        else "—"
      )
    lines.append(f"| {r['round']} | {100 * r['weights_remaining']:.1f}% | {' | '.join(cells)} |")
  return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> Path:
  """Test error vs compression: ours (mean ± sd over seeds) and the papers', same axes."""
  from matplotlib.figure import Figure

  from jaxprune.train.report import save_figure

  fig = Figure(figsize=(11, 5))
  ax = fig.subplots()
  colors = iter(f"C{i}" for i in range(10))
  for row in ROWS:
    res = results.get(row.name)
    color = next(colors)
    label = f"{row.paper}, {row.setting.split(',')[0]}"
    if row.paper_error is not None and row.paper_compression:
      x, y = row.paper_compression, 100 * row.paper_error
      ax.plot(x, y, "*", ms=13, mfc="none", color=color)
      short = row.paper.split("(")[-1].rstrip(")") if "(" in row.paper else row.paper
      short += ", " + row.setting.split(",")[0]
      ax.annotate(short, (x, y), (6, 4), textcoords="offset points", fontsize=7, color=color)
    if not res:
      continue
    if "lottery" in res:
      for name, style in (("ticket", "o-"), ("reinit", "s--"), ("random", "^")):
        pts = [r for r in res["lottery"] if name in r]
        ax.errorbar(
          [1 / r["weights_remaining"] for r in pts],
          [100 * r[name]["test_error_mean"] for r in pts],
          [100 * r[name]["test_error_sd"] for r in pts],
          fmt=style,
          ms=4,
          capsize=2,
          color=color,
          alpha=1.0 if name == "ticket" else 0.6,
          label=f"ours: lottery {name} (1 / weights remaining)",
        )
      continue
    ax.errorbar(
      res["compression_mean"],
      100 * res["test_error_mean"],
      100 * res["test_error_sd"],
      fmt="o",
      capsize=3,
      color=color,
      label=f"ours: {label}",
    )
  ax.plot([], [], "*", ms=13, mfc="none", color="gray", label="papers (hollow stars, same colours)")
  ax.set_xscale("log")
  ax.set(xlabel="compression (×)", ylabel="test error (%)", title="LeNet/MNIST reproductions")
  ax.grid(alpha=0.3)
  ax.set_xlim(0.8, 700)
  ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
  fig.tight_layout()
  return save_figure(fig, path)


if __name__ == "__main__":
  main()
