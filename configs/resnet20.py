"""A small ResNet-20 (BatchNorm, residual additions) with gradual magnitude pruning.

Trains on MNIST so it runs offline; point it at another dataset with
``--config.data.name=fashion_mnist``. Widths are halved (8/16/32) to fit a CPU; use
``--config.model.kwargs.widths='(16, 32, 64)'`` for the standard network.
"""

from pathlib import Path

import ml_collections

from jaxprune.train.config import load_config


def get_config() -> ml_collections.ConfigDict:
  """ResNet-20 (half width), SGD with Nesterov momentum, pruned to 80%."""
  config = load_config(Path(__file__).with_name("default.py"))
  config.model.name = "resnet20"  # 3 stages x 3 basic blocks, BatchNorm.
  config.model.kwargs = ml_collections.ConfigDict({"widths": (8, 16, 32)})  # Channels per stage.
  config.optimizer.name = "sgd"  # SGD...
  config.optimizer.momentum = 0.9  # ...with momentum 0.9...
  config.optimizer.nesterov = True  # ...Nesterov style.
  config.optimizer.learning_rate = 0.1  # Peak learning rate.
  config.optimizer.warmup_epochs = 0.2  # Short linear warm-up.
  config.optimizer.weight_decay = 5e-4  # Weight decay.
  config.train.num_epochs = 3.0  # A short run.
  config.train.eval_every_epochs = 1.0  # Evaluate every epoch.
  config.pruning.sparsity = 0.8  # Convolutions keep 20% of their weights.
  config.pruning.schedule.begin = 0.2  # Start pruning after a fifth of an epoch...
  config.pruning.schedule.end = 2.0  # ...reach the target after two epochs.
  config.pruning.schedule.every = 0.1  # Mask update every tenth of an epoch.
  config.checkpoint.every_steps = 200  # Save more often: steps are slower.
  return config
