"""`BatchIterator` (reshuffling, bit-exact resume) and `eval_batches` (every example once)."""

import itertools
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxprune.data import BatchIterator, eval_batches, load
from jaxprune.data.batching import EpochOrder, epoch_order

# Sizes around the Feistel domain's edges: 1, 2, primes, powers of two and their neighbours.
EDGE_SIZES = [1, 2, 3, 5, 7, 31, 97, 127, 128, 129, 257, 1000, 1023, 1024, 1025, 4093, 65537]
SIZES = st.one_of(st.sampled_from(EDGE_SIZES), st.integers(1, 20_000))
SEEDS = st.integers(0, 2**32 - 1)
EPOCHS = st.integers(0, 10_000)


class IndexDataset:
  """A dataset whose example i is the number i, so batches show which examples they hold."""

  def __init__(self, n: int):
    self.num_examples = n

  def __getitem__(self, indices):
    return {"image": np.asarray(indices, np.float32)[:, None], "label": np.asarray(indices)}


def _labels(iterator, count):
  return [next(iterator)["label"] for _ in range(count)]


@settings(max_examples=150)
@given(SIZES, SEEDS, EPOCHS)
def test_the_epoch_order_is_a_permutation_of_the_examples(n, seed, epoch):
  order = epoch_order(n, seed, epoch)
  assert order.dtype == np.int64 and order.shape == (n,)
  np.testing.assert_array_equal(np.sort(order), np.arange(n))


@given(st.integers(20, 5000), SEEDS, EPOCHS)
def test_other_epochs_and_seeds_give_other_orders(n, seed, epoch):
  order = epoch_order(n, seed, epoch)
  np.testing.assert_array_equal(order, epoch_order(n, seed, epoch))  # deterministic
  assert not np.array_equal(order, epoch_order(n, seed, epoch + 1))
  assert not np.array_equal(order, epoch_order(n, seed + 1, epoch))
  assert not np.array_equal(order, epoch_order(n, seed + 1, epoch - 1 if epoch else 1))


def test_every_example_is_equally_likely_at_every_position():
  n, draws = 10, 4000
  orders = np.stack([epoch_order(n, seed, 3) for seed in range(draws)])
  counts = np.stack([np.bincount(orders[:, p], minlength=n) for p in range(n)])
  # Binomial(4000, 0.1): mean 400, sd 19; 5 sd either side.
  assert counts.min() > 300 and counts.max() < 500, counts


@pytest.mark.parametrize("n", [1, 7, 64, 1000, 1025])
def test_epoch_order_blocks_give_every_range_of_the_whole_order(n, monkeypatch):
  monkeypatch.setattr(EpochOrder, "BLOCK", 16)  # ranges straddle blocks
  whole = epoch_order(n, 9, 2)
  order = EpochOrder(n, seed=9)
  rng = np.random.default_rng(0)
  for _ in range(50):
    start, stop = np.sort(rng.integers(0, n + 1, 2))
    np.testing.assert_array_equal(order(2, start, stop), whole[start:stop])
  np.testing.assert_array_equal(EpochOrder(n, 9, shuffle=False)(5, 0, n), np.arange(n))
  with pytest.raises(IndexError, match=rf"\[0, {n}\)"):
    order(0, 0, n + 1)


def test_a_batch_of_a_huge_split_costs_memory_of_the_batch_only():
  n = 10**12 + 39  # its permutation would take 8 TB
  tracemalloc.start()
  indices = EpochOrder(n, seed=1)(7, 5 * 10**11, 5 * 10**11 + 256)
  peak = tracemalloc.get_traced_memory()[1]
  tracemalloc.stop()
  assert peak < 16 * 2**20, peak  # a block of positions, not the epoch
  assert len(np.unique(indices)) == 256 and indices.min() >= 0 and indices.max() < n
  with pytest.raises(ValueError, match="seed >= 0"):
    epoch_order(10, seed=-1, epoch=0)


def test_each_epoch_is_a_fresh_permutation():
  it = BatchIterator(IndexDataset(23), batch_size=5, seed=3)
  assert it.steps_per_epoch == 4
  epochs = [np.concatenate(_labels(it, 4)) for _ in range(3)]
  for epoch in epochs:
    assert len(epoch) == 20 and len(set(epoch.tolist())) == 20
  assert not np.array_equal(epochs[0], epochs[1])
  assert not np.array_equal(epochs[1], epochs[2])
  assert it.get_state() == {"epoch": 2, "index": 20}


