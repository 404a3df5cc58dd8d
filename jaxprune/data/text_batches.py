"""Batches of byte-token windows for language models: random training windows, covering eval.

A row is a window of ``T + 1`` consecutive tokens with ``inputs = window[:-1]`` and
``targets = window[1:]`` (next-token prediction), int32 ``[B, T]``.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from jaxprune.data.text import TextBatch, TextDataset


def _check_lengths(dataset: TextDataset, seq_len: int, batch_size: int, need: int) -> None:
  if seq_len < 1 or batch_size < 1 or dataset.num_tokens < need:
    raise ValueError(
      f"batch_size={batch_size}, seq_len={seq_len} do not fit {dataset!r}: expected both "
      f">= 1 and a split of at least {need} tokens; e.g. batch_size={max(batch_size, 1)}, "
      f"seq_len={max(1, min(seq_len, dataset.num_tokens - 1))}."
    )


class TextBatches:
  """Endless training batches of windows at random offsets, resumable by step.

  The offsets of step ``s`` are ``batch_size`` integers drawn uniformly from ``[0, n - T)``
  by a generator seeded with ``(seed, s)`` alone, so batch ``s`` is the same whether the
  run was interrupted or not (`batch_at`); `get_state`/`set_state` save and restore the
  step.

  Args:
    dataset: the training split.
    batch_size: windows per batch, ``B``.
    seq_len: tokens per row, ``T`` (each window reads ``T + 1``).
    seed: seed of the offsets.

  Example:
    >>> from jaxprune.data.text import TextSpec
    >>> spec = TextSpec("text", {"train": 100}, {}, "")
    >>> train = TextDataset(spec, "train", np.arange(100, dtype=np.uint8))
    >>> it = TextBatches(train, batch_size=2, seq_len=8, seed=0)
    >>> first = next(it)
    >>> bool((first["targets"][:, :-1] == first["inputs"][:, 1:]).all())
    True
    >>> it.get_state()
    {'step': 1}
    >>> bool((TextBatches(train, 2, 8, seed=0).batch_at(0)["inputs"] == first["inputs"]).all())
    True
  """

  def __init__(self, dataset: TextDataset, batch_size: int, seq_len: int, *, seed: int = 0):
    _check_lengths(dataset, seq_len, batch_size, seq_len + 1)
    self.dataset = dataset
    self.batch_size = int(batch_size)
    self.seq_len = int(seq_len)
    self.seed = int(seed)
    self._step = 0

  def offsets(self, step: int) -> np.ndarray:
    """The window offsets of ``step`` (int64 ``[B]``)."""
    sequence = np.random.SeedSequence([self.seed, int(step)])
    rng = np.random.Generator(np.random.PCG64(sequence))
    return rng.integers(0, self.dataset.num_tokens - self.seq_len, self.batch_size)

  def batch_at(self, step: int) -> TextBatch:
    """The batch of ``step``: ``{"inputs", "targets"}``, int32 ``[B, T]``."""
    return self.dataset.windows(self.offsets(step), self.seq_len)

  def __iter__(self) -> TextBatches:
    return self

  def __next__(self) -> TextBatch:
    batch = self.batch_at(self._step)
    self._step += 1
    return batch

  def get_state(self) -> dict[str, int]:
    """The position: how many batches were yielded."""
    return {"step": self._step}

  def set_state(self, state: dict[str, int]) -> None:
    """Moves to a position returned by `get_state`.

    Raises:
      ValueError: if the state is not ``{"step": k}`` with ``k >= 0``.
    """
    try:
      step = int(state["step"])
    except (KeyError, TypeError, ValueError) as e:
      raise ValueError(
        f"Expected a state like {{'step': 120}} from get_state(), got {state!r}."
      ) from e
    if step < 0:
      raise ValueError(f"Expected a state with step >= 0, got {state!r}.")
    self._step = step


def text_eval_batches(
  dataset: TextDataset, batch_size: int, seq_len: int, *, max_windows: int | None = None
) -> Iterator[TextBatch]:
  """Yields contiguous windows that score every token of the split but the first, once.

  Window ``k`` reads tokens ``[kT, kT + T]``: its targets are tokens ``kT + 1 .. kT + T``,
  so consecutive windows share one token and their targets tile ``1 .. n - 1`` exactly.
  The last window is padded with zeros, and the last batch with empty rows, so every
  batch is ``[B, T]`` and a jitted step compiles once; ``"mask"`` marks the real targets
  (``mask.sum()`` over all batches is `TextDataset.scored_tokens`).

  Args:
    dataset: the split to evaluate.
    batch_size: windows per batch.
    seq_len: targets per window, ``T``.
    max_windows: evaluate only the first this many windows (a fixed prefix), e.g. for a
      quick validation during training; None for the whole split.

  Yields:
    ``{"inputs": int32 [B, T], "targets": int32 [B, T], "mask": bool [B, T]}``.

  Example:
    >>> from jaxprune.data.text import TextSpec
    >>> spec = TextSpec("text", {"test": 10}, {}, "")
    >>> test = TextDataset(spec, "test", np.frombuffer(b"0123456789", np.uint8))
    >>> [int(b["mask"].sum()) for b in text_eval_batches(test, batch_size=2, seq_len=4)]
    [8, 1]
  """
  _check_lengths(dataset, seq_len, batch_size, 2)
  windows = dataset.num_windows(seq_len)
  if max_windows is not None:
    if max_windows < 1:
      raise ValueError(f"max_windows must be >= 1 or None, got {max_windows}; e.g. max_windows=64.")
    windows = min(windows, int(max_windows))
  padded = np.concatenate([dataset.tokens, np.zeros(seq_len, np.uint8)])
  last = dataset.num_tokens - 1  # index of the last token: the last target
  for first in range(0, windows, batch_size):
    k = np.arange(first, first + batch_size)
    starts = np.minimum(k, windows - 1) * seq_len
    window = padded[starts[:, None] + np.arange(seq_len + 1)].astype(np.int32)
    target_index = starts[:, None] + np.arange(1, seq_len + 1)
    mask = (target_index <= last) & (k < windows)[:, None]
    yield {
      "inputs": window[:, :-1],
      "targets": np.where(mask, window[:, 1:], 0),
      "mask": mask,
    }
