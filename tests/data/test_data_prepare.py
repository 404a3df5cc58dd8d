"""Offline preparation: IDX files -> the TFDS `mnist` dataset, read back by `tfds.data_source`."""

import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxprune.data import (
  DatasetNotPreparedError,
  ensure_prepared,
  is_prepared,
  load,
  prepare,
  read_idx,
)
from jaxprune.data import preparation as preparation_lib
from jaxprune.data.__main__ import main as cli_main
from jaxprune.data.builders import make_builder
from jaxprune.data.specs import SPECS

REAL_MNIST = Path(__file__).parents[2].parent / "shared" / "data" / "mnist"


def _by_image(images: np.ndarray, labels: np.ndarray) -> dict[bytes, int]:
  return {im.tobytes(): int(lab) for im, lab in zip(images, labels, strict=True)}


def test_data_source_reads_back_exactly_the_idx_examples(prepared_mnist):
  data_dir, arrays = prepared_mnist
  sources = tfds.data_source("mnist", data_dir=data_dir, download=False)
  assert set(sources) == {"train", "test"}
  for split, (images, labels) in arrays.items():
    source = sources[split]
    assert len(source) == len(labels)
    expected = _by_image(images, labels)
    seen = {}
    for i in range(len(source)):
      record = source[i]
      assert record["image"].shape == (28, 28, 1) and record["image"].dtype == np.uint8
      seen[record["image"][..., 0].tobytes()] = int(record["label"])
    assert seen == expected


def test_prepared_dataset_has_the_official_name_version_and_features(prepared_mnist):
  data_dir, _ = prepared_mnist
  builder = tfds.builder("mnist", data_dir=data_dir)
  assert builder.is_prepared()
  assert str(builder.info.version) == str(tfds.builder_cls("mnist").VERSION) == "3.0.1"
  features = builder.info.features
  assert features["image"].shape == (28, 28, 1) and features["image"].np_dtype == np.uint8
  assert features["label"].num_classes == 10
  assert builder.info.file_format.value == "array_record"
  assert builder.info.splits["train"].num_examples == 50
  assert builder.info.splits["test"].num_examples == 20


def test_fashion_mnist_keeps_the_official_label_names(tmp_path, write_mnist_like):
  arrays = write_mnist_like(tmp_path / "idx", sizes=(("train", 12), ("test", 6)), seed=1)
  prepare("fashion_mnist", tmp_path / "idx", tmp_path / "tfds")
  builder = tfds.builder("fashion_mnist", data_dir=tmp_path / "tfds")
  assert builder.info.features["label"].names[0] == "T-shirt/top"
  record = tfds.data_source("fashion_mnist", split="test", data_dir=tmp_path / "tfds")[0]
  images, labels = arrays["test"]
  assert _by_image(images, labels)[record["image"][..., 0].tobytes()] == record["label"]


def test_is_prepared_tracks_the_files(prepared_mnist, tmp_path):
  data_dir, _ = prepared_mnist
  assert is_prepared("mnist", data_dir)
  assert not is_prepared("mnist", tmp_path / "empty")
  assert not is_prepared("fashion_mnist", data_dir)
  shard = next((data_dir / "mnist" / "3.0.1").glob("mnist-test.array_record-*"))
  shard.unlink()
  assert not is_prepared("mnist", data_dir)


def test_prepare_again_is_a_no_op_and_overwrite_rebuilds(
  prepared_mnist, tmp_path, write_mnist_like
):
  data_dir, _ = prepared_mnist
  info = data_dir / "mnist" / "3.0.1" / "dataset_info.json"
  before = info.stat().st_mtime_ns
  other = write_mnist_like(tmp_path / "other", sizes=(("train", 8), ("test", 4)), seed=7)
  prepare("mnist", tmp_path / "other", data_dir)
  assert info.stat().st_mtime_ns == before
  prepare("mnist", tmp_path / "other", data_dir, overwrite=True)
  source = tfds.data_source("mnist", split="test", data_dir=data_dir)
  assert len(source) == 4
  images, labels = other["test"]
  assert _by_image(images, labels)[source[0]["image"][..., 0].tobytes()] == source[0]["label"]


def test_an_incomplete_dataset_in_the_way_asks_for_overwrite(synthetic_mnist, tmp_path):
  source, _ = synthetic_mnist
  folder = tmp_path / "tfds" / "mnist" / "3.0.1"
  folder.mkdir(parents=True)
  (folder / "dataset_info.json").write_text('{"fileFormat": "tfrecord", "splits": []}')
  with pytest.raises(ValueError, match="--overwrite"):
    prepare("mnist", source, tmp_path / "tfds")
  prepare("mnist", source, tmp_path / "tfds", overwrite=True)
  assert is_prepared("mnist", tmp_path / "tfds")


