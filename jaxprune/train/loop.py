"""The training loop: `train_and_evaluate(config, workdir)`.

It loads the data (offline first, see `input_pipeline`), builds the model, the masked
optimizer and the train state, resumes from ``<workdir>/checkpoints`` if a checkpoint is
there, and trains with a progress bar showing loss, accuracy and sparsity. It writes
into ``workdir``:

* ``metrics.jsonl``: training metrics every ``log_every_steps`` steps, validation metrics
  (``validation_loss``, ``validation_accuracy``) every ``eval_every_epochs`` epochs and
  at the end, and test metrics (``test_loss``, ``test_accuracy``) once, at the last step
  (appended and flushed line by line). With ``data.validation_fraction=0`` there is no
  validation split and the test split is evaluated at every evaluation instead;
* ``checkpoints/``: orbax checkpoints every ``checkpoint.every_steps`` steps and at the end;
* ``summary.json``: final validation and test loss / accuracy / error (the validation
  examples are held out from the training split), the step after which BatchNorm
  statistics were re-estimated and over how many batches (``bn_recalibration``, see
  `recalibration`; None if they were not), per-layer and total sparsity,
  remaining parameters, compression, dense and remaining FLOPs, speedup, wall time, and
  throughput: ``steps_per_second`` and ``cpu_seconds_per_step`` (from the end of the
  first step to the end of the loop, leaving out the evaluations, whose total is
  ``eval_time_s``) and ``input_wait_fraction`` (share of that time the loop was blocked
  on the next batch);
* ``curves.png`` and ``layer_sparsity.png`` (see `report`), and ``config.json``;
* ``tensorboard/``: TensorBoard event files with the metrics, per-layer sparsity and
  weight histograms (``report.tensorboard``, see `tensorboard_log`).

The summary and the screen name the backend the run used (``backend``, ``device_kind``,
``devices``, ``processes``): JAX picks the accelerator that is installed (GPU, TPU)
unless ``JAX_PLATFORMS`` says otherwise.

In a multi-process run (``--multihost``) every process runs this same loop over the
same global batches, each feeding its own devices' rows; the evaluations, the summary's
numbers and the checkpoints (written by orbax from all processes) are collective. Only
process 0 writes the files above and prints, into the ``workdir`` all processes share.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np

import jaxprune
from jaxprune.train import (
  checkpoint,
  evaluation,
  experiment,
  input_pipeline,
  recalibration,
  report,
)
from jaxprune.train import sharding as sharding_lib
from jaxprune.train.evaluation import Evaluator
from jaxprune.train.experiment import Experiment
from jaxprune.train.files import atomic_open
from jaxprune.train.metrics_log import read_metrics
from jaxprune.train.reporters import Reporters
from jaxprune.train.settings import Settings
from jaxprune.train.sharding import Placement
from jaxprune.train.state import TrainState


def write_json(path: str | os.PathLike, obj: Any) -> None:
  """Writes JSON atomically (temporary file, then rename), so a crash never leaves half a file."""
  with atomic_open(path) as f:
    json.dump(obj, f, indent=2, default=str)


def train_and_evaluate(
  config: ml_collections.ConfigDict | Settings,
  workdir: str | os.PathLike,
  *,
  verbose: bool = True,
  stop_step: int | None = None,
) -> dict[str, Any]:
  """Trains and evaluates a model as ``config`` says, resuming from ``workdir`` if possible.

  Args:
    config: the experiment config (see ``configs/default.py`` for every field), or its
      resolved `jaxprune.train.settings.Settings`.
    workdir: the run's folder (created if missing).
    verbose: print the final table to stdout.
    stop_step: stop after this step, with a checkpoint there, as if interrupted (no test
      evaluation, no summary); calling again without it continues the run exactly.

  Returns:
    The summary also written to ``<workdir>/summary.json``; with ``stop_step`` before the
    end, only ``{"steps": stop_step, "stopped": True}``.

  Example:
    From Python, with any override of the command line::

      from jaxprune.train.config import load_config

      config = load_config("default", {"pruning.sparsity": 0.95})
      summary = train_and_evaluate(config, "runs/s95")
      print(summary["test_error"], summary["sparsity"], summary["speedup"])
  """
  wall_start = time.perf_counter()
  workdir = Path(workdir)
  main_process = jax.process_index() == 0  # the one that writes files and prints
  verbose = verbose and main_process
  # Set up: settings, data, model, optimizer; where the arrays live.
  exp = experiment.build(config, verbose=verbose)
  workdir.mkdir(parents=True, exist_ok=True)  # after build: a refused config leaves no folder
  placement = sharding_lib.place(exp.settings, exp.create_state)
  recal = recalibration.plan(
    exp.settings,
    bool(jax.tree.leaves(placement.abstract.batch_stats)),
    exp.mask_updates,
    exp.splits.train.num_examples,
  )
  # Restore the last checkpoint, or start.
  ckpt = checkpoint.for_run(exp.settings.checkpoint, workdir / "checkpoints")
  state, position = checkpoint.restore_or_create(ckpt, exp.create_state, placement)
  resumed, start_step = position is not None, int(state.step)
  platform = backend_info(placement.mesh)
  announce(exp, workdir, platform, main_process=main_process, verbose=verbose)
  # Compile every program of the loop.
  feed = make_feed(exp, placement, position)
  compiled = compile_steps(exp, feed, placement, state)
  evaluator = make_evaluator(exp, placement)
  reporters = make_reporters(exp, workdir, placement, start_step, resumed, main_process)
  end = exp.total_steps if stop_step is None else min(int(stop_step), exp.total_steps)
  steps, throughput = range(start_step, max(end, start_step)), Throughput()
  # Train, evaluating as the schedule says.
  try:
    state = train_steps(
      exp, state, steps, feed, compiled, evaluator, reporters, ckpt, recal, throughput,
      placement.put,
    )  # fmt: skip
  finally:
    reporters.close()
    feed.close()
    if ckpt is not None:
      ckpt.close()
  if steps.stop < exp.total_steps:
    return {"steps": int(state.step), "stopped": True}
  # Evaluate the final state and summarise the run.
  validation, test = evaluator.final(state)
  resumed_from = start_step if resumed else None
  summary = summarise(exp, state, validation, test, platform, resumed_from, recal, throughput)
  summary["wall_time_s"] = time.perf_counter() - wall_start
  if main_process:
    write_outputs(exp, workdir, summary, verbose=verbose)
  return summary


def backend_info(mesh: jax.sharding.Mesh) -> dict[str, Any]:
  """Where a run trains: backend (``"cpu"``, ``"gpu"``, ``"tpu"``), device kind and counts.

  Example:
    >>> from jaxprune.train.sharding import make_mesh
    >>> info = backend_info(make_mesh())
    >>> info["backend"] == jax.default_backend(), info["processes"]
    (True, 1)
  """
  device = mesh.devices.flat[0]
  return {
    "backend": device.platform,
    "device_kind": device.device_kind,
    "devices": int(mesh.size),
    "processes": jax.process_count(),
  }


def announce(
  exp: Experiment, workdir: Path, platform: dict[str, Any], *, main_process: bool, verbose: bool
) -> None:
  """Writes ``config.json`` (process 0) and says where the run trains (``verbose``)."""
  if main_process:
    write_json(workdir / "config.json", exp.settings.as_json())
  if verbose:
    print(
      f"Training on {platform['devices']} {platform['backend']} device(s) "
      f"({platform['device_kind']}) in {platform['processes']} process(es).",
      file=sys.stderr,
      flush=True,
    )


def make_evaluator(exp: Experiment, placement: Placement) -> Evaluator:
  """The run's evaluations: the task's step and metrics on its held-out splits."""
  return Evaluator(
    exp.task.eval_step,
    exp.task.eval_metrics,
    exp.splits,
    exp.settings.train.eval_batch_size,
    placement.put,
    check_sparse=exp.pruning,
    batches=exp.task.eval_batches,
  )


def make_reporters(
  exp: Experiment,
  workdir: Path,
  placement: Placement,
  start_step: int,
  resumed: bool,
  main_process: bool,
) -> Reporters:
  """The run's metrics log, TensorBoard events and progress bar (``settings.report``)."""
  return Reporters(
    exp.settings.report,
    workdir,
    placement.mesh,
    total_steps=exp.total_steps,
    start_step=start_step,
    resumed=resumed,
    title=f"{exp.settings.model.name}/{exp.splits.name}",
    main_process=main_process,
  )


