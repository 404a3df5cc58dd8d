"""The networks of the published pruning benchmarks: ResNet-32/56, VGG-16, ResNet-50, ViT-B/16.

- `ResNet32`, `ResNet56`: the CIFAR ResNets of He et al. (2016) with 5 and 9 basic blocks
  per stage (`ResNet20` with another ``blocks_per_stage``).
- `VGG16`: VGG-16 (Simonyan & Zisserman, 2015, configuration D) with BatchNorm after
  every convolution, as pruned on CIFAR-10 by SNIP, GraSP and SynFlow.
- `ResNet50`: the ImageNet ResNet-50 (He et al., 2016): bottleneck blocks with
  BatchNorm and projection shortcuts, the network of the RigL ImageNet experiments.
- `ViTB16`: ViT-B/16 (Dosovitskiy et al., 2021), `ViTSmall` at the base size.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxprune.train.models.convnets import check_images
from jaxprune.train.models.resnet import ResNet20
from jaxprune.train.models.vit import ViTSmall

# He (fan-out) initialisation of conv kernels.
_conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
VGG16_CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M")
VGG16_CONFIG += (512, 512, 512, "M")


class ResNet32(ResNet20):
  """CIFAR ResNet-32: `ResNet20` with 5 basic blocks per stage (0.46M parameters)."""

  blocks_per_stage: int = 5


class ResNet56(ResNet20):
  """CIFAR ResNet-56: `ResNet20` with 9 basic blocks per stage (0.85M parameters)."""

  blocks_per_stage: int = 9


def _norm(train: bool, name: str, zero: bool = False) -> nn.BatchNorm:
  return nn.BatchNorm(
    use_running_average=not train,
    momentum=0.9,
    epsilon=1e-5,
    scale_init=nn.initializers.zeros if zero else nn.initializers.ones,
    name=name,
  )


class VGG16(nn.Module):
  """VGG-16 with BatchNorm: 13 conv-BN-ReLU layers in 5 max-pooled stages, then the classifier.

  Convolutions are 3x3, SAME-padded, without bias (BatchNorm follows). On 32x32 images
  the features end at 1x1x512; they are flattened and go through the ReLU dense layers
  of ``hidden`` (none by default, the usual CIFAR variant) and the classifier. Layers are
  named ``conv{i}``/``bn{i}`` (i = 1..13), ``fc{j}`` and ``head``.

  Attributes:
    num_classes: Size of the output layer.
    hidden: Widths of the dense layers before the classifier, e.g. ``(512, 512)``.
    width: Channels of the first stage (64 in VGG-16); every stage scales with it
      (``width=32`` is half as wide throughout).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxprune.train.models import count_params
    >>> model = VGG16(num_classes=10)
    >>> variables = jax.eval_shape(model.init, jax.random.key(0), jnp.ones((1, 32, 32, 3)))
    >>> count_params(variables["params"])
    14724042
    >>> narrow = jax.eval_shape(VGG16(width=8).init, jax.random.key(0), jnp.ones((1, 32, 32, 3)))
    >>> narrow["params"]["conv13"]["kernel"].shape
    (3, 3, 64, 64)
  """

  num_classes: int = 10
  hidden: Sequence[int] = ()
  width: int = 64

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    check_images(x, "VGG16")
    if self.width < 1:
      raise ValueError(
        f"VGG16.width must be a positive channel count, got {self.width!r}; e.g. "
        "--config.model.kwargs.width=32 for half width."
      )
    i = 0
    for item in VGG16_CONFIG:
      if item == "M":
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
        continue
      i += 1
      features = item * self.width // 64  # >= width: every stage has >= 64 channels
      x = nn.Conv(features, (3, 3), padding="SAME", use_bias=False, name=f"conv{i}")(x)
      x = nn.relu(_norm(train, f"bn{i}")(x))
    x = x.reshape((x.shape[0], -1))
    for j, width in enumerate(self.hidden, start=1):
      x = nn.relu(nn.Dense(width, name=f"fc{j}")(x))
    return nn.Dense(self.num_classes, name="head")(x)


class Bottleneck(nn.Module):
  """1x1 reduce, 3x3 (strided), 1x1 expand (x4), each with BatchNorm; projection shortcut.

  ``relu(bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x)))))))) + s(x))`` where ``s`` is a
  strided 1x1 conv with BatchNorm when the shape changes, else the identity. The last
  BatchNorm's scale starts at 0 (``zero_init``), so each block starts as the identity
  (Goyal et al., 2017).

  Attributes:
    features: Width of the 3x3 convolution (the block outputs ``4 * features``).
    strides: Stride of the 3x3 convolution and of the shortcut.
    zero_init: Start the last BatchNorm scale at zero.
  """

  features: int
  strides: int = 1
  zero_init: bool = True

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    out = 4 * self.features
    conv = lambda f, k, s, name: nn.Conv(
      f, (k, k), strides=(s, s), padding="SAME", use_bias=False, kernel_init=_conv_init, name=name
    )
    y = nn.relu(_norm(train, "bn1")(conv(self.features, 1, 1, "conv1")(x)))
    y = nn.relu(_norm(train, "bn2")(conv(self.features, 3, self.strides, "conv2")(y)))
    y = _norm(train, "bn3", zero=self.zero_init)(conv(out, 1, 1, "conv3")(y))
    residual = x
    if self.strides != 1 or x.shape[-1] != out:
      residual = _norm(train, "proj_bn")(conv(out, 1, self.strides, "proj_conv")(x))
    return nn.relu(y + residual)


class ResNet50(nn.Module):
  """ImageNet ResNet-50: 7x7 stem, max-pool, 3/4/6/3 bottleneck blocks, pool, dense.

  25,557,032 parameters with 1000 classes. Layers are named ``stem_conv``, ``stem_bn``,
  ``stage{s}_block{b}`` (from 1; inside: ``conv1..3``, ``bn1..3``, ``proj_conv``,
  ``proj_bn``) and ``head``.

  Attributes:
    num_classes: Size of the output layer.
    stage_sizes: Bottleneck blocks per stage (ResNet-101: ``(3, 4, 23, 3)``).
    width: Width of the first stage's 3x3 convolutions (doubled at each stage).
    zero_init: Start the last BatchNorm scale of every block at zero.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxprune.train.models import count_params
    >>> model = ResNet50(num_classes=1000)
    >>> variables = jax.eval_shape(model.init, jax.random.key(0), jnp.ones((1, 224, 224, 3)))
    >>> count_params(variables["params"])
    25557032
  """

  num_classes: int = 1000
  stage_sizes: Sequence[int] = (3, 4, 6, 3)
  width: int = 64
  zero_init: bool = True

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    check_images(x, "ResNet50")
    x = nn.Conv(
      self.width,
      (7, 7),
      strides=(2, 2),
      padding=((3, 3), (3, 3)),
      use_bias=False,
      kernel_init=_conv_init,
      name="stem_conv",
    )(x)
    x = nn.relu(_norm(train, "stem_bn")(x))
    x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    for s, blocks in enumerate(self.stage_sizes, start=1):
      for b in range(1, blocks + 1):
        strides = 2 if (s > 1 and b == 1) else 1
        block = Bottleneck(
          self.width * 2 ** (s - 1), strides, self.zero_init, name=f"stage{s}_block{b}"
        )
        x = block(x, train=train)
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes, name="head")(x)


class ViTB16(ViTSmall):
  """ViT-B/16: 16x16 patches, width 768, 12 blocks of 12 heads, MLP 3072, class token.

  86,567,656 parameters on 224x224x3 images with 1000 classes (197 tokens).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxprune.train.models import count_params
    >>> variables = jax.eval_shape(
    ...     ViTB16(num_classes=1000).init, jax.random.key(0), jnp.ones((1, 224, 224, 3)))
    >>> count_params(variables["params"])
    86567656
  """

  num_classes: int = 1000
  patch_size: int = 16
  dim: int = 768
  depth: int = 12
  num_heads: int = 12
  mlp_dim: int = 3072
