"""VGG-16 (with BatchNorm) on CIFAR-10, the pruning-at-initialisation benchmark.

The network of SNIP (Lee et al., 2019), GraSP (Wang et al., 2020) and SynFlow (Tanaka et
al., 2020) on CIFAR-10: the 13 convolutions of VGG-16 with BatchNorm and a linear
classifier. Recipe: SGD with momentum 0.9, weight decay 5e-4, batch 128, 160 epochs,
learning rate 0.1 divided by 10 at epochs 80 and 120 (``--config.optimizer.lr_schedule=cosine``
for cosine decay instead); standard CIFAR augmentation. Pruned once at initialisation to
95% with SNIP (one threshold across layers), then trained sparse.

Deviations: 10% of the training images are held out for validation (set
``data.validation_fraction=0.0`` to train on all 50k). Needs CIFAR-10 prepared in the
array_record format (``tfds build cifar10 --file_format=array_record``).
"""

from pathlib import Path

import ml_collections

from jaxprune.train.config import load_config


def get_config() -> ml_collections.ConfigDict:
  """VGG-16-BN / CIFAR-10, SGD + momentum, step decay, 160 epochs, SNIP at 95%."""
  config = load_config(Path(__file__).with_name("cifar10_resnet20.py"))
  config.model.name = "vgg16"  # 13 conv-BN-ReLU layers, 5 max-pools, linear classifier.
  # No hidden dense layers; 64 channels in the first stage (VGG-16's widths).
  config.model.kwargs = ml_collections.ConfigDict({"hidden": (), "width": 64})
  config.optimizer.weight_decay = 5e-4  # L2 added to the gradient.
  config.pruning.sparsity = 0.95  # 5% of the weights remain.
  config.pruning.criterion = "snip"  # Connection sensitivity |g·w| on the first batch.
  config.pruning.distribution = "global"  # One threshold across layers.
  config.pruning.schedule.kind = "one_shot"  # Prune once...
  config.pruning.schedule.begin = 0.0  # ...at the first step, before any training.
  return config