def make_feed(
  exp: Experiment, placement: Placement, position: dict[str, int] | None
) -> input_pipeline.TrainFeed:
  """The training batches of the run, from ``position`` (a checkpoint's) or the start."""
  data = exp.settings.data
  return exp.task.feed(
    exp.splits.train,
    exp.settings.train.batch_size,
    exp.settings.seed,
    batch_sharding=placement.batch,
    replicated=placement.replicated,
    on_device=data.on_device,
    prefetch=data.prefetch,
    position=position,
    num_workers=data.num_workers,
  )


@dataclasses.dataclass(frozen=True)
class CompiledSteps:
  """The programs of a run, compiled before its loop starts.

  Attributes:
    train: the step with the mask-update branch (None if no remaining step needs it).
    frozen: the step compiled without it (``masks_frozen=True``), or None.
    updates_masks: ``bool[total_steps]``: the steps that run ``train``.
    count_zeros: ``state -> pruned entries`` (jitted, compiled), for the sparsity metric.
    num_prunable: the entries it counts over.
    one_step_in_flight: block after each step (simulated CPU devices, see `compile_steps`).
  """

  train: Callable | None
  frozen: Callable | None
  updates_masks: np.ndarray
  count_zeros: Callable[[TrainState], jax.Array]
  num_prunable: int
  one_step_in_flight: bool

  def at(self, step: int) -> Callable:
    """The compiled step to run at ``step`` (0-based)."""
    return self.train if self.updates_masks[step] else self.frozen


