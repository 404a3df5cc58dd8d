"""ResNet-50 on ImageNet trained sparse with RigL: the recipe of Evci et al. (2020).

"Rigging the Lottery: Making All Tickets Winners" (ICML 2020), Section 4.1 and the
ImageNet runs of its code (github.com/google-research/rigl): ResNet-50, 80% sparsity
with the Erdős–Rényi-Kernel distribution, sparse from the first step; every ΔT = 100
steps each layer drops the fraction α = 0.3 (cosine-decayed) of its active weights with
the smallest magnitude and regrows as many with the largest dense gradient, until 75% of
training. Training (the 1x schedule, 100 epochs): SGD with momentum 0.9, batch 4096,
learning rate 1.6 (0.1 per 256 images) with a linear warm-up over 5 epochs and divided
by 10 at epochs 30, 70 and 90, weight decay 1e-4, label smoothing 0.1, Inception-style
random resized crops and flips at 224x224, resize + centre crop for evaluation.

Deviations: 1% of the training images (12.8k) are held out for validation, so an epoch
has 309 steps instead of 312 and ΔT = 0.32 epochs is 99 steps; ERK here covers every
kernel (the first convolution included); RigL's 5x schedules scale ``num_epochs``,
``decay_epochs`` and ``pruning.schedule.end`` by 5. Needs ImageNet prepared in the
array_record format (``tfds build imagenet2012 --file_format=array_record`` after
placing the archives by hand), on local disk or a bucket (``--config.data.data_dir``).
"""

from pathlib import Path

import ml_collections

from jaxprune.train.config import load_config


def get_config() -> ml_collections.ConfigDict:
  """ResNet-50 / ImageNet, RigL at 80% sparsity (ERK), 100 epochs at batch 4096."""
  config = load_config(Path(__file__).with_name("default.py"))
  config.data.name = "imagenet2012"  # ILSVRC-2012: 1.28M train, 50k validation (the test set).
  config.data.fallback = ""  # No substitute: fail with the command that prepares it.
  config.data.fallback_config = ""  # (Nothing to take settings from.)
  config.data.augment = "imagenet"  # Random resized crop + flip; resize + centre crop to eval.
  config.data.image_size = 224  # Side of the crops the model sees.
  config.data.on_device = False  # Decoded and augmented on the host by grain workers.
  config.data.num_workers = 16  # grain processes per host decoding JPEGs.
  config.data.prefetch = 4  # Batches each worker keeps ready.
  config.data.validation_fraction = 0.01  # 12.8k training images held out.
  config.model.name = "resnet50"  # Bottleneck blocks 3/4/6/3, BatchNorm, projections.
  config.model.kwargs = ml_collections.ConfigDict()
  config.optimizer.name = "sgd"  # SGD...
  config.optimizer.momentum = 0.9  # ...with momentum 0.9.
  config.optimizer.nesterov = False  # Plain momentum.
  config.optimizer.learning_rate = 1.6  # 0.1 x 4096 / 256.
  config.optimizer.warmup_epochs = 5.0  # Linear warm-up from 0 over 5 epochs.
  config.optimizer.lr_schedule = "step"  # Then divided by 10...
  config.optimizer.decay_epochs = (30.0, 70.0, 90.0)  # ...at epochs 30, 70 and 90.
  config.optimizer.decay_factor = 0.1  # (The factor.)
  config.optimizer.weight_decay = 1e-4  # L2 added to the gradient.
  config.train.batch_size = 4096  # Global batch (split over all devices of all hosts).
  config.train.num_epochs = 100.0  # The 1x schedule.
  config.train.eval_batch_size = 1024  # Validation batch (split over devices).
  config.train.eval_every_epochs = 5.0  # Validate every 5 epochs.
  config.train.log_every_steps = 100  # Training metrics every 100 steps.
  config.train.label_smoothing = 0.1  # As in the RigL runs.
  config.pruning.sparsity = 0.8  # 80% sparse (also run at 0.9).
  config.pruning.criterion = "rigl"  # Drop by magnitude, grow by |gradient|.
  config.pruning.distribution = "erk"  # Erdős–Rényi-Kernel per-layer densities.
  config.pruning.schedule.kind = "periodic"  # Move connections at regular intervals...
  config.pruning.schedule.begin = 0.0  # ...from the first step...
  config.pruning.schedule.every = 0.32  # ...every ~100 steps (ΔT)...
  config.pruning.schedule.end = 75.0  # ...until 75% of training.
  with config.unlocked():
    config.pruning.drop_fraction = 0.3  # α: fraction of active weights moved at step 0.
  config.checkpoint.every_steps = 2000  # About every 6.5 epochs.
  config.sharding.fsdp = False  # ResNet-50 fits every accelerator: replicate.
  return config
