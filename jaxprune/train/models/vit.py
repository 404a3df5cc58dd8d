"""A small Vision Transformer (Dosovitskiy et al., 2021) sized to train on a CPU.

Pre-LayerNorm blocks: ``x + MHA(LN(x))`` then ``x + MLP(LN(x))``, on patch embeddings
from a strided convolution plus learned position embeddings.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxprune.train.models.convnets import check_images

_POOLINGS = ("cls", "mean")


class EncoderBlock(nn.Module):
  """One pre-LN transformer block: multi-head self-attention, then a GELU MLP.

  Attributes:
    num_heads: Attention heads (must divide the token width).
    mlp_dim: Hidden width of the MLP.
    dropout_rate: Dropout on the attention weights and MLP outputs while training.
  """

  num_heads: int
  mlp_dim: int
  dropout_rate: float = 0.0

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    dim = x.shape[-1]
    y = nn.LayerNorm(name="ln_attn")(x)
    y = nn.MultiHeadDotProductAttention(
      num_heads=self.num_heads, dropout_rate=self.dropout_rate, name="attn"
    )(y, deterministic=not train)
    x = x + y
    y = nn.LayerNorm(name="ln_mlp")(x)
    y = nn.gelu(nn.Dense(self.mlp_dim, name="mlp_in")(y))
    y = nn.Dense(dim, name="mlp_out")(y)
    y = nn.Dropout(self.dropout_rate)(y, deterministic=not train)
    return x + y


class ViTSmall(nn.Module):
  """A small ViT: patch embedding, ``depth`` pre-LN encoder blocks, LayerNorm, classifier.

  With the defaults (4x4 patches, width 64, 4 blocks of 4 heads, MLP 128, class token) it
  has about 0.14M parameters on 32x32x3 images (65 tokens). Layers are named
  ``patch_embed``, ``cls_token``, ``pos_embed``, ``block{i}`` (from 1; inside: ``ln_attn``,
  ``attn`` with ``query``/``key``/``value``/``out``, ``ln_mlp``, ``mlp_in``, ``mlp_out``),
  ``ln_final`` and ``head``. With ``dropout_rate > 0``, training needs a ``"dropout"`` key:
  ``model.apply(variables, x, train=True, rngs={"dropout": key})``.

  Attributes:
    num_classes: Size of the output layer.
    patch_size: Side of the square patches (the embedding conv's kernel and stride).
    dim: Token width.
    depth: Number of encoder blocks.
    num_heads: Attention heads per block.
    mlp_dim: Hidden width of each block's MLP.
    pooling: "cls" (a learned class token) or "mean" (average of the patch tokens).
    dropout_rate: Dropout while training (0 disables it).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> model = ViTSmall(num_classes=10, depth=2)
    >>> variables = model.init(jax.random.key(0), jnp.ones((1, 32, 32, 3)))
    >>> variables["params"]["pos_embed"].shape
    (1, 65, 64)
    >>> model.apply(variables, jnp.ones((2, 32, 32, 3)), train=False).shape
    (2, 10)
  """

  num_classes: int = 10
  patch_size: int = 4
  dim: int = 64
  depth: int = 4
  num_heads: int = 4
  mlp_dim: int = 128
  pooling: str = "cls"
  dropout_rate: float = 0.0

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    check_images(x, "ViTSmall")
    if self.pooling not in _POOLINGS:
      raise ValueError(
        f"ViTSmall got pooling={self.pooling!r}; expected one of {_POOLINGS}, e.g. "
        f"ViTSmall(num_classes={self.num_classes}, pooling='mean')."
      )
    p = self.patch_size
    x = nn.Conv(self.dim, (p, p), strides=(p, p), padding="VALID", name="patch_embed")(x)
    x = x.reshape((x.shape[0], -1, self.dim))
    if self.pooling == "cls":
      cls = self.param("cls_token", nn.initializers.zeros, (1, 1, self.dim))
      x = jnp.concatenate([jnp.broadcast_to(cls, (x.shape[0], 1, self.dim)), x], axis=1)
    pos = self.param("pos_embed", nn.initializers.normal(0.02), (1, x.shape[1], self.dim))
    x = nn.Dropout(self.dropout_rate)(x + pos, deterministic=not train)
    for i in range(1, self.depth + 1):
      x = EncoderBlock(self.num_heads, self.mlp_dim, self.dropout_rate, name=f"block{i}")(
        x, train=train
      )
    x = nn.LayerNorm(name="ln_final")(x)
    x = x[:, 0] if self.pooling == "cls" else jnp.mean(x, axis=1)
    return nn.Dense(self.num_classes, name="head")(x)
