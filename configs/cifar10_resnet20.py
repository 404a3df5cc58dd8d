"""ResNet-20 on CIFAR-10 with the training recipe of He et al. (2016, Section 4.2).

SGD with momentum 0.9 and weight decay 1e-4, batch 128, learning rate 0.1 divided by 10
at epochs 80 and 120 of 160 (the paper's 32k/48k/64k iterations at 45k training images),
standard CIFAR augmentation (4-pixel padded random crops, horizontal flips, per-channel
normalisation). Magnitude pruning to 90% with the gradual schedule of Zhu & Gupta (2018),
from epoch 10 to 80. ResNet-32 and ResNet-56 use the same recipe:
``--config.model.name=resnet32`` (or ``resnet56``), or
``--config.model.kwargs.blocks_per_stage=5`` (n blocks per stage: depth 6n + 2).

Deviations from the paper: 10% of the training images are held out for validation
(``data.validation_fraction``; set 0.0 to train on all 50k), and the test set is
evaluated only at the end. Needs CIFAR-10 prepared in the array_record format
(``tfds build cifar10 --file_format=array_record``); there is no fallback dataset.
"""

from pathlib import Path

import ml_collections

from jaxprune.train.config import load_config


def get_config() -> ml_collections.ConfigDict:
  """ResNet-20 / CIFAR-10, SGD + momentum, step decay, 160 epochs, pruned to 90%."""
  config = load_config(Path(__file__).with_name("default.py"))
  config.data.name = "cifar10"  # TFDS CIFAR-10: 50k train / 10k test, 32x32x3.
  config.data.fallback = ""  # No substitute: fail with the command that prepares it.
  config.data.fallback_config = ""  # (Nothing to take settings from.)
  config.data.augment = "cifar"  # Padded random crop + flip; normalisation per channel.
  config.data.on_device = False  # Augmented batches come from the host (grain workers).
  config.data.num_workers = 4  # grain processes cropping and flipping batches.
  config.model.name = "resnet20"  # 3 stages x 3 basic blocks (16/32/64), BatchNorm.
  config.model.kwargs = ml_collections.ConfigDict({"shortcut": "pad"})  # Option A shortcuts.
  config.optimizer.name = "sgd"  # SGD...
  config.optimizer.momentum = 0.9  # ...with momentum 0.9.
  config.optimizer.nesterov = False  # Plain (heavy-ball) momentum, as in the paper.
  config.optimizer.learning_rate = 0.1  # Initial learning rate.
  config.optimizer.lr_schedule = "step"  # Divided by 10...
  config.optimizer.decay_epochs = (80.0, 120.0)  # ...at epochs 80 and 120.
  config.optimizer.decay_factor = 0.1  # (The factor.)
  config.optimizer.weight_decay = 1e-4  # L2 added to the gradient.
  config.train.batch_size = 128  # Batch size of the paper.
  config.train.num_epochs = 160.0  # 160 epochs (~64k steps at 45k images).
  config.train.eval_every_epochs = 5.0  # Validate every 5 epochs.
  config.train.log_every_steps = 100  # Training metrics every 100 steps.
  config.pruning.sparsity = 0.9  # Convolutions and the head keep 10% of their weights.
  config.pruning.schedule.kind = "polynomial"  # Gradual (Zhu & Gupta) cubic ramp...
  config.pruning.schedule.begin = 10.0  # ...from epoch 10...
  config.pruning.schedule.end = 80.0  # ...to epoch 80 (before the first decay)...
  config.pruning.schedule.every = 1.0  # ...one mask update per epoch.
  config.checkpoint.every_steps = 2000  # About every 6 epochs.
  return config
