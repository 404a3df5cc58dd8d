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

``--case=resnet20`` measures only the first comparison, for ``configs/cifar10_resnet20.py``
(ResNet-20, SGD with momentum 0.9, weight decay, gradual magnitude pruning to 90%)
against the same run with pruning disabled (the same SGD, unmasked), on random
CIFAR-10-shaped data (TFDS's mock of cifar10: 32x32x3 images, 10 classes; nothing is read
from disk) with its host augmentation in-process. The schedule is counted in steps: one
mask update every 351 steps (the config's one per epoch at 45k training images), the
first at step 30, so a run of fewer than 351 steps holds more mask updates per step than
a real one. Target: ratio >= 0.97.

Usage:
  python benchmarks/trainer_throughput.py                 # MNIST if prepared, else digits
  python benchmarks/trainer_throughput.py --steps=1500 --repeats=7
  python benchmarks/trainer_throughput.py --case=resnet20 --steps=60 --repeats=3
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import os
import statistics
import tempfile
import time
from collections.abc import Iterator

import jax
import jax.numpy as jnp
from absl import app, flags, logging

from jaxprune.data import BatchIterator
from jaxprune.train import experiment, input_pipeline, sharding
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
_CASE = flags.DEFINE_enum(
  "case",
  "lenet",
  ["lenet", "resnet20"],
  "lenet: configs/default.py (all three measurements); "
  "resnet20: configs/cifar10_resnet20.py on mock CIFAR-10 (the trainer comparison only).",
)
_EXAMPLES = flags.DEFINE_integer(
  "examples", 1280, "resnet20: mock examples per split (train, test); they set the epoch length."
)

_STEP_CHUNKS = flags.DEFINE_integer(
  "step_chunks", 0, "resnet20: interleaved 10-step chunks of the jitted steps alone (0: none)."
)

# The resnet20 case's mask-update period: one per epoch of 45k training images at batch 128.
RESNET20_UPDATE_EVERY = 351
# Its first mask update; the same in every run (and its warm-up), so all compile alike.
RESNET20_FIRST_UPDATE = 30


@contextlib.contextmanager
def mock_cifar10(num_examples: int) -> Iterator[str]:
  """A data directory in which ``cifar10`` reads as prepared and yields random examples.

  As in the tests (``tests/conftest.py``, ``mock_tfds``): the ``dataset_info.json`` of an
  array_record preparation (no shards) passes jaxprune's preparation check, and
  ``tfds.testing.mock_data`` makes ``tfds.data_source`` return ``num_examples`` random
  examples of CIFAR-10's features per split. The trainer reads them into memory once.
  """
  import tensorflow_datasets as tfds
  from tensorflow_datasets.testing import mocking

  from jaxprune.data.specs import SPECS

  def getitems(*args, generator, serialized=False):  # TFDS 4.9.10 calls it without self
    assert not serialized
    return [generator[int(k)] for k in args[-1]]

  with tempfile.TemporaryDirectory() as data_dir:
    folder = os.path.join(data_dir, "cifar10", str(tfds.builder_cls("cifar10").VERSION))
    os.makedirs(folder)
    splits = [{"name": s, "shardLengths": []} for s in SPECS["cifar10"].splits]
    info = {"name": "cifar10", "fileFormat": "array_record", "splits": splits}
    with open(os.path.join(folder, "dataset_info.json"), "w") as f:
      json.dump(info, f)
    original = mocking._getitems
    mocking._getitems = getitems
    try:
      policy = tfds.testing.MockPolicy.USE_CODE
      with tfds.testing.mock_data(num_examples=num_examples, policy=policy):
        yield data_dir
    finally:
      mocking._getitems = original


def _run_overrides(pruning: bool, steps: int) -> dict:
  """What both cases set: batch, length, evaluation only at the end, no files, pruning."""
  return {
    "train.batch_size": _BATCH.value,
    "train.num_steps": steps,
    "train.eval_every_epochs": 1e6,  # Only at the end.
    "checkpoint.enabled": False,
    "report.plots": False,
    "report.progress": False,
    "pruning.enabled": pruning,
  }


def _resnet20_config(pruning: bool, steps: int, data_dir: str):
  """configs/cifar10_resnet20.py for ``steps`` steps on mock data, mask updates in steps."""
  return load_config(
    "cifar10_resnet20",
    {
      "data.data_dir": data_dir,
      "data.num_workers": 0,  # in-process augmentation: worker processes would not see the mock
      **_run_overrides(pruning, steps),
      "pruning.schedule.unit": "steps",
      "pruning.schedule.begin": RESNET20_FIRST_UPDATE,
      "pruning.schedule.end": RESNET20_FIRST_UPDATE + 70 * RESNET20_UPDATE_EVERY,  # 70 epochs
      "pruning.schedule.every": RESNET20_UPDATE_EVERY,
    },
  )


def _config(pruning: bool, steps: int, data_dir: str = ""):
  if _CASE.value == "resnet20":
    return _resnet20_config(pruning, steps, data_dir)
  return load_config(
    "default",
    {
      "data.name": _DATASET.value,
      **_run_overrides(pruning, steps),
    },
  )


def trainer_runs(
  repeats: int, steps: int, warm_up_steps: int = 600, data_dir: str = ""
) -> dict[str, dict[str, list[float]]]:
  """Steps/s and input-wait fraction of full trainer runs, alternating the order per round.

  One short untimed run of each comes first: the first run in a process was ~10% slower
  than later ones (process warm-up), which always hit whichever variant ran first.
  """
  keys = ("steps_per_second", "cpu_seconds_per_step", "input_wait_fraction")
  out = {name: {k: [] for k in keys} for name in ("masked", "plain")}
  for name in ("masked", "plain"):
    with tempfile.TemporaryDirectory() as workdir:
      warm_up = _config(name == "masked", warm_up_steps, data_dir)
      train_and_evaluate(warm_up, workdir, verbose=False)
  for r in range(repeats):
    order = ("masked", "plain") if r % 2 == 0 else ("plain", "masked")
    for name in order:
      with tempfile.TemporaryDirectory() as workdir:
        config = _config(name == "masked", steps, data_dir)
        summary = train_and_evaluate(config, workdir, verbose=False)
      for key in out[name]:
        out[name][key].append(summary[key])
      print(
        f"  round {r + 1} {name:>6}: {summary['steps_per_second']:8.2f} steps/s, "
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
      updates_at = exp.mask_updates
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


def _trainer_rows(runs, target: str) -> None:
  print("| measurement | median | target |")
  print("|---|---|---|")
  for name in ("masked", "plain"):
    print(_row(f"trainer steps/s, {name}", runs[name]["steps_per_second"], "", "{:.2f}"))
  print(_row("masked / plain, wall-clock steps/s", _ratios(runs, "steps_per_second"), target))
  print(
    _row("masked / plain, steps per CPU-second", _ratios(runs, "cpu_seconds_per_step", True), "")
  )


def resnet20_step_ratio(chunks: int, data_dir: str, steps: int = 10) -> dict[str, list[float]]:
  """Per-chunk masked / plain throughput of the jitted steps alone, on the same batches.

  The masked step is the one the trainer runs where the schedule keeps the masks
  (``masks_frozen=True``), the plain one the trainer's step with pruning disabled; both
  are fed the same four augmented batches, already on device, so input plays no part.
  Also prints each compiled step's FLOPs and bytes accessed (XLA's cost analysis).
  """
  mesh = sharding.make_mesh()
  batch_sharding = sharding.batch_sharding(mesh)
  fns, states, batches = {}, {}, None
  for name in ("masked", "plain"):
    exp = experiment.build(_config(name == "masked", 1000, data_dir), verbose=False)
    if batches is None:
      iterator = BatchIterator(exp.splits.train, _BATCH.value, seed=1)
      batches = [jax.device_put(b, batch_sharding) for b in itertools.islice(iterator, 4)]
    step = functools.partial(train_step, masks_frozen=name == "masked")
    state = jax.jit(exp.create_state)()
    compiled = jax.jit(step, donate_argnums=0).lower(state, batches[0]).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    print(
      f"  {name:>6} step: {cost.get('flops', float('nan')):,.0f} FLOPs, "
      f"{cost.get('bytes accessed', float('nan')):,.0f} bytes accessed",
      flush=True,
    )
    fns[name], states[name] = _picker(compiled), state
  ratios: dict[str, list[float]] = {clock: [] for clock in CLOCKS}
  for r in range(chunks):
    order = ("masked", "plain") if r % 2 == 0 else ("plain", "masked")
    times = {
      name: _timed_chunk(fns[name], states[name], itertools.cycle(batches), steps) for name in order
    }
    for i, clock in enumerate(CLOCKS):
      ratios[clock].append(times["plain"][i] / times["masked"][i])
    print(
      f"  chunk {r + 1}: wall {ratios['wall'][-1]:.3f}, cpu {ratios['cpu'][-1]:.3f}", flush=True
    )
  return ratios


def resnet20_main(steps: int, repeats: int) -> None:
  """The trainer comparison for configs/cifar10_resnet20.py on mock CIFAR-10."""
  steps = 60 if steps < 0 else steps
  if steps <= RESNET20_FIRST_UPDATE:
    raise ValueError(
      f"--steps={steps} ends before the first mask update (step {RESNET20_FIRST_UPDATE}); "
      f"expected more steps, e.g. --steps={2 * RESNET20_FIRST_UPDATE}."
    )
  updates = 1 + (steps - 1 - RESNET20_FIRST_UPDATE) // RESNET20_UPDATE_EVERY
  print(
    f"trainer, ResNet-20 on mock CIFAR-10 ({_EXAMPLES.value} examples per split), {steps} "
    f"steps per run, {updates} mask update(s) from step {RESNET20_FIRST_UPDATE}: "
    "masked(sgd + momentum) vs the same sgd unmasked"
  )
  logging.set_verbosity(logging.ERROR)  # TFDS warns that the mocked folder has no shards
  with mock_cifar10(_EXAMPLES.value) as data_dir, tempfile.TemporaryDirectory() as cache:
    # Each run compiles its steps again; a compilation cache makes that quick (compilation
    # is not timed either way).
    jax.config.update("jax_compilation_cache_dir", cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    warm_up = RESNET20_FIRST_UPDATE + 2  # compiles (and caches) both steps
    runs = {} if repeats < 1 else trainer_runs(repeats, steps, warm_up, data_dir)
    step_ratios = None
    if _STEP_CHUNKS.value > 0:
      print("the jitted steps alone, frozen masked vs plain, interleaved 10-step chunks")
      step_ratios = resnet20_step_ratio(_STEP_CHUNKS.value, data_dir)
  print(f"load average after the runs {os.getloadavg()[0]:.1f}")
  print()
  if runs:
    _trainer_rows(runs, ">= 0.97")
    wait = runs["masked"]["input_wait_fraction"]
    print(_row("trainer loop blocked on input (masked)", wait, "", "{:.1%}"))
  for clock in CLOCKS if step_ratios else ():
    print(_row(f"masked / plain, jitted step alone, {clock}", step_ratios[clock], ""))


def main(argv: list[str]) -> None:
  del argv
  logging.set_verbosity(logging.WARNING)
  steps, repeats = _STEPS.value, _REPEATS.value
  print(f"devices: {jax.devices()}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
  if _CASE.value == "resnet20":
    resnet20_main(steps, repeats)
    return
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
