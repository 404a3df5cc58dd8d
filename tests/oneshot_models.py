"""A tiny decoder LM with the zoo's structure, for the one-shot tests.

Linen, methods ``embed``/``head``, submodules ``block_0`` ... ``block_{L-1}`` of one
``DecoderBlock`` class; hand-written causal attention with RoPE and q/k/v/o projections
(``nn.Dense`` reshaped into heads, or ``DenseGeneral`` with 3-D kernels), RMSNorm, SwiGLU MLP.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp


def rope(x):
  """Rotary position embedding over the last axis of ``x [B, T, H, hd]``."""
  t, half = x.shape[1], x.shape[-1] // 2
  freq = 1.0 / (10000.0 ** (jnp.arange(half) / half))
  ang = jnp.arange(t)[:, None] * freq[None]
  cos, sin = jnp.cos(ang)[None, :, None], jnp.sin(ang)[None, :, None]
  a, b = x[..., :half], x[..., half:]
  return jnp.concatenate([a * cos - b * sin, a * sin + b * cos], axis=-1)


class DecoderBlock(nn.Module):
  width: int
  num_heads: int
  mlp_width: int
  general: bool = False  # DenseGeneral q/k/v [D, H, hd] and o [H, hd, D]

  @nn.compact
  def __call__(self, h):
    b, t, d = h.shape
    heads, hd = self.num_heads, d // self.num_heads
    x = nn.RMSNorm(name="attn_norm")(h)
    if self.general:
      q, k, v = (nn.DenseGeneral((heads, hd), use_bias=False, name=f"{n}_proj")(x) for n in "qkv")
    else:
      q, k, v = (
        nn.Dense(d, use_bias=False, name=f"{n}_proj")(x).reshape(b, t, heads, hd) for n in "qkv"
      )
    q, k = rope(q), rope(k)
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(hd).astype(h.dtype)
    causal = jnp.tril(jnp.ones((t, t), bool))
    probs = jax.nn.softmax(jnp.where(causal, scores, -1e9), axis=-1)
    o = jnp.einsum("bhqk,bkhd->bqhd", probs, v)
    if self.general:
      out = nn.DenseGeneral(d, axis=(-2, -1), use_bias=False, name="o_proj")(o)
    else:
      out = nn.Dense(d, use_bias=False, name="o_proj")(o.reshape(b, t, d))
    h = h + out
    x = nn.RMSNorm(name="mlp_norm")(h)
    gate = nn.Dense(self.mlp_width, use_bias=False, name="gate_proj")(x)
    up = nn.Dense(self.mlp_width, use_bias=False, name="up_proj")(x)
    return h + nn.Dense(d, use_bias=False, name="down_proj")(nn.silu(gate) * up)


class DecoderLM(nn.Module):
  num_classes: int = 64
  num_layers: int = 2
  width: int = 32
  num_heads: int = 4
  mlp_width: int = 64
  max_len: int = 16
  general: bool = False
  tie_embeddings: bool = False

  def setup(self):
    self.embed_tokens = nn.Embed(self.num_classes, self.width)
    self.blocks = [
      DecoderBlock(self.width, self.num_heads, self.mlp_width, self.general, name=f"block_{i}")
      for i in range(self.num_layers)
    ]
    self.final_norm = nn.RMSNorm()
    if not self.tie_embeddings:
      self.lm_head = nn.Dense(self.num_classes, use_bias=False)

  def embed(self, tokens):
    return self.embed_tokens(tokens)

  def head(self, hidden):
    x = self.final_norm(hidden)
    return self.embed_tokens.attend(x) if self.tie_embeddings else self.lm_head(x)

  def __call__(self, tokens, train=False):
    del train
    h = self.embed(tokens)
    for block in self.blocks:
      h = block(h)
    return self.head(h)


def init(model, seed=0, t=8):
  """Random params of ``model``, scaled so activations stay O(1)."""
  params = model.init(jax.random.key(seed), jnp.zeros((1, t), jnp.int32))["params"]
  return jax.tree.map(lambda x: x * 2.0 if x.ndim >= 2 else x, params)


def tokens(n, t, vocab=64, seed=1):
  """Calibration windows [n, t] with a skewed token distribution (like text)."""
  logits = -jnp.arange(vocab) / 8.0
  return jax.random.categorical(jax.random.key(seed), logits, shape=(n, t)).astype(jnp.int32)


def sharded_run(mesh, method, structure, general):
  """One-shot pruning of ``DecoderLM(general=general)`` with FSDP-sharded params over
  ``mesh`` (axis "data") and the calibration batch split over it: masks, params, whether
  shardings were kept, how many leaves are sharded, and whether the Gram pass all-reduces."""
  import numpy as np
  from jax.sharding import NamedSharding
  from jax.sharding import PartitionSpec as P

  from jaxprune import oneshot
  from jaxprune.train.sharding import fsdp_spec

  model = DecoderLM(general=general)
  params = init(model)
  params = jax.tree.map(
    lambda x: jax.device_put(x, NamedSharding(mesh, fsdp_spec(x.shape, mesh.size, min_size=1))),
    params,
  )
  bw = oneshot.blockwise_from_decoder_lm(model)
  out = oneshot.prune_sequential(
    bw,
    params,
    tokens(16, 8),
    method=method,
    structure=structure,
    mesh=mesh,
    settings=oneshot.Settings(batch_size=8, block_size=16),
  )
  kept = all(
    new.sharding.is_equivalent_to(old.sharding, new.ndim)
    for new, old in zip(jax.tree.leaves(out.params), jax.tree.leaves(params), strict=True)
  )
  sharded = sum(
    len(x.sharding.device_set) > 1 and not x.sharding.is_fully_replicated
    for x in jax.tree.leaves(out.params)
  )
  # The Gram pass over a batch split on "data" sums XᵀX across devices: an all-reduce.
  hidden = jax.device_put(np.zeros((2, 8, 8, 32), np.float32), NamedSharding(mesh, P(None, "data")))
  found = oneshot.find_linears(bw.block, params["block_0"], hidden[0])
  collect = frozenset(lin.index for lin in found.linears)
  grams = oneshot.sequential._programs(bw)["block_grams"]
  hlo = grams.lower(params["block_0"], hidden, collect=collect).compile().as_text()
  return {
    "devices": mesh.size,
    "kept_sharding": kept,
    "sharded_leaves": int(sharded),
    "all_reduce": "all-reduce" in hlo,
    "masks": [np.asarray(m).tolist() for m in jax.tree.leaves(out.masks)],
    "params": [np.asarray(p).tolist() for p in jax.tree.leaves(out.params)],
  }
