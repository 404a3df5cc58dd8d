"""LeNet-5 (Caffe, 20-50-800-500) on MNIST, gradual magnitude pruning to 95%."""

from pathlib import Path

import ml_collections

from jaxprune.train.config import load_config


def get_config() -> ml_collections.ConfigDict:
  """The default config on LeNet-5 at 95% sparsity, shortened for its convolutions."""
  config = load_config(Path(__file__).with_name("default.py"))
  config.model.name = "lenet5"  # Two conv-pool stages and two dense layers (431k params).
  config.train.num_epochs = 8.0  # About 9x the MACs of LeNet-300-100 per example.
  config.train.eval_every_epochs = 1.0  # Evaluate every epoch.
  config.pruning.sparsity = 0.95  # The usual LeNet-5 target.
  config.pruning.schedule.begin = 0.5  # Start pruning after half an epoch...
  config.pruning.schedule.end = 5.0  # ...reach 95% after 5 epochs, then fine-tune.
  config.pruning.schedule.every = 0.1  # Mask update every tenth of an epoch.
  return config