def test_missing_idx_file_is_named(synthetic_mnist, tmp_path):
  source, _ = synthetic_mnist
  (source / "t10k-labels-idx1-ubyte").unlink()
  with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
    prepare("mnist", source, tmp_path / "tfds")
  assert not (tmp_path / "tfds").exists()


def test_unprepared_fails_fast_with_the_command(tmp_path, monkeypatch):
  # No ../shared/data/mnist next to the working directory or the checkout.
  monkeypatch.chdir(tmp_path)
  monkeypatch.setattr(preparation_lib, "_REPO_ROOT", tmp_path / "checkout")
  data_dir = tmp_path / "tfds"
  for name in ("mnist", "fashion_mnist"):
    assert not is_prepared(name, data_dir)
    start = time.perf_counter()
    with pytest.raises(DatasetNotPreparedError) as info:
      ensure_prepared(name, data_dir)
    assert time.perf_counter() - start < 5
    assert isinstance(info.value, FileNotFoundError)
    command = f"python -m jaxprune.data prepare {name} --from DIR --data-dir {data_dir}"
    assert command in str(info.value)
    start = time.perf_counter()
    with pytest.raises(DatasetNotPreparedError, match="prepare"):
      load(name, "train", data_dir=data_dir)
    assert time.perf_counter() - start < 5
  assert not (data_dir / "mnist").exists()


def test_default_data_dir_follows_the_environment(tmp_path, monkeypatch):
  monkeypatch.setenv("JAXPRUNE_DATA_DIR", str(tmp_path / "env"))
  assert preparation_lib.default_data_dir() == tmp_path / "env"
  assert preparation_lib.dataset_dir("mnist") == tmp_path / "env" / "mnist" / "3.0.1"
  monkeypatch.delenv("JAXPRUNE_DATA_DIR")
  assert preparation_lib.default_data_dir().name == "tensorflow_datasets"


def test_ensure_prepared_uses_the_source_dir(synthetic_mnist, tmp_path):
  source, arrays = synthetic_mnist
  ensure_prepared("mnist", tmp_path / "tfds", source_dir=source)
  assert is_prepared("mnist", tmp_path / "tfds")
  assert len(tfds.data_source("mnist", split="train", data_dir=tmp_path / "tfds")) == 50


def test_shared_mnist_is_found_next_to_the_checkout_never_next_to_the_working_directory(
  tmp_path, monkeypatch, write_mnist_like
):
  write_mnist_like(tmp_path / "shared" / "data" / "mnist", sizes=(("train", 6), ("test", 3)))
  (tmp_path / "work").mkdir()
  (tmp_path / "other" / "deep").mkdir(parents=True)
  # ../shared/data/mnist is next to the working directory only: not a source.
  monkeypatch.chdir(tmp_path / "work")
  monkeypatch.setattr(preparation_lib, "_REPO_ROOT", tmp_path / "elsewhere" / "checkout")
  assert preparation_lib.find_source_dir("mnist", tmp_path / "tfds") is None
  with pytest.raises(DatasetNotPreparedError, match="looked in"):
    ensure_prepared("mnist", tmp_path / "tfds")
  # Next to the checkout it is found from any working directory.
  monkeypatch.setattr(preparation_lib, "_REPO_ROOT", tmp_path / "checkout")
  monkeypatch.chdir(tmp_path / "other" / "deep")
  assert preparation_lib.find_source_dir("mnist") == tmp_path / "shared" / "data" / "mnist"
  ensure_prepared("mnist", tmp_path / "tfds")
  assert len(tfds.data_source("mnist", split="test", data_dir=tmp_path / "tfds")) == 3


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_idx_files_in_the_data_dirs_manual_folder_prepare_from_any_working_directory(
  tmp_path, monkeypatch, write_mnist_like, name
):
  data_dir = tmp_path / "tfds"
  manual = data_dir / "downloads" / "manual" / name
  write_mnist_like(manual, sizes=(("train", 6), ("test", 3)))
  monkeypatch.setattr(preparation_lib, "_REPO_ROOT", tmp_path / "checkout")
  (tmp_path / "anywhere").mkdir()
  monkeypatch.chdir(tmp_path / "anywhere")
  monkeypatch.setenv("JAXPRUNE_DATA_DIR", str(data_dir))
  assert preparation_lib.manual_dir(name) == manual
  assert preparation_lib.source_dirs(name, data_dir)[0] == manual
  assert preparation_lib.find_source_dir(name) == manual
  ensure_prepared(name)  # the data directory comes from the environment
  assert is_prepared(name, data_dir)
  assert len(tfds.data_source(name, split="test", data_dir=data_dir)) == 3
  assert not (tmp_path / "anywhere" / "downloads").exists()  # nothing next to the cwd


