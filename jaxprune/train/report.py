"""Reports of a run: the final table (stdout) and PNG plots (training curves, layer sparsity).

Plots are drawn on `matplotlib.figure.Figure` objects (rendered by Agg, no display and no
change to pyplot's backend, so notebooks keep theirs) from ``metrics.jsonl`` records and
the ``summary.json`` dict only, so they can be redrawn from a finished workdir.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure


def _series(records: Sequence[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
  pairs = [(r["step"], r[key]) for r in records if isinstance(r.get(key), int | float)]
  return [p[0] for p in pairs], [p[1] for p in pairs]


def plot_curves(records: Sequence[dict[str, Any]], path: str | os.PathLike) -> Path:
  """Loss, accuracy and sparsity against the step, from ``metrics.jsonl`` records.

  Args:
    records: dicts with ``step`` and any of ``train_loss``, ``validation_loss``,
      ``test_loss``, ``train_accuracy``, ``validation_accuracy``, ``test_accuracy``,
      ``sparsity``.
    path: the PNG to write.

  Returns:
    The path written.
  """
  fig = Figure(figsize=(13, 3.6))
  axes = fig.subplots(1, 3)
  for i, metric in enumerate(("loss", "accuracy")):
    for split in ("train", "validation", "test"):
      steps, values = _series(records, f"{split}_{metric}")
      if steps:
        axes[i].plot(steps, values, label=split, marker=None if split == "train" else ".")
  axes[0].set(title="loss", xlabel="step", yscale="log")
  axes[1].set(title="accuracy", xlabel="step")
  axes[2].plot(*_series(records, "sparsity"), color="tab:red")
  axes[2].set(title="sparsity of pruned layers", xlabel="step", ylim=(0, 1))
  for ax in axes[:2]:
    if ax.get_legend_handles_labels()[0]:
      ax.legend()
  for ax in axes:
    ax.grid(alpha=0.3)
  fig.tight_layout()
  return save_figure(fig, path)


def plot_layer_sparsity(summary: dict[str, Any], path: str | os.PathLike) -> Path:
  """Horizontal bars: the final sparsity of every kernel (leaves with ndim > 1).

  Args:
    summary: the run summary (its ``layers`` entry).
    path: the PNG to write.

  Returns:
    The path written.
  """
  rows = [(p, r) for p, r in summary["layers"].items() if len(r["shape"]) > 1]
  fig = Figure(figsize=(7, 0.9 + 0.35 * max(len(rows), 1)))
  ax = fig.subplots()
  names = [p for p, _ in rows][::-1]
  values = [r["sparsity"] for _, r in rows][::-1]
  bars = ax.barh(names, values, color="tab:blue")
  for bar, row in zip(bars, [r for _, r in rows][::-1], strict=True):
    ax.text(
      min(bar.get_width(), 1.0) + 0.01,
      bar.get_y() + bar.get_height() / 2,
      f"{row['sparsity']:.1%} of {row['size']:,}",
      va="center",
      fontsize=8,
    )
  ax.set(xlim=(0, 1.3), xlabel="sparsity (fraction of weights removed)", title="per-layer sparsity")
  ax.set_xticks([0.0, 0.25, 0.5, 0.75, 1.0])
  ax.grid(axis="x", alpha=0.3)
  fig.tight_layout()
  return save_figure(fig, path)


def save_figure(fig: Figure, path: str | os.PathLike) -> Path:
  """Writes ``fig`` as a PNG atomically (temporary file, then rename)."""
  path = Path(path)
  tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
  fig.savefig(tmp, dpi=110, format="png")
  os.replace(tmp, path)
  return path


def format_table(summary: dict[str, Any]) -> str:
  """The final table: one row per parameter leaf, then the run's totals.

  Example:
    >>> print(format_table({
    ...   "layers": {"Dense_0/kernel": {"shape": [4, 2], "size": 8, "nonzero": 2,
    ...                                 "sparsity": 0.75}},
    ...   "flops_layers": {"Dense_0/kernel": {"dense": 8, "remaining": 2.0}},
    ...   "validation_error": 0.03, "validation_accuracy": 0.97, "validation_loss": 0.09,
    ...   "test_error": 0.02, "test_accuracy": 0.98, "test_loss": 0.07, "sparsity": 0.75,
    ...   "total_sparsity": 0.75, "params_total": 8, "params_remaining": 2,
    ...   "compression": 4.0, "flops_dense": 8, "flops_remaining": 2.0, "speedup": 4.0}))
    leaf                     shape      params   remaining  sparsity    MACs dense     MACs left
    --------------------------------------------------------------------------------------------
    Dense_0/kernel          (4, 2)           8           2    75.00%             8             2
    --------------------------------------------------------------------------------------------
    total                                    8           2    75.00%             8             2
    <BLANKLINE>
    validation error 3.00% (accuracy 97.00%, loss 0.0900)
    test error 2.00% (accuracy 98.00%, loss 0.0700)
    sparsity 75.00% of pruned weights, 75.00% of all parameters
    compression 4.00x (2 of 8 parameters remain)
    MACs per example 8 -> 2 (theoretical speedup 4.00x)
  """
  flops = summary.get("flops_layers", {})
  width = max([len(p) for p in summary["layers"]] + [5])
  head = (
    f"{'leaf':<{width}}  {'shape':>14}  {'params':>10}  {'remaining':>10}  {'sparsity':>8}  "
    f"{'MACs dense':>12}  {'MACs left':>12}"
  )
  lines = [head, "-" * len(head)]
  for path, row in summary["layers"].items():
    f = flops.get(path)
    dense = f"{f['dense']:>12,}" if f else f"{'':>12}"
    left = f"{round(f['remaining']):>12,}" if f else f"{'':>12}"
    shape = str(tuple(row["shape"]))
    lines.append(
      f"{path:<{width}}  {shape:>14}  {row['size']:>10,}  {row['nonzero']:>10,}  "
      f"{row['sparsity']:>8.2%}  {dense}  {left}"
    )
  lines.append("-" * len(head))
  lines.append(
    f"{'total':<{width}}  {'':>14}  {summary['params_total']:>10,}  "
    f"{summary['params_remaining']:>10,}  {summary['total_sparsity']:>8.2%}  "
    f"{summary['flops_dense']:>12,}  {round(summary['flops_remaining']):>12,}"
  )
  lines += [
    "",
    *(
      [
        f"validation error {summary['validation_error']:.2%} (accuracy "
        f"{summary['validation_accuracy']:.2%}, loss {summary['validation_loss']:.4f})"
      ]
      if summary.get("validation_accuracy") is not None
      else []
    ),
    f"test error {summary['test_error']:.2%} (accuracy {summary['test_accuracy']:.2%}, "
    f"loss {summary['test_loss']:.4f})",
    f"sparsity {summary['sparsity']:.2%} of pruned weights, {summary['total_sparsity']:.2%} of "
    "all parameters",
    f"compression {summary['compression']:.2f}x ({summary['params_remaining']:,} of "
    f"{summary['params_total']:,} parameters remain)",
    f"MACs per example {summary['flops_dense']:,} -> {round(summary['flops_remaining']):,} "
    f"(theoretical speedup {summary['speedup']:.2f}x)",
  ]
  for split in ("validation", "test"):  # language models (`jaxprune.train.text_task`)
    if summary.get(f"{split}_bits_per_byte") is not None:
      lines.append(
        f"{split} {summary[f'{split}_nats_per_byte']:.4f} nats per byte, "
        f"{summary[f'{split}_bits_per_byte']:.4f} bits per byte, perplexity "
        f"{summary[f'{split}_perplexity']:.3f} ({summary[f'{split}_tokens']:,} bytes)"
      )
  if summary.get("neurons"):
    total = "-".join(str(c["total"]) for c in summary["neurons"].values())
    lines.append(
      f"neurons left (test-time L0 gates, inputs of each gated layer) "
      f"{summary['architecture']} of {total}"
    )
  return "\n".join(lines)
