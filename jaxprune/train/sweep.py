"""Sweeps: one config over several sparsities (and criteria, and structures).

``jaxprune-sweep --config configs/channels.py --workdir runs/sweep
--structures=unstructured,channels`` trains one run per (structure, criterion, sparsity)
in ``<workdir>/<structure>-<criterion>-s<sparsity>/`` plus a dense baseline, then writes
``results.csv`` (one row per run), ``results.md`` (test accuracy with the validation
accuracy in parentheses, one column per structure and criterion) and
``accuracy_vs_sparsity.png``. Finished runs (with a ``summary.json``) are reused, and
interrupted ones resume from their checkpoints, so a sweep can be restarted with the same
command.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from jaxprune.train import settings as settings_lib
from jaxprune.train.loop import train_and_evaluate
from jaxprune.train.main import show_in_help
from jaxprune.train.report import save_figure
from jaxprune.train.settings import Settings

# The sparsities of the classic MNIST weight- versus unit-pruning comparison.
DEFAULT_SPARSITIES = (0.25, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.97, 0.99)
COLUMNS = (
  "structure",
  "criterion",
  "target_sparsity",
  "sparsity",
  "validation_accuracy",
  "test_accuracy",
  "test_error",
  "accuracy_drop",
  "params_remaining",
  "compression",
  "speedup",
  "wall_time_s",
  "workdir",
)


def run_name(structure: str, criterion: str, sparsity: float) -> str:
  """The folder of one run, e.g. ``"channels-magnitude-s0.95"`` (``"dense"`` for s = 0).

  Example:
    >>> run_name("2:4", "magnitude", 0.5)
    'nm2of4-magnitude-s0.5'
  """
  if sparsity == 0:
    return "dense"
  tag = structure.replace(":", "of").replace("block", "blk")
  tag = f"nm{tag}" if tag[:1].isdigit() else tag
  return f"{tag}-{criterion}-s{sparsity:g}"


def _run(settings: Settings, workdir: Path, verbose: bool) -> dict[str, Any]:
  summary_path = workdir / "summary.json"
  if summary_path.exists():  # Written last, atomically: the run is complete.
    return json.loads(summary_path.read_text())
  return train_and_evaluate(settings, workdir, verbose=verbose)


def run_sweep(
  config: ml_collections.ConfigDict | Settings,
  workdir: str | os.PathLike,
  sparsities: Sequence[float] = DEFAULT_SPARSITIES,
  *,
  criteria: Sequence[str] | None = None,
  structures: Sequence[str] | None = None,
  dense_baseline: bool = True,
  verbose: bool = True,
) -> list[dict[str, Any]]:
  """Trains ``config`` at every sparsity, criterion and structure; writes the tables and plot.

  Args:
    config: the base config, or its settings (the pruning block is overridden per run).
    workdir: the sweep's folder; each run gets a subfolder (see `run_name`).
    sparsities: target sparsities, each in (0, 1).
    criteria: criterion names (default: the config's).
    structures: structure specs (default: the config's), e.g. ``["unstructured",
      "channels"]`` for weight versus unit pruning.
    dense_baseline: also train without pruning, for the accuracy drop.
    verbose: print progress lines and the final table.

  Returns:
    One row per run with the fields of `COLUMNS`.
  """
  base = settings_lib.ensure(config)
  workdir = Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  criteria = list(criteria or [base.pruning.criterion])
  structures = list(structures or [base.pruning.structure])
  for s in sparsities:
    if not 0.0 < float(s) < 1.0:
      raise ValueError(
        f"Sweep sparsities must be in (0, 1); got {s!r}. Example: --sparsities=0.5,0.9,0.95."
      )
  jobs = [(st, cr, float(s)) for st in structures for cr in criteria for s in sparsities]
  if dense_baseline:
    jobs.insert(0, (structures[0], criteria[0], 0.0))
  rows, baseline = [], None
  for i, (structure, criterion, sparsity) in enumerate(jobs, start=1):
    name = run_name(structure, criterion, sparsity)
    if verbose:
      print(f"[{i}/{len(jobs)}] {name}", flush=True)
    summary = _run(_job(base, structure, criterion, sparsity, verbose), workdir / name, False)
    if sparsity == 0:
      baseline = summary["test_accuracy"]
    rows.append(
      {
        "structure": structure if sparsity else "dense",
        "criterion": criterion if sparsity else "-",
        "target_sparsity": sparsity,
        "sparsity": summary["sparsity"],
        "validation_accuracy": summary.get("validation_accuracy"),
        "test_accuracy": summary["test_accuracy"],
        "test_error": summary["test_error"],
        "accuracy_drop": None if baseline is None else baseline - summary["test_accuracy"],
        "params_remaining": summary["params_remaining"],
        "compression": summary["compression"],
        "speedup": summary["speedup"],
        "wall_time_s": summary["wall_time_s"],
        "workdir": name,
      }
    )
  write_csv(rows, workdir / "results.csv")
  table = markdown_table(rows)
  (workdir / "results.md").write_text(table + "\n")
  plot_sweep(rows, workdir / "accuracy_vs_sparsity.png")
  if verbose:
    print(table)
    print(f"results in {os.fspath(workdir)}: results.csv, results.md, accuracy_vs_sparsity.png")
  return rows


def _job(
  base: Settings, structure: str, criterion: str, sparsity: float, verbose: bool
) -> Settings:
  """The settings of one run of the sweep (sparsity 0: the dense baseline)."""
  return settings_lib.derive(
    base,
    {
      "pruning.enabled": sparsity > 0,
      "pruning.sparsity": sparsity if sparsity > 0 else base.pruning.sparsity,
      "pruning.criterion": criterion,
      "pruning.structure": structure,
      "report.progress": base.report.progress and verbose,
    },
  )


def write_csv(rows: Sequence[dict[str, Any]], path: str | os.PathLike) -> None:
  """One line per run with the `COLUMNS`."""
  with open(path, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)


def _series(rows: Sequence[dict[str, Any]]) -> dict[str, dict[float, dict[str, Any]]]:
  series: dict[str, dict[float, dict[str, Any]]] = {}
  for r in rows:
    if r["target_sparsity"] > 0:
      series.setdefault(f"{r['structure']} / {r['criterion']}", {})[r["target_sparsity"]] = r
  return series


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
  """Test accuracy (%) by target sparsity (rows) and structure / criterion (columns).

  A run with a validation split shows its validation accuracy (%) in parentheses.

  Example:
    >>> rows = [dict(structure="unstructured", criterion="magnitude", target_sparsity=0.5,
    ...              test_accuracy=0.98, validation_accuracy=0.975)]
    >>> print(markdown_table(rows))
    | sparsity | unstructured / magnitude |
    |---|---|
    | 0.5 | 98.00 (97.50) |
  """
  series = _series(rows)
  dense = [r for r in rows if r["target_sparsity"] == 0]
  names = list(series)
  lines = ["| sparsity | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
  if dense:
    acc = _cell(dense[0])
    lines.append("| 0 (dense) | " + " | ".join([acc] * len(names)) + " |")
  for s in sorted({k for v in series.values() for k in v}):
    cells = [_cell(series[n][s]) if s in series[n] else "" for n in names]
    lines.append(f"| {s:g} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def _cell(row: dict[str, Any]) -> str:
  cell = f"{100 * row['test_accuracy']:.2f}"
  if row.get("validation_accuracy") is not None:
    cell += f" ({100 * row['validation_accuracy']:.2f})"
  return cell


def plot_sweep(rows: Sequence[dict[str, Any]], path: str | os.PathLike) -> Path:
  """Test accuracy against target sparsity, one line per structure / criterion."""
  from matplotlib.figure import Figure  # heavy; only the plot needs it

  fig = Figure(figsize=(6.5, 4.2))
  ax = fig.subplots()
  for name, points in _series(rows).items():
    xs = sorted(points)
    ax.plot(xs, [100 * points[x]["test_accuracy"] for x in xs], marker="o", label=name)
  dense = [r for r in rows if r["target_sparsity"] == 0]
  if dense:
    ax.axhline(100 * dense[0]["test_accuracy"], color="gray", ls="--", label="dense")
  ax.set(xlabel="sparsity (fraction of weights removed)", ylabel="test accuracy (%)")
  ax.set_title("accuracy versus sparsity")
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  return save_figure(fig, path)


def _floats(values: Sequence[str]) -> list[float]:
  return [float(v) for v in values]


def main() -> None:
  """Entry point of the ``jaxprune-sweep`` console script."""
  config_flag = config_flags.DEFINE_config_file("config", None, "Base experiment config file.")
  workdir = flags.DEFINE_string("workdir", None, "Folder of the sweep (one subfolder per run).")
  sparsities = flags.DEFINE_list(
    "sparsities", [f"{s:g}" for s in DEFAULT_SPARSITIES], "Target sparsities, comma-separated."
  )
  criteria = flags.DEFINE_list("criteria", None, "Criteria (default: the config's).")
  structures = flags.DEFINE_list(
    "structures", None, "Structures, e.g. unstructured,channels (default: the config's)."
  )
  baseline = flags.DEFINE_bool("dense_baseline", True, "Also train a dense baseline.")
  flags.mark_flags_as_required(["config", "workdir"])
  show_in_help("config", "workdir", "sparsities", "criteria", "structures", "dense_baseline")

  def run(argv: list[str]) -> None:
    if len(argv) > 1:
      raise app.UsageError(f"Unexpected arguments {argv[1:]}; pass options as --flag=value.")
    if not flags.FLAGS["verbosity"].present:
      logging.set_verbosity(logging.WARNING)
    run_sweep(
      config_flag.value,
      workdir.value,
      _floats(sparsities.value),
      criteria=criteria.value,
      structures=structures.value,
      dense_baseline=baseline.value,
    )
    sys.stdout.flush()

  app.run(run)
