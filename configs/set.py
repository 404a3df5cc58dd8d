"""SET (Mocanu et al. 2018) on LeNet-300-100 / MNIST: RigL's setup, random regrowth."""

from pathlib import Path

import ml_collections

from jaxprune.train.config import load_config


def get_config() -> ml_collections.ConfigDict:
  """configs/rigl.py with connections grown uniformly at random."""
  config = load_config(Path(__file__).with_name("rigl.py"))
  config.pruning.criterion = "set"  # Drop by magnitude, grow at random.
  return config