def compile_steps(
  exp: Experiment, feed: Any, placement: Placement, state: TrainState
) -> CompiledSteps:
  """Compiles the steps the rest of the run takes, before the loop, not when first needed.

  Steps where the schedule keeps the masks run a step compiled without the mask-update
  branch (identical results; the untaken branch alone costs a few percent on CPU), unless
  ``pruning.frozen_step`` is False or the state's optimizer counter is not its step.

  Args:
    exp: the experiment (its task's step, settings and mask-update steps).
    feed: the `jaxprune.train.input_pipeline.TrainFeed` (it jits for its batches).
    placement: the run's `jaxprune.train.sharding.Placement`.
    state: the state the loop starts from (restored or new).
  """
  s = exp.settings
  step_fn = functools.partial(
    exp.task.train_step,
    scoring_temperature=s.pruning.scoring_temperature,
    label_smoothing=s.train.label_smoothing,
    capture_activations=exp.needs_activations,
    penalty=exp.penalty,
  )
  start = int(state.step)
  updates_masks = np.ones(exp.total_steps, bool)
  if s.pruning.enabled and s.pruning.frozen_step and _count_matches(state, start):
    updates_masks = exp.mask_updates
  out_shardings = (placement.state, placement.replicated)
  target = placement.abstract_state
  remaining = updates_masks[start:]
  train = frozen = None
  if remaining.any():
    train = feed.jit_step(step_fn, placement.state, out_shardings, target)
  if not remaining.all():
    no_update = functools.partial(step_fn, masks_frozen=True)
    frozen = feed.jit_step(no_update, placement.state, out_shardings, target)

  def zeros_of(state: TrainState) -> jax.Array:
    if s.pruning.enabled:
      return evaluation.pruned_counts(state.opt_state)[0]
    return evaluation.kernel_zeros(state.params)[0]

  abstract = placement.abstract
  if s.pruning.enabled:
    num_prunable = evaluation.num_pruned_weights(abstract.opt_state)
  else:
    num_prunable = evaluation.num_kernel_weights(abstract.params)
  # XLA:CPU runs the in-process collectives of simulated devices on its shared intra-op
  # thread pool. With several steps queued, a device that starts step k + 1 blocks a pool
  # thread in that step's all-reduce while another device still needs the pool to finish
  # step k; once every pool thread waits (2 on a 2-core machine), nothing progresses and
  # XLA aborts after its rendezvous timeout. One step in flight at a time avoids it (real
  # MNIST, LeNet-300-100, 8 devices: abort within 50 steps, vs a clean 468-step epoch).
  one_in_flight = jax.default_backend() == "cpu" and placement.mesh.size > 1
  count_zeros = jax.jit(zeros_of).lower(target).compile()
  return CompiledSteps(train, frozen, updates_masks, count_zeros, num_prunable, one_in_flight)


