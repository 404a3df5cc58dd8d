"""Tests of TFDS datasets through grain: mock CIFAR-10 / ImageNet, augmentation, resuming."""

import time
from pathlib import Path

import numpy as np
import pytest

import jaxprune.data as jdata
from jaxprune.data import augment
from jaxprune.data.specs import SPECS

REAL_MNIST = Path(__file__).resolve().parents[3] / "shared" / "data" / "mnist"
if not REAL_MNIST.is_dir():
  REAL_MNIST = Path("/work/shared/data/mnist")


def _take(it, n):
  return [next(it) for _ in range(n)]


def test_mock_cifar10_loads_in_memory_with_per_channel_normalisation(mock_tfds):
  data_dir = mock_tfds("cifar10", 40)
  train = jdata.load("cifar10", "train", data_dir=data_dir)
  assert (train.num_examples, train.image_shape, train.num_classes) == (40, (32, 32, 3), 10)
  assert train.in_memory and train.augment == "cifar"
  raw, _ = train.raw(np.arange(4))
  spec = SPECS["cifar10"]
  expected = (raw / 255.0 - np.asarray(spec.mean)) / np.asarray(spec.std)
  np.testing.assert_allclose(train[np.arange(4)]["image"], expected, atol=1e-5)


def test_mock_imagenet_streams_images_of_any_size_resized_and_cropped(mock_tfds):
  data_dir = mock_tfds("imagenet2012", 12)
  val = jdata.load("imagenet2012", "validation", data_dir=data_dir, image_size=16)
  assert not val.in_memory
  raw, _ = val.raw(np.arange(6))
  assert len({r.shape for r in raw}) > 1  # the mock's images really differ in size
  batch = val[np.arange(6)]
  assert batch["image"].shape == (6, 16, 16, 3) and batch["image"].dtype == np.float32
  train = jdata.StreamedBatches(
    jdata.load("imagenet2012", "train", data_dir=data_dir, image_size=16), 4, seed=1
  )
  first, second = _take(train, 2)
  assert first["image"].shape == (4, 16, 16, 3)
  assert not np.array_equal(first["image"], second["image"])
  train.close()


def test_an_unprepared_dataset_fails_at_once_with_the_tfds_build_command(tmp_path):
  start = time.perf_counter()
  with pytest.raises(jdata.DatasetNotPreparedError) as info:
    jdata.load("cifar10", "train", data_dir=tmp_path)
  assert time.perf_counter() - start < 5.0
  message = str(info.value)
  assert f"tfds build cifar10 --file_format=array_record --data_dir={tmp_path}" in message
  assert "gs://" in message and "data.download=True" in message
  with pytest.raises(jdata.DatasetNotPreparedError, match="manual_dir"):
    jdata.load("imagenet2012", "train", data_dir=tmp_path)


def test_a_dataset_in_another_file_format_says_which_and_how_to_convert(tmp_path):
  folder = tmp_path / "cifar10" / "3.0.2"
  folder.mkdir(parents=True)
  (folder / "dataset_info.json").write_text('{"fileFormat": "tfrecord", "splits": []}')
  with pytest.raises(jdata.DatasetNotPreparedError, match=r"3\.0\.2 \(tfrecord\).*convert"):
    jdata.load("cifar10", "train", data_dir=tmp_path)


def test_cifar_augmentation_crops_within_the_padding_and_flips():
  spec = SPECS["cifar10"]
  pre = augment.Preprocess(spec, "cifar", train=True)
  images = np.arange(2 * 32 * 32 * 3, dtype=np.int64).reshape(2, 32, 32, 3) % 251
  images = images.astype(np.uint8)
  draws = {"offset": np.array([[4, 4], [0, 8]]), "flip": np.array([True, False])}
  out = pre.apply(images, draws)
  scale, shift = spec.normalisation()
  # Offset (4, 4) is the image itself; flipped left-right.
  np.testing.assert_allclose(out[0], images[0, :, ::-1] * scale - shift, rtol=1e-6)
  # Offset (0, 8): 4 rows of zero padding on top, columns shifted by 4 to the left.
  np.testing.assert_allclose(out[1, :4], np.broadcast_to(-shift, (4, 32, 3)), rtol=1e-6)
  np.testing.assert_allclose(out[1, 4:, :28], images[1, :28, 4:] * scale - shift, rtol=1e-6)
  np.testing.assert_allclose(out[1, 4:, 28:], np.broadcast_to(-shift, (28, 4, 3)), rtol=1e-6)
  evaluation = augment.Preprocess(spec, "cifar", train=False)
  np.testing.assert_allclose(evaluation(images), images * scale - shift, rtol=1e-6)
  with pytest.raises(ValueError, match="'cutout'.*--config.data.augment=cifar"):
    augment.Preprocess(spec, "cutout", train=True)


def test_imagenet_crops_stay_inside_the_image_and_eval_is_the_centre():
  spec = SPECS["imagenet2012"]
  rng = np.random.default_rng(0)
  pre = augment.Preprocess(spec, "imagenet", train=True)
  draws = pre.draw(rng, 200)
  for i in range(200):
    left, top, right, bottom = augment._crop_box(300, 500, {k: v[i] for k, v in draws.items()})
    assert 0 <= left < right <= 500 and 0 <= top < bottom <= 300
    area = (right - left) * (bottom - top) / (300 * 500)
    assert 0.07 <= area <= 1.0
  # A constant image stays constant through crop, resize and flip.
  image = np.full((300, 500, 3), 200, np.uint8)
  scale, shift = spec.normalisation()
  out = pre(np.stack([image]), rng)
  np.testing.assert_allclose(out, np.broadcast_to(200 * scale - shift, out.shape), rtol=1e-5)
  # Evaluation: resize the shorter side to 256, centre crop 224 of a 256x512 image with a
  # bright centre column band: the crop keeps the centre.
  image = np.zeros((256, 512, 3), np.uint8)
  image[:, 256 - 112 : 256 + 112] = 255
  out = augment.Preprocess(spec, "imagenet", train=False)([image])
  np.testing.assert_allclose(
    out[0, :, 2:-2], np.broadcast_to(255 * scale - shift, (224, 220, 3)), rtol=1e-5
  )


