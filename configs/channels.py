"""Unit pruning: remove whole neurons (Dense) or filters (Conv) by their mean magnitude.

Paired with the default config this is the classic weight- versus unit-pruning comparison
on MNIST; the output layer stays dense so no class is removed::

  jaxprune-sweep --config configs/channels.py --workdir runs/units \\
    --structures=unstructured,channels
"""

from pathlib import Path

import ml_collections

from jaxprune.train.config import load_config


def get_config() -> ml_collections.ConfigDict:
  """The default config pruning whole output units, the output layer excluded."""
  config = load_config(Path(__file__).with_name("default.py"))
  config.pruning.structure = "channels"  # Whole output neurons / filters (last kernel axis).
  config.pruning.dense = "Dense_2/.*"  # Keep LeNet-300-100's output layer (the 10 classes).
  return config