def _count_matches(state: TrainState, step: int) -> bool:
  """True if the optimizer state is one `jaxprune.masked` whose counter equals ``step``."""
  opt_state = state.opt_state
  return isinstance(opt_state, jaxprune.MaskedState) and int(opt_state.count) == step


class Throughput:
  """Times the loop: from the end of its first step, leaving out the evaluations."""

  def __init__(self):
    self.start = time.perf_counter()
    self.input_wait, self.steps, self.eval_wall, self.eval_cpu = 0.0, 0, 0.0, 0.0
    self.since: float | None = None
    self.cpu_since = 0.0
    self.end = self.cpu_end = 0.0

  def next_batch(self, feed: Iterator[Any]) -> Any:
    """The next batch, timing how long the loop waited for it."""
    fetch_start = time.perf_counter()
    batch = next(feed)
    self.input_wait += time.perf_counter() - fetch_start
    return batch

  def stepped(self, metrics: Any) -> None:
    """Counts a step; the first one (with its compile and warm-up) starts the clock."""
    if self.since is None:
      jax.block_until_ready(metrics)
      self.input_wait, self.since, self.cpu_since = 0.0, time.perf_counter(), time.process_time()
    else:
      self.steps += 1

  @contextlib.contextmanager
  def evaluating(self, state: TrainState) -> Iterator[None]:
    """Times an evaluation (after the steps still queued, which are training time)."""
    jax.block_until_ready(state)
    wall, cpu = time.perf_counter(), time.process_time()
    yield
    self.eval_wall += time.perf_counter() - wall
    self.eval_cpu += time.process_time() - cpu

  def stop(self) -> None:
    self.end, self.cpu_end = time.perf_counter(), time.process_time()

  def summary(self) -> dict[str, float | None]:
    """``steps_per_second``, ``input_wait_fraction``, ``cpu_seconds_per_step`` and times."""
    timed = 0.0
    if self.steps and self.since is not None:
      timed = self.end - self.since - self.eval_wall
    return {
      "steps_per_second": self.steps / timed if timed else None,
      "input_wait_fraction": self.input_wait / timed if timed else None,
      "cpu_seconds_per_step": (
        (self.cpu_end - self.cpu_since - self.eval_cpu) / self.steps if timed else None
      ),
      "train_time_s": self.end - self.start,
      "eval_time_s": self.eval_wall,
    }


