"""`load`: one split of a supported dataset as a `Dataset`, without TensorFlow."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from jaxprune.data.cache import cached_arrays
from jaxprune.data.dataset import ArrayReader, Dataset, Reader, SourceReader
from jaxprune.data.digits import digits_arrays
from jaxprune.data.preparation import dataset_dir, default_data_dir, ensure_prepared
from jaxprune.data.specs import DatasetSpec, check_split, get_spec

# Splits whose raw uint8 images fit in this many bytes are read into memory once.
IN_MEMORY_LIMIT_BYTES = 200 * 2**20


def fits_in_memory(spec: DatasetSpec, num_examples: int) -> bool:
  """Whether a split of ``num_examples`` raw uint8 images is small enough to hold in memory."""
  return num_examples * int(np.prod(spec.image_shape)) <= IN_MEMORY_LIMIT_BYTES


def sized(spec: DatasetSpec, image_size: int, augment: str = "") -> DatasetSpec:
  """``spec`` with images of ``image_size`` x ``image_size`` (0 keeps its size).

  Only images that are resized anyway (the ``"imagenet"`` preprocessing) can change size.

  Example:
    >>> from jaxprune.data.specs import SPECS
    >>> sized(SPECS["imagenet2012"], 64).image_shape
    (64, 64, 3)
  """
  height, width, channels = spec.image_shape
  if not image_size or (image_size, image_size) == (height, width):
    return spec
  if (augment or spec.augment) != "imagenet":
    raise ValueError(
      f"data.image_size={image_size} asks to resize the {height}x{width} images of "
      f"{spec.name!r}, which only the 'imagenet' preprocessing does; leave "
      "--config.data.image_size=0, or pass --config.data.augment=imagenet."
    )
  return dataclasses.replace(spec, image_shape=(image_size, image_size, channels))


def load(
  name: str,
  split: str,
  *,
  data_dir: str | os.PathLike | None = None,
  augment: str = "",
  image_size: int = 0,
) -> Dataset:
  """Loads one split of a TFDS image-classification dataset (or ``"digits"``).

  TFDS datasets are read with ``tfds.data_source`` (array_record, no TensorFlow) from
  ``data_dir``. MNIST and Fashion-MNIST that are not prepared there are prepared from
  local IDX files when some are found (see `ensure_prepared`); any other dataset that is
  not prepared raises a `DatasetNotPreparedError` at once, with the ``tfds build``
  command that prepares it. Nothing is downloaded. ``"digits"`` comes with
  scikit-learn and needs no files. Small datasets of fixed-size images are read into
  memory once; others are read from the source batch by batch.

  Args:
    name: the dataset name: a key of `jaxprune.data.specs.SPECS` (``"mnist"``,
      ``"cifar10"``, ``"imagenet2012"``...) or any prepared TFDS image-classification
      dataset.
    split: a split of it, e.g. ``"train"``, ``"test"`` (ImageNet: ``"validation"``).
    data_dir: the TFDS data directory (a local path or a bucket, ``gs://...``); defaults
      to `default_data_dir()` (``$JAXPRUNE_DATA_DIR``, else ``~/tensorflow_datasets``).
      Ignored for ``"digits"``.
    augment: the augmentation family (`jaxprune.data.augment`); ``""`` for the dataset's.
    image_size: side of the images fed to the model (0: the dataset's); only for
      datasets resized by the ``"imagenet"`` preprocessing.

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
  spec = sized(get_spec(name, data_dir), image_size, augment)
  check_split(spec, split)
  if name == "digits":
    return Dataset(spec, split, ArrayReader(*digits_arrays(split)), augment)

  import tensorflow_datasets as tfds  # heavy; the bundled digits do not need it

  data_dir = os.fspath(data_dir if data_dir is not None else default_data_dir())
  ensure_prepared(name, data_dir)
  source = SourceReader(tfds.data_source(name, split=split, data_dir=data_dir, download=False))
  reader: Reader = source
  if spec.fixed_size and fits_in_memory(spec, len(source)):
    if "://" in data_dir:  # a bucket: no cache next to the files
      reader = source.read_all()
    else:
      folder = Path(os.fspath(dataset_dir(name, data_dir)))
      reader = cached_arrays(folder, split, len(source), source.read_all)
  return Dataset(spec, split, reader, augment)
