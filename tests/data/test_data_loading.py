"""`load` and `Dataset`: the bundled digits, prepared MNIST in memory or streamed, the cache."""

import numpy as np
import pytest
from sklearn.datasets import load_digits

from jaxprune.data import Dataset, load, split_validation
from jaxprune.data import loading as loading_lib
from jaxprune.data.cache import CACHE_FOLDER
from jaxprune.data.specs import SPECS


def test_digits_splits_are_deterministic_disjoint_and_complete():
  train, test = load("digits", "train"), load("digits", "test")
  assert (train.num_examples, test.num_examples) == (1437, 360)
  assert train.image_shape == (8, 8, 1) and train.num_classes == 10 and train.name == "digits"
  _, train_labels = train.raw(np.arange(train.num_examples))
  test_images, test_labels = test.raw(np.arange(test.num_examples))
  reference = load_digits()
  np.testing.assert_array_equal(np.concatenate([train_labels, test_labels]), reference.target)
  np.testing.assert_array_equal(test_images[..., 0], reference.images[1437:].astype(np.uint8))


def test_digits_batches_are_normalised_float32_and_int32():
  train = load("digits", "train")
  batch = train[np.arange(train.num_examples)]
  assert batch["image"].dtype == np.float32 and batch["image"].shape == (1437, 8, 8, 1)
  assert batch["label"].dtype == np.int32 and batch["label"].shape == (1437,)
  assert abs(float(batch["image"].mean())) < 0.01
  assert abs(float(batch["image"].std()) - 1.0) < 0.01
  some = train[np.array([5, 0, 5])]
  np.testing.assert_array_equal(some["image"][0], some["image"][2])
  np.testing.assert_array_equal(some["label"], batch["label"][[5, 0, 5]])


def test_normalisation_uses_the_dataset_constants():
  test = load("digits", "test")
  raw, _ = test.raw(np.arange(4))
  spec = SPECS["digits"]
  expected = (raw.astype(np.float32) / spec.max_value - spec.mean) / spec.std
  np.testing.assert_allclose(test[np.arange(4)]["image"], expected, rtol=1e-5, atol=1e-5)


def test_unknown_names_splits_and_bad_indices_explain_themselves():
  known = r"'cifar10'.*'digits'.*'fashion_mnist'.*'mnist'.*tfds build no_such_set"
  with pytest.raises(ValueError, match=known):
    load("no_such_set", "train", data_dir="/nonexistent")
  with pytest.raises(ValueError, match="no split 'validation'.*'test', 'train'"):
    load("digits", "validation")
  test = load("digits", "test")
  with pytest.raises(IndexError, match=r"\[0, 360\)"):
    test[np.array([0, 360])]
  with pytest.raises(TypeError, match="1-D integer array"):
    test[np.array([[1, 2]])]


def _compare_with_idx(dataset: Dataset, images: np.ndarray, labels: np.ndarray) -> None:
  expected = {im.tobytes(): int(lab) for im, lab in zip(images, labels, strict=True)}
  raw_images, raw_labels = dataset.raw(np.arange(dataset.num_examples))
  got = {im[..., 0].tobytes(): int(lab) for im, lab in zip(raw_images, raw_labels, strict=True)}
  assert got == expected


def test_prepared_mnist_loads_into_memory_and_caches(prepared_mnist):
  data_dir, arrays = prepared_mnist
  train = load("mnist", "train", data_dir=data_dir)
  assert train.in_memory and train.num_examples == 50 and train.image_shape == (28, 28, 1)
  _compare_with_idx(train, *arrays["train"])
  cache = data_dir / "mnist" / "3.0.1" / CACHE_FOLDER / "train.npz"
  assert cache.is_file()
  again = load("mnist", "train", data_dir=data_dir)
  np.testing.assert_array_equal(again[np.arange(50)]["image"], train[np.arange(50)]["image"])


def test_a_stale_cache_is_rebuilt(prepared_mnist):
  data_dir, arrays = prepared_mnist
  load("mnist", "test", data_dir=data_dir)
  cache = data_dir / "mnist" / "3.0.1" / CACHE_FOLDER / "test.npz"
  zeros = np.zeros((20, 28, 28, 1), np.uint8)
  np.savez(cache, images=zeros, labels=np.zeros(20, np.int32), fingerprint="another preparation")
  _compare_with_idx(load("mnist", "test", data_dir=data_dir), *arrays["test"])


