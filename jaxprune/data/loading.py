"""`load`: one split of a supported dataset as a `Dataset`, without TensorFlow."""

from __future__ import annotations

import os

import numpy as np

from jaxprune.data.dataset import ArrayReader, Dataset, Reader, SourceReader
from jaxprune.data.digits import digits_arrays
from jaxprune.data.specs import DatasetSpec, check_split, get_spec

# Splits whose raw uint8 images fit in this many bytes are read into memory once.
IN_MEMORY_LIMIT_BYTES = 200 * 2**20


def fits_in_memory(spec: DatasetSpec, num_examples: int) -> bool:
  """Whether a split of ``num_examples`` raw uint8 images is small enough to hold in memory."""
  return num_examples * int(np.prod(spec.image_shape)) <= IN_MEMORY_LIMIT_BYTES


def load(name: str, split: str, *, data_dir: str | os.PathLike | None = None) -> Dataset:
  """Loads one split of ``"mnist"``, ``"fashion_mnist"`` or ``"digits"``.

  TFDS datasets are read with ``tfds.data_source`` (array_record, no TensorFlow) from
  ``data_dir``; if they are not prepared there, they are prepared from local IDX files
  when some are found (see `ensure_prepared`), else a `FileNotFoundError` shows the
  command that prepares them. Nothing is downloaded. ``"digits"`` comes with
  scikit-learn and needs no files. Small datasets are read into memory once; large ones
  are read from the source batch by batch.

  Args:
    name: the dataset name.
    split: ``"train"`` or ``"test"``.
    data_dir: the TFDS data directory; defaults to `default_data_dir()`
      (``$JAXPRUNE_DATA_DIR``, else ``~/tensorflow_datasets``). Ignored for ``"digits"``.

  Returns:
    A `Dataset`.

  Example:
    >>> import numpy as np
    >>> ds = load("digits", "test")
    >>> ds.num_examples, ds.image_shape, ds.num_classes
    (360, (8, 8, 1), 10)
    >>> ds[np.arange(2)]["image"].dtype
    dtype('float32')
  """
  spec = get_spec(name)
  check_split(spec, split)
  if name == "digits":
    return Dataset(spec, split, ArrayReader(*digits_arrays(split)))

  import tensorflow_datasets as tfds

  from jaxprune.data.cache import cached_arrays
  from jaxprune.data.preparation import dataset_dir, default_data_dir, ensure_prepared

  data_dir = os.fspath(data_dir if data_dir is not None else default_data_dir())
  ensure_prepared(name, data_dir)
  source = SourceReader(tfds.data_source(name, split=split, data_dir=data_dir, download=False))
  reader: Reader = source
  if fits_in_memory(spec, len(source)):
    reader = cached_arrays(dataset_dir(name, data_dir), split, len(source), source.read_all)
  return Dataset(spec, split, reader)
