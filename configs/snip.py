"""SNIP (Lee et al. 2019): prune once at initialisation by connection sensitivity |g·w|.

The criterion scores on the first training batch (the trainer passes ``loss_fn=`` and
``batch=`` to the optimizer), with one threshold across layers; the sparse network is
then trained from scratch.
"""

from pathlib import Path

import ml_collections

from jaxprune.train.config import load_config


def get_config() -> ml_collections.ConfigDict:
  """The default config with one-shot SNIP at step 0."""
  config = load_config(Path(__file__).with_name("default.py"))
  config.pruning.criterion = "snip"  # |∂L/∂c| at c = 1, normalised over all layers.
  config.pruning.distribution = "global"  # One threshold across layers, as in the paper.
  config.pruning.schedule.kind = "one_shot"  # Prune once...
  config.pruning.schedule.begin = 0.0  # ...at the first step, before any training.
  return config
