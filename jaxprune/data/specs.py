"""What jaxprune knows about each dataset: shapes, classes, normalisation, source files."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """Static description of a supported dataset.

  Attributes:
    name: the name accepted by `jaxprune.data.load` (and, for TFDS datasets, the TFDS name).
    image_shape: ``(H, W, C)`` of one image.
    num_classes: number of labels.
    max_value: the largest raw pixel value (images are divided by it, then standardised).
    mean: mean of ``pixel / max_value`` over the training split.
    std: standard deviation of ``pixel / max_value`` over the training split.
    splits: number of examples per split.
    idx_files: for IDX-based TFDS datasets, split -> (images file, labels file), without
      the optional ``.gz`` suffix; empty for datasets that need no preparation.
  """

  name: str
  image_shape: tuple[int, int, int]
  num_classes: int
  max_value: float
  mean: float
  std: float
  splits: dict[str, int]
  idx_files: dict[str, tuple[str, str]] = dataclasses.field(default_factory=dict)

  @property
  def needs_preparation(self) -> bool:
    """Whether the dataset is read from a prepared TFDS directory."""
    return bool(self.idx_files)


_IDX_FILES = {
  "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
  "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

SPECS: dict[str, DatasetSpec] = {
  "mnist": DatasetSpec(
    name="mnist",
    image_shape=(28, 28, 1),
    num_classes=10,
    max_value=255.0,
    mean=0.1307,
    std=0.3081,
    splits={"train": 60_000, "test": 10_000},
    idx_files=_IDX_FILES,
  ),
  "fashion_mnist": DatasetSpec(
    name="fashion_mnist",
    image_shape=(28, 28, 1),
    num_classes=10,
    max_value=255.0,
    mean=0.2860,
    std=0.3530,
    splits={"train": 60_000, "test": 10_000},
    idx_files=_IDX_FILES,
  ),
  "digits": DatasetSpec(
    name="digits",
    image_shape=(8, 8, 1),
    num_classes=10,
    max_value=16.0,
    mean=0.3054,
    std=0.3755,
    splits={"train": 1437, "test": 360},
  ),
}


def get_spec(name: str) -> DatasetSpec:
  """Returns the spec of a supported dataset.

  Args:
    name: a dataset name, one of ``SPECS``.

  Returns:
    Its `DatasetSpec`.

  Raises:
    ValueError: if the name is unknown; the message lists the valid names.

  Example:
    >>> get_spec("mnist").image_shape
    (28, 28, 1)
  """
  if name not in SPECS:
    raise ValueError(
      f"Unknown dataset {name!r}; expected one of {sorted(SPECS)}, "
      f"e.g. jaxprune.data.load('mnist', 'train')."
    )
  return SPECS[name]


def check_split(spec: DatasetSpec, split: str) -> None:
  """Raises a `ValueError` naming the valid splits if ``split`` is not one of them."""
  if split not in spec.splits:
    raise ValueError(
      f"Dataset {spec.name!r} has no split {split!r}; expected one of {sorted(spec.splits)}, "
      f"e.g. jaxprune.data.load({spec.name!r}, 'train')."
    )
