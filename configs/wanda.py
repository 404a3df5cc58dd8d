"""Wanda (Sun et al. 2024): prune a trained network once by |W| times input-feature norm.

Trains dense for 10 of the 20 epochs, then scores every Dense weight by |W_ij|·‖X_i‖₂ on
one training batch (the trainer captures the layer inputs and passes ``activations=``)
and removes the same fraction in every output neuron, as the paper compares weights per
output; the last 10 epochs fine-tune the sparse network.
"""

from pathlib import Path

import ml_collections

from jaxprune.train.config import load_config


def get_config() -> ml_collections.ConfigDict:
  """The default config with one-shot Wanda after 10 epochs of dense training."""
  config = load_config(Path(__file__).with_name("default.py"))
  config.pruning.criterion = "wanda"  # |W_ij| * ||X_i||_2 over the batch.
  config.pruning.structure = "rows"  # Same count kept in every output neuron.
  config.pruning.schedule.kind = "one_shot"  # Prune once...
  config.pruning.schedule.begin = 10.0  # ...after 10 of the 20 epochs, dense.
  return config
