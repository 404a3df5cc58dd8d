"""The classic pruning benchmarks: LeNet-300-100, LeNet-5 (Caffe) and a small VGG.

Every model takes images ``[B, H, W, C]`` and a ``train`` keyword (used only by the
variational and L0 layers of the LeNets, accepted so a trainer calls all models the same
way) and returns logits ``[B, num_classes]``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax

from jaxprune import bayes


def check_images(x: jax.Array, model: str) -> None:
  """Raises a `ValueError` unless ``x`` is a batch of images ``[B, H, W, C]``."""
  if x.ndim != 4:
    raise ValueError(
      f"{model} expects a batch of images [B, H, W, C] but got an array of shape "
      f"{tuple(x.shape)}. Add the missing axes first, e.g. for one 28x28 grayscale image: "
      f"model.apply(variables, x.reshape(1, 28, 28, 1), train=False)."
    )


class LeNet300100(nn.Module):
  """LeNet-300-100: a 784-300-100-10 ReLU MLP on the flattened image.

  With 28x28x1 inputs it has 266,610 parameters (784·300 + 300·100 + 100·10 weights plus
  410 biases), the model of LeCun et al. (1998) used throughout the pruning literature.

  Attributes:
    num_classes: Size of the output layer.
    hidden: Widths of the hidden layers.
    layer: ``"dense"``; ``"variational"`` for `jaxprune.bayes.VariationalDense` layers
      (sparse variational dropout) or ``"l0"`` for `jaxprune.bayes.L0Dense` layers with
      one gate per input neuron. Both sample noise from the ``"dropout"`` stream in
      training.
    drop_rate_init: ``"l0"`` only: the initial drop rate of the gates of each Dense layer,
      input layer first (Louizos et al. 2018 start at 0.2 on the pixels, 0.5 after);
      ``()`` = 0.5 everywhere.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> model = LeNet300100(num_classes=10)
    >>> variables = model.init(jax.random.key(0), jnp.ones((1, 28, 28, 1)))
    >>> model.apply(variables, jnp.ones((2, 28, 28, 1)), train=False).shape
    (2, 10)
  """

  num_classes: int = 10
  hidden: Sequence[int] = (300, 100)
  layer: str = "dense"
  drop_rate_init: Sequence[float] = ()

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    rates = tuple(self.drop_rate_init) or (0.5,) * (len(self.hidden) + 1)
    if len(rates) != len(self.hidden) + 1:
      raise ValueError(
        f"LeNet300100.drop_rate_init needs one rate per Dense layer ({len(self.hidden) + 1}), "
        f"got {tuple(self.drop_rate_init)!r}; e.g. --config.model.kwargs.drop_rate_init="
        f"'({', '.join(['0.2'] + ['0.5'] * len(self.hidden))})'."
      )
    rates = iter(rates)
    if self.layer == "dense":
      dense = lambda width: nn.Dense(width)
    elif self.layer == "variational":
      dense = lambda width: functools.partial(
        bayes.VariationalDense(width), deterministic=not train
      )
    elif self.layer == "l0":
      dense = lambda width: functools.partial(
        bayes.L0Dense(width, gate="input", drop_rate_init=next(rates)), deterministic=not train
      )
    else:
      raise ValueError(
        f"LeNet300100.layer must be 'dense', 'variational' or 'l0', got {self.layer!r}; "
        "e.g. --config.model.kwargs.layer=variational."
      )
    x = x.reshape((x.shape[0], -1))
    for width in self.hidden:
      x = nn.relu(dense(width)(x))
    return dense(self.num_classes)(x)


class LeNet5Caffe(nn.Module):
  """LeNet-5 as in Caffe's MNIST example ("20-50-800-500"): two conv-pool stages, two dense.

  conv 20 5x5 (valid) → max-pool 2 → conv 50 5x5 (valid) → max-pool 2 → dense 500 → dense
  ``num_classes``. On 28x28x1 inputs the first dense layer sees 4·4·50 = 800 features and
  the model has 431,080 parameters.

  Attributes:
    num_classes: Size of the output layer.
    layer: ``"dense"`` (``nn.Conv`` and ``nn.Dense``) or ``"variational"`` for
      `jaxprune.bayes.VariationalConv` and `jaxprune.bayes.VariationalDense` layers
      (sparse variational dropout on every weight; noise from the ``"dropout"`` stream in
      training). Parameter paths are the same (``Conv_0`` ... ``Dense_1``) either way.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> model = LeNet5Caffe(num_classes=10)
    >>> variables = model.init(jax.random.key(0), jnp.ones((1, 28, 28, 1)))
    >>> variables["params"]["Dense_0"]["kernel"].shape
    (800, 500)
    >>> vd = LeNet5Caffe(layer="variational").init(jax.random.key(0), jnp.ones((1, 28, 28, 1)))
    >>> vd["params"]["Conv_1"]["log_sigma2"].shape
    (5, 5, 20, 50)
  """

  num_classes: int = 10
  layer: str = "dense"

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    check_images(x, "LeNet5Caffe")
    if self.layer == "dense":
      conv = lambda features, name: nn.Conv(features, (5, 5), padding="VALID", name=name)
      dense = lambda features, name: nn.Dense(features, name=name)
    elif self.layer == "variational":
      conv = lambda features, name: functools.partial(
        bayes.VariationalConv(features, (5, 5), padding="VALID", name=name),
        deterministic=not train,
      )
      dense = lambda features, name: functools.partial(
        bayes.VariationalDense(features, name=name), deterministic=not train
      )
    else:
      raise ValueError(
        f"LeNet5Caffe.layer must be 'dense' or 'variational', got {self.layer!r}; e.g. "
        "--config.model.kwargs.layer=variational (L0 gates exist for lenet300100 only)."
      )
    x = conv(20, "Conv_0")(x)
    x = nn.max_pool(x, (2, 2), strides=(2, 2))
    x = conv(50, "Conv_1")(x)
    x = nn.max_pool(x, (2, 2), strides=(2, 2))
    x = x.reshape((x.shape[0], -1))
    x = nn.relu(dense(500, "Dense_0")(x))
    return dense(self.num_classes, "Dense_1")(x)


class VGGSmall(nn.Module):
  """A small VGG-style network: stages of 3x3 conv-ReLU-conv-ReLU-max-pool, then a dense head.

  Each entry of ``widths`` is one stage (two SAME-padded 3x3 convolutions of that width and
  a 2x2 max-pool); the flattened features go through a ReLU dense layer of width ``hidden``
  and the classifier. Layers are named ``stage{s}_conv{c}`` (from 1), ``fc`` and ``head``.

  Attributes:
    num_classes: Size of the output layer.
    widths: Channels of each stage.
    hidden: Width of the dense layer before the classifier (0 for none).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> model = VGGSmall(num_classes=10, widths=(8, 16))
    >>> variables = model.init(jax.random.key(0), jnp.ones((1, 32, 32, 3)))
    >>> sorted(variables["params"])
    ['fc', 'head', 'stage1_conv1', 'stage1_conv2', 'stage2_conv1', 'stage2_conv2']
  """

  num_classes: int = 10
  widths: Sequence[int] = (32, 64, 128)
  hidden: int = 256

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    del train
    check_images(x, "VGGSmall")
    for s, width in enumerate(self.widths, start=1):
      for c in (1, 2):
        x = nn.relu(nn.Conv(width, (3, 3), padding="SAME", name=f"stage{s}_conv{c}")(x))
      x = nn.max_pool(x, (2, 2), strides=(2, 2))
    x = x.reshape((x.shape[0], -1))
    if self.hidden:
      x = nn.relu(nn.Dense(self.hidden, name="fc")(x))
    return nn.Dense(self.num_classes, name="head")(x)
