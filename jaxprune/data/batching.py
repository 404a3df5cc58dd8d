"""Batches: an endless, resumable, per-epoch-shuffled training iterator, and evaluation batches.

The order of epoch ``e`` is a pseudo-random permutation of the examples keyed by
``(seed, e)`` (`epoch_order`): it depends on nothing but the seed and the epoch, so an
iterator restored with `BatchIterator.set_state` yields exactly the batches an
uninterrupted one would have. The permutation is computed for the positions a batch
needs, never for the whole epoch, so memory does not grow with the dataset.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import numpy as np

Batch = dict[str, np.ndarray]

_ROUNDS = 6  # Feistel rounds of the epoch permutation.
_MIX = (np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB))  # splitmix64


class IndexedDataset(Protocol):
  """What batching needs from a dataset (`jaxprune.data.Dataset` is one)."""

  @property
  def num_examples(self) -> int: ...

  def __getitem__(self, indices: np.ndarray) -> Batch: ...


def _mix(x: np.ndarray) -> np.ndarray:
  """The splitmix64 finaliser: a bijective hash of uint64 values (wrapping arithmetic)."""
  x = (x ^ (x >> 30)) * _MIX[0]
  x = (x ^ (x >> 27)) * _MIX[1]
  return x ^ (x >> 31)


def _feistel(x: np.ndarray, keys: np.ndarray, bits: int) -> np.ndarray:
  """A keyed permutation of ``[0, 2**bits)``: an (unbalanced) Feistel network on uint64 ``x``.

  ``x`` is split into a left part of ``bits // 2`` bits and a right part of the rest;
  each round maps ``(left, right)`` to ``(right, (left + F(right)) mod 2**len(left))``
  with ``F(r) = mix(r ^ key)``. Every round is invertible, so the whole is a bijection.
  """
  width_left, width_right = bits // 2, bits - bits // 2
  left, right = x >> width_right, x & np.uint64((1 << width_right) - 1)
  for key in keys:
    mask = np.uint64((1 << width_left) - 1)
    left, right = right, (left + _mix(right ^ key)) & mask
    width_left, width_right = width_right, width_left
  return (left << np.uint64(width_right)) | right


def epoch_order(
  num_examples: int,
  seed: int,
  epoch: int,
  shuffle: bool = True,
  positions: np.ndarray | None = None,
) -> np.ndarray:
  """Returns the examples that epoch ``epoch`` visits at ``positions`` (default: all of them).

  The order is a pseudo-random permutation ``pi`` of ``[0, n)`` keyed by ``(seed,
  epoch)``: a Feistel network on ``[0, 2**b)`` with ``2**(b-1) < n <= 2**b``, restricted to
  ``[0, n)`` by cycle walking (an image ``>= n`` is permuted again until it falls below
  ``n``; under 2 evaluations per position on average). ``pi(p)`` is computed for the
  requested positions only: a batch costs memory proportional to the batch, whatever
  ``n``, and the whole epoch is never materialised.

  Args:
    num_examples: ``n``, the size of the split.
    seed: seed of the order (a non-negative integer).
    epoch: the epoch (a non-negative integer); every epoch has its own order.
    shuffle: whether to permute at all (else epoch order is index order).
    positions: integer positions in ``[0, n)`` within the epoch; None for ``arange(n)``.

  Returns:
    int64 example indices, ``pi(positions)``, shaped like ``positions``.

  Example:
    >>> epoch_order(5, seed=0, epoch=0, shuffle=False)
    array([0, 1, 2, 3, 4])
    >>> order = epoch_order(10, seed=0, epoch=0)
    >>> sorted(order.tolist()) == list(range(10))
    True
    >>> bool((epoch_order(10, seed=0, epoch=0, positions=np.arange(3, 6)) == order[3:6]).all())
    True
  """
  n = int(num_examples)
  if positions is None:
    positions = np.arange(n)
  positions = np.asarray(positions)
  if positions.size and (positions.min() < 0 or positions.max() >= n):
    raise IndexError(
      f"positions must lie in [0, {n}) for an epoch of {n} examples, got min "
      f"{positions.min()} and max {positions.max()}."
    )
  if not shuffle or n <= 1:
    return positions.astype(np.int64)
  if seed < 0 or epoch < 0:
    raise ValueError(
      f"The epoch order needs seed >= 0 and epoch >= 0, got seed={seed}, epoch={epoch}; "
      "e.g. epoch_order(n, seed=0, epoch=3)."
    )
  keys = np.random.SeedSequence([int(seed), int(epoch)]).generate_state(_ROUNDS, np.uint64)
  bits = (n - 1).bit_length()
  out = _feistel(positions.astype(np.uint64), keys, bits)
  walk = np.flatnonzero(out >= n)
  while walk.size:  # cycle walking: terminates since positions lie in [0, n)
    out.flat[walk] = _feistel(out.flat[walk], keys, bits)
    walk = walk[out.flat[walk] >= n]
  return out.astype(np.int64)


class EpochOrder:
  """`epoch_order` for any range of positions, computed and cached a block at a time.

  Batches read consecutive positions of an epoch; computing the permutation for a whole
  block of `BLOCK` positions at once and keeping the current block costs a fraction of
  computing it per batch, and memory stays ``O(BLOCK)`` whatever the size of the split.

  Args:
    num_examples: the size of the split.
    seed: seed of the order.
    shuffle: permute the examples (else every epoch is in index order).

  Example:
    >>> order = EpochOrder(1000, seed=4)
    >>> bool((order(2, 100, 228) == epoch_order(1000, 4, 2)[100:228]).all())
    True
  """

  BLOCK = 2**15

  def __init__(self, num_examples: int, seed: int, shuffle: bool = True):
    self.num_examples = int(num_examples)
    self.seed = int(seed)
    self.shuffle = bool(shuffle)
    self._block: tuple[int, int, np.ndarray] | None = None  # (epoch, block number, indices)

  def _get_block(self, epoch: int, block: int) -> np.ndarray:
    if self._block is None or self._block[:2] != (epoch, block):
      start = block * self.BLOCK
      positions = np.arange(start, min(start + self.BLOCK, self.num_examples))
      order = epoch_order(self.num_examples, self.seed, epoch, self.shuffle, positions)
      self._block = (epoch, block, order)
    return self._block[2]

  def __call__(self, epoch: int, start: int, stop: int) -> np.ndarray:
    """The examples at positions ``[start, stop)`` of epoch ``epoch`` (int64)."""
    if not 0 <= start <= stop <= self.num_examples:
      raise IndexError(
        f"Positions [{start}, {stop}) do not lie in the epoch's [0, {self.num_examples})."
      )
    if not self.shuffle or start == stop:
      return np.arange(start, stop)
    parts, b = [], self.BLOCK
    for block in range(start // b, -(-stop // b)):
      lo, hi = max(start, block * b), min(stop, (block + 1) * b)
      parts.append(self._get_block(epoch, block)[lo - block * b : hi - block * b])
    return np.concatenate(parts) if len(parts) != 1 else parts[0].copy()


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
    self._order = EpochOrder(dataset.num_examples, seed, shuffle)

  @property
  def steps_per_epoch(self) -> int:
    """Batches per epoch."""
    n, b = self.dataset.num_examples, self.batch_size
    return n // b if self.drop_remainder else -(-n // b)

  @property
  def _epoch_end(self) -> int:
    n = self.dataset.num_examples
    return self.steps_per_epoch * self.batch_size if self.drop_remainder else n

  def __iter__(self) -> BatchIterator:
    return self

  def __next__(self) -> Batch:
    if self._index >= self._epoch_end:
      self._epoch, self._index = self._epoch + 1, 0
    stop = min(self._index + self.batch_size, self._epoch_end)
    indices = self._order(self._epoch, self._index, stop)
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