def train_steps(
  exp: Experiment,
  state: TrainState,
  steps: range,
  feed: input_pipeline.TrainFeed,
  compiled: CompiledSteps,
  evaluator: Evaluator,
  reporters: Reporters,
  ckpt: checkpoint.Checkpointer | None,
  recal: tuple[int | None, int],
  throughput: Throughput,
  put: Callable[[dict], dict],
) -> TrainState:
  """The loop: trains ``steps``, logs, evaluates and checkpoints; returns the last state."""
  total, log_every, eval_every = exp.total_steps, exp.log_every, exp.eval_every
  recal_step, recal_batches = recal
  window: list[dict[str, jax.Array]] = []
  try:
    for step in steps:
      batch = throughput.next_batch(feed)
      state, metrics = compiled.at(step)(state, batch)
      if step == recal_step:
        state = recalibration.recalibrate(
          state, exp.splits.train, exp.settings.train.batch_size, recal_batches, put
        )
      if compiled.one_step_in_flight:
        jax.block_until_ready(state)
      window.append(metrics)
      throughput.stepped(metrics)
      done = step + 1
      record: dict[str, Any] = {}
      if done % log_every == 0 or done == total:
        record.update(train_record(exp, jax.device_get(window), compiled, state, step))
        window = []
      hists = {}
      if done % eval_every == 0 or done == total:
        with throughput.evaluating(state):
          evaluator.during_training(state, record, last=done == total)
          hists = reporters.histograms(state)
      reporters.step(done, done / exp.steps_per_epoch, record, state, hists)
      if ckpt is not None:
        ckpt.save(done, state, feed.get_state(), force=done in (steps.stop, total))
  finally:
    jax.block_until_ready(state)
    throughput.stop()
  return state


def train_record(
  exp: Experiment, window: list[dict[str, Any]], compiled: CompiledSteps, state: Any, step: int
) -> dict[str, float]:
  """The training metrics of a logging window: means of the task's metrics, sparsity, rate."""
  record = {f"train_{k}": float(np.mean([m[k] for m in window])) for k in exp.task.train_metrics}
  record["sparsity"] = int(compiled.count_zeros(state)) / max(compiled.num_prunable, 1)
  record["learning_rate"] = float(exp.learning_rate(step))
  return record


def summarise(
  exp: Experiment,
  state: TrainState,
  validation: dict[str, float] | None,
  test: dict[str, float],
  platform: dict[str, Any],
  resumed_from: int | None,
  recal: tuple[int | None, int],
  throughput: Throughput,
) -> dict[str, Any]:
  """The run's summary (``summary.json``) but its ``wall_time_s``."""
  s, splits = exp.settings, exp.splits
  recal_step, recal_batches = recal
  return {
    "dataset": splits.name,
    "notice": splits.notice,
    "model": s.model.name,
    "criterion": s.pruning.criterion if exp.pruning else None,
    "structure": s.pruning.structure if exp.pruning else None,
    "target_sparsity": s.pruning.sparsity if exp.pruning else 0.0,
    "steps": int(state.step),
    "epochs": int(state.step) / exp.steps_per_epoch,
    **platform,
    "resumed_from_step": resumed_from,
    "train_examples": splits.train.num_examples,
    "validation_examples": 0 if splits.validation is None else splits.validation.num_examples,
    "test_examples": splits.test.num_examples,
    "validation_loss": None if validation is None else validation["loss"],
    "validation_accuracy": None if validation is None else validation["accuracy"],
    "validation_error": None if validation is None else validation["error"],
    **evaluation.summarize(state, exp.model, exp.input_shape, test),
    **_task_metrics("validation", validation),
    **_task_metrics("test", test),
    "bn_recalibration": (
      None if recal_step is None else {"after_step": recal_step + 1, "batches": recal_batches}
    ),
    **throughput.summary(),
  }


def _task_metrics(split: str, result: dict[str, float] | None) -> dict[str, float]:
  """A split's metrics beyond loss, accuracy and error (e.g. bits per byte), for the summary."""
  skip = ("loss", "accuracy", "error")
  return {f"{split}_{k}": v for k, v in (result or {}).items() if k not in skip}


def write_outputs(
  exp: Experiment, workdir: Path, summary: dict[str, Any], *, verbose: bool
) -> None:
  """Writes ``summary.json`` and the plots; prints the final table (``verbose``)."""
  write_json(workdir / "summary.json", summary)
  if exp.settings.report.plots:
    report.plot_curves(read_metrics(workdir / "metrics.jsonl"), workdir / "curves.png")
    report.plot_layer_sparsity(summary, workdir / "layer_sparsity.png")
  if verbose:
    print(report.format_table(summary))
    print(f"wall time {summary['wall_time_s']:.1f}s; results in {os.fspath(workdir)}")
    sys.stdout.flush()
