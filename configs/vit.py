"""A small Vision Transformer (4 blocks, width 64) on MNIST, magnitude pruning to 50%."""

from pathlib import Path

import ml_collections

from jaxprune.train.config import load_config


def get_config() -> ml_collections.ConfigDict:
  """ViT-small, AdamW with warm-up, attention and MLP kernels pruned to 50%."""
  config = load_config(Path(__file__).with_name("default.py"))
  config.model.name = "vit_small"  # Patch embedding, 4 encoder blocks, class token.
  config.model.kwargs = ml_collections.ConfigDict({"patch_size": 4, "dropout_rate": 0.1})
  config.optimizer.name = "adamw"  # Adam with decoupled weight decay.
  config.optimizer.weight_decay = 1e-4  # Weight decay.
  config.optimizer.warmup_epochs = 0.5  # Transformers like a warm-up.
  config.train.num_epochs = 3.0  # A short run.
  config.train.eval_every_epochs = 1.0  # Evaluate every epoch.
  config.pruning.sparsity = 0.5  # Half of every kernel.
  config.pruning.schedule.begin = 0.5  # Start after half an epoch...
  config.pruning.schedule.end = 2.0  # ...reach 50% after two epochs.
  config.pruning.schedule.every = 0.1  # Mask update every tenth of an epoch.
  return config
