"""Random static sparsity with Erdős–Rényi-Kernel layer densities (the RigL paper's baseline).

Masks are drawn at random at initialisation, with each layer's density proportional to
(sum of its dimensions) / (number of its weights), and stay fixed during training.
"""

from pathlib import Path

import ml_collections

from jaxprune.train.config import load_config


def get_config() -> ml_collections.ConfigDict:
  """The default config with a random ERK mask fixed from step 0."""
  config = load_config(Path(__file__).with_name("default.py"))
  config.pruning.criterion = "random"  # Uniformly random scores (seeded by pruning.seed).
  config.pruning.distribution = "erk"  # Erdős–Rényi-Kernel per-layer densities.
  config.pruning.schedule.kind = "one_shot"  # Draw the mask once...
  config.pruning.schedule.begin = 0.0  # ...at the first step.
  return config
