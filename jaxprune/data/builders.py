"""TFDS builders for MNIST-style datasets that read local IDX files, without TensorFlow.

Each builder subclasses the official TFDS builder (same name, version, features and
dataset info) and replaces only how examples are produced: it reads the IDX files with
`read_idx` and hands TFDS each image already PNG-encoded (with Pillow), the form TFDS
stores, so no TensorFlow op is needed to encode it. Examples keep the official keys
(the index in the IDX file), so the shard order is the official one too.

Writing needs `tensorflow_datasets`, `array_record` and Pillow; TensorFlow is not used.
"""

from __future__ import annotations

import functools
import io
import os
import types
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from jaxprune.data.idx import read_idx
from jaxprune.data.specs import SPECS, DatasetSpec

if TYPE_CHECKING:
  import tensorflow_datasets as tfds


def find_idx_files(
  spec: DatasetSpec, source_dir: str | os.PathLike
) -> dict[str, tuple[Path, Path]]:
  """Finds the IDX files of every split in ``source_dir``, each plain or ``.gz``.

  Args:
    spec: the dataset spec, whose ``idx_files`` names the files.
    source_dir: a folder holding e.g. ``train-images-idx3-ubyte.gz``.

  Returns:
    split -> (images path, labels path).

  Raises:
    FileNotFoundError: naming the files that are missing.

  Example:
    files = find_idx_files(SPECS["mnist"], "../shared/data/mnist")
    files["test"][1].name
    't10k-labels-idx1-ubyte.gz'
  """
  folder = Path(source_dir)
  found, missing = {}, []
  for split, names in spec.idx_files.items():
    paths = []
    for name in names:
      candidates = [folder / name, folder / f"{name}.gz"]
      path = next((p for p in candidates if p.is_file()), None)
      if path is None:
        missing.append(f"{name}[.gz]")
      paths.append(path)
    found[split] = tuple(paths)
  if missing:
    raise FileNotFoundError(
      f"{os.fspath(folder)!r} lacks the IDX files {missing} of {spec.name!r}; expected a "
      f"folder holding {[n for names in spec.idx_files.values() for n in names]} (each "
      "optionally gzip-compressed)."
    )
  return found


def has_idx_files(spec: DatasetSpec, source_dir: str | os.PathLike) -> bool:
  """Whether ``source_dir`` holds every IDX file of ``spec``."""
  try:
    find_idx_files(spec, source_dir)
  except FileNotFoundError:
    return False
  return True


def _png(image: np.ndarray) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(image[..., 0]).save(buffer, format="png")
  return buffer.getvalue()


def _examples(
  spec: DatasetSpec, images_path: Path, labels_path: Path
) -> Iterator[tuple[int, dict]]:
  images, labels = read_idx(images_path), read_idx(labels_path)
  height, width, _ = spec.image_shape
  if images.shape[1:] != (height, width) or labels.shape != images.shape[:1]:
    raise ValueError(
      f"Expected uint8 images [n, {height}, {width}] and labels [n] in {images_path.name} "
      f"and {labels_path.name}, got shapes {images.shape} and {labels.shape}; are these "
      f"the IDX files of {spec.name!r}?"
    )
  for index in range(len(labels)):
    yield index, {"image": _png(images[index][..., None]), "label": int(labels[index])}


class _LocalIdxMixin:
  """Replaces the official download step by local IDX files, or by a plain download."""

  source_dir: str | None = None
  spec: DatasetSpec

  def _split_generators(self, dl_manager):
    if self.source_dir is not None:
      files = find_idx_files(self.spec, self.source_dir)
    else:
      urls = {
        f"{split}/{i}": f"{self.URL}{name}.gz"
        for split, names in self.spec.idx_files.items()
        for i, name in enumerate(names)
      }
      paths = dl_manager.download(urls)
      files = {split: (paths[f"{split}/0"], paths[f"{split}/1"]) for split in self.spec.idx_files}
    return {
      split: _examples(self.spec, Path(images), Path(labels))
      for split, (images, labels) in files.items()
    }


@functools.cache
def builder_class(name: str) -> type[tfds.core.GeneratorBasedBuilder]:
  """Returns the local-IDX builder class of ``"mnist"`` or ``"fashion_mnist"``.

  The class is not registered with TFDS (``tfds.builder(name)`` still returns the
  official one, which reads what this one writes); its ``name`` is the official name,
  so it writes ``<data_dir>/<name>/<version>``.
  """
  # Heavy, and only preparing a dataset needs it: importing jaxprune.data does not load TFDS.
  from tensorflow_datasets.image_classification import mnist as tfds_mnist

  official = {"mnist": tfds_mnist.MNIST, "fashion_mnist": tfds_mnist.FashionMNIST}[name]
  namespace = {"name": name, "spec": SPECS[name]}
  return types.new_class(
    f"LocalIdx{official.__name__}",
    (_LocalIdxMixin, official),
    {"skip_registration": True},
    lambda ns: ns.update(namespace),
  )


def make_builder(
  spec: DatasetSpec, data_dir: str | os.PathLike, source_dir: str | os.PathLike | None
) -> tfds.core.GeneratorBasedBuilder:
  """Builds the TFDS builder writing ``spec`` in array_record under ``data_dir``.

  Args:
    spec: the dataset spec.
    data_dir: the TFDS data directory.
    source_dir: a folder with the IDX files, or None to download them from the
      official URL.

  Returns:
    A builder; call ``download_and_prepare()`` on it.

  Example:
    mnist = SPECS["mnist"]
    builder = make_builder(mnist, "/tmp/tfds", "../shared/data/mnist")
    builder.download_and_prepare()
  """
  builder = builder_class(spec.name)(data_dir=os.fspath(data_dir), file_format="array_record")
  builder.source_dir = None if source_dir is None else os.fspath(source_dir)
  return builder
