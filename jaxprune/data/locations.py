"""Where prepared TFDS datasets live: the data directory and its complete version folders.

A dataset ``name`` prepared in a data directory ``D`` sits in ``D/<name>/<version>``; a
version folder is complete when its ``dataset_info.json`` records the array_record file
format and every shard it lists is on disk. Nothing here knows the datasets jaxprune
describes (`jaxprune.data.specs`) or touches the network.
"""

from __future__ import annotations

import json
import os
from collections.abc import Set
from pathlib import Path
from typing import Any

from etils import epath

DATA_DIR_ENV = "JAXPRUNE_DATA_DIR"

# How TFDS names shard files unless dataset_info.json says otherwise.
_DEFAULT_TEMPLATE = "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}"


def default_data_dir() -> Path:
  """Returns the TFDS data directory: ``$JAXPRUNE_DATA_DIR`` if set, else ``~/tensorflow_datasets``.

  Example:
    default_data_dir()  # with JAXPRUNE_DATA_DIR=/data/tfds
    PosixPath('/data/tfds')
  """
  value = os.environ.get(DATA_DIR_ENV)
  return Path(value).expanduser() if value else Path.home() / "tensorflow_datasets"


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path:
  """``data_dir`` as a path, or `default_data_dir()` for None.

  Example:
    >>> resolve_data_dir("/data/tfds")
    PosixPath('/data/tfds')
  """
  return Path(data_dir).expanduser() if data_dir is not None else default_data_dir()


def read_info(folder: Path) -> dict | None:
  """The parsed ``dataset_info.json`` of a version folder, or None if it cannot be read."""
  try:
    return json.loads((folder / "dataset_info.json").read_text())
  except (OSError, ValueError):
    return None


def is_complete(name: str, folder: Path, required: Set[str]) -> bool:
  """Whether ``folder`` holds an array_record dataset with ``required`` splits, all shards."""
  info = read_info(folder)
  if info is None or info.get("fileFormat") != "array_record":
    return False
  splits = {s.get("name"): s for s in info.get("splits", [])}
  if not required <= set(splits):
    return False
  for split, entry in splits.items():
    template = entry.get("filepathTemplate", _DEFAULT_TEMPLATE)
    num_shards = len(entry.get("shardLengths", []))
    for shard in range(num_shards):
      filename = (
        template.replace("{DATASET}", name.split("/")[0])
        .replace("{SPLIT}", split)
        .replace("{FILEFORMAT}", "array_record")
        .replace("{SHARD_X_OF_Y}", f"{shard:05d}-of-{num_shards:05d}")
      )
      if not (folder / filename).is_file():
        return False
  return True


def versions(name: str, data_dir: str | os.PathLike | None) -> list[Any]:
  """Version folders of ``name`` in ``data_dir`` (local or a bucket), newest first."""
  root = epath.Path(os.fspath(resolve_data_dir(data_dir))) / name
  try:
    found = [p for p in root.iterdir() if p.name[:1].isdigit()]
  except OSError:
    return []

  def key(p: Any) -> tuple[int, ...]:
    return tuple(int(x) if x.isdigit() else -1 for x in p.name.split("."))

  return sorted(found, key=key, reverse=True)


def newest_complete(
  name: str, data_dir: str | os.PathLike | None, required: Set[str] = frozenset()
) -> Any | None:
  """The newest version folder of ``name`` in ``data_dir`` that `is_complete`, else None.

  Example:
    >>> newest_complete("cifar10", "/nonexistent") is None
    True
  """
  for folder in versions(name, data_dir):
    if is_complete(name, folder, required):
      return folder
  return None
