"""The benchmark configs (CIFAR-10 and ImageNet recipes) train a few steps on mock TFDS data.

Each test loads the real config file and changes only what a CPU test must: the data
directory (a mocked dataset), the run length, the batch size, in-process data loading,
a single compiled step and, for ImageNet, the image size.

The ImageNet models are checked in two parts. The real config's full model (ResNet-50,
ViT-B/16 at 224x224) is built under ``jax.eval_shape``: its parameter count, input and
output shapes and pruned kernels, without compiling or allocating 25M or 87M parameters.
The recipe (optimizer, schedule, criterion, distribution, data pipeline, the training
loop) then trains a few steps on the same architecture made shallower and narrower through
the config's own ``model.kwargs``; compiling the full depth's steps on a 2-core CPU took
most of the test suite's time and checks no code the shallower model does not run.
"""

import jax
import numpy as np
import pytest

from jaxprune.train import evaluation, experiment
from jaxprune.train.config import load_config
from jaxprune.train.loop import train_and_evaluate
from jaxprune.train.models import count_params

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


VGG16_WIDTH8 = 231_746  # 9·25,560 conv weights + 1,056 BatchNorm scales and biases + 650 head


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


def test_resnet56_by_name_with_the_same_recipe(mock_tfds):
  # The recipe's training runs in the ResNet-20 test; ResNet-56 differs only in depth, so it
  # is built abstractly (compiling its 3 steps took ~45 s of the suite).
  data_dir = mock_tfds("cifar10", 48)
  config = load_config("cifar10_resnet20", {**TINY, "data.data_dir": data_dir})
  with config.unlocked():
    config.model.name = "resnet56"
  exp = experiment.build(config, verbose=False)
  abstract = jax.eval_shape(exp.create_state)
  assert count_params(abstract.params) == 853_018 and exp.input_shape == (32, 32, 3)
  blocks = [k for k in abstract.params if k.startswith("stage")]
  assert len(blocks) == 27  # 3 stages of 9 basic blocks
  assert evaluation.num_pruned_weights(abstract.opt_state) > 0


@pytest.mark.slow(seconds=38)
def test_cifar10_vgg16_config_prunes_with_snip_at_the_first_step(mock_tfds, tmp_path):
  # All 13 conv-BN layers and 5 pools, at 1/8 of the width (the full model's parameter
  # count is checked in the model tests).
  _, summary = _run("cifar10_vgg16", "cifar10", mock_tfds, tmp_path, **{"model.kwargs.width": 8})
  assert summary["model"] == "vgg16" and summary["params_total"] == VGG16_WIDTH8
  assert summary["sparsity"] == pytest.approx(0.95, abs=1e-3)


def _full_model(config_name, mock_tfds):
  """The real config's experiment (224x224, full width and depth) and its abstract state."""
  data_dir = mock_tfds("imagenet2012", 100)
  config = load_config(config_name, {**TINY, "data.data_dir": data_dir})
  exp = experiment.build(config, verbose=False)
  abstract = jax.eval_shape(exp.create_state)
  variables = {"params": abstract.params}
  if abstract.batch_stats:
    variables["batch_stats"] = abstract.batch_stats
  images = jax.ShapeDtypeStruct((2, *exp.input_shape), np.float32)
  logits = jax.eval_shape(lambda v, x: exp.model.apply(v, x, train=False), variables, images)
  return exp, abstract, logits


def _kernel_weights(params) -> int:
  """Entries of the params with more than one axis (every conv and dense kernel)."""
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params) if len(x.shape) > 1)


def test_imagenet_resnet50_config_builds_the_full_resnet50(mock_tfds):
  exp, abstract, logits = _full_model("imagenet_resnet50", mock_tfds)
  assert exp.settings.model.name == "resnet50" and exp.input_shape == (224, 224, 3)
  assert count_params(abstract.params) == 25_557_032 and logits.shape == (2, 1000)
  # ERK covers every kernel, the first convolution and the classifier included.
  assert evaluation.num_pruned_weights(abstract.opt_state) == _kernel_weights(abstract.params)
  assert abstract.params["stem_conv"]["kernel"].shape == (7, 7, 3, 64)


def test_imagenet_vit_b16_config_builds_the_full_vit_b16(mock_tfds):
  exp, abstract, logits = _full_model("imagenet_vit_b16", mock_tfds)
  assert exp.settings.model.name == "vit_b16" and exp.input_shape == (224, 224, 3)
  assert count_params(abstract.params) == 86_567_656 and logits.shape == (2, 1000)
  assert abstract.params["pos_embed"].shape == (1, 197, 768)  # 14x14 patches + the class token
  assert sorted(k for k in abstract.params if k.startswith("block")) == sorted(
    f"block{i}" for i in range(1, 13)
  )


# The same architectures, shallower and narrower, for the training tests: ResNet-50's
# bottleneck blocks (a second block in stage 1 for an identity shortcut, a strided
# projection in each later stage); ViT-B/16's 16x16 patches, 12 heads, class token and
# dropout 0.1 in two blocks.
SMALL_RESNET50 = {"stage_sizes": (2, 1, 1, 1), "width": 16}
SMALL_VIT_B16 = {"dropout_rate": 0.1, "dim": 96, "depth": 2, "num_heads": 12, "mlp_dim": 384}


@pytest.mark.slow(seconds=65)
def test_imagenet_resnet50_config_trains_rigl_on_mock_imagenet(mock_tfds, tmp_path):
  config, summary = _run(
    "imagenet_resnet50",
    "imagenet2012",
    mock_tfds,
    tmp_path,
    100,
    **{"data.image_size": 32, "model.kwargs": SMALL_RESNET50},
  )
  assert summary["model"] == "resnet50" and summary["criterion"] == "rigl"
  assert summary["params_total"] == 1_023_928  # ResNet50(stage_sizes=(2, 1, 1, 1), width=16)
  assert summary["sparsity"] == pytest.approx(0.8, 1e-3)
  assert (config.train.batch_size, config.optimizer.learning_rate) == (8, 1.6)
  assert summary["test_examples"] == 100  # ImageNet's validation split is its test set
  assert summary["validation_examples"] == 1  # 1% of the training split


@pytest.mark.slow(seconds=25)
def test_imagenet_vit_b16_config_trains_on_mock_imagenet(mock_tfds, tmp_path):
  _, summary = _run(
    "imagenet_vit_b16",
    "imagenet2012",
    mock_tfds,
    tmp_path,
    num_examples=100,
    **{
      "data.image_size": 32,
      "train.batch_size": 4,
      "train.eval_batch_size": 8,
      "model.kwargs": SMALL_VIT_B16,
    },
  )
  assert summary["model"] == "vit_b16"
  assert summary["params_total"] == 395_272  # ViTB16(dim=96, depth=2, mlp_dim=384) on 32x32
