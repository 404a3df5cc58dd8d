"""The benchmark configs (CIFAR-10 and ImageNet recipes) train a few steps on mock TFDS data.

Each test loads the real config file and changes only what a CPU test must: the data
directory (a mocked dataset), the run length, the batch size, in-process data loading,
a single compiled step and, for ImageNet, the image size.
"""

import numpy as np
import pytest

from jaxprune.train.config import load_config
from jaxprune.train.loop import train_and_evaluate

TINY = {
  "train.num_steps": 3,
  "train.batch_size": 8,
  "train.eval_batch_size": 16,
  "train.log_every_steps": 1,
  "data.num_workers": 0,
  "checkpoint.enabled": False,
  "pruning.frozen_step": False,  # one compiled step, not two (the frozen step is tested apart)
  "report.plots": False,
  "report.progress": False,
}


def _run(config_name, dataset, mock_tfds, tmp_path, num_examples=48, **changes):
  """Trains 3 steps of ``config_name`` on ``num_examples`` mock examples per split."""
  data_dir = mock_tfds(dataset, num_examples)
  config = load_config(config_name, {**TINY, "data.data_dir": data_dir, **changes})
  summary = train_and_evaluate(config, tmp_path / "run", verbose=False)
  assert summary["dataset"] == dataset and summary["steps"] == 3
  assert np.isfinite(summary["test_loss"]) and summary["notice"] is None
  return config, summary


def test_cifar10_resnet20_config_trains_on_mock_cifar10(mock_tfds, tmp_path):
  config, summary = _run("cifar10_resnet20", "cifar10", mock_tfds, tmp_path)
  assert summary["model"] == "resnet20" and summary["params_total"] == 269_722
  assert summary["test_examples"] == 48 and summary["validation_examples"] == 5
  assert config.optimizer.decay_epochs == (80.0, 120.0)


@pytest.mark.slow
def test_resnet56_by_name_with_the_same_recipe(mock_tfds, tmp_path):
  _, summary = _run(
    "cifar10_resnet20", "cifar10", mock_tfds, tmp_path, **{"model.name": "resnet56"}
  )
  assert summary["params_total"] == 853_018


@pytest.mark.slow
def test_cifar10_vgg16_config_prunes_with_snip_at_the_first_step(mock_tfds, tmp_path):
  _, summary = _run("cifar10_vgg16", "cifar10", mock_tfds, tmp_path)
  assert summary["model"] == "vgg16"
  assert summary["sparsity"] == pytest.approx(0.95, abs=1e-3)


@pytest.mark.slow
def test_imagenet_resnet50_config_trains_rigl_on_mock_imagenet(mock_tfds, tmp_path):
  config, summary = _run(
    "imagenet_resnet50", "imagenet2012", mock_tfds, tmp_path, 100, **{"data.image_size": 32}
  )
  assert summary["params_total"] == 25_557_032 and summary["sparsity"] == pytest.approx(0.8, 1e-3)
  assert (config.train.batch_size, config.optimizer.learning_rate) == (8, 1.6)
  assert summary["test_examples"] == 100  # ImageNet's validation split is its test set
  assert summary["validation_examples"] == 1  # 1% of the training split


@pytest.mark.slow
def test_imagenet_vit_b16_config_trains_on_mock_imagenet(mock_tfds, tmp_path):
  _, summary = _run(
    "imagenet_vit_b16",
    "imagenet2012",
    mock_tfds,
    tmp_path,
    num_examples=100,
    **{"data.image_size": 32, "train.batch_size": 4, "train.eval_batch_size": 8},
  )
  assert summary["model"] == "vit_b16"
