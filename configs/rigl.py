"""RigL (Evci et al. 2020) on LeNet-300-100 / MNIST: sparse from step 0 at 98%, ERK layers.

Random ERK masks at initialisation; every 0.2 epochs (~94 steps at batch 128) each layer
drops the smallest 30% (cosine-decayed) of its active weights and grows as many where the
dense gradient is largest, until 75% of training (epoch 15 of 20). The per-layer count of
weights never changes. Trained with adamw (decoupled decay 0.05) at lr 3e-3, cosine-decayed
to 0: the recipe chosen on validation in benchmarks/dynamic_mnist.py.
"""

from pathlib import Path

import ml_collections

from jaxprune.train.config import load_config


def get_config() -> ml_collections.ConfigDict:
  """The default config trained sparse with RigL's drop-and-grow."""
  config = load_config(Path(__file__).with_name("default.py"))
  # Validation choice for RigL at 98% (benchmarks/RESULTS.md); cosine is the default schedule.
  config.optimizer.name = "adamw"
  config.optimizer.learning_rate = 3e-3
  config.optimizer.weight_decay = 0.05  # Decoupled, as optax.adamw.
  config.pruning.sparsity = 0.98  # Fraction of the kernels' weights removed, from step 0.
  config.pruning.criterion = "rigl"  # Drop by magnitude, grow by |gradient| ("set": random).
  config.pruning.distribution = "erk"  # Erdős–Rényi-Kernel per-layer densities.
  config.pruning.schedule.kind = "periodic"  # Move connections at regular intervals...
  config.pruning.schedule.begin = 0.0  # ...from the first step...
  config.pruning.schedule.every = 0.2  # ...every 0.2 epochs (ΔT)...
  config.pruning.schedule.end = 15.0  # ...until 75% of the 20 epochs (drop fraction 0 there).
  with config.unlocked():
    config.pruning.drop_fraction = 0.3  # α: fraction of active weights moved at step 0.
  return config
