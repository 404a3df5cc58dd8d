"""Host input path with grain workers: time waiting for input, and the loader's peak memory.

1. Input wait: a jitted SGD step consumes batches from `jaxprune.data.StreamedBatches`
   (``--workers`` grain processes) through the trainer's device prefetch thread. The
   time spent blocked in ``next(batches)`` over the total loop time is the fraction of
   step time lost to input (target < 5%). As in the trainer, batches reach the step as
   uint8 and are normalised inside it (``--host-normalise``: float32 from the host). Two
   cases:

   - ``mnist``: LeNet-300-100 on MNIST (prepared from ../shared/data/mnist if needed),
     batch 128, normalisation only;
   - ``cifar``: ResNet-20 on CIFAR-shaped data (random uint8 32x32x3 images in memory,
     50k examples), batch 128, with the CIFAR augmentation (padded crop, flip).

2. Input CPU per batch (``cpu``): the same input path without a model; the CPU seconds
   (user + system) that the main process and the grain workers spend per batch, over
   ``--steps`` batches after the buffers filled. Less sensitive to the machine's load
   than the wait fraction: it is the work the input takes away from the step.

3. Loader memory: the peak resident memory (main process plus workers, from psutil) of
   iterating a streamed dataset of ``n`` synthetic 64x64x3 examples (generated from the
   index, like a reader of files: nothing is held in memory), for several ``n``. The
   loader holds a bounded number of batches, so the peak must not grow with ``n``.

Usage:
  python benchmarks/input_pipeline.py wait --case=mnist --workers=2 --steps=600
  python benchmarks/input_pipeline.py wait --case=cifar --workers=2 --steps=60
  python benchmarks/input_pipeline.py cpu --case=mnist --workers=2 --steps=1000
  python benchmarks/input_pipeline.py memory --workers=2
"""

from __future__ import annotations

import argparse
import contextlib
import threading
import time
from pathlib import Path

import numpy as np

from jaxprune.data.dataset import Dataset
from jaxprune.data.specs import SPECS, DatasetSpec

REAL_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


class SyntheticReader:
  """Streams ``n`` examples made from their index (no storage), like a reader of files."""

  def __init__(self, n: int, shape: tuple[int, int, int]):
    self.n, self.shape = n, shape

  def __len__(self) -> int:
    return self.n

  def read(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    images = np.stack(
      [np.random.default_rng(int(i)).integers(0, 256, self.shape, np.uint8) for i in indices]
    )
    return images, (np.asarray(indices) % 10).astype(np.int32)


def _dataset(case: str, data_dir: str) -> tuple[Dataset, str]:
  import jaxprune.data as jdata

  if case == "mnist":
    source = REAL_MNIST if REAL_MNIST.is_dir() else Path("/work/shared/data/mnist")
    jdata.ensure_prepared("mnist", data_dir, source_dir=source)
    return jdata.load("mnist", "train", data_dir=data_dir), "lenet300100"
  from jaxprune.data.dataset import ArrayReader

  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (50_000, 32, 32, 3), np.uint8)
  labels = rng.integers(0, 10, 50_000).astype(np.int32)
  return Dataset(SPECS["cifar10"], "train", ArrayReader(images, labels), "cifar"), "resnet20"


def _streamed(dataset: Dataset, args: argparse.Namespace):
  """The trainer's host path: `StreamedBatches` through `prefetch_to_device`."""
  import jaxprune.data as jdata

  streamed = jdata.StreamedBatches(
    dataset,
    args.batch_size,
    seed=0,
    num_workers=args.workers,
    prefetch=args.prefetch,
    normalise=args.host_normalise,
  )
  chunk = streamed.group_size if args.chunk is None else args.chunk  # the trainer's: a group
  return streamed, jdata.prefetch_to_device(streamed, size=args.prefetch, chunk=chunk)


