"""Where a run reports as it trains: ``metrics.jsonl``, TensorBoard and the progress bar.

`Reporters` is built from ``settings.report`` (`jaxprune.train.settings.Report`); the loop
hands it each step's record (training metrics every ``log_every_steps`` steps, evaluation
metrics at each evaluation). Process 0 writes the files and shows the bar; the per-layer
statistics for TensorBoard are computed on the devices by every process (collective).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jax
from tqdm.auto import tqdm

from jaxprune.train import sharding, tensorboard_log
from jaxprune.train.metrics_log import MetricsLog
from jaxprune.train.settings import Report
from jaxprune.train.state import TrainState


class Reporters:
  """The metrics log, TensorBoard events and progress bar of one run.

  Args:
    report: ``settings.report``.
    workdir: the run's folder.
    mesh: the device mesh (the TensorBoard statistics come back replicated).
    total_steps: the run's length (the bar's total).
    start_step: the step the run starts or resumes at.
    resumed: whether it resumed from a checkpoint (logs drop records after ``start_step``).
    title: the bar's description, e.g. ``"lenet300100/mnist"``.
    main_process: whether this process writes (process 0).
  """

  def __init__(
    self,
    report: Report,
    workdir: str | os.PathLike,
    mesh: jax.sharding.Mesh,
    *,
    total_steps: int,
    start_step: int,
    resumed: bool,
    title: str,
    main_process: bool,
  ):
    workdir = Path(workdir)
    resume_step = start_step if resumed else None
    self.tensorboard = report.tensorboard
    self.log = (
      MetricsLog(workdir / "metrics.jsonl", resume_step=resume_step) if main_process else None
    )
    self.tb = None
    if self.tensorboard and main_process:
      self.tb = tensorboard_log.TensorBoardLog(workdir / "tensorboard", resume_step=resume_step)
    replicated = sharding.replicated(mesh)
    self._layer_sparsity = jax.jit(tensorboard_log.layer_sparsity, out_shardings=replicated)
    self._histograms = jax.jit(tensorboard_log.histograms, out_shardings=replicated)
    self.bar = tqdm(
      total=total_steps,
      initial=start_step,
      desc=title,
      unit="step",
      dynamic_ncols=True,
      mininterval=0.5,
      disable=not (report.progress and main_process),
    )
    self._postfix: dict[str, str] = {}

  def histograms(self, state: TrainState) -> dict[str, Any]:
    """The weight histograms of an evaluation step ({} without TensorBoard)."""
    return jax.device_get(self._histograms(state.params)) if self.tensorboard else {}

  def step(
    self, done: int, epoch: float, record: dict[str, Any], state: TrainState, hists: dict
  ) -> None:
    """Reports the step ``done`` (1-based): its record, if any, and one tick of the bar."""
    if record and self.log is not None:
      self.log.write({"step": done, "epoch": epoch, **record})
    if record and self.tensorboard:
      layers = {}
      if "train_loss" in record:
        layers = jax.device_get(self._layer_sparsity(state.params))
      if self.tb is not None:
        self.tb.scalars(done, record)
        self.tb.layer_sparsity(done, layers)
        self.tb.histograms(done, hists)
    if record:
      self._postfix.update(postfix(record))
      self.bar.set_postfix(self._postfix, refresh=False)
    self.bar.update(1)

  def close(self) -> None:
    """Closes the bar and flushes the files."""
    self.bar.close()
    if self.log is not None:
      self.log.close()
    if self.tb is not None:
      self.tb.close()


def postfix(record: dict[str, Any]) -> dict[str, str]:
  """The progress bar's fields for a record.

  Example:
    >>> postfix({"train_loss": 0.25, "train_accuracy": 0.9, "sparsity": 0.5})
    {'loss': '0.250', 'acc': '0.900', 'sparsity': '0.500'}
  """
  out = {}
  if "train_loss" in record:
    out["loss"] = f"{record['train_loss']:.3f}"
    out["acc"] = f"{record['train_accuracy']:.3f}"
    out["sparsity"] = f"{record['sparsity']:.3f}"
  if "validation_accuracy" in record:
    out["val_acc"] = f"{record['validation_accuracy']:.4f}"
  if "test_accuracy" in record:
    out["test_acc"] = f"{record['test_accuracy']:.4f}"
  return out