def test_seed_changes_the_order_and_shuffle_false_keeps_index_order():
  a = np.concatenate(_labels(BatchIterator(IndexDataset(40), 8, seed=0), 5))
  b = np.concatenate(_labels(BatchIterator(IndexDataset(40), 8, seed=1), 5))
  assert sorted(a.tolist()) == sorted(b.tolist()) == list(range(40))
  assert not np.array_equal(a, b)
  ordered = BatchIterator(IndexDataset(10), 4, shuffle=False)
  assert [x.tolist() for x in _labels(ordered, 3)] == [[0, 1, 2, 3], [4, 5, 6, 7], [0, 1, 2, 3]]


def test_without_drop_remainder_an_epoch_ends_with_a_smaller_batch():
  it = BatchIterator(IndexDataset(10), 4, seed=0, drop_remainder=False)
  assert it.steps_per_epoch == 3
  sizes = [len(x) for x in _labels(it, 6)]
  assert sizes == [4, 4, 2, 4, 4, 2]


@pytest.mark.parametrize("drop_remainder", [True, False])
@pytest.mark.parametrize("stop", [0, 1, 3, 4, 5, 9])
def test_restored_iterator_continues_exactly(stop, drop_remainder):
  dataset = IndexDataset(19)
  reference = BatchIterator(dataset, 4, seed=11, drop_remainder=drop_remainder)
  expected = _labels(reference, stop + 7)
  interrupted = BatchIterator(dataset, 4, seed=11, drop_remainder=drop_remainder)
  _labels(interrupted, stop)
  state = dict(interrupted.get_state())
  restored = BatchIterator(dataset, 4, seed=11, drop_remainder=drop_remainder)
  restored.set_state(state)
  for want, got in zip(expected[stop:], _labels(restored, 7), strict=True):
    np.testing.assert_array_equal(got, want)


def test_restore_on_real_data_gives_identical_arrays():
  train = load("digits", "train")
  reference = BatchIterator(train, 100, seed=5)
  batches = [next(reference) for _ in range(20)]  # crosses the epoch boundary at 14
  restored = BatchIterator(train, 100, seed=5)
  restored.set_state({"epoch": 0, "index": 1300})
  for want in batches[13:]:
    got = next(restored)
    np.testing.assert_array_equal(got["image"], want["image"])
    np.testing.assert_array_equal(got["label"], want["label"])


def test_bad_states_and_sizes_are_refused():
  it = BatchIterator(IndexDataset(19), 4)
  for state in ({"epoch": 0, "index": 3}, {"epoch": 0, "index": 20}, {"epoch": -1, "index": 0}):
    with pytest.raises(ValueError, match="multiple of batch_size=4"):
      it.set_state(state)
  with pytest.raises(ValueError, match="get_state"):
    it.set_state({"step": 3})
  with pytest.raises(ValueError, match="batch_size=30 does not fit a dataset of 19"):
    BatchIterator(IndexDataset(19), 30)
  assert len(next(BatchIterator(IndexDataset(19), 30, drop_remainder=False))["label"]) == 19


def test_eval_batches_pad_and_mask():
  batches = list(eval_batches(IndexDataset(10), 4))
  assert [len(b["label"]) for b in batches] == [4, 4, 4]
  masks = np.concatenate([b["mask"] for b in batches])
  labels = np.concatenate([b["label"] for b in batches])
  assert masks.dtype == bool and masks.sum() == 10 and not masks[10:].any()
  np.testing.assert_array_equal(labels[masks], np.arange(10))


def test_eval_batches_without_padding():
  batches = list(eval_batches(IndexDataset(10), 4, pad=False))
  assert [len(b["label"]) for b in batches] == [4, 4, 2]
  assert all(b["mask"].all() for b in batches)
  exact = list(eval_batches(IndexDataset(8), 4))
  assert len(exact) == 2 and all(b["mask"].all() for b in exact)


def test_eval_batches_on_digits_cover_the_split_once():
  test = load("digits", "test")
  batches = eval_batches(test, 128)
  seen = list(itertools.chain.from_iterable(b["label"][b["mask"]].tolist() for b in batches))
  _, labels = test.raw(np.arange(test.num_examples))
  assert seen == labels.tolist()
