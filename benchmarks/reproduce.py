"""The reproduction table: published LeNet/MNIST pruning results, rerun with the papers' recipes.

Each `Row` names a paper's number, the config and overrides that follow its recipe, the
deviations from it (and why), and what to read from the runs. For every row this script:

1. chooses the hyperparameters listed in ``Row.grid`` (if any) on the validation split,
   with seed 0 (never on test);
2. trains ``--seeds`` seeds with the chosen values (``jaxprune-train`` workdirs under
   ``--out/<row>/seed_<s>``; a rerun resumes or reuses finished runs);
3. reports test error and compression as mean ± sd over the seeds.

It prints the commands with ``--dry-run``, and with ``--write`` replaces the section
between the ``reproduction`` markers of ``benchmarks/RESULTS.md`` and writes
``reproduction.png`` (error vs compression, our points and the papers').

  python benchmarks/reproduce.py --dry-run
  python benchmarks/reproduce.py --rows frankle2019_lenet300 --seeds 0,1,2 --out runs/repro

Status: the table's skeleton. The rows below are the ones issue 11 asks for; a row whose
``config`` is None has no recipe in this repository yet and is listed, not run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
BEGIN, END = "<!-- reproduction:begin -->", "<!-- reproduction:end -->"


@dataclasses.dataclass(frozen=True)
class Row:
  """One published result and how we rerun it.

  Attributes:
    name: short identifier (workdir name, ``--rows``).
    paper: citation as shown in the table.
    setting: model and target, e.g. ``"LeNet-300-100, 98% sparsity"``.
    paper_error: the paper's test error (fraction).
    paper_compression: the paper's compression (dense weights / kept weights).
    config: ``configs/<config>.py``, or None where no recipe exists yet.
    overrides: dotted config overrides that follow the paper's recipe.
    grid: ``{dotted field: [values]}`` chosen on validation error with seed 0.
    deviations: how the run departs from the paper's recipe, and why.
    lottery_weights: for lottery rows, the fractions of weights remaining to report.
  """

  name: str
  paper: str
  setting: str
  paper_error: float
  paper_compression: float
  config: str | None
  overrides: dict[str, Any] = dataclasses.field(default_factory=dict)
  grid: dict[str, list[Any]] = dataclasses.field(default_factory=dict)
  deviations: str = ""
  lottery_weights: tuple[float, ...] = ()


LENET300 = {"model.name": "lenet300100"}
LENET5 = {"model.name": "lenet5"}
SNIP_SGD = {  # Lee et al. 2019: SGD momentum 0.9, lr 0.1 x0.1 every 25k iterations, batch 100.
  "optimizer.name": "momentum",
  "optimizer.learning_rate": 0.1,
  "optimizer.weight_decay": 5e-4,
  "train.batch_size": 100,
}

ROWS = (
  Row(
    "han2015_lenet300",
    "Han et al. 2015",
    "LeNet-300-100, 12x",
    0.0159,
    12.0,
    "default",
    {**LENET300, "pruning.sparsity": 1 - 1 / 12},
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
    deviations="constant then step decay not yet in optim.learning_rate (cosine used)",
  ),
  Row(
    "snip2019_lenet5",
    "Lee et al. 2019 (SNIP)",
    "LeNet-5-Caffe, 99% sparsity",
    0.011,
    100.0,
    "snip",
    {**LENET5, **SNIP_SGD, "pruning.sparsity": 0.99},
  ),
  Row(
    "molchanov2017_lenet300",
    "Molchanov et al. 2017 (sparse VD)",
    "LeNet-300-100",
    0.0192,
    68.0,
    "variational_dropout",
  ),
  Row(
    "molchanov2017_lenet5",
    "Molchanov et al. 2017 (sparse VD)",
    "LeNet-5-Caffe",
    0.0075,
    280.0,
    "variational_dropout",
    LENET5,
  ),
  Row("louizos2018_lenet300", "Louizos et al. 2018 (L0)", "LeNet-300-100", 0.014, 0.0, None),
  Row(
    "frankle2019_lenet300",
    "Frankle & Carbin 2019",
    "LeNet-300-100, tickets at 21% and 7% of weights",
    0.0,  # The paper's claim: at most the dense network's error (read from its figure).
    0.0,
    "lottery",
    deviations="fewer iterations per round than the paper's 50,000 where the budget is short",
    lottery_weights=(0.21, 0.07),
  ),
  Row(
    "grasp2020_or_rigl2020", "Wang et al. 2020 / Evci et al. 2020", "closest setting", 0, 0, None
  ),
)


def command(row: Row, workdir: Path, extra: dict[str, Any]) -> list[str]:
  """The ``jaxprune-train`` command of one run of ``row``."""
  flags = [f"--config.{k}={v}" for k, v in {**row.overrides, **extra}.items()]
  config = ROOT / "configs" / f"{row.config}.py"
  return [
    sys.executable,
    "-m",
    "jaxprune.train",
    "--config",
    str(config),
    "--workdir",
    str(workdir),
  ] + flags


def run_one(row: Row, workdir: Path, extra: dict[str, Any]) -> dict[str, Any]:
  """Trains (or resumes) one run in-process; returns its summary (lottery: lottery.json)."""
  from jaxprune.train import lottery
  from jaxprune.train.config import load_config
  from jaxprune.train.loop import train_and_evaluate

  config = load_config(row.config, {**row.overrides, **extra})
  if "lottery" in config:
    return lottery.run(config, workdir)
  summary = workdir / "summary.json"
  if summary.is_file():
    return json.loads(summary.read_text())
  return train_and_evaluate(config, workdir, verbose=False)


def choose(row: Row, out: Path) -> dict[str, Any]:
  """The grid point of ``row`` with the lowest validation error (seed 0); {} without a grid."""
  if not row.grid:
    return {}
  keys = list(row.grid)
  best, best_err = {}, np.inf
  for values in np.array(np.meshgrid(*row.grid.values()), dtype=object).T.reshape(-1, len(keys)):
    point = dict(zip(keys, values, strict=True))
    tag = "_".join(f"{k.split('.')[-1]}={v}" for k, v in point.items())
    summary = run_one(row, out / row.name / "grid" / tag, {**point, "seed": 0})
    if summary["validation_error"] < best_err:
      best, best_err = point, summary["validation_error"]
  return best


def aggregate(row: Row, summaries: Sequence[dict[str, Any]]) -> dict[str, Any]:
  """Mean ± sd (ddof=1) of test error and compression over seeds."""
  if row.lottery_weights:
    from jaxprune.train import lottery

    return {"lottery": lottery.aggregate(summaries)}
  err = np.array([s["test_error"] for s in summaries])
  comp = np.array([s["compression"] for s in summaries])
  sd = lambda x: float(x.std(ddof=1)) if len(x) > 1 else 0.0
  return {
    "test_error_mean": float(err.mean()),
    "test_error_sd": sd(err),
    "compression_mean": float(comp.mean()),
    "compression_sd": sd(comp),
    "seeds": len(err),
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
  path.write_text(current + ("" if current.endswith("\n") else "\n"))


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rows", default="", help="comma-separated row names (default: all)")
  parser.add_argument("--seeds", default="0,1,2")
  parser.add_argument("--out", type=Path, default=Path("runs/reproduce"))
  parser.add_argument("--dry-run", action="store_true", help="print the commands only")
  parser.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md")
  args = parser.parse_args(argv)
  wanted = {r for r in args.rows.split(",") if r}
  seeds = [int(s) for s in args.seeds.split(",")]
  results = {}
  for row in ROWS:
    if wanted and row.name not in wanted:
      continue
    if row.config is None:
      print(f"# {row.name}: no recipe yet ({row.paper}, {row.setting})")
      continue
    if args.dry_run:
      for seed in seeds:
        cmd = command(row, args.out / row.name / f"seed_{seed}", {"seed": seed})
        print(shlex.join(cmd))
      continue
    chosen = choose(row, args.out)
    runs = [run_one(row, args.out / row.name / f"seed_{s}", {**chosen, "seed": s}) for s in seeds]
    results[row.name] = {"chosen": chosen, **aggregate(row, runs)}
    print(row.name, json.dumps(results[row.name], default=str))
  if results:
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "reproduction.json").write_text(json.dumps(results, indent=2, default=str))
  if args.write and results:
    write_section(table(results, args.out, seeds))


def table(results: dict[str, Any], out: Path, seeds: Sequence[int]) -> str:
  """The markdown table of ``results`` (lottery rows: one line per reported fraction)."""
  lines = [
    "| paper | setting | paper: error / compression | ours: test error (mean ± sd) | "
    "deviations | command |",
    "|---|---|---|---|---|---|",
  ]
  for row in ROWS:
    if row.name not in results:
      continue
    res = results[row.name]
    cmd = shlex.join(command(row, out / row.name / "seed_S", {**res["chosen"], "seed": "S"}))
    if "lottery" in res:
      for frac in row.lottery_weights:
        near = min(res["lottery"], key=lambda r: abs(r["weights_remaining"] - frac))
        t = near["ticket"]
        ours = (
          f"{100 * t['test_error_mean']:.2f} ± {100 * t['test_error_sd']:.2f}% at "
          f"{100 * near['weights_remaining']:.1f}% of weights"
        )
        lines.append(
          f"| {row.paper} | {row.setting} | ≤ dense | {ours} | {row.deviations} | `{cmd}` |"
        )
      continue
    ours = (
      f"{100 * res['test_error_mean']:.2f} ± {100 * res['test_error_sd']:.2f}% at "
      f"{res['compression_mean']:.1f}x"
    )
    paper = f"{100 * row.paper_error:.2f}% / {row.paper_compression:g}x"
    lines.append(f"| {row.paper} | {row.setting} | {paper} | {ours} | {row.deviations} | `{cmd}` |")
  lines.append(f"\nSeeds {', '.join(map(str, seeds))}; hyperparameters chosen on validation.")
  return "\n".join(lines)


if __name__ == "__main__":
  main()
