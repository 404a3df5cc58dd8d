"""ViT-B/16 on ImageNet-1k from scratch, with gradual magnitude pruning to 50%.

Training follows the ImageNet-1k recipe of Dosovitskiy et al. (2021, Appendix B.1):
Adam (β1 0.9, β2 0.999) with decoupled weight decay 0.3, batch 4096, learning rate 3e-3
with a linear warm-up of 10k steps (~32 epochs) then cosine decay, 300 epochs, dropout
0.1, gradients clipped to global norm 1, 224x224 Inception-style crops and flips.
Magnitude pruning ramps to 50% (Zhu & Gupta) between epochs 30 and 200.

What is missing for the stronger DeiT recipe (Touvron et al., 2021; 81.8% top-1 for a
dense ViT-B/16 on ImageNet-1k): RandAugment, Mixup/CutMix, random erasing, repeated
augmentation and stochastic depth are not implemented, so expect the paper's ~77%
(dense) rather than DeiT's accuracy. Needs ImageNet prepared in the array_record
format (``tfds build imagenet2012 --file_format=array_record``).
"""

from pathlib import Path

import ml_collections

from jaxprune.train.config import load_config


def get_config() -> ml_collections.ConfigDict:
  """ViT-B/16 / ImageNet, AdamW, warm-up + cosine, 300 epochs, magnitude pruning to 50%."""
  config = load_config(Path(__file__).with_name("imagenet_resnet50.py"))
  config.model.name = "vit_b16"  # 16x16 patches, width 768, 12 blocks x 12 heads.
  config.model.kwargs = ml_collections.ConfigDict({"dropout_rate": 0.1})  # Dropout 0.1.
  config.optimizer.name = "adamw"  # Adam with decoupled weight decay.
  config.optimizer.learning_rate = 3e-3  # Peak learning rate.
  config.optimizer.lr_schedule = "cosine"  # Cosine decay after the warm-up.
  config.optimizer.decay_epochs = ()  # (No steps.)
  config.optimizer.warmup_epochs = 32.0  # ~10k steps at 309 steps per epoch.
  config.optimizer.weight_decay = 0.3  # Decoupled weight decay.
  config.optimizer.grad_clip_norm = 1.0  # Clip to global norm 1.
  config.train.num_epochs = 300.0  # 300 epochs.
  config.train.label_smoothing = 0.0  # None in the ViT recipe.
  config.pruning.sparsity = 0.5  # Half of every kernel.
  config.pruning.criterion = "magnitude"  # |w|.
  config.pruning.distribution = "uniform"  # The same sparsity in every kernel.
  config.pruning.schedule.kind = "polynomial"  # Gradual cubic ramp...
  config.pruning.schedule.begin = 30.0  # ...from the end of the warm-up...
  config.pruning.schedule.end = 200.0  # ...to epoch 200...
  config.pruning.schedule.every = 1.0  # ...one mask update per epoch.
  with config.unlocked():
    del config.pruning["drop_fraction"]  # Not a drop-and-grow run.
  config.sharding.fsdp = True  # Shard the 86M parameters and Adam moments over devices.
  return config
