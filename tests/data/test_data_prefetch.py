"""`prefetch_to_device`: same batches, on device, with the consumer's iterator position."""

import threading

import jax
import numpy as np
import pytest

from jaxprune.data import BatchIterator, load, prefetch_to_device

CHUNKS = pytest.mark.parametrize("chunk", [1, 3, 64])  # one, several, more than an epoch


@CHUNKS
def test_yields_the_iterators_batches_on_device(chunk):
  train = load("digits", "train")
  reference = BatchIterator(train, 64, seed=2)
  expected = [next(reference) for _ in range(30)]
  with prefetch_to_device(BatchIterator(train, 64, seed=2), size=3, chunk=chunk) as batches:
    for want in expected:
      got = next(batches)
      assert isinstance(got["image"], jax.Array)
      np.testing.assert_array_equal(np.asarray(got["image"]), want["image"])
      np.testing.assert_array_equal(np.asarray(got["label"]), want["label"])


@CHUNKS
def test_state_is_that_of_the_last_batch_handed_out(chunk):
  train = load("digits", "train")
  with prefetch_to_device(BatchIterator(train, 100, seed=0), size=2, chunk=chunk) as batches:
    assert batches.get_state() == {"epoch": 0, "index": 0}
    for _ in range(16):
      next(batches)
    state = batches.get_state()
    following = next(batches)
  assert state == {"epoch": 1, "index": 200}  # 14 batches per epoch
  resumed = BatchIterator(train, 100, seed=0)
  resumed.set_state(state)
  np.testing.assert_array_equal(next(resumed)["label"], np.asarray(following["label"]))


@CHUNKS
def test_finite_iterators_end_and_errors_reach_the_consumer(chunk):
  source = [{"x": np.ones(2)}, {"x": np.zeros(2)}]
  batches = list(prefetch_to_device(iter(source), chunk=chunk))
  assert [float(b["x"].sum()) for b in batches] == [2.0, 0.0]

  def failing():
    yield {"x": np.ones(1)}
    yield {"x": np.full(1, 2.0)}
    raise RuntimeError("disk went away")

  it = prefetch_to_device(failing(), chunk=chunk)
  assert [float(next(it)["x"][0]) for _ in range(2)] == [1.0, 2.0]  # read before the error
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


@CHUNKS
def test_sharding_is_applied(chunk):
  device = jax.devices()[0]
  sharding = jax.sharding.SingleDeviceSharding(device)
  batches = BatchIterator(load("digits", "test"), 8)
  with prefetch_to_device(batches, sharding=sharding, chunk=chunk) as it:
    for _ in range(chunk + 1):
      batch = next(it)
      assert batch["image"].sharding == sharding and batch["label"].devices() == {device}


def test_size_and_chunk_must_be_positive():
  with pytest.raises(ValueError, match="chunk=0"):
    prefetch_to_device(iter([]), chunk=0)
