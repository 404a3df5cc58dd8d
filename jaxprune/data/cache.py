"""A numpy copy of a prepared split, so in-memory datasets load in milliseconds.

Decoding every PNG record of a TFDS split takes seconds; the decoded arrays are saved
once next to the TFDS files (``<name>/<version>/jaxprune-cache/<split>.npz``) and reused
while the dataset info they were made from is unchanged. Re-preparing the dataset
replaces that folder, cache included. A data directory that cannot be written to
simply goes without a cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from jaxprune.data.dataset import ArrayReader

CACHE_FOLDER = "jaxprune-cache"


def _fingerprint(folder: Path) -> str:
  return hashlib.sha256((folder / "dataset_info.json").read_bytes()).hexdigest()


def _save(path: Path, arrays: ArrayReader, fingerprint: str) -> None:
  path.parent.mkdir(exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".npz")
  try:
    with os.fdopen(fd, "wb") as f:
      np.savez(f, images=arrays.images, labels=arrays.labels, fingerprint=fingerprint)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def cached_arrays(
  folder: Path, split: str, num_examples: int, read_all: Callable[[], ArrayReader]
) -> ArrayReader:
  """Returns the split's arrays from the cache, or reads them with ``read_all`` and caches them.

  Args:
    folder: the prepared dataset folder ``<data_dir>/<name>/<version>``.
    split: the split name.
    num_examples: the number of examples of the split (a cache of another size is stale).
    read_all: reads every example of the split from its source.

  Returns:
    An `ArrayReader` over the split's uint8 images and int32 labels.

  Example:
    source = SourceReader(tfds.data_source("mnist", split="test"))
    folder = dataset_dir("mnist")
    reader = cached_arrays(folder, "test", len(source), source.read_all)
  """
  path = folder / CACHE_FOLDER / f"{split}.npz"
  fingerprint = _fingerprint(folder)
  try:
    with np.load(path) as saved:
      if str(saved["fingerprint"]) == fingerprint and len(saved["labels"]) == num_examples:
        return ArrayReader(saved["images"], saved["labels"])
  except (OSError, KeyError, ValueError):
    pass
  arrays = read_all()
  with contextlib.suppress(OSError):  # A read-only data directory goes without a cache.
    _save(path, arrays, fingerprint)
  return arrays