def test_command_line_prepares_from_the_manual_folder_without_from(
  tmp_path, monkeypatch, write_mnist_like, capsys
):
  data_dir = tmp_path / "tfds"
  monkeypatch.setattr(preparation_lib, "_REPO_ROOT", tmp_path / "checkout")
  monkeypatch.chdir(tmp_path)
  assert cli_main(["prepare", "mnist", "--data-dir", str(data_dir)]) == 2
  err = capsys.readouterr().err
  assert f"looked in {data_dir / 'downloads' / 'manual' / 'mnist'}" in err and "--from" in err
  write_mnist_like(data_dir / "downloads" / "manual" / "mnist", sizes=(("train", 6), ("test", 3)))
  assert cli_main(["prepare", "mnist", "--data-dir", str(data_dir)]) == 0
  assert is_prepared("mnist", data_dir)


def test_command_line_prepares_and_reports(synthetic_mnist, tmp_path, capsys):
  source, _ = synthetic_mnist
  data_dir = tmp_path / "tfds"
  assert cli_main(["status", "mnist", "--data-dir", str(data_dir)]) == 1
  assert cli_main(["prepare", "mnist", "--from", str(source), "--data-dir", str(data_dir)]) == 0
  assert cli_main(["status", "mnist", "--data-dir", str(data_dir)]) == 0
  assert "mnist: prepared" in capsys.readouterr().out
  code = cli_main(["prepare", "mnist", "--from", str(tmp_path / "nowhere"), "--data-dir", "x"])
  assert code == 2
  assert "lacks the IDX files" in capsys.readouterr().err


def test_download_route_asks_for_the_official_urls(synthetic_mnist, tmp_path):
  source, arrays = synthetic_mnist
  requested = {}

  class FakeDownloads:
    def download(self, urls):
      requested.update(urls)
      names = {url.rsplit("/", 1)[1] for url in urls.values()}
      local = {name: source / name for name in names}
      local.update({n: source / n.removesuffix(".gz") for n in names if not local[n].exists()})
      return {key: local[url.rsplit("/", 1)[1]] for key, url in urls.items()}

  builder = make_builder(SPECS["mnist"], tmp_path / "tfds", source_dir=None)
  generators = builder._split_generators(FakeDownloads())
  base = "https://storage.googleapis.com/cvdf-datasets/mnist/"
  assert sorted(requested.values()) == sorted(
    base + f"{p}-{k}-idx{d}-ubyte.gz"
    for p in ("train", "t10k")
    for k, d in (("images", 3), ("labels", 1))
  )
  key, example = next(iter(generators["test"]))
  images, labels = arrays["test"]
  assert key == 0 and example["label"] == labels[0]


@pytest.mark.slow
@pytest.mark.skipif(not REAL_MNIST.is_dir(), reason=f"{REAL_MNIST} is absent")
def test_real_mnist_prepares_and_matches_the_idx_files(tmp_path):
  data_dir = tmp_path / "tfds"
  start = time.perf_counter()
  prepare("mnist", REAL_MNIST, data_dir)
  print(f"prepared real MNIST in {time.perf_counter() - start:.1f} s")
  sources = tfds.data_source("mnist", data_dir=data_dir, download=False)
  assert len(sources["train"]) == 60_000 and len(sources["test"]) == 10_000
  for split, prefix in (("train", "train"), ("test", "t10k")):
    images = read_idx(REAL_MNIST / f"{prefix}-images-idx3-ubyte.gz")
    labels = read_idx(REAL_MNIST / f"{prefix}-labels-idx1-ubyte.gz")
    first = sources[split][0]
    matches = np.flatnonzero((images == first["image"][..., 0]).all(axis=(1, 2)))
    assert len(matches) >= 1 and labels[matches[0]] == first["label"]
    start = time.perf_counter()
    dataset = load("mnist", split, data_dir=data_dir)
    print(f"read {split} into memory in {time.perf_counter() - start:.1f} s")
    raw_images, raw_labels = dataset.raw(np.arange(dataset.num_examples))
    ours = sorted(
      zip(map(bytes, raw_images.reshape(len(raw_images), -1)), raw_labels.tolist(), strict=True)
    )
    theirs = sorted(zip(map(bytes, images.reshape(len(images), -1)), labels.tolist(), strict=True))
    assert ours == theirs


def test_images_of_the_wrong_size_are_refused(tmp_path, write_mnist_like):
  source = tmp_path / "idx"
  write_mnist_like(source, sizes=(("train", 4), ("test", 2)))
  header = bytes([0, 0, 0x08, 3]) + (3).to_bytes(4, "big") + (32).to_bytes(4, "big") * 2
  (source / "t10k-images-idx3-ubyte").write_bytes(header + bytes(3 * 32 * 32))
  with pytest.raises(ValueError, match=r"images \[n, 28, 28\].*got shapes \(3, 32, 32\)"):
    prepare("mnist", source, tmp_path / "tfds")
  assert not is_prepared("mnist", tmp_path / "tfds")
