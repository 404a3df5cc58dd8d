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

import functools
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np
from tqdm.auto import tqdm

import jaxprune
from jaxprune.train import (
  checkpoint,
  evaluation,
  experiment,
  input_pipeline,
  optim,
  recalibration,
  report,
  sharding,
  tensorboard_log,
  text_task,
)
from jaxprune.train.files import atomic_open
from jaxprune.train.metrics_log import MetricsLog, read_metrics
from jaxprune.train.state import TrainState
from jaxprune.train.steps import eval_step, train_step


def write_json(path: str | os.PathLike, obj: Any) -> None:
  """Writes JSON atomically (temporary file, then rename), so a crash never leaves half a file."""
  with atomic_open(path) as f:
    json.dump(obj, f, indent=2, default=str)


def train_and_evaluate(
  config: ml_collections.ConfigDict,
  workdir: str | os.PathLike,
  *,
  verbose: bool = True,
  stop_step: int | None = None,
) -> dict[str, Any]:
  """Trains and evaluates a model as ``config`` says, resuming from ``workdir`` if possible.

  Args:
    config: the experiment config (see ``configs/default.py`` for every field).
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
  exp = experiment.build(config, verbose=verbose)
  workdir.mkdir(parents=True, exist_ok=True)  # after build: a refused config leaves no folder
  config = exp.config  # on the fallback dataset, with its settings, if it fell back
  splits, model, lr = exp.splits, exp.model, exp.learning_rate
  train_ds, test_ds, val_ds = splits.train, splits.test, splits.validation
  batch_size, steps_per_epoch, total_steps = (
    int(config.train.batch_size),
    exp.steps_per_epoch,
    exp.total_steps,
  )

  mesh = sharding.make_mesh()
  sharding.check_batch_size(batch_size, mesh)
  sharding.check_batch_size(int(config.train.eval_batch_size), mesh, "train.eval_batch_size")
  data_sharding = sharding.batch_sharding(mesh)
  create = exp.create_state
  abstract = jax.eval_shape(create)
  # BatchNorm statistics re-estimated after the last mask update (config.pruning.recalibrate_bn).
  recal_step, recal_batches = recalibration.plan(
    config,
    bool(jax.tree.leaves(abstract.batch_stats)),
    steps_per_epoch,
    total_steps,
    train_ds.num_examples,
  )
  shardings = sharding.state_shardings(
    abstract, mesh, fsdp=bool(config.sharding.fsdp), min_size=int(config.sharding.fsdp_min_size)
  )

  ckpt = None
  restored = None
  if config.checkpoint.enabled:
    ckpt = checkpoint.Checkpointer(
      workdir / "checkpoints",
      every_steps=int(config.checkpoint.every_steps),
      keep=int(config.checkpoint.keep),
      async_save=bool(config.checkpoint.async_save),
    )
    restored = ckpt.restore(checkpoint.abstract_like(abstract, shardings))
  data_state = None
  if restored is not None:
    state, data_state = restored
  else:
    state = jax.jit(create, out_shardings=shardings)()
  start_step = int(state.step)
  platform = backend_info(mesh)
  if main_process:
    write_json(workdir / "config.json", json.loads(config.to_json_best_effort()))
  if verbose:
    print(
      f"Training on {platform['devices']} {platform['backend']} device(s) "
      f"({platform['device_kind']}) in {platform['processes']} process(es).",
      file=sys.stderr,
      flush=True,
    )

  text = isinstance(train_ds, text_task.TextSplit)  # language modelling on byte tokens
  batches = (text_task.TextFeed if text else input_pipeline.TrainFeed)(
    train_ds,
    batch_size,
    int(config.seed),
    batch_sharding=data_sharding,
    replicated=sharding.replicated(mesh),
    on_device=bool(config.data.on_device),
    prefetch=int(config.data.prefetch),
    position=data_state,
    num_workers=int(config.data.get("num_workers", 0)),
  )
  step_fn = functools.partial(
    train_step,
    scoring_temperature=float(config.pruning.scoring_temperature),
    label_smoothing=float(config.train.label_smoothing),
    capture_activations=exp.needs_activations,
    penalty=exp.penalty,
  )
  out_shardings = (shardings, sharding.replicated(mesh))
  pruning = bool(config.pruning.enabled)
  # Steps where the schedule keeps the masks run a step compiled without the mask-update
  # branch (identical results; the untaken branch alone costs a few percent on CPU).
  updates_masks = np.ones(total_steps, bool)
  if pruning and config.pruning.get("frozen_step", True) and _count_matches(state, start_step):
    updates_masks = optim.mask_update_steps(config, steps_per_epoch, total_steps)
  # Compile the steps this run will take now, before the loop, not when first needed.
  abstract_state = checkpoint.abstract_like(abstract, shardings)
  remaining = updates_masks[start_step:]
  p_train = p_frozen = None
  if remaining.any():
    p_train = batches.jit_step(step_fn, shardings, out_shardings, abstract_state)
  if not remaining.all():
    frozen = functools.partial(step_fn, masks_frozen=True)
    p_frozen = batches.jit_step(frozen, shardings, out_shardings, abstract_state)
  p_eval = jax.jit(eval_step)

  def zeros_of(s: TrainState) -> jax.Array:
    return (
      evaluation.pruned_counts(s.opt_state)[0] if pruning else evaluation.kernel_zeros(s.params)[0]
    )

  count_zeros = jax.jit(zeros_of).lower(abstract_state).compile()
  num_prunable = (
    evaluation.num_pruned_weights(abstract.opt_state)
    if pruning
    else evaluation.num_kernel_weights(abstract.params)
  )
  put = lambda batch: sharding.global_batch(batch, data_sharding)

  def run_eval(state, dataset):
    evaluate = text_task.evaluate if text else evaluation.evaluate
    return evaluate(p_eval, state, dataset, int(config.train.eval_batch_size), put)

  # Evaluations during training use the validation split; the test split is evaluated
  # once, at the end (at every evaluation when there is no validation split).
  eval_ds, eval_name = (val_ds, "validation") if val_ds is not None else (test_ds, "test")

  # XLA:CPU runs the in-process collectives of simulated devices on its shared intra-op
  # thread pool. With several steps queued, a device that starts step k + 1 blocks a pool
  # thread in that step's all-reduce while another device still needs the pool to finish
  # step k; once every pool thread waits (2 on a 2-core machine), nothing progresses and
  # XLA aborts after its rendezvous timeout. One step in flight at a time avoids it (real
  # MNIST, LeNet-300-100, 8 devices: abort within 50 steps, vs a clean 468-step epoch).
  one_step_in_flight = jax.default_backend() == "cpu" and mesh.size > 1

  log_every = max(int(config.train.log_every_steps), 1)
  eval_every = max(int(round(float(config.train.eval_every_epochs) * steps_per_epoch)), 1)
  log = (
    MetricsLog(workdir / "metrics.jsonl", resume_step=start_step if restored else None)
    if main_process
    else None
  )
  tensorboard = bool(config.report.get("tensorboard", False))
  tb = None
  if tensorboard and main_process:
    tb = tensorboard_log.TensorBoardLog(
      workdir / "tensorboard", resume_step=start_step if restored else None
    )
  # Per-layer statistics for TensorBoard, computed on the devices by every process.
  tb_sparsity = jax.jit(tensorboard_log.layer_sparsity, out_shardings=sharding.replicated(mesh))
  tb_histograms = jax.jit(tensorboard_log.histograms, out_shardings=sharding.replicated(mesh))
  bar = tqdm(
    total=total_steps,
    initial=start_step,
    desc=f"{config.model.name}/{train_ds.name}",
    unit="step",
    dynamic_ncols=True,
    mininterval=0.5,
    disable=not (config.report.progress and main_process),
  )
  window: list[dict[str, jax.Array]] = []
  last_test, last_val, postfix = None, None, {}
  # Throughput is timed from the end of the first step; evaluations are left out of it.
  input_wait, timed_steps, timed_from, cpu_from = 0.0, 0, None, 0.0
  eval_wall, eval_cpu = 0.0, 0.0
  end = total_steps if stop_step is None else max(min(int(stop_step), total_steps), start_step)
  loop_start = time.perf_counter()
  try:
    for step in range(start_step, end):
      fetch_start = time.perf_counter()
      batch = next(batches)
      input_wait += time.perf_counter() - fetch_start
      state, metrics = (p_train if updates_masks[step] else p_frozen)(state, batch)
      if step == recal_step:
        state = recalibration.recalibrate(state, train_ds, batch_size, recal_batches, put)
      if one_step_in_flight:
        jax.block_until_ready(state)
      window.append(metrics)
      if timed_from is None:
        jax.block_until_ready(metrics)
        input_wait, timed_from, cpu_from = 0.0, time.perf_counter(), time.process_time()
      else:
        timed_steps += 1
      done = step + 1
      record: dict[str, Any] = {}
      if done % log_every == 0 or done == total_steps:
        host = jax.device_get(window)
        window = []
        record["train_loss"] = float(np.mean([m["loss"] for m in host]))
        record["train_accuracy"] = float(np.mean([m["accuracy"] for m in host]))
        record["sparsity"] = int(count_zeros(state)) / max(num_prunable, 1)
        record["learning_rate"] = float(lr(step))
      hists = {}
      if done % eval_every == 0 or done == total_steps:
        jax.block_until_ready(state)  # the steps still queued are training time
        wall_0, cpu_0 = time.perf_counter(), time.process_time()
        if pruning:  # pruned entries exactly 0.0, and finite (SparsityError otherwise)
          jaxprune.check_sparse(state.params, state.opt_state)
        result = run_eval(state, eval_ds)
        record[f"{eval_name}_loss"] = result["loss"]
        record[f"{eval_name}_accuracy"] = result["accuracy"]
        record.update(text_task.lm_record(eval_name, result))  # bits per byte... ({} for images)
        if val_ds is None:
          last_test = result
        else:
          last_val = result
          if done == total_steps:
            last_test = run_eval(state, test_ds)
            record["test_loss"], record["test_accuracy"] = last_test["loss"], last_test["accuracy"]
            record.update(text_task.lm_record("test", last_test))
        if tensorboard:
          hists = jax.device_get(tb_histograms(state.params))
        eval_wall += time.perf_counter() - wall_0
        eval_cpu += time.process_time() - cpu_0
      if record and log is not None:
        log.write({"step": done, "epoch": done / steps_per_epoch, **record})
      if record and tensorboard:
        layers = jax.device_get(tb_sparsity(state.params)) if "train_loss" in record else {}
        if tb is not None:
          tb.scalars(done, record)
          tb.layer_sparsity(done, layers)
          tb.histograms(done, hists)
      if record:
        postfix.update(_postfix(record))
        bar.set_postfix(postfix, refresh=False)
      bar.update(1)
      if ckpt is not None:
        ckpt.save(done, state, batches.get_state(), force=done in (end, total_steps))
  finally:
    jax.block_until_ready(state)
    loop_end, cpu_end = time.perf_counter(), time.process_time()
    bar.close()
    batches.close()
    if log is not None:
      log.close()
    if tb is not None:
      tb.close()
    if ckpt is not None:
      ckpt.close()

  if end < total_steps:
    return {"steps": int(state.step), "stopped": True}
  timed = loop_end - timed_from - eval_wall if timed_steps and timed_from is not None else 0.0
  if last_test is None:  # Resumed a finished run: nothing trained, evaluate once more.
    last_test = run_eval(state, test_ds)
    last_val = None if val_ds is None else run_eval(state, val_ds)
  summary = {
    "dataset": train_ds.name,
    "notice": splits.notice,
    "model": config.model.name,
    "criterion": config.pruning.criterion if pruning else None,
    "structure": config.pruning.structure if pruning else None,
    "target_sparsity": float(config.pruning.sparsity) if pruning else 0.0,
    "steps": int(state.step),
    "epochs": int(state.step) / steps_per_epoch,
    **platform,
    "resumed_from_step": start_step if restored else None,
    "train_examples": train_ds.num_examples,
    "validation_examples": 0 if val_ds is None else val_ds.num_examples,
    "test_examples": test_ds.num_examples,
    "validation_loss": None if last_val is None else last_val["loss"],
    "validation_accuracy": None if last_val is None else last_val["accuracy"],
    "validation_error": None if last_val is None else last_val["error"],
    **evaluation.summarize(state, model, exp.input_shape, last_test),
    **text_task.lm_record("validation", last_val),  # LM metrics ({} for images)
    **text_task.lm_record("test", last_test),
    "bn_recalibration": (
      None if recal_step is None else {"after_step": recal_step + 1, "batches": recal_batches}
    ),
    "steps_per_second": timed_steps / timed if timed else None,
    "input_wait_fraction": input_wait / timed if timed else None,
    "cpu_seconds_per_step": (cpu_end - cpu_from - eval_cpu) / timed_steps if timed else None,
    "train_time_s": loop_end - loop_start,
    "eval_time_s": eval_wall,
    "wall_time_s": time.perf_counter() - wall_start,
  }
  if not main_process:
    return summary
  write_json(workdir / "summary.json", summary)
  if config.report.plots:
    report.plot_curves(read_metrics(workdir / "metrics.jsonl"), workdir / "curves.png")
    report.plot_layer_sparsity(summary, workdir / "layer_sparsity.png")
  if verbose:
    print(report.format_table(summary))
    print(f"wall time {summary['wall_time_s']:.1f}s; results in {os.fspath(workdir)}")
    sys.stdout.flush()
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


def _count_matches(state: TrainState, step: int) -> bool:
  """True if the optimizer state is one `jaxprune.masked` whose counter equals ``step``."""
  opt_state = state.opt_state
  return isinstance(opt_state, jaxprune.MaskedState) and int(opt_state.count) == step


def _postfix(record: dict[str, Any]) -> dict[str, str]:
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
