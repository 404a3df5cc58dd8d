"""Fixtures of the data tests: small MNIST-format IDX sets written from scratch."""

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest


def write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
  """Writes a uint8 array as an IDX file (type code 0x08), gzip-compressed if asked."""
  header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
  data = header + array.astype(np.uint8).tobytes()
  if compress:
    path.with_name(path.name + ".gz").write_bytes(gzip.compress(data))
  else:
    path.write_bytes(data)


def _write_mnist_like(folder: Path, sizes=(("train", 50), ("test", 20)), seed=0) -> dict:
  """Writes random images and labels as the four MNIST IDX files; returns them by split.

  The train files are gzip-compressed and the test files plain, to cover both.
  """
  folder.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(seed)
  prefixes = {"train": "train", "test": "t10k"}
  arrays = {}
  for split, n in sizes:
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, (n,), dtype=np.uint8)
    compress = split == "train"
    write_idx(folder / f"{prefixes[split]}-images-idx3-ubyte", images, compress)
    write_idx(folder / f"{prefixes[split]}-labels-idx1-ubyte", labels, compress)
    arrays[split] = (images, labels)
  return arrays


@pytest.fixture
def write_mnist_like():
  """``write_mnist_like(folder, sizes=(("train", 50), ("test", 20)), seed=0) -> arrays``."""
  return _write_mnist_like


@pytest.fixture
def synthetic_mnist(tmp_path):
  """(source folder, {split: (images uint8 [n, 28, 28], labels uint8 [n])})."""
  source = tmp_path / "idx"
  return source, _write_mnist_like(source)


@pytest.fixture
def prepared_mnist(tmp_path, synthetic_mnist):
  """(data_dir, arrays): the synthetic set prepared as TFDS `mnist` in data_dir."""
  from jaxprune.data import prepare

  source, arrays = synthetic_mnist
  data_dir = tmp_path / "tfds"
  prepare("mnist", source, data_dir)
  return data_dir, arrays