def test_streamed_and_in_memory_batches_are_equal(prepared_mnist, monkeypatch):
  data_dir, arrays = prepared_mnist
  in_memory = load("mnist", "test", data_dir=data_dir)
  monkeypatch.setattr(loading_lib, "IN_MEMORY_LIMIT_BYTES", 0)
  streamed = load("mnist", "test", data_dir=data_dir)
  assert in_memory.in_memory and not streamed.in_memory
  indices = np.array([19, 3, 3, 0, 7])
  a, b = in_memory[indices], streamed[indices]
  np.testing.assert_array_equal(a["image"], b["image"])
  np.testing.assert_array_equal(a["label"], b["label"])
  assert b["image"].dtype == np.float32 and b["label"].dtype == np.int32
  _compare_with_idx(streamed, *arrays["test"])


def test_the_default_data_dir_comes_from_the_environment(prepared_mnist, monkeypatch):
  data_dir, _ = prepared_mnist
  monkeypatch.setenv("JAXPRUNE_DATA_DIR", str(data_dir))
  assert load("mnist", "test").num_examples == 20


def _rows(dataset):
  """Every example of ``dataset`` as bytes (image and label), in order."""
  images, labels = dataset.raw(np.arange(dataset.num_examples))
  return [im.tobytes() + bytes([int(lb)]) for im, lb in zip(images, labels, strict=True)]


@pytest.mark.parametrize("fraction, n_val", [(0.1, 144), (0.25, 359), (0.5, 718)])
def test_the_validation_split_is_held_out_of_train_disjoint_and_complete(fraction, n_val):
  full = load("digits", "train")
  train, validation = split_validation(full, fraction, seed=0)
  assert (train.num_examples, validation.num_examples) == (1437 - n_val, n_val)
  assert (train.split, validation.split) == ("train", "validation")
  assert train.in_memory and validation.in_memory
  # Every example is in exactly one part (as a multiset of the original rows).
  assert sorted(_rows(train) + _rows(validation)) == sorted(_rows(full))
  # The parts are the original examples at disjoint index sets, each in its original order.
  order = np.random.default_rng(0).permutation(1437)
  held, kept = np.sort(order[:n_val]), np.sort(order[n_val:])
  assert not set(held.tolist()) & set(kept.tolist())
  for part, indices in ((validation, held), (train, kept)):
    for got, want in zip(part.raw(np.arange(part.num_examples)), full.raw(indices), strict=True):
      np.testing.assert_array_equal(got, want)


def test_the_validation_split_depends_on_its_seed_only():
  full = load("digits", "train")
  a_train, a_val = split_validation(full, 0.1, seed=0)
  b_train, b_val = split_validation(load("digits", "train"), 0.1, seed=0)
  assert _rows(a_val) == _rows(b_val) and _rows(a_train) == _rows(b_train)  # across runs
  _, c_val = split_validation(full, 0.1, seed=1)
  assert c_val.num_examples == 144 and _rows(c_val) != _rows(a_val)
  # The first held-out indices of seed 0, fixed for every run and machine.
  expected = np.sort(np.random.default_rng(0).permutation(1437)[:144])
  np.testing.assert_array_equal(a_val.raw(np.arange(144))[1], full.raw(expected)[1])
  np.testing.assert_array_equal(a_val.raw(np.arange(144))[0], full.raw(expected)[0])


def test_a_streamed_split_gives_a_streamed_validation_split(prepared_mnist, monkeypatch):
  data_dir, _ = prepared_mnist
  in_memory = split_validation(load("mnist", "train", data_dir=data_dir), 0.2, seed=3)
  monkeypatch.setattr(loading_lib, "IN_MEMORY_LIMIT_BYTES", 0)
  streamed = load("mnist", "train", data_dir=data_dir)
  train, validation = split_validation(streamed, 0.2, seed=3)
  assert not train.in_memory and not validation.in_memory
  assert (train.num_examples, validation.num_examples) == (40, 10)
  held = np.sort(np.random.default_rng(3).permutation(50)[:10])
  for got, want in zip(validation.raw(np.arange(10)), streamed.raw(held), strict=True):
    np.testing.assert_array_equal(got, want)
  # The same examples as the split of the in-memory dataset, in the same order.
  for a, b in zip((train, validation), in_memory, strict=True):
    np.testing.assert_array_equal(
      a[np.arange(a.num_examples)]["image"], b[np.arange(b.num_examples)]["image"]
    )


@pytest.mark.parametrize("fraction", [0.0, 1.0, 0.0001, -0.1])
def test_a_validation_fraction_leaving_a_part_empty_is_refused(fraction):
  with pytest.raises(ValueError, match="validation_fraction"):
    split_validation(load("digits", "train"), fraction)
