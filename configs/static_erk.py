"""Static sparse training on LeNet-300-100 / MNIST: random ERK masks at 98%, never changed.

The masks are drawn at initialisation and used from the first step (no dense step): the
RigL paper's "Static" baseline.
"""

from pathlib import Path

import ml_collections

from jaxprune.train.config import load_config


def get_config() -> ml_collections.ConfigDict:
  """The default config trained sparse on fixed random ERK masks."""
  config = load_config(Path(__file__).with_name("default.py"))
  # The recipe of configs/rigl.py (static ERK also chose lr 3e-3 with it on validation).
  config.optimizer.name = "adamw"
  config.optimizer.learning_rate = 3e-3
  config.optimizer.weight_decay = 0.05  # Decoupled, as optax.adamw.
  config.pruning.sparsity = 0.98  # Fraction of the kernels' weights removed, from step 0.
  config.pruning.criterion = "random"  # Masks drawn uniformly at random (pruning.seed)...
  config.pruning.distribution = "erk"  # ...with Erdős–Rényi-Kernel per-layer densities.
  config.pruning.schedule.kind = "one_shot"  # (Read only by the trainer's step selection.)
  config.pruning.schedule.begin = 0.0
  with config.unlocked():
    config.pruning.method = "static"  # Masks fixed at initialisation: jaxprune.dynamic.static.
  return config
