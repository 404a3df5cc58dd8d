"""A user's own plain text, split deterministically into train, validation and test.

- A file: contiguous byte ranges, train first, then validation, then test, of
  ``round(fraction * size)`` bytes each.
- A directory: whole files (every regular file below it; names starting with ``.`` are
  skipped). The files are ordered by the SHA-256 of their relative path, a fixed order that
  depends on nothing else; test takes files in that order until it holds at least its
  fraction of the bytes, then validation likewise, and the rest is train (at least three
  files are needed). Within a split the files are concatenated in path order, each followed
  by ``\\n`` if it does not end with one.

The bytes are used as they are (no decoding, no normalisation); a file with NUL bytes is
refused as not plain text.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

SPLITS = ("train", "validation", "test")


def check_fractions(validation: float, test: float) -> None:
  """Raises a `ValueError` unless both fractions are positive and sum to less than 1."""
  if not (validation > 0 and test > 0 and validation + test < 1):
    raise ValueError(
      f"validation_fraction={validation} and test_fraction={test} must be positive and sum "
      "to less than 1, e.g. load_text('text', 'train', path=..., validation_fraction=0.05, "
      "test_fraction=0.05)."
    )


def _files(folder: Path) -> list[Path]:
  files = sorted(
    p
    for p in folder.rglob("*")
    if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
  )
  if len(files) < 3:
    raise ValueError(
      f"The directory {os.fspath(folder)!r} holds {len(files)} text file(s); splitting it by "
      "file into train, validation and test needs at least 3. Pass a single file instead "
      "(split by byte ranges), e.g. load_text('text', 'train', path='corpus.txt')."
    )
  return files


def _key(folder: Path, path: Path) -> bytes:
  return hashlib.sha256(path.relative_to(folder).as_posix().encode()).digest()


def _document_bytes(path: Path) -> int:
  """Bytes of a file in its split: its size, plus the newline added if it lacks one."""
  size = path.stat().st_size
  with path.open("rb") as f:
    f.seek(max(size - 1, 0))
    return size + (f.read(1) != b"\n")


def directory_splits(folder: Path, validation: float, test: float) -> dict[str, list[Path]]:
  """The files of each split of a directory (see the module docstring)."""
  files = _files(folder)
  sizes = {p: p.stat().st_size for p in files}
  total = sum(sizes.values())
  order = sorted(files, key=lambda p: _key(folder, p))
  held: dict[str, list[Path]] = {"test": [], "validation": []}
  for split, fraction in (("test", test), ("validation", validation)):
    while order and (not held[split] or sum(sizes[p] for p in held[split]) < fraction * total):
      held[split].append(order.pop(0))
  if not order:
    raise ValueError(
      f"Holding out {test:.0%} (test) and {validation:.0%} (validation) of the bytes of "
      f"{os.fspath(folder)!r} by whole files leaves no file to train on; add files, lower "
      "the fractions, or pass a single file (split by byte ranges)."
    )
  return {
    "train": sorted(order),
    "validation": sorted(held["validation"]),
    "test": sorted(held["test"]),
  }


def file_ranges(size: int, validation: float, test: float) -> dict[str, tuple[int, int]]:
  """Byte ranges ``[start, stop)`` of a single file's splits: train, validation, test.

  Example:
    >>> file_ranges(1000, 0.05, 0.05)
    {'train': (0, 900), 'validation': (900, 950), 'test': (950, 1000)}
  """
  n_val, n_test = round(validation * size), round(test * size)
  n_train = size - n_val - n_test
  return {
    "train": (0, n_train),
    "validation": (n_train, n_train + n_val),
    "test": (n_train + n_val, size),
  }


def _check_text(path: Path, tokens: np.ndarray) -> np.ndarray:
  if (tokens == 0).any():
    raise ValueError(
      f"{os.fspath(path)!r} contains NUL bytes: it is not plain text (ASCII or UTF-8). "
      "Remove binary files from the text, or convert it first."
    )
  return tokens


def user_splits(
  path: Path, validation: float, test: float
) -> tuple[dict[str, int], dict[str, tuple[str, ...]]]:
  """Bytes and documents (relative paths; none for a file) of each split, reading no text.

  Args:
    path: a plain-text file or a directory of them.
    validation: share of the bytes held out for validation.
    test: share of the bytes held out for test.

  Raises:
    FileNotFoundError: if ``path`` does not exist.
    ValueError: for bad fractions, or a text too small to split.

  Example:
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> for name in ("a.txt", "b.txt", "c.txt", "d.txt"):
    ...   _ = (folder / name).write_text(name * 10 + "\\n")
    >>> sizes, documents = user_splits(folder, 0.05, 0.05)
    >>> sizes, documents["train"]
    ({'train': 102, 'validation': 51, 'test': 51}, ('b.txt', 'd.txt'))
  """
  check_fractions(validation, test)
  if path.is_dir():
    files = directory_splits(path, validation, test)
    sizes = {s: sum(map(_document_bytes, f)) for s, f in files.items()}
    return sizes, {s: tuple(p.relative_to(path).as_posix() for p in f) for s, f in files.items()}
  if not path.is_file():
    raise FileNotFoundError(
      f"No text file or directory at {os.fspath(path)!r}; pass the path of a plain-text "
      "file or of a directory of them, e.g. load_text('text', 'train', path='corpus.txt')."
    )
  ranges = file_ranges(path.stat().st_size, validation, test)
  if min(stop - start for start, stop in ranges.values()) < 2:
    raise ValueError(
      f"{os.fspath(path)!r} has {path.stat().st_size} bytes: too few to give every split "
      f"at least 2 (byte ranges {ranges}); use a longer text or larger fractions."
    )
  return {s: b - a for s, (a, b) in ranges.items()}, {}


def read_user_split(
  path: Path, split: str, documents: dict[str, tuple[str, ...]], validation: float, test: float
) -> np.ndarray:
  """The uint8 tokens of ``split``, given the ``documents`` found by `user_splits`."""
  if path.is_dir():
    parts = []
    for name in documents[split]:
      data = (path / name).read_bytes()
      parts.append(data if data.endswith(b"\n") else data + b"\n")
    return _check_text(path, np.frombuffer(b"".join(parts), np.uint8))
  start, stop = file_ranges(path.stat().st_size, validation, test)[split]
  return _check_text(path, np.fromfile(path, np.uint8, count=stop - start, offset=start))
