"""Putting the next batches on device in a background thread, so input hides behind compute."""

from __future__ import annotations

import collections
import queue
import threading
from collections.abc import Iterator
from typing import Any

import jax

_DONE = object()


class Prefetcher:
  """Iterator over ``jax.device_put(batch, sharding)`` of an iterator's batches, ahead of use.

  A daemon thread reads batches from ``iterator`` and puts them on device while the
  consumer computes. It hands them over ``chunk`` at a time: one ``device_put`` call and
  one hand-over between threads per chunk rather than per batch, which is what a fast step
  otherwise waits on (benchmarks/RESULTS.md, "Input pipeline"). Exceptions raised by
  ``iterator`` are re-raised by `__next__`, after the batches read before them.

  If ``iterator`` has ``get_state()`` (like `BatchIterator`), `get_state` returns the
  state as of the last batch *returned* by this prefetcher, not the (further ahead)
  state of the underlying iterator: save that one in checkpoints. To resume, restore
  it into a new `BatchIterator` with ``set_state`` and wrap that in a new prefetcher.

  Use `close` (or a ``with`` block) to stop the thread before the iterator ends.
  """

  def __init__(self, iterator: Iterator[Any], size: int = 2, sharding: Any = None, chunk: int = 1):
    if size < 1 or chunk < 1:
      raise ValueError(
        f"size and chunk must be >= 1, got size={size}, chunk={chunk}; e.g. "
        "prefetch_to_device(it, size=2, chunk=1)."
      )
    self._iterator = iterator
    self._sharding = sharding
    self._chunk = int(chunk)
    self._queue: queue.Queue = queue.Queue(maxsize=size)
    self._ready: collections.deque = collections.deque()  # (batch, state) handed over
    self._stop = threading.Event()
    self._has_state = callable(getattr(iterator, "get_state", None))
    self._state = iterator.get_state() if self._has_state else None
    self._finished = False
    self._thread = threading.Thread(target=self._run, name="prefetch_to_device", daemon=True)
    self._thread.start()

  def _put(self, item: Any) -> bool:
    while not self._stop.is_set():
      try:
        self._queue.put(item, timeout=0.1)
        return True
      except queue.Full:
        continue
    return False

  def _send(self, pending: list[tuple[Any, Any]]) -> bool:
    batches = [b for b, _ in pending]
    shardings = None if self._sharding is None else [self._sharding] * len(batches)
    placed = jax.device_put(batches, shardings)
    return self._put(list(zip(placed, (s for _, s in pending), strict=True)))

  def _run(self) -> None:
    pending: list[tuple[Any, Any]] = []
    error: BaseException | None = None
    try:
      for batch in self._iterator:
        pending.append((batch, self._iterator.get_state() if self._has_state else None))
        if len(pending) == self._chunk:
          if not self._send(pending):
            return
          pending = []
    except BaseException as e:  # noqa: BLE001 - handed over to the consumer thread.
      error = e
    try:  # the batches read before the end (or the error) still reach the consumer
      if pending and not self._send(pending):
        return
    except BaseException as e:  # noqa: BLE001
      error = error or e
    self._put(_DONE if error is None else error)

  def __iter__(self) -> Prefetcher:
    return self

  def __next__(self) -> Any:
    if not self._ready:
      if self._finished:
        raise StopIteration
      item = self._queue.get()
      if item is _DONE or isinstance(item, BaseException):
        self._finished = True
        if item is _DONE:
          raise StopIteration
        raise item
      self._ready.extend(item)
    batch, self._state = self._ready.popleft()
    return batch

  def get_state(self) -> Any:
    """The wrapped iterator's state after the last batch returned here (see the class doc)."""
    if not self._has_state:
      raise AttributeError(
        f"{type(self._iterator).__name__} has no get_state(); wrap a BatchIterator, e.g. "
        "prefetch_to_device(BatchIterator(ds, 128)), to checkpoint the position."
      )
    return self._state

  def close(self) -> None:
    """Stops the background thread (batches already fetched are dropped)."""
    self._stop.set()
    self._finished = True
    self._ready.clear()
    self._thread.join(timeout=5.0)

  def __enter__(self) -> Prefetcher:
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()


def prefetch_to_device(
  iterator: Iterator[Any], size: int = 2, sharding: Any = None, chunk: int = 1
) -> Prefetcher:
  """Returns an iterator over ``iterator``'s batches already placed on device, ahead of use.

  Args:
    iterator: yields pytrees of numpy arrays, e.g. a `BatchIterator`.
    size: how many chunks of batches to hold on device ahead of the consumer.
    sharding: passed to ``jax.device_put`` for each batch (a ``jax.sharding.Sharding``, a
      device, or a pytree of them); None puts batches on the default device.
    chunk: batches placed and handed over together (use more for small, fast batches).

  Returns:
    A `Prefetcher`: iterate it; ``get_state()`` gives the checkpointable position.

  Example:
    >>> import numpy as np
    >>> it = prefetch_to_device(iter([{"x": np.full(2, i)} for i in range(5)]), chunk=2)
    >>> [int(b["x"][0]) for b in it]
    [0, 1, 2, 3, 4]
  """
  return Prefetcher(iterator, size=size, sharding=sharding, chunk=chunk)
