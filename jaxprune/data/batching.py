"""Batches: an endless, resumable, per-epoch-shuffled training iterator, and evaluation batches.

The order of epoch ``e`` is ``np.random.default_rng([seed, e]).permutation(n)``: it
depends on nothing but the seed and the epoch, so an iterator restored with
`BatchIterator.set_state` yields exactly the batches an uninterrupted one would have.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import numpy as np

Batch = dict[str, np.ndarray]


class IndexedDataset(Protocol):
  """What batching needs from a dataset (`jaxprune.data.Dataset` is one)."""

  @property
  def num_examples(self) -> int: ...

  def __getitem__(self, indices: np.ndarray) -> Batch: ...


def epoch_order(num_examples: int, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
  """Returns the order in which epoch ``epoch`` visits the examples.

  Example:
    >>> epoch_order(5, seed=0, epoch=0, shuffle=False)
    array([0, 1, 2, 3, 4])
  """
  if not shuffle:
    return np.arange(num_examples)
  return np.random.default_rng([seed, epoch]).permutation(num_examples)


class BatchIterator:
  """Endless iterator over training batches, reshuffled every epoch, with a resumable position.

  Each epoch visits the examples in `epoch_order` (a permutation derived from ``(seed,
  epoch)``), ``batch_size`` at a time. With ``drop_remainder=True`` every batch has
  ``batch_size`` rows and the last ``num_examples % batch_size`` examples of the
  epoch's order are skipped; otherwise the epoch ends with a smaller batch.

  Args:
    dataset: a `Dataset` (anything with ``num_examples`` and ``dataset[indices]``).
    batch_size: examples per batch.
    seed: seed of the per-epoch permutations.
    shuffle: whether to permute the examples (else every epoch is in index order).
    drop_remainder: whether to drop the last incomplete batch of each epoch.

  Example:
    >>> from jaxprune.data import load
    >>> train = load("digits", "train")
    >>> it = BatchIterator(train, batch_size=128, seed=0)
    >>> batch = next(it)  # {"image": float32 [128, 8, 8, 1], "label": int32 [128]}
    >>> state = it.get_state()  # save it with the checkpoint
    >>> state
    {'epoch': 0, 'index': 128}
    >>> resumed = BatchIterator(train, batch_size=128, seed=0)
    >>> resumed.set_state(state)
    >>> bool((next(resumed)["label"] == next(it)["label"]).all())
    True
  """

  def __init__(
    self,
    dataset: IndexedDataset,
    batch_size: int,
    *,
    seed: int = 0,
    shuffle: bool = True,
    drop_remainder: bool = True,
  ):
    n = dataset.num_examples
    if batch_size < 1 or (drop_remainder and batch_size > n):
      raise ValueError(
        f"batch_size={batch_size} does not fit a dataset of {n} examples with "
        f"drop_remainder={drop_remainder}; expected 1 <= batch_size <= {n}, e.g. "
        f"BatchIterator(dataset, batch_size={min(max(batch_size, 1), n)}), or "
        "drop_remainder=False."
      )
    self.dataset = dataset
    self.batch_size = batch_size
    self.seed = seed
    self.shuffle = shuffle
    self.drop_remainder = drop_remainder
    self._epoch = 0
    self._index = 0
    self._order: tuple[int, np.ndarray] | None = None

  @property
  def steps_per_epoch(self) -> int:
    """Batches per epoch."""
    n, b = self.dataset.num_examples, self.batch_size
    return n // b if self.drop_remainder else -(-n // b)

  @property
  def _epoch_end(self) -> int:
    n = self.dataset.num_examples
    return self.steps_per_epoch * self.batch_size if self.drop_remainder else n

  def _epoch_order(self, epoch: int) -> np.ndarray:
    if self._order is None or self._order[0] != epoch:
      order = epoch_order(self.dataset.num_examples, self.seed, epoch, self.shuffle)
      self._order = (epoch, order)
    return self._order[1]

  def __iter__(self) -> BatchIterator:
    return self

  def __next__(self) -> Batch:
    if self._index >= self._epoch_end:
      self._epoch, self._index = self._epoch + 1, 0
    order = self._epoch_order(self._epoch)
    indices = order[self._index : min(self._index + self.batch_size, self._epoch_end)]
    self._index += len(indices)
    return self.dataset[indices]

  def get_state(self) -> dict[str, int]:
    """Returns the position: the epoch and how many of its examples were already yielded."""
    return {"epoch": self._epoch, "index": self._index}

  def set_state(self, state: dict[str, int]) -> None:
    """Moves to a position returned by `get_state` (of an iterator with the same arguments).

    Raises:
      ValueError: if the state is not a position of this iterator.
    """
    try:
      epoch, index = int(state["epoch"]), int(state["index"])
    except (KeyError, TypeError) as e:
      raise ValueError(
        f"Expected a state like {{'epoch': 3, 'index': 256}} from get_state(), got {state!r}."
      ) from e
    end = self._epoch_end
    on_boundary = index % self.batch_size == 0 or index == end
    if epoch < 0 or not 0 <= index <= end or not on_boundary:
      raise ValueError(
        f"State {state!r} is not a position of this iterator: expected epoch >= 0 and index a "
        f"multiple of batch_size={self.batch_size} in [0, {end}]. Was it saved by an "
        "iterator with another batch_size or dataset?"
      )
    self._epoch, self._index = epoch, index


def eval_batches(dataset: IndexedDataset, batch_size: int, *, pad: bool = True) -> Iterator[Batch]:
  """Yields every example once, in index order, with a ``"mask"`` of the real rows.

  With ``pad=True`` (the default) every batch has ``batch_size`` rows, so a jitted eval
  step compiles once: the last batch is filled up with copies of example 0 whose
  ``"mask"`` is False. Weight per-example metrics by the mask, e.g.
  ``accuracy = sum(mask * correct) / sum(mask)``. With ``pad=False`` the last batch is
  smaller and its mask all True.

  Args:
    dataset: a `Dataset`.
    batch_size: rows per batch.
    pad: pad the last batch to ``batch_size`` rows.

  Yields:
    ``{"image": ..., "label": ..., "mask": bool [b]}``.

  Example:
    >>> from jaxprune.data import load
    >>> test = load("digits", "test")  # 360 examples
    >>> [int(b["mask"].sum()) for b in eval_batches(test, 256)]
    [256, 104]
  """
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}; e.g. eval_batches(ds, 256).")
  n = dataset.num_examples
  for start in range(0, n, batch_size):
    indices = np.arange(start, min(start + batch_size, n))
    real = len(indices)
    if pad and real < batch_size:
      indices = np.concatenate([indices, np.zeros(batch_size - real, indices.dtype)])
    batch = dict(dataset[indices])
    batch["mask"] = np.arange(len(indices)) < real
    yield batch
