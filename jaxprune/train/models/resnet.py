"""ResNet-20 for CIFAR-sized images (He et al., 2016, Section 4.2), with BatchNorm.

Parameters live in the ``params`` collection and BatchNorm running statistics in
``batch_stats``; call with ``train=True, mutable=["batch_stats"]`` while training.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxprune.train.models.convnets import check_images

_SHORTCUTS = ("pad", "projection")

# He (fan-out) initialisation of conv kernels, as in the original CIFAR ResNets.
_conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


class BasicBlock(nn.Module):
  """Two 3x3 conv-BN layers plus a shortcut: ``relu(bn(conv(relu(bn(conv(x))))) + s(x))``.

  When the block changes the shape (stride 2 or more channels), the shortcut ``s`` either
  subsamples and zero-pads channels ("pad", option A of the paper, no parameters) or is a
  strided 1x1 conv followed by BatchNorm ("projection", option B).

  Attributes:
    features: Output channels.
    strides: Stride of the first convolution (and of the shortcut).
    shortcut: "pad" or "projection".
  """

  features: int
  strides: int = 1
  shortcut: str = "pad"

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    norm = lambda name: nn.BatchNorm(
      use_running_average=not train, momentum=0.9, epsilon=1e-5, name=name
    )
    conv = lambda strides, name: nn.Conv(
      self.features,
      (3, 3),
      strides=(strides, strides),
      padding=((1, 1), (1, 1)),
      use_bias=False,
      kernel_init=_conv_init,
      name=name,
    )
    y = nn.relu(norm("bn1")(conv(self.strides, "conv1")(x)))
    y = norm("bn2")(conv(1, "conv2")(y))
    residual = x
    # Widths come from the tensors (not self.features), so the block also runs with the
    # smaller kernels of jaxprune.surgery.shrink.
    if self.strides != 1 or x.shape[-1] != y.shape[-1]:
      if self.shortcut == "projection":
        residual = nn.Conv(
          self.features,
          (1, 1),
          strides=(self.strides, self.strides),
          use_bias=False,
          kernel_init=_conv_init,
          name="proj_conv",
        )(x)
        residual = norm("proj_bn")(residual)
      else:
        residual = x[:, :: self.strides, :: self.strides, :]
        extra = y.shape[-1] - x.shape[-1]
        residual = jnp.pad(residual, ((0, 0), (0, 0), (0, 0), (extra // 2, extra - extra // 2)))
    return nn.relu(y + residual)


class ResNet20(nn.Module):
  """CIFAR ResNet-20: a 3x3 stem, 3 stages × 3 basic blocks (16/32/64 channels), pool, dense.

  Stages 2 and 3 halve the spatial size in their first block. With the default "pad"
  shortcut the model has 269,722 parameters (the paper's 0.27M); "projection" adds 1x1
  convolutions and BatchNorm on the two downsampling shortcuts (272,474 parameters).
  Layers are named ``stem_conv``, ``stem_bn``, ``stage{s}_block{b}`` (from 1; inside:
  ``conv1``, ``bn1``, ``conv2``, ``bn2``, ``proj_conv``, ``proj_bn``) and ``head``.

  Attributes:
    num_classes: Size of the output layer.
    widths: Channels of the three stages.
    blocks_per_stage: Basic blocks per stage (3 gives ResNet-20; 5, ResNet-32; 9, ResNet-56).
    shortcut: "pad" (parameter-free, option A) or "projection" (option B).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> model = ResNet20(num_classes=10)
    >>> variables = model.init(jax.random.key(0), jnp.ones((1, 32, 32, 3)))
    >>> logits, updates = model.apply(
    ...     variables, jnp.ones((2, 32, 32, 3)), train=True, mutable=["batch_stats"])
    >>> logits.shape, sorted(updates)
    ((2, 10), ['batch_stats'])
  """

  num_classes: int = 10
  widths: Sequence[int] = (16, 32, 64)
  blocks_per_stage: int = 3
  shortcut: str = "pad"

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    check_images(x, "ResNet20")
    if self.shortcut not in _SHORTCUTS:
      raise ValueError(
        f"ResNet20 got shortcut={self.shortcut!r}; expected one of {_SHORTCUTS}, e.g. "
        f"ResNet20(num_classes={self.num_classes}, shortcut='projection')."
      )
    x = nn.Conv(
      self.widths[0],
      (3, 3),
      padding=((1, 1), (1, 1)),
      use_bias=False,
      kernel_init=_conv_init,
      name="stem_conv",
    )(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name="stem_bn")(x)
    x = nn.relu(x)
    for s, width in enumerate(self.widths, start=1):
      for b in range(1, self.blocks_per_stage + 1):
        strides = 2 if (s > 1 and b == 1) else 1
        block = BasicBlock(width, strides, self.shortcut, name=f"stage{s}_block{b}")
        x = block(x, train=train)
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes, name="head")(x)
