"""A seconds-long smoke run: LeNet-300-100 on the bundled 8x8 digits (no files needed)."""

from pathlib import Path

import ml_collections

from jaxprune.train.config import load_config


def get_config() -> ml_collections.ConfigDict:
  """The default config on scikit-learn's digits, 30 epochs of 10 steps."""
  config = load_config(Path(__file__).with_name("default.py"))
  config.data.name = "digits"  # 1,293 training, 144 validation and 360 test images, 8x8.
  config.train.num_epochs = 30.0  # 10 steps per epoch at batch size 128.
  config.train.eval_every_epochs = 5.0  # Evaluate every 5 epochs.
  config.train.log_every_steps = 10  # Once per epoch.
  config.pruning.schedule.begin = 2.0  # Start pruning at epoch 2...
  config.pruning.schedule.end = 20.0  # ...reach 90% at epoch 20.
  config.pruning.schedule.every = 1.0  # One mask update per epoch.
  config.checkpoint.every_steps = 100  # Save every 100 steps.
  return config
