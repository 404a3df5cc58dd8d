"""`Dataset`: random access to preprocessed image batches, from memory or from a TFDS source."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from jaxprune.data.augment import Preprocess
from jaxprune.data.specs import DatasetSpec


class Reader(Protocol):
  """Reads raw examples: uint8 images ``[b, H, W, C]`` and integer labels ``[b]``.

  Images of varying sizes (ImageNet) come as a list of ``[H, W, C]`` arrays instead.
  """

  def __len__(self) -> int: ...

  def read(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


class ArrayReader:
  """Reads examples from numpy arrays held in memory."""

  def __init__(self, images: np.ndarray, labels: np.ndarray):
    if len(images) != len(labels):
      raise ValueError(
        f"images and labels differ in length: {len(images)} vs {len(labels)}; pass one "
        "label per image."
      )
    self.images = images
    self.labels = labels

  def __len__(self) -> int:
    return len(self.labels)

  def read(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return self.images[indices], self.labels[indices]


class SourceReader:
  """Reads examples one batch at a time from a random-access source (`tfds.data_source`).

  ``source[i]`` (or ``source.__getitems__(indices)``) must return dicts with an
  ``"image"`` uint8 ``[H, W, C]`` and a ``"label"`` integer.
  """

  def __init__(self, source: Any):
    self.source = source

  def __len__(self) -> int:
    return len(self.source)

  def read(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keys = [int(i) for i in np.asarray(indices).reshape(-1)]
    getitems = getattr(self.source, "__getitems__", None)
    records: Sequence[dict] = (
      getitems(keys) if getitems is not None else [self.source[k] for k in keys]
    )
    if not records:
      return np.zeros((0, 0, 0, 0), np.uint8), np.zeros((0,), np.int32)
    images = [np.asarray(r["image"]) for r in records]
    labels = np.asarray([r["label"] for r in records], np.int32)
    if len({i.shape for i in images}) > 1:
      return images, labels  # type: ignore[return-value]  # sizes differ: a list
    return np.stack(images), labels

  def read_all(self, chunk: int = 10_000) -> ArrayReader:
    """Reads every example into memory, ``chunk`` records at a time."""
    parts = [self.read(np.arange(s, min(s + chunk, len(self)))) for s in range(0, len(self), chunk)]
    return ArrayReader(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))


class SubsetReader:
  """Reads the examples ``indices`` of another reader, renumbered ``0 .. len(indices) - 1``."""

  def __init__(self, reader: Reader, indices: np.ndarray):
    self.reader = reader
    self.indices = np.asarray(indices, np.int64)

  def __len__(self) -> int:
    return len(self.indices)

  def read(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return self.reader.read(self.indices[np.asarray(indices)])


class Dataset:
  """One split of an image-classification dataset, indexed by arrays of example indices.

  ``dataset[indices]`` returns ``{"image": float32 [b, H, W, C], "label": int32 [b]}``
  with the evaluation preprocessing of its augmentation family applied (see
  `jaxprune.data.augment`): images normalised as ``(pixel / max_value - mean) / std``
  using the dataset's constants (see `jaxprune.data.specs.SPECS`), and for the
  ``"imagenet"`` family first resized and centre-cropped to ``image_shape``.

  Attributes:
    name: the dataset name, e.g. ``"mnist"``.
    split: the split name, e.g. ``"train"``.
    num_examples: number of examples in the split.
    image_shape: ``(H, W, C)``.
    num_classes: number of labels.
    in_memory: whether the raw examples are held in memory (else read per batch).
    augment: the augmentation family (``"none"``, ``"cifar"``, ``"imagenet"``).

  Example:
    >>> from jaxprune.data import load
    >>> ds = load("digits", "train")
    >>> batch = ds[np.arange(4)]
    >>> batch["image"].shape, batch["label"].dtype
    ((4, 8, 8, 1), dtype('int32'))
  """

  def __init__(self, spec: DatasetSpec, split: str, reader: Reader, augment: str = ""):
    self.spec = spec
    self.split = split
    self._reader = reader
    self.augment = augment or spec.augment
    self._eval = Preprocess(spec, self.augment, train=False)

  @property
  def name(self) -> str:
    return self.spec.name

  @property
  def num_examples(self) -> int:
    return len(self._reader)

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return self.spec.image_shape

  @property
  def num_classes(self) -> int:
    return self.spec.num_classes

  @property
  def in_memory(self) -> bool:
    return isinstance(self._reader, ArrayReader)

  def __len__(self) -> int:
    return self.num_examples

  def preprocess(self, train: bool) -> Preprocess:
    """The `jaxprune.data.augment.Preprocess` of this dataset for training or evaluation."""
    return Preprocess(self.spec, self.augment, train=train)

  def raw(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Returns the raw uint8 images and int32 labels at ``indices`` (no normalisation).

    Images of varying sizes come as a list of ``[H, W, C]`` arrays.
    """
    images, labels = self._reader.read(self._check_indices(indices))
    return images, labels.astype(np.int32)

  def subset(self, indices: np.ndarray, split: str) -> Dataset:
    """The examples at ``indices`` (in that order) as a dataset named ``split``.

    An in-memory dataset gives an in-memory subset (the arrays are copied); a streamed
    one reads through to its source.

    Example:
      >>> from jaxprune.data import load
      >>> ds = load("digits", "test")
      >>> part = ds.subset(np.array([5, 2]), "part")
      >>> part.num_examples, part.split, part.raw(np.arange(2))[1].tolist()
      (2, 'part', [7, 4])
      >>> ds.raw(np.array([5, 2]))[1].tolist()
      [7, 4]
    """
    indices = self._check_indices(indices)
    if self.in_memory:
      return Dataset(self.spec, split, ArrayReader(*self._reader.read(indices)), self.augment)
    return Dataset(self.spec, split, SubsetReader(self._reader, indices), self.augment)

  def __getitem__(self, indices: np.ndarray) -> dict[str, np.ndarray]:
    images, labels = self.raw(indices)
    return {"image": self._eval.apply(images, {}), "label": labels}

  def _check_indices(self, indices: np.ndarray) -> np.ndarray:
    indices = np.asarray(indices)
    if indices.ndim != 1 or not np.issubdtype(indices.dtype, np.integer):
      raise TypeError(
        f"Dataset indices must be a 1-D integer array, got shape {indices.shape} and dtype "
        f"{indices.dtype}; for one example use dataset[np.array([i])]."
      )
    if indices.size and (indices.min() < 0 or indices.max() >= self.num_examples):
      raise IndexError(
        f"Indices must lie in [0, {self.num_examples}) for {self.name}/{self.split}, got "
        f"min {indices.min()} and max {indices.max()}."
      )
    return indices

  def __repr__(self) -> str:
    where = "in memory" if self.in_memory else "streamed"
    return (
      f"Dataset({self.name!r}, split={self.split!r}, num_examples={self.num_examples}, "
      f"image_shape={self.image_shape}, {where})"
    )


