"""The model registry: names to Flax Linen model classes, for configs and the command line."""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Mapping

import flax.linen as nn

from jaxprune.train.models.benchmarks import VGG16, ResNet32, ResNet50, ResNet56, ViTB16
from jaxprune.train.models.convnets import LeNet5Caffe, LeNet300100, VGGSmall
from jaxprune.train.models.lm import DecoderLM
from jaxprune.train.models.resnet import ResNet20
from jaxprune.train.models.vit import ViTSmall

MODELS: Mapping[str, type[nn.Module]] = types.MappingProxyType(
  {
    "lenet300100": LeNet300100,
    "lenet5": LeNet5Caffe,
    "vgg_small": VGGSmall,
    "resnet20": ResNet20,
    "vit_small": ViTSmall,
    "resnet32": ResNet32,
    "resnet56": ResNet56,
    "vgg16": VGG16,
    "resnet50": ResNet50,
    "vit_b16": ViTB16,
    "decoder_lm": DecoderLM,
  }
)


def get_model(name: str, num_classes: int, **kwargs) -> nn.Module:
  """Builds a registered model by name.

  Args:
    name: One of ``"lenet300100"``, ``"lenet5"``, ``"vgg_small"``, ``"resnet20"``,
      ``"vit_small"``, ``"resnet32"``, ``"resnet56"``, ``"vgg16"``, ``"resnet50"``,
      ``"vit_b16"``, ``"decoder_lm"`` (the keys of `MODELS`).
    num_classes: Size of the output layer.
    **kwargs: The model's other attributes, e.g. ``widths=(16, 32)`` for ``"vgg_small"``
      or ``num_layers=2, variant="gpt2"`` for ``"decoder_lm"`` (its ``num_classes`` is the
      vocabulary size).

  Returns:
    An unbound Linen module, called as ``model.apply(variables, x, train=...)``.

  Raises:
    ValueError: If ``name`` is not registered (the message lists the valid names).
    TypeError: If a keyword is not an attribute of that model (the message lists them).

  Example:
    >>> model = get_model("vgg_small", num_classes=10, widths=(16, 32))
    >>> type(model).__name__, model.widths
    ('VGGSmall', (16, 32))
  """
  if name not in MODELS:
    valid = ", ".join(repr(n) for n in MODELS)
    raise ValueError(
      f"Unknown model {name!r}; valid names are {valid}. "
      f"E.g. get_model('resnet20', num_classes={num_classes})."
    )
  cls = MODELS[name]
  fields = [f.name for f in dataclasses.fields(cls) if f.name not in ("parent", "name")]
  unknown = sorted(set(kwargs) - set(fields))
  if unknown:
    raise TypeError(
      f"get_model({name!r}, ...) got unexpected keyword(s) {unknown}; {cls.__name__} "
      f"accepts {fields}. E.g. get_model({name!r}, num_classes={num_classes})."
    )
  return cls(num_classes=num_classes, **kwargs)
