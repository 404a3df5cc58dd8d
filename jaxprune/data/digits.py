"""The 8x8 handwritten digits bundled with scikit-learn: a dataset that needs no files."""

from __future__ import annotations

import numpy as np

from jaxprune.data.specs import SPECS, check_split


def digits_arrays(split: str) -> tuple[np.ndarray, np.ndarray]:
  """Returns the raw images and labels of one split of the bundled digits.

  The 1797 examples keep scikit-learn's order; the first 1437 (80%) are ``"train"``, the
  last 360 are ``"test"``, so the split is the same on every machine.

  Args:
    split: ``"train"`` or ``"test"``.

  Returns:
    ``(images, labels)``: uint8 ``[n, 8, 8, 1]`` with pixel values in ``[0, 16]``, and
    int32 ``[n]``.

  Example:
    >>> images, labels = digits_arrays("test")
    >>> images.shape, labels.shape
    ((360, 8, 8, 1), (360,))
  """
  from sklearn.datasets import load_digits  # scikit-learn takes a second to import: lazily

  spec = SPECS["digits"]
  check_split(spec, split)
  bunch = load_digits()
  images = bunch.images.astype(np.uint8)[..., None]
  labels = bunch.target.astype(np.int32)
  n_train = spec.splits["train"]
  if split == "train":
    return images[:n_train], labels[:n_train]
  return images[n_train:], labels[n_train:]
