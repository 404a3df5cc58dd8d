"""Preparing TFDS datasets offline from local IDX files, and checking they are prepared.

A dataset is *prepared* in a data directory ``D`` when ``tfds.data_source(name,
data_dir=D)`` can read it: ``D/<name>/<version>/dataset_info.json`` exists, records the
array_record file format, and every shard it lists is on disk. Nothing here touches the
network unless ``download=True`` is passed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from jaxprune.data.builders import builder_class, find_idx_files, has_idx_files, make_builder
from jaxprune.data.locations import DATA_DIR_ENV as DATA_DIR_ENV  # re-exported
from jaxprune.data.locations import default_data_dir as default_data_dir  # re-exported
from jaxprune.data.locations import (
  is_complete,
  newest_complete,
  read_info,
  resolve_data_dir,
  versions,
)
from jaxprune.data.specs import SPECS, DatasetSpec, get_spec

# Where the MNIST IDX files sit relative to the project checkout.
_SHARED_MNIST = Path("..") / "shared" / "data" / "mnist"
_REPO_ROOT = Path(__file__).resolve().parents[2]


class DatasetNotPreparedError(FileNotFoundError):
  """A TFDS dataset is not prepared in the data directory and no local source was found.

  The message shows the command that prepares it from local files, e.g.::

    python -m jaxprune.data prepare mnist --from ../shared/data/mnist --data-dir ~/tfds
  """


def dataset_dir(name: str, data_dir: str | os.PathLike | None = None) -> Path:
  """Returns ``<data_dir>/<name>/<version>``, where TFDS keeps the prepared files of ``name``.

  For a dataset jaxprune prepares from IDX files the version is that of its builder;
  for any other TFDS dataset it is the newest version prepared in ``data_dir`` (else the
  version of the installed TFDS builder, where `tfds build` would write it).
  """
  spec = get_spec(name, data_dir)
  if not spec.needs_preparation:
    raise ValueError(
      f"{name!r} needs no preparation: jaxprune.data.load({name!r}, 'train') reads it directly."
    )
  if spec.from_idx:
    return resolve_data_dir(data_dir) / spec.name / str(builder_class(spec.name).VERSION)
  found = find_prepared(name, data_dir)
  if found is not None:
    return found
  import tensorflow_datasets as tfds  # heavy; only a dataset unknown to jaxprune needs it

  try:
    version = str(tfds.builder_cls(name.split("/")[0]).VERSION)
  except Exception:  # an unregistered name: no version to guess
    version = "VERSION"
  return resolve_data_dir(data_dir) / name / version


def _tfds_spec(name: str) -> DatasetSpec:
  spec = get_spec(name)
  if not spec.from_idx:
    raise ValueError(
      f"jaxprune prepares only IDX datasets ('mnist', 'fashion_mnist') itself, not {name!r}; "
      f"prepare it with `tfds build {name} --file_format=array_record --data_dir DIR`."
    )
  return spec


def find_prepared(name: str, data_dir: str | os.PathLike | None = None) -> Any | None:
  """The newest folder ``<data_dir>/<name>/<version>`` that holds a complete prepared dataset.

  Works for any TFDS name (``"cifar10"``, ``"imagenette/full-size-v2"``) and for data
  directories on a bucket (``gs://...``). Nothing is downloaded.

  Example:
    >>> find_prepared("cifar10", "/nonexistent") is None
    True
  """
  known = SPECS.get(name)
  if known is not None and not known.needs_preparation:
    return None
  return newest_complete(name, data_dir, set(known.splits) if known is not None else set())


def is_prepared(name: str, data_dir: str | os.PathLike | None = None) -> bool:
  """Whether ``tfds.data_source(name, data_dir=data_dir)`` can read ``name`` (no network).

  Args:
    name: a dataset name (``"digits"`` is always prepared).
    data_dir: the TFDS data directory; defaults to `default_data_dir()`.

  Returns:
    True if the dataset info exists, records the array_record format, lists every split
    of the dataset, and all of its shards are on disk.

  Example:
    >>> is_prepared("mnist", "/nonexistent")
    False
  """
  if name in SPECS and not SPECS[name].needs_preparation:
    return True
  if name in SPECS and SPECS[name].from_idx:
    return is_complete(name, dataset_dir(name, data_dir), set(SPECS[name].splits))
  return find_prepared(name, data_dir) is not None


def manual_dir(name: str, data_dir: str | os.PathLike | None = None) -> Path:
  """``<data_dir>/downloads/manual/<name>``: where IDX files put by hand are found.

  This is TFDS's folder for files downloaded by hand, inside the data directory, so it is
  found from any working directory (``$JAXPRUNE_DATA_DIR`` or ``--config.data.data_dir``).

  Example:
    >>> manual_dir("mnist", "/data/tfds")
    PosixPath('/data/tfds/downloads/manual/mnist')
  """
  return resolve_data_dir(data_dir) / "downloads" / "manual" / name


def source_dirs(name: str, data_dir: str | os.PathLike | None = None) -> list[Path]:
  """The folders searched, in order, for the IDX files of ``name`` (none relative to the cwd).

  `manual_dir` of the data directory, then for MNIST ``../shared/data/mnist`` next to the
  project checkout. Datasets jaxprune does not prepare from IDX files have none.

  Example:
    >>> [p.as_posix() for p in source_dirs("fashion_mnist", "/data/tfds")]
    ['/data/tfds/downloads/manual/fashion_mnist']
    >>> source_dirs("cifar10", "/data/tfds")
    []
  """
  if name not in SPECS or not SPECS[name].from_idx:
    return []
  found = [manual_dir(name, data_dir)]
  if name == "mnist":
    found.append((_REPO_ROOT / _SHARED_MNIST).resolve())
  return found


def find_source_dir(name: str, data_dir: str | os.PathLike | None = None) -> Path | None:
  """Returns the first of `source_dirs` that holds every IDX file of ``name``, else None.

  The result does not depend on the working directory.
  """
  for candidate in source_dirs(name, data_dir):
    if has_idx_files(get_spec(name), candidate):
      return candidate
  return None


def prepare_command(name: str, data_dir: str | os.PathLike | None, source: str = "DIR") -> str:
  """The shell command that prepares ``name`` in ``data_dir`` from IDX files in ``source``."""
  data_dir = resolve_data_dir(data_dir)
  return f"python -m jaxprune.data prepare {name} --from {source} --data-dir {data_dir}"


def prepare(
  name: str,
  source_dir: str | os.PathLike | None,
  data_dir: str | os.PathLike | None = None,
  *,
  download: bool = False,
  overwrite: bool = False,
) -> Path:
  """Writes the TFDS dataset ``name`` (array_record) from IDX files, without TensorFlow.

  The result is the official TFDS dataset (same name, version and features), so the
  unchanged ``tfds.data_source(name, data_dir=data_dir)`` reads it. If it is already
  prepared this does nothing, unless ``overwrite``.

  Args:
    name: ``"mnist"`` or ``"fashion_mnist"``.
    source_dir: folder with the four IDX files (plain or ``.gz``); None only with
      ``download=True``.
    data_dir: the TFDS data directory; defaults to `default_data_dir()`.
    download: with ``source_dir=None``, download the IDX files from the dataset's
      official URL (needs network access).
    overwrite: rebuild even if the dataset is already prepared, replacing what is there.

  Returns:
    The prepared dataset folder ``<data_dir>/<name>/<version>``.

  Raises:
    FileNotFoundError: if ``source_dir`` lacks an IDX file.
    ValueError: if no source is given, or a dataset in another file format is in the way.

  Example:
    prepare("mnist", "../shared/data/mnist", "/tmp/tfds")
    PosixPath('/tmp/tfds/mnist/3.0.1')
  """
  spec = _tfds_spec(name)
  folder = dataset_dir(name, data_dir)
  if source_dir is None and not download:
    raise ValueError(
      f"prepare({name!r}, source_dir=None) needs a folder with the IDX files, e.g. "
      f"prepare({name!r}, '../shared/data/mnist'), or download=True to fetch them."
    )
  if source_dir is not None:
    find_idx_files(spec, source_dir)  # Fail before touching the data directory.
  if is_prepared(name, data_dir) and not overwrite:
    return folder
  if folder.exists():
    if not overwrite:
      raise ValueError(
        f"{os.fspath(folder)!r} exists but is not a complete array_record dataset (another "
        "file format, or an interrupted preparation). Replace it with "
        f"`{prepare_command(name, data_dir)} --overwrite`."
      )
    shutil.rmtree(folder)
  resolve_data_dir(data_dir).mkdir(parents=True, exist_ok=True)
  builder = make_builder(spec, resolve_data_dir(data_dir), source_dir)
  with tempfile.TemporaryDirectory(prefix="jaxprune-downloads-") as downloads:
    import tensorflow_datasets as tfds  # heavy; only preparing a dataset needs it

    config = tfds.download.DownloadConfig(try_download_gcs=False)
    builder.download_and_prepare(download_dir=downloads, download_config=config)
  return folder


def ensure_prepared(
  name: str,
  data_dir: str | os.PathLike | None = None,
  source_dir: str | os.PathLike | None = None,
  *,
  download: bool = False,
) -> None:
  """Makes sure ``name`` is prepared in ``data_dir``, from local files, failing fast otherwise.

  In order: return if prepared; else prepare from ``source_dir`` or from the first of
  `source_dirs` that holds the IDX files (``<data_dir>/downloads/manual/<name>``, and for
  MNIST ``../shared/data/mnist`` next to the checkout; never relative to the working
  directory); else download if ``download=True``; else raise at once with the command
  that prepares it.

  Args:
    name: the dataset name.
    data_dir: the TFDS data directory; defaults to `default_data_dir()`.
    source_dir: folder with the IDX files, if any.
    download: allow downloading the IDX files from the official URL.

  Raises:
    DatasetNotPreparedError: (a `FileNotFoundError`) if the dataset is not prepared and
      no source was found; the message shows the command to run.

  Example:
    ensure_prepared("mnist", "/tmp/tfds", source_dir="../shared/data/mnist")
  """
  if is_prepared(name, data_dir):
    return
  if not get_spec(name, data_dir).from_idx:
    _ensure_tfds(name, data_dir, download=download)
    return
  source = Path(source_dir) if source_dir is not None else find_source_dir(name, data_dir)
  if source is not None or download:
    prepare(name, source, data_dir, download=download and source is None)
    return
  looked = f" (looked in {', '.join(os.fspath(p) for p in source_dirs(name, data_dir))})"
  raise DatasetNotPreparedError(
    f"Dataset {name!r} is not prepared in {os.fspath(resolve_data_dir(data_dir))!r} and no IDX "
    f"files were found{looked}. Prepare it from the four IDX "
    f"files once:\n\n  {prepare_command(name, data_dir)}\n\nor, in Python, "
    f"jaxprune.data.ensure_prepared({name!r}, data_dir, source_dir='DIR'); to download "
    f"instead (needs network access), pass download=True."
  )


def build_command(name: str, data_dir: str | os.PathLike | None) -> str:
  """The shell command that prepares a TFDS dataset in the array_record format."""
  return f"tfds build {name} --file_format=array_record --data_dir={resolve_data_dir(data_dir)}"


def _ensure_tfds(name: str, data_dir: str | os.PathLike | None, *, download: bool) -> None:
  """Prepares a TFDS dataset with its own builder if ``download``, else fails at once."""
  import tensorflow_datasets as tfds  # heavy; only preparing a dataset needs it

  if download:
    where = os.fspath(resolve_data_dir(data_dir))
    builder = tfds.builder(name, data_dir=where, file_format="array_record")
    builder.download_and_prepare()
    return
  other = [
    f"{v.name} ({(read_info(v) or {}).get('fileFormat', 'no dataset_info.json')})"
    for v in versions(name, data_dir)
  ]
  found = (
    f" Found version(s) {other}, which jaxprune cannot read: it needs the array_record "
    "format and every shard (convert with `tfds convert_format`)."
    if other
    else ""
  )
  manual = (
    " ImageNet must be downloaded by hand first (see the TFDS catalog page of "
    f"{name!r} for where its archives go, `--manual_dir`)."
    if name.startswith("imagenet2012")
    else ""
  )
  raise DatasetNotPreparedError(
    f"Dataset {name!r} is not prepared in {os.fspath(resolve_data_dir(data_dir))!r}.{found} "
    f"Prepare it once where the network is reachable:\n\n  {build_command(name, data_dir)}\n\n"
    f"{manual}or point the run at a data directory that has it, e.g. a bucket: "
    "--config.data.data_dir=gs://BUCKET/tensorflow_datasets. To let the run download and "
    "prepare it itself, pass --config.data.download=True."
  )