def split_validation(dataset: Dataset, fraction: float, seed: int = 0) -> tuple[Dataset, Dataset]:
  """Holds out ``round(fraction * n)`` examples of ``dataset`` for validation.

  The held-out examples are a uniformly random subset drawn with ``seed`` alone (not the
  run's seed), so every run of a dataset, whatever its seed, validates on the same
  examples. Both parts keep the examples' original order.

  Args:
    dataset: the training split.
    fraction: share held out, in ``(0, 1)``.
    seed: seed of the draw.

  Returns:
    ``(train, validation)``, disjoint, together the whole of ``dataset``; their ``split``
    names are ``"train"`` and ``"validation"``.

  Raises:
    ValueError: if either part would be empty.

  Example:
    >>> from jaxprune.data import load
    >>> train, validation = split_validation(load("digits", "train"), 0.1)
    >>> train.num_examples, validation.num_examples, validation.split
    (1293, 144, 'validation')
  """
  n = dataset.num_examples
  n_val = int(round(float(fraction) * n))
  if not 0 < n_val < n:
    raise ValueError(
      f"validation_fraction={fraction} holds out {n_val} of the {n} examples of "
      f"{dataset.name}/{dataset.split}; expected a fraction leaving both parts non-empty, "
      "e.g. --config.data.validation_fraction=0.1 (or 0.0 for no validation split)."
    )
  order = np.random.default_rng(seed).permutation(n)
  held = np.sort(order[:n_val])
  kept = np.sort(order[n_val:])
  return dataset.subset(kept, "train"), dataset.subset(held, "validation")
