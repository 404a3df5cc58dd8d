"""A model zoo for pruning experiments (Flax Linen), with parameter and MAC counting.

Every model takes ``num_classes``, images ``[B, H, W, C]`` and a ``train`` keyword:
``model.apply(variables, x, train=False)``; the language model `DecoderLM` takes int tokens
``[B, T]`` instead and its ``num_classes`` is the vocabulary size (`load_hf` / `save_hf` read
and write its Hugging Face checkpoints). Pruning acts on the ``params`` collection;
`ResNet20` also has ``batch_stats`` (apply with ``mutable=["batch_stats"]`` when training).

Example:
  >>> import jax, jax.numpy as jnp
  >>> from jaxprune.train import models
  >>> model = models.get_model("lenet300100", num_classes=10)
  >>> variables = model.init(jax.random.key(0), jnp.ones((1, 28, 28, 1)))
  >>> models.count_params(variables["params"])
  266610
"""

from jaxprune.train.models.benchmarks import (
  VGG16,
  Bottleneck,
  ResNet32,
  ResNet50,
  ResNet56,
  ViTB16,
)
from jaxprune.train.models.convnets import LeNet5Caffe, LeNet300100, VGGSmall
from jaxprune.train.models.counting import count_nonzero, count_params, flops_per_example
from jaxprune.train.models.hf import load_hf, save_hf
from jaxprune.train.models.lm import DecoderBlock, DecoderLM, LMConfig
from jaxprune.train.models.registry import MODELS, get_model
from jaxprune.train.models.resnet import BasicBlock, ResNet20
from jaxprune.train.models.vit import EncoderBlock, ViTSmall

__all__ = [
  "MODELS",
  "BasicBlock",
  "Bottleneck",
  "DecoderBlock",
  "DecoderLM",
  "EncoderBlock",
  "LMConfig",
  "LeNet300100",
  "LeNet5Caffe",
  "ResNet20",
  "ResNet32",
  "ResNet50",
  "ResNet56",
  "VGG16",
  "ViTB16",
  "VGGSmall",
  "ViTSmall",
  "count_nonzero",
  "count_params",
  "flops_per_example",
  "get_model",
  "load_hf",
  "save_hf",
]
