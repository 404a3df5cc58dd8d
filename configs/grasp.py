"""GraSP (Wang et al. 2020): prune at initialisation to preserve gradient flow.

Scores θ ⊙ Hg with one Hessian-vector product of the scoring loss; like the reference
code, the logits are divided by a temperature T = 200 for scoring (training is unchanged).
"""

from pathlib import Path

import ml_collections

from jaxprune.train.config import load_config


def get_config() -> ml_collections.ConfigDict:
  """The default config with one-shot GraSP at step 0."""
  config = load_config(Path(__file__).with_name("default.py"))
  config.pruning.criterion = "grasp"  # Keep-score θ ⊙ Hg (the negated GraSP score).
  config.pruning.distribution = "global"  # One threshold across layers, as in the paper.
  config.pruning.schedule.kind = "one_shot"  # Prune once...
  config.pruning.schedule.begin = 0.0  # ...at the first step, before any training.
  config.pruning.scoring_temperature = 200.0  # T of the scoring loss softmax(f(x) / T).
  return config
