"""Trainer throughput on LeNet-300-100: masked(adam) against plain adam, and input overhead.

Two measurements, each interleaved over repeats so machine noise hits both sides alike:

1. The trainer itself (`jaxprune.train.train_and_evaluate`, no checkpoints, evaluation
   only at the end and not counted): steps/s of the default config (20 epochs, gradual
   magnitude pruning to 90% over epochs 1-10) against the same run with pruning disabled
   (plain adam). Target: ratio >= 0.95. ``--steps=1500`` times only the first 3.2 epochs,
   the stretch with the most mask updates per step. The trainer also reports the
   fraction of loop time it spent blocked waiting for the next batch.
   Whole runs are coarse against machine noise, so the same comparison is repeated on
   the trainer's jitted step in short interleaved chunks (each containing one mask
   update), in wall-clock and in process CPU time.
2. Input overhead: the trainer's jitted step fed by its input feed (by default the
   split lives on device and each step receives its example indices; alternatively
   host batches through a prefetch thread) against the same step fed from batches
   already on device. 1 - (feed / device-resident throughput) is the share of step time
   lost to input. Target: < 5%.

Usage:
  python benchmarks/trainer_throughput.py                 # MNIST if prepared, else digits
  python benchmarks/trainer_throughput.py --steps=1500 --repeats=7
"""

from __future__ import annotations

import functools
import itertools
import os
import statistics
import tempfile
import time

import jax
import jax.numpy as jnp
from absl import app, flags, logging

from jaxprune.data import BatchIterator
from jaxprune.train import experiment, input_pipeline, optim, sharding
from jaxprune.train.config import load_config
from jaxprune.train.loop import train_and_evaluate
from jaxprune.train.steps import train_step

_STEPS = flags.DEFINE_integer(
  "steps", -1, "Training steps per trainer run; -1 = the default config's 20 epochs."
)
_REPEATS = flags.DEFINE_integer("repeats", 3, "Interleaved repeats of each measurement.")
_DATASET = flags.DEFINE_string("dataset", "mnist", "mnist (falls back to digits) or digits.")
_BATCH = flags.DEFINE_integer("batch_size", 128, "Batch size.")
_CHUNKS = flags.DEFINE_integer("chunks", 15, "Interleaved 100-step chunks per input source.")


def _config(pruning: bool, steps: int):
  return load_config(
    "default",
    {
      "data.name": _DATASET.value,
      "train.batch_size": _BATCH.value,
      "train.num_steps": steps,
      "train.eval_every_epochs": 1e6,  # Only at the end.
      "checkpoint.enabled": False,
      "report.plots": False,
      "report.progress": False,
      "pruning.enabled": pruning,
    },
  )


def trainer_runs(repeats: int, steps: int) -> dict[str, dict[str, list[float]]]:
  """Steps/s and input-wait fraction of full trainer runs, alternating the order per round.

  One short untimed run of each comes first: the first run in a process was ~10% slower
  than later ones (process warm-up), which always hit whichever variant ran first.
  """
  keys = ("steps_per_second", "cpu_seconds_per_step", "input_wait_fraction")
  out = {name: {k: [] for k in keys} for name in ("masked", "plain")}
  for name in ("masked", "plain"):
    with tempfile.TemporaryDirectory() as workdir:
      warm_up = _config(name == "masked", 600)
      train_and_evaluate(warm_up, workdir, verbose=False)
  for r in range(repeats):
    order = ("masked", "plain") if r % 2 == 0 else ("plain", "masked")
    for name in order:
      with tempfile.TemporaryDirectory() as workdir:
        summary = train_and_evaluate(_config(name == "masked", steps), workdir, verbose=False)
      for key in out[name]:
        out[name][key].append(summary[key])
      print(
        f"  round {r + 1} {name:>6}: {summary['steps_per_second']:7.1f} steps/s, "
        f"{1e3 * summary['cpu_seconds_per_step']:.2f} CPU-ms/step, "
        f"blocked on input {summary['input_wait_fraction']:.1%}",
        flush=True,
      )
  return out


