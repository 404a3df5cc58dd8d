"""What jaxprune knows about each dataset: shapes, classes, normalisation, source files.

The datasets listed in `SPECS` carry their published normalisation constants and their
augmentation family. Any other TFDS image-classification dataset works too once it is
prepared: `spec_from_tfds` reads its shape, classes and splits from the prepared files.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Iterable

import numpy as np

from jaxprune.data.locations import newest_complete


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """Static description of a supported dataset.

  Attributes:
    name: the name accepted by `jaxprune.data.load` (and, for TFDS datasets, the TFDS name).
    image_shape: ``(H, W, C)`` of one image.
    num_classes: number of labels.
    max_value: the largest raw pixel value (images are divided by it, then standardised).
    mean: mean of ``pixel / max_value`` over the training split (one value, or one per
      channel).
    std: standard deviation of ``pixel / max_value`` (one value, or one per channel).
    splits: number of examples per split.
    idx_files: for IDX-based TFDS datasets, split -> (images file, labels file), without
      the optional ``.gz`` suffix; empty for datasets that need no preparation.
    tfds: whether the dataset is read from a prepared TFDS directory.
    augment: the augmentation family used by default (see `jaxprune.data.augment`):
      ``"none"``, ``"cifar"`` or ``"imagenet"``.
    test_split: the split evaluated as the test set (ImageNet's is ``"validation"``).
    fixed_size: whether every raw image has ``image_shape`` (else images of any size are
      resized and cropped to ``image_shape`` by the ``"imagenet"`` preprocessing).
  """

  name: str
  image_shape: tuple[int, int, int]
  num_classes: int
  max_value: float
  mean: float | tuple[float, ...]
  std: float | tuple[float, ...]
  splits: dict[str, int]
  idx_files: dict[str, tuple[str, str]] = dataclasses.field(default_factory=dict)
  tfds: bool = True
  augment: str = "none"
  test_split: str = "test"
  fixed_size: bool = True

  @property
  def needs_preparation(self) -> bool:
    """Whether the dataset is read from a prepared TFDS directory."""
    return self.tfds

  @property
  def from_idx(self) -> bool:
    """Whether jaxprune can prepare the dataset itself from local IDX files."""
    return bool(self.idx_files)

  def normalisation(self) -> tuple[np.ndarray, np.ndarray]:
    """``(scale, shift)`` in float32 with ``normalised = pixel * scale - shift``.

    Example:
      >>> scale, shift = SPECS["cifar10"].normalisation()
      >>> scale.shape, round(float(255 * scale[0] * 0.2470), 6)
      ((3,), 1.0)
    """
    mean = np.asarray(self.mean, np.float64)
    std = np.asarray(self.std, np.float64)
    return (
      np.asarray(1.0 / (self.max_value * std), np.float32),
      np.asarray(mean / std, np.float32),
    )


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
    tfds=False,
  ),
  # Krizhevsky (2009); per-channel statistics of the training images.
  "cifar10": DatasetSpec(
    name="cifar10",
    image_shape=(32, 32, 3),
    num_classes=10,
    max_value=255.0,
    mean=(0.4914, 0.4822, 0.4465),
    std=(0.2470, 0.2435, 0.2616),
    splits={"train": 50_000, "test": 10_000},
    augment="cifar",
  ),
  "cifar100": DatasetSpec(
    name="cifar100",
    image_shape=(32, 32, 3),
    num_classes=100,
    max_value=255.0,
    mean=(0.5071, 0.4865, 0.4409),
    std=(0.2673, 0.2564, 0.2762),
    splits={"train": 50_000, "test": 10_000},
    augment="cifar",
  ),
  # ILSVRC-2012 with the usual ImageNet statistics; tested on its validation split.
  "imagenet2012": DatasetSpec(
    name="imagenet2012",
    image_shape=(224, 224, 3),
    num_classes=1000,
    max_value=255.0,
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
    splits={"train": 1_281_167, "validation": 50_000},
    augment="imagenet",
    test_split="validation",
    fixed_size=False,
  ),
  # The 10-class ImageNet subset (full-size images), with ImageNet's statistics.
  "imagenette": DatasetSpec(
    name="imagenette",
    image_shape=(224, 224, 3),
    num_classes=10,
    max_value=255.0,
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
    splits={"train": 9_469, "validation": 3_925},
    augment="imagenet",
    test_split="validation",
    fixed_size=False,
  ),
}


def get_spec(name: str, data_dir: str | os.PathLike | None = None) -> DatasetSpec:
  """Returns the spec of a dataset: from `SPECS`, else from its prepared TFDS files.

  Args:
    name: a dataset name: one of ``SPECS``, or any TFDS image-classification dataset
      (``"name"`` or ``"name/config"``) prepared in ``data_dir``.
    data_dir: where to look for a dataset not in ``SPECS``.

  Returns:
    Its `DatasetSpec`.

  Raises:
    ValueError: if the name is neither in ``SPECS`` nor a prepared TFDS dataset; the
      message lists the known names and how to prepare another one.

  Example:
    >>> get_spec("mnist").image_shape
    (28, 28, 1)
    >>> get_spec("cifar10").test_split, get_spec("imagenet2012").test_split
    ('test', 'validation')
  """
  if name in SPECS:
    return SPECS[name]
  folder = newest_complete(name, data_dir)
  if folder is None:
    example = closest_name(name) or "mnist"
    raise ValueError(
      f"Unknown dataset {name!r}: it is not one of {sorted(SPECS)}, nor a TFDS dataset "
      f"prepared in the data directory.{did_you_mean(name)} Prepare it once with `tfds "
      f"build {name} --file_format=array_record --data_dir DIR` and pass "
      f"--config.data.data_dir=DIR, or pick a known one, e.g. "
      f"jaxprune.data.load({example!r}, 'train')."
    )
  return spec_from_tfds(name, folder)


def closest_name(name: str, names: Iterable[str] | None = None) -> str | None:
  """The name in ``names`` (default: `SPECS`) closest to a misspelt ``name``, or None.

  Example:
    >>> closest_name("mnsit"), closest_name("cifar-10"), closest_name("svhn")
    ('mnist', 'cifar10', None)
    >>> closest_name("shakspeare", ["shakespeare", "text"])
    'shakespeare'
  """
  known = sorted(SPECS if names is None else names)
  found = difflib.get_close_matches(name.lower(), known, n=1, cutoff=0.6)
  return found[0] if found else None


def did_you_mean(name: str) -> str:
  """`` Did you mean 'mnist'?`` for a misspelt ``name`` (with a leading space), else ``""``."""
  close = closest_name(name)
  return f" Did you mean {close!r}?" if close else ""


def spec_from_tfds(name: str, folder: str | os.PathLike) -> DatasetSpec:
  """The spec of a prepared TFDS image-classification dataset, read from its files.

  Shape, classes and split sizes come from the dataset's info; the normalisation maps
  pixels to ``[-1, 1]`` (mean 0.5, std 0.5); images of varying size are resized and
  centre-cropped to 224 by the ``"imagenet"`` preprocessing.

  Args:
    name: the TFDS name.
    folder: the prepared ``<data_dir>/<name>/<version>`` folder.

  Raises:
    ValueError: if the dataset has no ``"image"`` and ``"label"`` features.
  """
  import tensorflow_datasets as tfds  # heavy; only a dataset unknown to jaxprune needs it

  info = tfds.builder_from_directory(os.fspath(folder)).info
  features = info.features
  if "image" not in features or "label" not in features:
    raise ValueError(
      f"TFDS dataset {name!r} has features {sorted(features)}; expected an image "
      "classification dataset with 'image' and 'label' features."
    )
  shape = tuple(features["image"].shape)
  fixed = None not in shape
  channels = shape[-1] or 3
  splits = {split: int(info.splits[split].num_examples) for split in info.splits}
  test_split = "test" if "test" in splits else "validation"
  return DatasetSpec(
    name=name,
    image_shape=tuple(int(d) for d in shape) if fixed else (224, 224, channels),
    num_classes=int(features["label"].num_classes),
    max_value=255.0,
    mean=0.5,
    std=0.5,
    splits=splits,
    augment="none" if fixed else "imagenet",
    test_split=test_split,
    fixed_size=fixed,
  )


def check_split(spec: DatasetSpec, split: str) -> None:
  """Raises a `ValueError` naming the valid splits if ``split`` is not one of them."""
  if split not in spec.splits:
    raise ValueError(
      f"Dataset {spec.name!r} has no split {split!r}; expected one of {sorted(spec.splits)}, "
      f"e.g. jaxprune.data.load({spec.name!r}, 'train')."
    )
