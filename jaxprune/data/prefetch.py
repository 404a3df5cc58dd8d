"""Putting the next batches on device in a background thread, so input hides behind compute."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

import jax

_DONE = object()


class Prefetcher:
  """Iterator over ``jax.device_put(batch, sharding)`` of an iterator's batches, ``size`` ahead.

  A daemon thread reads batches from ``iterator`` and puts them on device while the
  consumer computes. Exceptions raised by ``iterator`` are re-raised by `__next__`.

  If ``iterator`` has ``get_state()`` (like `BatchIterator`), `get_state` returns the
  state as of the last batch *returned* by this prefetcher, not the (further ahead)
  state of the underlying iterator: save that one in checkpoints. To resume, restore
  it into a new `BatchIterator` with ``set_state`` and wrap that in a new prefetcher.

  Use `close` (or a ``with`` block) to stop the thread before the iterator ends.
  """

  def __init__(self, iterator: Iterator[Any], size: int = 2, sharding: Any = None):
    if size < 1:
      raise ValueError(f"size must be >= 1, got {size}; e.g. prefetch_to_device(it, size=2).")
    self._iterator = iterator
    self._sharding = sharding
    self._queue: queue.Queue = queue.Queue(maxsize=size)
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

  def _run(self) -> None:
    try:
      for batch in self._iterator:
        state = self._iterator.get_state() if self._has_state else None
        if not self._put((jax.device_put(batch, self._sharding), state)):
          return
      self._put((_DONE, None))
    except BaseException as error:  # noqa: BLE001 - handed over to the consumer thread.
      self._put((error, None))

  def __iter__(self) -> Prefetcher:
    return self

  def __next__(self) -> Any:
    if self._finished:
      raise StopIteration
    item, state = self._queue.get()
    if item is _DONE:
      self._finished = True
      raise StopIteration
    if isinstance(item, BaseException):
      self._finished = True
      raise item
    self._state = state
    return item

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
    self._thread.join(timeout=5.0)

  def __enter__(self) -> Prefetcher:
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()


def prefetch_to_device(iterator: Iterator[Any], size: int = 2, sharding: Any = None) -> Prefetcher:
  """Returns an iterator over ``iterator``'s batches already placed on device, ``size`` ahead.

  Args:
    iterator: yields pytrees of numpy arrays, e.g. a `BatchIterator`.
    size: how many batches to hold on device ahead of the consumer.
    sharding: passed to ``jax.device_put`` (a ``jax.sharding.Sharding``, a device, or a
      pytree of them); None puts batches on the default device.

  Returns:
    A `Prefetcher`: iterate it; ``get_state()`` gives the checkpointable position.

  Example:
    batches = prefetch_to_device(BatchIterator(train, 128), size=2)
    for step, batch in zip(range(num_steps), batches):
      state, metrics = train_step(state, batch)
    batches.close()
  """
  return Prefetcher(iterator, size=size, sharding=sharding)