def _timed_chunk(pick, state, batches, steps: int, start: int = 0) -> tuple[float, float]:
  """(wall seconds, process CPU seconds) of ``steps`` steps, synchronised at both ends.

  ``pick(step)`` returns the jitted step to run at ``step`` (the trainer chooses between
  its two compiled steps); ``start`` is the state's step.
  """
  state = jax.tree.map(jnp.copy, state)  # the steps donate (consume) their state
  state, metrics = pick(start)(state, next(batches))
  jax.block_until_ready(metrics)
  wall, cpu = time.perf_counter(), time.process_time()
  for i in range(steps):
    state, metrics = pick(start + 1 + i)(state, next(batches))
  jax.block_until_ready((state, metrics))
  return time.perf_counter() - wall, time.process_time() - cpu


CLOCKS = ("wall", "cpu")


def _picker(updating, frozen=None, updates_at=None):
  """``pick(step)``: ``updating`` (the step compiled with the mask-update branch) where the
  schedule updates masks (``updates_at[step]``) or always if ``updates_at`` is None, else
  ``frozen``."""

  return lambda step: updating if updates_at is None or updates_at[step] else frozen


def step_ratio(chunks: int) -> dict[str, list[float]]:
  """Per-chunk throughput ratio masked / plain of the trainer's jitted step, both clocks.

  Both start from a state trained for 600 steps (inside the pruning ramp of the default
  schedule, which begins at epoch 1); a chunk is one mask-update period of the schedule
  (117 steps at batch 128), so every masked chunk contains exactly one mask update. As in
  the trainer, masked steps where the schedule keeps the masks run the step compiled with
  ``masks_frozen=True``.
  """
  mesh = sharding.make_mesh()
  batch_sharding, replicated = sharding.batch_sharding(mesh), sharding.replicated(mesh)
  fns, states, feeds, period = {}, {}, {}, 0
  for name in ("masked", "plain"):
    exp = experiment.build(_config(name == "masked", -1), verbose=False)
    feed = input_pipeline.TrainFeed(
      exp.splits.train, _BATCH.value, 0, batch_sharding=batch_sharding, replicated=replicated
    )
    state = jax.jit(exp.create_state)()
    shardings = jax.tree.map(lambda x: x.sharding, state)
    fns[name] = feed.jit_step(train_step, shardings, (shardings, replicated))
    if name == "masked":
      updates_at = optim.mask_update_steps(exp.config, exp.steps_per_epoch, exp.total_steps)
      frozen = feed.jit_step(
        functools.partial(train_step, masks_frozen=True), shardings, (shardings, replicated)
      )
      fns[name] = _picker(fns[name], frozen, updates_at)
    else:
      fns[name] = _picker(fns[name])
    for step in range(600):
      state, _ = fns[name](step)(state, next(feed))
    states[name], feeds[name] = jax.block_until_ready(state), feed
    period = max(period, int(round(0.25 * exp.steps_per_epoch)))
  ratios: dict[str, list[float]] = {clock: [] for clock in CLOCKS}
  for r in range(chunks):
    order = ("masked", "plain") if r % 2 == 0 else ("plain", "masked")
    times = {
      name: _timed_chunk(fns[name], states[name], feeds[name], period, start=600) for name in order
    }
    for i, clock in enumerate(CLOCKS):
      ratios[clock].append(times["plain"][i] / times["masked"][i])
  return ratios


