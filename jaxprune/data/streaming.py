"""Training batches read, decoded and augmented by grain worker processes.

`HostBatches` is a `grain.MapDataset` whose element ``k`` is one process's rows of the
``k``-th global training batch, read from a `jaxprune.data.Dataset` (in memory or a
``tfds.data_source``) and preprocessed with the dataset's training augmentation.
`StreamedBatches` iterates it through grain: ``mp_prefetch`` runs the reading, decoding
and augmentation in worker processes and keeps a bounded number of batches ready. A
worker produces a group of consecutive batches at a time (about ``group_bytes``), as
uint8 images: handing an element over between processes has a cost per element and per
byte, and float32 images are four times the bytes. The consuming process normalises
each batch (``pixel * scale - shift``) as it hands it out.

Order and randomness depend only on the seed and the batch number: the examples of
epoch ``e`` are visited in `jaxprune.data.batching.epoch_order` (a permutation keyed by
``(seed, e)``, the order of `jaxprune.data.BatchIterator`, computed for the positions
in use only), and the augmentation of global batch ``k`` draws its
random numbers from ``np.random.default_rng([seed, 1, k])`` for the whole global batch.
So, per process:

- sharding: with ``P`` processes, process ``p`` feeds rows ``[p * B/P, (p + 1) * B/P)`` of
  every global batch of ``B`` rows: the processes together feed exactly the batches of a
  single-process run (the equivalent of grain's ``ShardByJaxProcess``, but aligned to
  the global batch, so results do not depend on the number of processes);
- resuming: the position is ``{"epoch", "index"}`` like `BatchIterator`'s (saved in the
  checkpoint as JSON); a restored iterator starts at that batch and yields bit for bit
  the batches an uninterrupted one would have, with any number of workers (grain's own
  iterator state records per-worker positions and so ties a checkpoint to the worker
  count).

Memory is bounded: at most ``(num_workers + 1) * (prefetch + 1)`` groups (each the
larger of ``group_bytes`` and one batch) are in flight, whatever the size of the dataset
(a streamed dataset is read batch by batch),
and the epoch order is held a block of `EpochOrder.BLOCK` positions at a time.
"""

from __future__ import annotations

import sys
from typing import Any

import grain
import jax
import numpy as np
from absl import flags

from jaxprune.data.batching import EpochOrder
from jaxprune.data.dataset import Dataset

Batch = dict[str, np.ndarray]
_AUGMENT_STREAM = 1  # Seeds the augmentation: default_rng([seed, 1, batch number]).
GROUP_BYTES = 2**21  # uint8 image bytes per grain element (a group of consecutive batches).


def _parse_absl_flags() -> None:
  """grain's workers read absl flags; mark them parsed when the program did not parse them."""
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


