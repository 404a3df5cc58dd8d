"""`prefetch_to_device`: same batches, on device, with the consumer's iterator position."""

import threading

import jax
import numpy as np
import pytest

from jaxprune.data import BatchIterator, load, prefetch_to_device


def test_yields_the_iterators_batches_on_device():
  train = load("digits", "train")
  reference = BatchIterator(train, 64, seed=2)
  expected = [next(reference) for _ in range(30)]
  with prefetch_to_device(BatchIterator(train, 64, seed=2), size=3) as batches:
    for want in expected:
      got = next(batches)
      assert isinstance(got["image"], jax.Array)
      np.testing.assert_array_equal(np.asarray(got["image"]), want["image"])
      np.testing.assert_array_equal(np.asarray(got["label"]), want["label"])


def test_state_is_that_of_the_last_batch_handed_out():
  train = load("digits", "train")
  with prefetch_to_device(BatchIterator(train, 100, seed=0), size=2) as batches:
    assert batches.get_state() == {"epoch": 0, "index": 0}
    for _ in range(16):
      next(batches)
    state = batches.get_state()
    following = next(batches)
  assert state == {"epoch": 1, "index": 200}  # 14 batches per epoch
  resumed = BatchIterator(train, 100, seed=0)
  resumed.set_state(state)
  np.testing.assert_array_equal(next(resumed)["label"], np.asarray(following["label"]))


def test_finite_iterators_end_and_errors_reach_the_consumer():
  batches = list(prefetch_to_device(iter([{"x": np.ones(2)}, {"x": np.zeros(2)}])))
  assert [float(b["x"].sum()) for b in batches] == [2.0, 0.0]

  def failing():
    yield {"x": np.ones(1)}
    raise RuntimeError("disk went away")

  it = prefetch_to_device(failing())
  next(it)
  with pytest.raises(RuntimeError, match="disk went away"):
    next(it)
  with pytest.raises(AttributeError, match="get_state"):
    it.get_state()


def test_close_stops_the_thread():
  before = threading.active_count()
  it = prefetch_to_device(BatchIterator(load("digits", "test"), 10), size=1)
  next(it)
  it.close()
  assert not it._thread.is_alive()
  assert threading.active_count() == before
  with pytest.raises(StopIteration):
    next(it)


def test_sharding_is_applied():
  device = jax.devices()[0]
  sharding = jax.sharding.SingleDeviceSharding(device)
  with prefetch_to_device(BatchIterator(load("digits", "test"), 8), sharding=sharding) as it:
    batch = next(it)
  assert batch["image"].sharding == sharding and batch["label"].devices() == {device}
