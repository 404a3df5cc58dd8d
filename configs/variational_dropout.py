"""Sparse variational dropout (Molchanov et al. 2017) on LeNet-300-100.

The Dense layers become `jaxprune.bayes.VariationalDense` (a weight θ and a log σ² per
weight); the loss adds the KL term per example, its weight ramped in over 10 epochs. The
sparsity is learned, not set: the ``"log_alpha"`` criterion keeps a weight while
log α = log σ² − log θ² < 3, and the masks follow it every epoch (``pruning.sparsity`` is
not used by a threshold criterion). Compression keeps climbing with longer training and
the learning-rate decay: 100 epochs is a full run (see benchmarks/RESULTS.md).
``--config.model.name=lenet5`` trains LeNet-5-Caffe with variational conv and dense layers.
"""

from pathlib import Path

import ml_collections

from jaxprune.train.config import load_config


def get_config() -> ml_collections.ConfigDict:
  """The default config with variational dropout layers and the KL penalty."""
  config = load_config(Path(__file__).with_name("default.py"))
  config.model.kwargs = ml_collections.ConfigDict({"layer": "variational"})
  config.train.num_epochs = 100.0
  config.train.batch_size = 100
  config.train.eval_every_epochs = 10.0
  config.train.penalty = "kl"  # KL(q || log-uniform prior), weighted per example.
  config.train.penalty_ramp_epochs = 10.0  # Linear ramp of the KL weight to 1/N.
  config.pruning.criterion = "log_alpha"  # Keep while log alpha < 3 (a threshold).
  config.pruning.sparsity = 0.0  # Not used: the threshold decides.
  config.pruning.dense = ".*log_sigma2"  # Only the weights θ carry masks.
  config.pruning.schedule.kind = "periodic"  # Masks follow log alpha...
  config.pruning.schedule.begin = 0.0
  config.pruning.schedule.end = 0.0  # (no end)
  config.pruning.schedule.every = 1.0  # ...once per epoch.
  return config