class HostBatches(grain.MapDataset):
  """Element ``k``: this process's rows of global training batch ``k``, preprocessed.

  Endless (``len`` is ``sys.maxsize``): batch ``k`` is batch ``k % steps_per_epoch`` of
  epoch ``k // steps_per_epoch``; the last ``n % batch_size`` examples of each epoch's
  order are dropped.

  Args:
    dataset: the training split.
    batch_size: the global batch size ``B`` (a multiple of ``process_count``).
    seed: seed of the order and of the augmentation.
    shuffle: permute the examples every epoch (else index order).
    process_index: this process (`jax.process_index()`).
    process_count: number of processes (`jax.process_count()`).

  Example:
    >>> from jaxprune.data import load
    >>> batches = HostBatches(load("digits", "train"), batch_size=32, seed=0)
    >>> batches[0]["image"].shape, batches.steps_per_epoch
    ((32, 8, 8, 1), 44)
    >>> half = HostBatches(load("digits", "train"), 32, 0, process_index=1, process_count=2)
    >>> bool((half[5]["label"] == batches[5]["label"][16:]).all())
    True
  """

  def __init__(
    self,
    dataset: Dataset,
    batch_size: int,
    seed: int = 0,
    *,
    shuffle: bool = True,
    process_index: int = 0,
    process_count: int = 1,
  ):
    super().__init__()
    n = dataset.num_examples
    if not 1 <= batch_size <= n or batch_size % process_count:
      raise ValueError(
        f"batch_size={batch_size} must lie in [1, {n}] (the examples of "
        f"{dataset.name}/{dataset.split}) and split evenly over {process_count} processes; "
        f"e.g. HostBatches(dataset, batch_size={max(process_count, min(n, 128))})."
      )
    self.dataset = dataset
    self.batch_size = batch_size
    self.seed = int(seed)
    self.shuffle = shuffle
    self.rows = batch_size // process_count
    self.first_row = process_index * self.rows
    self.steps_per_epoch = n // batch_size
    self._preprocess = dataset.preprocess(train=True)
    self._order = EpochOrder(n, self.seed, shuffle)

  def __len__(self) -> int:
    return sys.maxsize

  def __str__(self) -> str:
    return f"HostBatches({self.dataset!r}, batch_size={self.batch_size}, seed={self.seed})"

  def __getitem__(self, k: Any) -> Any:
    if isinstance(k, slice):
      return self.slice(k)
    return self.normalise(self.augmented(int(k)))

  def augmented(self, k: int) -> Batch:
    """Element ``k`` before normalisation: uint8 ``"image"`` and int32 ``"label"``."""
    epoch, step = divmod(k, self.steps_per_epoch)
    start = step * self.batch_size + self.first_row
    images, labels = self.dataset.raw(self._order(epoch, start, start + self.rows))
    draws = {}
    if self._preprocess.random:
      rng = np.random.default_rng([self.seed, _AUGMENT_STREAM, k])
      every = self._preprocess.draw(rng, self.batch_size)
      draws = {key: v[self.first_row : self.first_row + self.rows] for key, v in every.items()}
    return {"image": self._preprocess.augment(images, draws), "label": labels}

  def normalise(self, batch: Batch) -> Batch:
    """An `augmented` batch (or a stack of them) as ``self[k]`` would return it."""
    return {"image": self._preprocess.normalise(batch["image"]), "label": batch["label"]}


class _Groups(grain.MapDataset):
  """Element ``j``: `HostBatches.augmented` ``first + j * size, ..., first + j * size + size - 1``.

  Stacked along a new leading axis. Grouping batches divides the per-element cost of a
  grain worker handing its output over (a shared-memory segment per array, a queue
  message) by ``size``.
  """

  def __init__(self, batches: HostBatches, first: int, size: int):
    super().__init__()
    self.batches, self.first, self.size = batches, first, size

  def __len__(self) -> int:
    return sys.maxsize // self.size - self.first

  def __str__(self) -> str:
    return f"_Groups({self.batches}, first={self.first}, size={self.size})"

  def __getitem__(self, j: Any) -> Any:
    if isinstance(j, slice):
      return self.slice(j)
    start = self.first + int(j) * self.size
    parts = [self.batches.augmented(k) for k in range(start, start + self.size)]
    return {key: np.stack([p[key] for p in parts]) for key in parts[0]}