def test_streamed_batches_follow_the_batch_iterator_order_and_resume_bit_for_bit():
  train = jdata.load("digits", "train")
  reference = jdata.BatchIterator(train, 100, seed=3)
  streamed = jdata.StreamedBatches(train, 100, seed=3)
  for _ in range(20):  # past the end of the first epoch (14 batches)
    a, b = next(reference), next(streamed)
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["label"], b["label"])
  assert streamed.get_state() == reference.get_state() == {"epoch": 1, "index": 600}
  streamed.close()


def test_groups_of_batches_give_the_batches_one_at_a_time_and_resume_inside_a_group(mock_tfds):
  data_dir = mock_tfds("cifar10", 64)
  train = jdata.load("cifar10", "train", data_dir=data_dir)
  host = jdata.HostBatches(train, 8, seed=2)
  one = jdata.StreamedBatches(train, 8, seed=2, group_bytes=1)
  three = jdata.StreamedBatches(train, 8, seed=2, group_bytes=3 * 8 * 32 * 32 * 3)
  assert (one.group_size, three.group_size) == (1, 3)
  for k in range(11):  # crosses groups and the epoch boundary at 8
    a, b = next(one), next(three)
    assert a["image"].dtype == np.float32 and a["label"].dtype == np.int32
    for key in ("image", "label"):
      np.testing.assert_array_equal(a[key], host[k][key])
      np.testing.assert_array_equal(b[key], host[k][key])
  three.set_state({"epoch": 0, "index": 40})  # batch 5, inside the second group
  np.testing.assert_array_equal(next(three)["image"], host[5]["image"])
  assert three.get_state() == {"epoch": 0, "index": 48}
  raw = host.augmented(5)
  assert raw["image"].dtype == np.uint8
  np.testing.assert_array_equal(host.normalise(raw)["image"], host[5]["image"])
  one.close()
  three.close()


def test_augmented_stream_resumes_identically_and_shards_rows_over_processes(mock_tfds):
  data_dir = mock_tfds("cifar10", 64)
  train = jdata.load("cifar10", "train", data_dir=data_dir)
  whole = jdata.StreamedBatches(train, 16, seed=5, process_index=0, process_count=1)
  batches = _take(whole, 6)
  state = _take(whole, 0) or whole.get_state()
  assert state == {"epoch": 1, "index": 32}
  resumed = jdata.StreamedBatches(train, 16, seed=5, process_index=0, process_count=1)
  resumed.set_state({"epoch": 0, "index": 48})
  np.testing.assert_array_equal(next(resumed)["image"], batches[3]["image"])
  halves = [
    jdata.StreamedBatches(train, 16, seed=5, process_index=p, process_count=2) for p in (0, 1)
  ]
  for k in range(6):
    parts = [next(h) for h in halves]
    np.testing.assert_array_equal(np.concatenate([p["image"] for p in parts]), batches[k]["image"])
  # Augmentation is on: two epochs see the same examples, differently cropped.
  assert not np.array_equal(batches[0]["image"], batches[4]["image"])
  for it in (whole, resumed, *halves):
    it.close()
  with pytest.raises(ValueError, match="multiple of batch_size=16"):
    resumed.set_state({"epoch": 0, "index": 8})


def test_validation_split_of_a_streamed_dataset_reads_through(mock_tfds):
  data_dir = mock_tfds("imagenet2012", 20)
  train = jdata.load("imagenet2012", "train", data_dir=data_dir, image_size=8)
  kept, held = jdata.split_validation(train, 0.25)
  assert (kept.num_examples, held.num_examples) == (15, 5) and not held.in_memory
  assert held[np.arange(5)]["image"].shape == (5, 8, 8, 3)
  it = jdata.StreamedBatches(kept, 5, seed=0)
  assert next(it)["label"].shape == (5,)
  it.close()


@pytest.mark.slow
@pytest.mark.skipif(not REAL_MNIST.is_dir(), reason=f"{REAL_MNIST} is absent")
def test_grain_workers_give_the_in_process_batches_on_real_mnist(tmp_path):
  jdata.ensure_prepared("mnist", tmp_path, source_dir=REAL_MNIST)
  train = jdata.load("mnist", "train", data_dir=tmp_path)
  inline = jdata.StreamedBatches(train, 256, seed=0)
  workers = jdata.StreamedBatches(train, 256, seed=0, num_workers=2)
  for _ in range(5):
    a, b = next(inline), next(workers)
    np.testing.assert_array_equal(a["image"], b["image"])
  state = workers.get_state()
  workers.set_state(state)  # restarts the workers at the same position
  np.testing.assert_array_equal(next(workers)["label"], next(inline)["label"])
  inline.close()
  workers.close()


@pytest.mark.parametrize(
  "kwargs, match",
  [
    ({"num_workers": -1}, "num_workers >= 0"),
    ({"prefetch": 0}, "prefetch >= 1"),
    ({"group_bytes": 0}, "group_bytes >= 1"),
  ],
)
def test_streamed_batches_rejects_settings_it_cannot_use(kwargs, match):
  with pytest.raises(ValueError, match=match):
    jdata.StreamedBatches(jdata.load("digits", "train"), 32, **kwargs)