def input_overhead(repeats: int, steps: int) -> dict[str, list[float]]:
  """Per-round 1 - throughput(feed) / throughput(device-resident), for both feeds and clocks.

  Rounds are short chunks of ``steps`` steps, rotating between the three sources, so
  that load from other processes hits all of them alike; ``cpu`` uses the process's CPU
  time, which other processes on the machine barely disturb.

  ``on_device``: the trainer's default feed (split on device, indices per step);
  ``host``: batches read on the host and put on device by a prefetch thread.
  """
  exp = experiment.build(_config(True, steps), verbose=False)
  mesh = sharding.make_mesh()
  batch_sharding, replicated = sharding.batch_sharding(mesh), sharding.replicated(mesh)
  state = jax.jit(exp.create_state)()
  shardings = jax.tree.map(lambda x: x.sharding, state)
  train = exp.splits.train
  feeds = {
    name: input_pipeline.TrainFeed(
      train,
      _BATCH.value,
      0,
      batch_sharding=batch_sharding,
      replicated=replicated,
      on_device=name == "on_device",
    )
    for name in ("on_device", "host")
  }
  outs = (shardings, replicated)
  fns = {name: feed.jit_step(train_step, shardings, outs) for name, feed in feeds.items()}
  fns["resident"] = jax.jit(train_step, donate_argnums=0)
  resident = [
    jax.device_put(b, batch_sharding)
    for b in itertools.islice(BatchIterator(train, _BATCH.value, seed=1), 16)
  ]
  sources = {**feeds, "resident": itertools.cycle(resident)}
  for name in sources:  # compile
    jax.block_until_ready(fns[name](jax.tree.map(jnp.copy, state), next(sources[name])))
  overheads = {f"{name}/{clock}": [] for name in ("on_device", "host") for clock in CLOCKS}
  for r in range(repeats):
    order = list(sources) if r % 2 == 0 else list(sources)[::-1]
    times = {name: _timed_chunk(_picker(fns[name]), state, sources[name], steps) for name in order}
    for name in ("on_device", "host"):
      for i, clock in enumerate(CLOCKS):
        overheads[f"{name}/{clock}"].append(1.0 - times["resident"][i] / times[name][i])
  for feed in feeds.values():
    feed.close()
  return overheads


def _ratios(runs, key: str, invert: bool = False) -> list[float]:
  pairs = zip(runs["masked"][key], runs["plain"][key], strict=True)
  return [p / m if invert else m / p for m, p in pairs]


def _row(name: str, values: list[float], target: str, fmt: str = "{:.3f}") -> str:
  rounds = ", ".join(fmt.format(v) for v in values)
  return f"| {name} | {fmt.format(statistics.median(values))} (rounds: {rounds}) | {target} |"


def main(argv: list[str]) -> None:
  del argv
  logging.set_verbosity(logging.WARNING)
  steps, repeats = _STEPS.value, _REPEATS.value
  print(f"devices: {jax.devices()}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
  length = "20 epochs" if steps < 0 else f"{steps} steps"
  print(f"1) trainer, {length}: masked(adam) with gradual magnitude pruning vs plain adam")
  runs = trainer_runs(repeats, steps)
  print("2) the trainer's jitted step, masked vs plain, interleaved chunks")
  step_ratios = step_ratio(_CHUNKS.value)
  print("3) input: the trainer's step fed by its feeds vs by batches already on device")
  overheads = input_overhead(_CHUNKS.value, 100)
  print()
  print("| measurement | median | target |")
  print("|---|---|---|")
  for name in ("masked", "plain"):
    print(_row(f"trainer steps/s, {name}", runs[name]["steps_per_second"], "", "{:.1f}"))
  print(_row("masked / plain, wall-clock steps/s", _ratios(runs, "steps_per_second"), ">= 0.95"))
  print(
    _row(
      "masked / plain, steps per CPU-second", _ratios(runs, "cpu_seconds_per_step", True), ">= 0.95"
    )
  )
  for clock in CLOCKS:
    print(_row(f"masked / plain, jitted step, {clock}", step_ratios[clock], ">= 0.95"))
  print(
    _row(
      "trainer loop blocked on input (masked)", runs["masked"]["input_wait_fraction"], "", "{:.1%}"
    )
  )
  for feed, label in (("on_device", "split on device (default)"), ("host", "host prefetch thread")):
    for clock in CLOCKS:
      values = overheads[f"{feed}/{clock}"]
      print(_row(f"step time lost to input, {label}, {clock}", values, "< 5%", "{:+.1%}"))


if __name__ == "__main__":
  app.run(main)