def wait(args: argparse.Namespace) -> None:
  import jax
  import optax

  from jaxprune.train import models
  from jaxprune.train.input_pipeline import normalise
  from jaxprune.train.state import create_train_state
  from jaxprune.train.steps import train_step

  dataset, model_name = _dataset(args.case, args.data_dir)
  model = models.get_model(model_name, num_classes=10)
  state = create_train_state(model, optax.sgd(0.01, 0.9), dataset.image_shape, 0)
  if args.host_normalise:  # float32 batches normalised on the host
    step = jax.jit(train_step, donate_argnums=0)
  else:  # as the trainer does: uint8 batches, normalised inside the step
    step = jax.jit(
      lambda state, batch: train_step(state, normalise(batch, dataset.spec)), donate_argnums=0
    )
  streamed, batches = _streamed(dataset, args)
  for _ in range(args.warmup):  # compile, start the workers, fill the buffers
    state, metrics = step(state, next(batches))
  jax.block_until_ready(state)
  waited, start = 0.0, time.perf_counter()
  for _ in range(args.steps):
    t = time.perf_counter()
    batch = next(batches)
    waited += time.perf_counter() - t
    state, metrics = step(state, batch)
  jax.block_until_ready(state)
  total = time.perf_counter() - start
  batches.close()
  streamed.close()
  print(
    f"{args.case}: {model_name}, batch {args.batch_size}, {args.workers} grain workers, "
    f"normalised on the {'host' if args.host_normalise else 'device'}, "
    f"handed over {streamed.group_size if args.chunk is None else args.chunk} at a time, "
    f"{args.steps} steps: {1e3 * total / args.steps:.2f} ms/step, input wait "
    f"{100 * waited / total:.2f}% of step time"
  )


def _cpu_seconds(processes: list) -> float:
  import psutil

  total = 0.0
  for p in processes:
    with contextlib.suppress(psutil.Error):
      times = p.cpu_times()
      total += times.user + times.system
  return total


def cpu(args: argparse.Namespace) -> None:
  import psutil

  dataset, _ = _dataset(args.case, args.data_dir)
  streamed, batches = _streamed(dataset, args)
  for _ in range(args.warmup):
    next(batches)
  me = psutil.Process()
  processes = [me, *me.children(recursive=True)]
  main_start, all_start = _cpu_seconds([me]), _cpu_seconds(processes)
  for _ in range(args.steps):
    next(batches)
  main_cpu = _cpu_seconds([me]) - main_start
  all_cpu = _cpu_seconds(processes) - all_start
  batches.close()
  streamed.close()
  print(
    f"{args.case}: batch {args.batch_size}, {args.workers} grain workers, {args.steps} "
    f"batches: input CPU {1e6 * all_cpu / args.steps:.0f} us/batch (main process "
    f"{1e6 * main_cpu / args.steps:.0f})"
  )


def _peak_rss(stop: threading.Event, peak: list[int]) -> None:
  import psutil

  me = psutil.Process()
  while not stop.is_set():
    procs = [me, *me.children(recursive=True)]
    rss = 0
    for p in procs:
      with contextlib.suppress(psutil.Error):
        rss += p.memory_info().rss
    peak[0] = max(peak[0], rss)
    time.sleep(0.05)


def memory(args: argparse.Namespace) -> None:
  import jaxprune.data as jdata

  spec = DatasetSpec("synthetic", (64, 64, 3), 10, 255.0, 0.5, 0.5, {"train": 0}, tfds=False)
  for n in args.sizes:
    dataset = Dataset(spec, "train", SyntheticReader(n, spec.image_shape))
    stop, peak = threading.Event(), [0]
    watcher = threading.Thread(target=_peak_rss, args=(stop, peak), daemon=True)
    watcher.start()
    it = jdata.StreamedBatches(dataset, 256, seed=0, num_workers=args.workers, prefetch=2)
    for _ in range(args.batches):
      next(it)
    time.sleep(0.2)
    stop.set()
    watcher.join()
    it.close()
    print(
      f"n={n:>10,}: peak RSS (main + {args.workers} workers) over {args.batches} batches "
      f"of 256 x 64x64x3: {peak[0] / 2**20:.0f} MiB"
    )


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  sub = parser.add_subparsers(dest="what", required=True)
  for name in ("wait", "cpu"):
    w = sub.add_parser(name)
    w.add_argument("--case", choices=("mnist", "cifar"), default="mnist")
    w.add_argument("--workers", type=int, default=2)
    w.add_argument("--prefetch", type=int, default=2)
    w.add_argument("--batch-size", type=int, default=128)
    w.add_argument("--steps", type=int, default=600)
    w.add_argument("--warmup", type=int, default=20)
    w.add_argument("--data-dir", default="/tmp/jaxprune-bench-tfds")
    w.add_argument(
      "--chunk",
      type=int,
      default=None,
      help="batches the prefetch thread hands over at once (default: a worker group, as "
      "the trainer does; 1: one hand-over per batch)",
    )
    w.add_argument(
      "--host-normalise",
      action="store_true",
      help="hand float32 batches to the step (default: uint8, normalised in the step)",
    )
  m = sub.add_parser("memory")
  m.add_argument("--workers", type=int, default=2)
  m.add_argument("--batches", type=int, default=40)
  m.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000, 100_000_000])
  args = parser.parse_args()
  {"wait": wait, "cpu": cpu, "memory": memory}[args.what](args)


if __name__ == "__main__":
  main()