class StreamedBatches:
  """Endless iterator over `HostBatches` through grain, with a resumable position.

  Args:
    dataset: the training split.
    batch_size: the global batch size.
    seed: seed of the order and of the augmentation.
    num_workers: grain worker processes reading and augmenting batches (0: in this
      process, in a grain reader thread).
    prefetch: groups of batches each worker (or the reader thread) keeps ready.
    group_bytes: workers produce groups of consecutive batches of about this many bytes
      (at least one batch), handed over as uint8 and normalised in this process.
    normalise: yield float32 images normalised like ``dataset[indices]``; False yields the
      uint8 images (after augmentation), e.g. to normalise on the device
      (`jaxprune.train.input_pipeline.normalise`).
    shuffle: permute the examples every epoch.
    process_index: this process; defaults to `jax.process_index()`.
    process_count: number of processes; defaults to `jax.process_count()`.

  Example:
    >>> from jaxprune.data import load
    >>> it = StreamedBatches(load("digits", "train"), batch_size=128, seed=0)
    >>> first = next(it)
    >>> it.get_state()
    {'epoch': 0, 'index': 128}
    >>> again = StreamedBatches(load("digits", "train"), batch_size=128, seed=0)
    >>> again.set_state({"epoch": 0, "index": 0})
    >>> bool((next(again)["image"] == first["image"]).all())
    True
    >>> it.close(); again.close()
  """

  def __init__(
    self,
    dataset: Dataset,
    batch_size: int,
    *,
    seed: int = 0,
    num_workers: int = 0,
    prefetch: int = 2,
    shuffle: bool = True,
    process_index: int | None = None,
    process_count: int | None = None,
    group_bytes: int = GROUP_BYTES,
    normalise: bool = True,
  ):
    if num_workers < 0 or prefetch < 1:
      raise ValueError(
        f"StreamedBatches needs num_workers >= 0 and prefetch >= 1, got num_workers="
        f"{num_workers}, prefetch={prefetch}; e.g. --config.data.num_workers=4."
      )
    if group_bytes < 1:
      raise ValueError(
        f"StreamedBatches needs group_bytes >= 1 (a group is at least one batch anyway), got "
        f"{group_bytes}; e.g. group_bytes=2**21."
      )
    if process_index is None or process_count is None:
      process_index, process_count = jax.process_index(), jax.process_count()
    self.batches = HostBatches(
      dataset,
      batch_size,
      seed,
      shuffle=shuffle,
      process_index=process_index,
      process_count=process_count,
    )
    self.num_workers = num_workers
    self.prefetch = prefetch
    self.normalise = bool(normalise)
    batch_bytes = self.batches.rows * int(np.prod(dataset.image_shape))  # uint8 images
    self.group_size = max(1, int(group_bytes) // batch_bytes)
    self._next = 0
    self._iterator: Any = None
    self._group: Batch | None = None
    self._in_group = 0

  @property
  def steps_per_epoch(self) -> int:
    """Batches per epoch."""
    return self.batches.steps_per_epoch

  def _start(self) -> None:
    groups = _Groups(self.batches, self._next, self.group_size)
    ds = groups.to_iter_dataset(
      grain.ReadOptions(num_threads=1, prefetch_buffer_size=self.prefetch)
    )
    if self.num_workers:
      _parse_absl_flags()
      options = grain.MultiprocessingOptions(
        num_workers=self.num_workers, per_worker_buffer_size=self.prefetch
      )
      ds = ds.mp_prefetch(options)
    self._iterator = iter(ds)

  def __iter__(self) -> StreamedBatches:
    return self

  def __next__(self) -> Batch:
    if self._iterator is None:
      self._start()
    if self._group is None or self._in_group == self.group_size:
      self._group, self._in_group = next(self._iterator), 0
    i, self._in_group = self._in_group, self._in_group + 1
    batch = {key: v[i] for key, v in self._group.items()}
    if self.normalise:
      batch = self.batches.normalise(batch)
    self._next += 1
    return batch

  def get_state(self) -> dict[str, int]:
    """The position after the last batch returned, like `BatchIterator.get_state`."""
    steps, b = self.steps_per_epoch, self.batches.batch_size
    if self._next and self._next % steps == 0:
      return {"epoch": self._next // steps - 1, "index": steps * b}
    return {"epoch": self._next // steps, "index": self._next % steps * b}

  def set_state(self, state: dict[str, int]) -> None:
    """Moves to a position from `get_state` (of an iterator over the same data and batch size).

    Raises:
      ValueError: if the state is not a position of this iterator.
    """
    steps, b = self.steps_per_epoch, self.batches.batch_size
    try:
      epoch, index = int(state["epoch"]), int(state["index"])
    except (KeyError, TypeError) as e:
      raise ValueError(
        f"Expected a state like {{'epoch': 3, 'index': 256}} from get_state(), got {state!r}."
      ) from e
    if epoch < 0 or not 0 <= index <= steps * b or index % b:
      raise ValueError(
        f"State {state!r} is not a position of this iterator: expected epoch >= 0 and index a "
        f"multiple of batch_size={b} in [0, {steps * b}]. Was it saved by an iterator with "
        "another batch_size or dataset?"
      )
    self.close()
    self._next = epoch * steps + index // b

  def close(self) -> None:
    """Stops the grain workers, if any (a later `next` starts them again)."""
    if self._iterator is not None:
      close = getattr(self._iterator, "close", None)
      if close is not None:
        close()
      self._iterator = None
    self._group = None

  def __enter__(self) -> StreamedBatches:
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()
