"""SR-STE (Zhou et al. 2021) on LeNet-5 / MNIST: 2:4 sparsity learned from scratch.

The dense weights live in the optimizer state and receive the gradient taken at their 2:4
view (straight-through), plus λ_W·w on the pruned ones; the 2:4 masks are re-chosen from
them at every step. The params the model sees are exactly 2:4 sparse at every step. The
first convolution (one input channel, not a multiple of 4) stays dense.
"""

from pathlib import Path

import ml_collections

from jaxprune.train.config import load_config


def get_config() -> ml_collections.ConfigDict:
  """configs/lenet5.py trained with SR-STE at 2:4."""
  config = load_config(Path(__file__).with_name("lenet5.py"))
  config.pruning.sparsity = 0.5  # 2 of every 4 weights along the input axis.
  config.pruning.structure = "2:4"  # N:M along the reduction (input) axis.
  config.pruning.criterion = "magnitude"  # Masks from |dense weights|.
  config.pruning.dense = "Conv_0/.*"  # Its input axis (1 channel) does not split in fours.
  config.pruning.schedule.kind = "periodic"  # Re-choose the masks...
  config.pruning.schedule.unit = "steps"
  config.pruning.schedule.begin = 0  # ...from the first step...
  config.pruning.schedule.every = 1  # ...at every step...
  config.pruning.schedule.end = 0  # ...until the end (end <= begin: no end).
  with config.unlocked():
    config.pruning.method = "ste"  # Straight-through: jaxprune.dynamic.ste.
    config.pruning.decay = 2e-4  # λ_W of SR-STE on pruned weights (0 = plain STE).
  return config
