"""Text for language models: byte tokens of ``shakespeare`` or of a user's own text.

Tokens are the bytes of the text (vocabulary 256, ``spec.num_classes == 256``), so no
tokenizer is needed. Two sources:

- ``"shakespeare"``: prepared once (`jaxprune.data.shakespeare`:
  ``python -m jaxprune.data prepare shakespeare --download``), with whole plays held out
  for validation and test.
- ``"text"`` with a ``path``, or ``"text:/path"``: a user's plain-text file (split by byte
  ranges) or directory (split by file), read directly with nothing to prepare (see
  `jaxprune.data.user_text` for the exact rule).

Batches come from `jaxprune.data.text_batches`: `TextBatches` draws training windows at
random offsets, resumable by step; `text_eval_batches` covers a split with contiguous
windows. Both yield ``{"inputs": int32 [B, T], "targets": int32 [B, T]}`` (evaluation adds
a ``"mask"`` of the scored targets), with ``targets`` the ``inputs`` shifted by one token.

Example:
  >>> import jaxprune.data as jdata
  >>> import tempfile, pathlib
  >>> path = pathlib.Path(tempfile.mkdtemp()) / "poem.txt"
  >>> _ = path.write_bytes(b"Shall I compare thee to a summer's day? " * 40)
  >>> train = jdata.load_text("text", "train", path=path)
  >>> train.num_classes, train.num_tokens
  (256, 1440)
  >>> batch = next(jdata.TextBatches(train, batch_size=4, seq_len=16, seed=0))
  >>> batch["inputs"].shape, batch["targets"].dtype
  ((4, 16), dtype('int32'))
  >>> test = jdata.load_text("text", "test", path=path)
  >>> sum(int(b["mask"].sum()) for b in jdata.text_eval_batches(test, 8, 16))  # n - 1
  79
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from jaxprune.data import shakespeare
from jaxprune.data.specs import SPECS, closest_name
from jaxprune.data.user_text import read_user_split, user_splits

VOCAB_SIZE = 256
USER_TEXT = "text"
TEXT_NAMES = (shakespeare.NAME, USER_TEXT)
DEFAULT_FRACTION = 0.05  # of the bytes of a user's text held out for validation, and for test

TextBatch = dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class TextSpec:
  """Static description of a text dataset.

  Attributes:
    name: ``"shakespeare"`` or ``"text"``.
    splits: bytes (= tokens) per split.
    documents: the works or files of each split (empty for a single file's byte ranges).
    source: the prepared folder, or the user's file or directory.
    num_classes: the vocabulary size, 256 (byte tokens).
    test_split: the split evaluated as the test set.
  """

  name: str
  splits: dict[str, int]
  documents: dict[str, tuple[str, ...]]
  source: str
  num_classes: int = VOCAB_SIZE
  test_split: str = "test"

  @property
  def vocab_size(self) -> int:
    return self.num_classes


class TextDataset:
  """One split of a text dataset: its byte tokens, held in memory.

  Attributes:
    spec: the `TextSpec`.
    split: ``"train"``, ``"validation"`` or ``"test"``.
    tokens: uint8 ``[num_tokens]``.
  """

  def __init__(self, spec: TextSpec, split: str, tokens: np.ndarray):
    self.spec = spec
    self.split = split
    self.tokens = tokens

  @property
  def name(self) -> str:
    return self.spec.name

  @property
  def num_tokens(self) -> int:
    return int(self.tokens.shape[0])

  @property
  def num_classes(self) -> int:
    return self.spec.num_classes

  def windows(self, offsets: np.ndarray, seq_len: int) -> TextBatch:
    """The windows of ``seq_len + 1`` tokens starting at ``offsets``, as inputs and targets.

    Example:
      >>> spec = TextSpec("text", {"train": 6}, {}, "")
      >>> ds = TextDataset(spec, "train", np.frombuffer(b"abcdef", np.uint8))
      >>> w = ds.windows(np.array([0, 2]), seq_len=3)
      >>> bytes(w["inputs"][1].astype(np.uint8)), bytes(w["targets"][1].astype(np.uint8))
      (b'cde', b'def')
    """
    offsets = np.asarray(offsets, np.int64)
    window = np.asarray(self.tokens[offsets[:, None] + np.arange(seq_len + 1)], np.int32)
    return {"inputs": window[:, :-1], "targets": window[:, 1:]}

  def num_windows(self, seq_len: int) -> int:
    """Evaluation windows of ``seq_len`` targets that cover the split: ``ceil((n - 1) / T)``."""
    return -(-(self.num_tokens - 1) // seq_len)

  def scored_tokens(self, seq_len: int, max_windows: int | None = None) -> int:
    """Targets scored by `text_eval_batches`: every token but the first, or fewer if limited.

    Example:
      >>> spec = TextSpec("text", {"test": 11}, {}, "")
      >>> ds = TextDataset(spec, "test", np.zeros(11, np.uint8))
      >>> ds.num_windows(4), ds.scored_tokens(4), ds.scored_tokens(4, max_windows=2)
      (3, 10, 8)
    """
    if max_windows is None or max_windows >= self.num_windows(seq_len):
      return self.num_tokens - 1
    return max_windows * seq_len

  def __len__(self) -> int:
    return self.num_tokens

  def __repr__(self) -> str:
    return f"TextDataset({self.name!r}, split={self.split!r}, num_tokens={self.num_tokens})"


def parse_name(name: str, path: str | os.PathLike | None = None) -> tuple[str, Path | None]:
  """Splits ``"text:/path"`` into ``("text", Path("/path"))``; checks the name and the path.

  Raises:
    ValueError: for an unknown name (with the closest known one), ``"text"`` without a
      path, or a path given twice or to ``"shakespeare"``.

  Example:
    >>> parse_name("text:/data/books")
    ('text', PosixPath('/data/books'))
    >>> parse_name("shakespeare")
    ('shakespeare', None)
  """
  base, _, inline = name.partition(":")
  if base not in TEXT_NAMES:
    close = closest_name(base, [*TEXT_NAMES, *SPECS])
    hint = f" Did you mean {close!r}?" if close else ""
    raise ValueError(
      f"Unknown text dataset {name!r}: expected one of {list(TEXT_NAMES)} (or 'text:PATH')."
      f"{hint} E.g. jaxprune.data.load_text('shakespeare', 'train') or "
      "jaxprune.data.load_text('text', 'train', path='my_corpus/')."
    )
  if inline and path is not None:
    raise ValueError(
      f"The text path is given twice: in the name {name!r} and as path={os.fspath(path)!r}; "
      f"pass one, e.g. load_text('text', 'train', path={inline!r})."
    )
  path = Path(inline) if inline else (Path(path) if path is not None else None)
  if base == shakespeare.NAME and path is not None:
    raise ValueError(
      f"'shakespeare' reads its prepared files, so path={os.fspath(path)!r} would be ignored; "
      "use load_text('shakespeare', 'train'), or load_text('text', 'train', path=...) for "
      "your own text."
    )
  if base == USER_TEXT and path is None:
    raise ValueError(
      "The 'text' dataset needs the path of a plain-text file or directory, e.g. "
      "load_text('text', 'train', path='corpus.txt') or load_text('text:corpus/', 'train')."
    )
  return base, path


def _shakespeare_spec(data_dir: str | os.PathLike | None) -> TextSpec:
  info = shakespeare.read_info(data_dir)
  splits = info["splits"]
  return TextSpec(
    shakespeare.NAME,
    {s: int(e["bytes"]) for s, e in splits.items()},
    {s: tuple(e["works"]) for s, e in splits.items()},
    os.fspath(shakespeare.shakespeare_dir(data_dir)),
  )


def text_spec(
  name: str,
  *,
  path: str | os.PathLike | None = None,
  data_dir: str | os.PathLike | None = None,
  validation_fraction: float | None = None,
  test_fraction: float | None = None,
) -> TextSpec:
  """The `TextSpec` of a text dataset: bytes and documents per split, vocabulary 256.

  Takes the arguments of `load_text` (without the split) and reads no text.

  Raises:
    ValueError: see `parse_name`; fractions given for ``"shakespeare"``, or a data
      directory for ``"text"``.
    DatasetNotPreparedError: if ``"shakespeare"`` is not prepared.

  Example:
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "notes.txt"
    >>> _ = path.write_bytes(b"x" * 1000)
    >>> spec = text_spec("text", path=path, validation_fraction=0.1)
    >>> spec.num_classes, spec.splits
    (256, {'train': 850, 'validation': 100, 'test': 50})
  """
  base, where = parse_name(name, path)
  if base == shakespeare.NAME:
    given = {"validation_fraction": validation_fraction, "test_fraction": test_fraction}
    given = {k: v for k, v in given.items() if v is not None}
    if given:
      raise ValueError(
        f"'shakespeare' holds out fixed plays, so {given} would be ignored; drop them, or "
        "use load_text('text', split, path=..., validation_fraction=...) for your own text."
      )
    return _shakespeare_spec(data_dir)
  if data_dir is not None:
    raise ValueError(
      f"data_dir={os.fspath(data_dir)!r} would be ignored: 'text' reads the files at "
      f"{os.fspath(where)!r} directly; drop data_dir, e.g. load_text('text', 'train', "
      f"path={os.fspath(where)!r})."
    )
  sizes, documents = user_splits(where, *_fractions(validation_fraction, test_fraction))
  return TextSpec(USER_TEXT, sizes, documents, os.fspath(where))


def _fractions(validation: float | None, test: float | None) -> tuple[float, float]:
  return (
    DEFAULT_FRACTION if validation is None else float(validation),
    DEFAULT_FRACTION if test is None else float(test),
  )


def load_text(
  name: str,
  split: str,
  *,
  path: str | os.PathLike | None = None,
  data_dir: str | os.PathLike | None = None,
  validation_fraction: float | None = None,
  test_fraction: float | None = None,
) -> TextDataset:
  """Loads one split of a text dataset as byte tokens.

  Args:
    name: ``"shakespeare"`` (prepared in ``data_dir``, see `jaxprune.data.shakespeare`),
      ``"text"`` with ``path``, or ``"text:PATH"``.
    split: ``"train"``, ``"validation"`` or ``"test"``.
    path: a plain-text file or directory, for ``"text"``.
    data_dir: where ``"shakespeare"`` is prepared; defaults to `default_data_dir()`. Not
      for ``"text"``, which reads ``path`` directly.
    validation_fraction: share of a user's text held out for validation (default 0.05).
    test_fraction: share of a user's text held out for test (default 0.05).

  Returns:
    A `TextDataset` with uint8 tokens.

  Raises:
    ValueError: for an unknown name or split, or a setting that would be ignored.
    DatasetNotPreparedError: if ``"shakespeare"`` is not prepared; the message shows the
      command that prepares it.

  Example:
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> for i in range(4):
    ...   _ = (folder / f"part{i}.txt").write_text(f"text number {i}\\n")
    >>> test = load_text("text", "test", path=folder)
    >>> test.spec.documents["test"], bytes(test.tokens)
    (('part1.txt',), b'text number 1\\n')
  """
  spec = text_spec(
    name,
    path=path,
    data_dir=data_dir,
    validation_fraction=validation_fraction,
    test_fraction=test_fraction,
  )
  if split not in spec.splits:
    raise ValueError(
      f"Text dataset {spec.name!r} has no split {split!r}; expected one of "
      f"{list(spec.splits)}, e.g. load_text({name!r}, 'validation')."
    )
  if spec.name == shakespeare.NAME:
    tokens = np.fromfile(Path(spec.source) / f"{split}.bin", np.uint8)
  else:
    fractions = _fractions(validation_fraction, test_fraction)
    tokens = read_user_split(Path(spec.source), split, spec.documents, *fractions)
  return TextDataset(spec, split, tokens)
