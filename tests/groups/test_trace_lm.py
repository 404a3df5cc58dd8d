"""Groups of a decoder LM written as LLM code writes it: heads, kv heads, MLP units, residual."""

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxprune
from jaxprune.surgery import apply_resized, shrink


@dataclasses.dataclass(frozen=True)
class Config:
  """The shape of a tiny decoder LM (the fields of the model zoo's ``LMConfig`` it needs)."""

  vocab_size: int = 32
  num_layers: int = 2
  width: int = 32
  num_heads: int = 4
  num_kv_heads: int = 4
  head_dim: int = 8
  mlp_width: int = 48
  max_len: int = 16
  variant: str = "llama"  # "llama": RMSNorm, RoPE, SwiGLU; "gpt2": LayerNorm, positions, GELU
  attention: str = "grouped"  # GQA as a grouped einsum, or "repeat": k/v heads repeated


def rotary(x, theta=10000.0):
  """RoPE of ``x [B, T, heads, head_dim]``, rotating entries i and i + head_dim / 2."""
  t, dim = x.shape[1], x.shape[-1]
  inv_freq = 1.0 / theta ** (jnp.arange(0, dim, 2, dtype=jnp.float32) / dim)
  angles = jnp.arange(t, dtype=jnp.float32)[:, None] * inv_freq[None, :]
  cos, sin = jnp.cos(angles)[None, :, None, :], jnp.sin(angles)[None, :, None, :]
  x1, x2 = x[..., : dim // 2], x[..., dim // 2 :]
  return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


def causal_attention(q, k, v, style):
  """``[B, T, heads, D]`` queries over ``[B, T, kv_heads, D]`` keys and values."""
  b, t, heads, dim = q.shape
  kv_heads = k.shape[2]
  causal = jnp.tril(jnp.ones((t, t), bool))
  if style == "grouped":  # query head h reads kv head h // (heads / kv_heads)
    q = q.reshape(b, t, kv_heads, heads // kv_heads, dim)
    scores = jnp.einsum("bqkgd,bskd->bkgqs", q, k) / math.sqrt(dim)
    weights = jax.nn.softmax(jnp.where(causal, scores, -jnp.inf), axis=-1)
    return jnp.einsum("bkgqs,bskd->bqkgd", weights, v).reshape(b, t, heads, dim)
  k = jnp.repeat(k, heads // kv_heads, axis=2)  # Hugging Face's repeat_kv
  v = jnp.repeat(v, heads // kv_heads, axis=2)
  scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(dim)
  weights = jax.nn.softmax(jnp.where(causal, scores, -jnp.inf), axis=-1)
  return jnp.einsum("bhqk,bkhd->bqhd", weights, v)


def _norm(cfg, name):
  return nn.LayerNorm(name=name) if cfg.variant == "gpt2" else nn.RMSNorm(name=name)


class DecoderBlock(nn.Module):
  """A pre-norm block; head counts are read from the projections, so a shrunk block runs."""

  config: Config

  @nn.compact
  def __call__(self, hidden):
    cfg = self.config
    dense = lambda n, name: nn.Dense(n, use_bias=cfg.variant == "gpt2", name=name)
    b, t, _ = hidden.shape
    x = _norm(cfg, "attn_norm")(hidden)
    q = dense(cfg.num_heads * cfg.head_dim, "q_proj")(x).reshape(b, t, -1, cfg.head_dim)
    k = dense(cfg.num_kv_heads * cfg.head_dim, "k_proj")(x).reshape(b, t, -1, cfg.head_dim)
    v = dense(cfg.num_kv_heads * cfg.head_dim, "v_proj")(x).reshape(b, t, -1, cfg.head_dim)
    if cfg.variant == "llama":
      q, k = rotary(q), rotary(k)
    attn = causal_attention(q, k, v, cfg.attention)
    hidden = hidden + dense(cfg.width, "o_proj")(attn.reshape(b, t, -1))
    x = _norm(cfg, "mlp_norm")(hidden)
    up = dense(cfg.mlp_width, "up_proj")(x)
    if cfg.variant == "llama":
      mid = nn.silu(dense(cfg.mlp_width, "gate_proj")(x)) * up
    else:
      mid = nn.gelu(up)
    return hidden + dense(cfg.width, "down_proj")(mid)


class DecoderLM(nn.Module):
  """Tokens ``[B, T]`` to logits, with ``embed``/``head`` methods and ``block_i`` blocks."""

  config: Config

  def setup(self):
    cfg = self.config
    self.embed_tokens = nn.Embed(cfg.vocab_size, cfg.width)
    if cfg.variant == "gpt2":
      self.pos_embed = nn.Embed(cfg.max_len, cfg.width)
    self.blocks = [DecoderBlock(cfg, name=f"block_{i}") for i in range(cfg.num_layers)]
    self.final_norm = _norm(cfg, "final_norm")
    if cfg.variant != "gpt2":
      self.lm_head = nn.Dense(cfg.vocab_size, use_bias=False)

  def embed(self, tokens):
    hidden = self.embed_tokens(tokens)
    if self.config.variant == "gpt2":
      hidden = hidden + self.pos_embed(jnp.arange(tokens.shape[1]))
    return hidden

  def head(self, hidden):
    hidden = self.final_norm(hidden)
    if self.config.variant == "gpt2":
      return self.embed_tokens.attend(hidden)  # the head tied to the token embedding
    return self.lm_head(hidden)

  def __call__(self, tokens):
    hidden = self.embed(tokens)
    for block in self.blocks:
      hidden = block(hidden)
    return self.head(hidden)


CONFIGS = {
  "llama": Config(),
  "llama_gqa": Config(num_heads=8, num_kv_heads=4, head_dim=4),
  "llama_gqa_repeat": Config(num_heads=8, num_kv_heads=4, head_dim=4, attention="repeat"),
  "gpt2": Config(variant="gpt2", attention="repeat"),
}


def _model(name):
  cfg = CONFIGS[name]
  model = DecoderLM(cfg)
  tokens = jax.random.randint(jax.random.key(0), (2, cfg.max_len), 0, cfg.vocab_size)
  variables = model.init(jax.random.key(1), tokens)
  return cfg, model, variables, tokens


def _randomize(variables, key):
  """Random biases, norm scales and shifts, so that removing a unit that uses them shows."""
  leaves, treedef = jax.tree.flatten(variables)
  keys = jax.random.split(key, len(leaves))
  out = [
    x if x.ndim > 1 else 0.5 * jax.random.normal(k, x.shape)
    for x, k in zip(leaves, keys, strict=True)
  ]
  return jax.tree.unflatten(treedef, out)


def _members(group):
  """{(path without "params/", axis, positions per unit)} of a group."""
  return {
    (p.removeprefix("params/"), a, i.shape[1])
    for (p, a), i in zip(group.members, group.index, strict=True)
  }


def _expected_heads(cfg, block):
  """Per kv head: the columns of its query heads, its key and value columns, o_proj's rows."""
  q_cols = cfg.num_heads // cfg.num_kv_heads * cfg.head_dim
  bias = cfg.variant == "gpt2"
  out = {
    (f"{block}/q_proj/kernel", 1, q_cols),
    (f"{block}/k_proj/kernel", 1, cfg.head_dim),
    (f"{block}/v_proj/kernel", 1, cfg.head_dim),
    (f"{block}/o_proj/kernel", 0, q_cols),
  }
  if bias:
    out |= {
      (f"{block}/q_proj/bias", 0, q_cols),
      (f"{block}/k_proj/bias", 0, cfg.head_dim),
      (f"{block}/v_proj/bias", 0, cfg.head_dim),
    }
  return out


def _expected_mlp(cfg, block):
  layers = ("gate_proj", "up_proj") if cfg.variant == "llama" else ("up_proj",)
  out = {(f"{block}/{n}/kernel", 1, 1) for n in layers} | {(f"{block}/down_proj/kernel", 0, 1)}
  if cfg.variant == "gpt2":
    out |= {(f"{block}/up_proj/bias", 0, 1)}
  return out


@pytest.mark.parametrize("name", list(CONFIGS))
def test_heads_kv_heads_and_mlp_units_are_groups_and_the_residual_is_kept(name):
  cfg, model, variables, tokens = _model(name)
  groups = jaxprune.groups.trace(model.apply, variables, tokens)
  got = {g.name.removeprefix("params/"): (g.size, _members(g)) for g in groups}
  expected = {}
  for i in range(cfg.num_layers):
    block = f"block_{i}"
    expected[f"{block}/k_proj/kernel:1"] = (cfg.num_kv_heads, _expected_heads(cfg, block))
    mlp = "gate_proj" if cfg.variant == "llama" else "up_proj"  # the first producer names it
    expected[f"{block}/{mlp}/kernel:1"] = (cfg.mlp_width, _expected_mlp(cfg, block))
  assert got == expected
  # A kv head is the key/value columns h*D..(h+1)*D-1 with query heads h*G..(h+1)*G-1.
  g = groups["params/block_1/k_proj/kernel:1"]
  rows = dict(zip(g.members, g.index, strict=True))
  group_cols = cfg.num_heads // cfg.num_kv_heads * cfg.head_dim
  np.testing.assert_array_equal(
    rows[("params/block_1/q_proj/kernel", 1)][1], group_cols + np.arange(group_cols)
  )
  np.testing.assert_array_equal(
    rows[("params/block_1/v_proj/kernel", 1)][1], cfg.head_dim + np.arange(cfg.head_dim)
  )
  # The vocabulary is no channel axis; the residual width is normalised, so kept.
  assert "a gather indexes it" in groups.kept[("params/embed_tokens/embedding", 0)]
  assert groups.kept[("params/embed_tokens/embedding", 1)] == "reduce_sum reduces over it"
  assert groups.kept[("params/final_norm/scale", 0)] == "reduce_sum reduces over it"


@pytest.mark.parametrize("name", list(CONFIGS))
def test_removing_a_quarter_of_the_heads_and_mlp_units_keeps_the_masked_logits(name):
  cfg, model, variables, tokens = _model(name)
  variables = _randomize(variables, jax.random.key(2))
  groups = jaxprune.groups.trace(model.apply, variables, tokens)
  pruned, masks = jaxprune.prune(variables["params"], 0.25, structure=groups)
  small, widths = shrink({"params": pruned}, groups, masks)
  assert widths == {g.name: g.size - round(0.25 * g.size) for g in groups}
  block = small["params"]["block_0"]
  kv_left = cfg.num_kv_heads - round(0.25 * cfg.num_kv_heads)
  assert block["k_proj"]["kernel"].shape == (cfg.width, kv_left * cfg.head_dim)
  assert block["q_proj"]["kernel"].shape == (
    cfg.width,
    kv_left * cfg.num_heads // cfg.num_kv_heads * cfg.head_dim,
  )
  assert block["down_proj"]["kernel"].shape == (cfg.mlp_width * 3 // 4, cfg.width)
  expected = model.apply({"params": pruned}, tokens)
  got = apply_resized(model, small, tokens)
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
  assert not np.allclose(expected, model.apply(variables, tokens), atol=1e-3)  # pruning shows


def _expected_residual(cfg):
  """The residual width: the embedding's columns, every block's in and out, norms, head."""
  biases = cfg.variant == "gpt2"
  out = {("embed_tokens/embedding", 1, 1), ("final_norm/scale", 0, 1)}
  out |= {("pos_embed/embedding", 1, 1), ("final_norm/bias", 0, 1)} if biases else set()
  out |= set() if biases else {("lm_head/kernel", 0, 1)}  # the tied head is the embedding
  for i in range(cfg.num_layers):
    readers = ("q_proj", "k_proj", "v_proj", "up_proj") + (("gate_proj",) * (not biases))
    out |= {(f"block_{i}/{n}/kernel", 0, 1) for n in readers}
    out |= {(f"block_{i}/{n}/kernel", 1, 1) for n in ("o_proj", "down_proj")}
    out |= {(f"block_{i}/{n}/scale", 0, 1) for n in ("attn_norm", "mlp_norm")}
    if biases:
      out |= {(f"block_{i}/{n}/bias", 0, 1) for n in ("attn_norm", "mlp_norm")}
      out |= {(f"block_{i}/{n}/bias", 0, 1) for n in ("o_proj", "down_proj")}
  return out


@pytest.mark.parametrize("name", ["llama", "gpt2"])
def test_normalized_group_gives_one_residual_group_across_all_blocks(name):
  cfg, model, variables, tokens = _model(name)
  default = jaxprune.groups.trace(model.apply, variables, tokens)
  groups = jaxprune.groups.trace(model.apply, variables, tokens, normalized="group")
  residual = [g for g in groups if g.name not in {d.name for d in default}]
  assert [(g.name, g.size) for g in residual] == [("params/block_0/down_proj/kernel:1", cfg.width)]
  assert _members(residual[0]) == _expected_residual(cfg)
  assert {g.name: _members(g) for g in default} == {
    g.name: _members(g) for g in groups if g is not residual[0]
  }
  # Removed as that one group, the model runs at the smaller width everywhere.
  pruned, masks = jaxprune.prune(variables["params"], 0.25, structure=groups)
  small, widths = shrink({"params": pruned}, groups, masks)
  assert widths["params/block_0/down_proj/kernel:1"] == cfg.width * 3 // 4
  assert small["params"]["embed_tokens"]["embedding"].shape == (cfg.vocab_size, cfg.width * 3 // 4)
  logits = apply_resized(model, small, tokens)
  assert logits.shape == (*tokens.shape, cfg.vocab_size) and bool(jnp.all(jnp.isfinite(logits)))


def test_normalized_must_be_keep_or_group():
  _, model, variables, tokens = _model("llama")
  with pytest.raises(ValueError, match="normalized must be 'keep' or 'group', got 'yes'"):
    jaxprune.groups.trace(model.apply, variables, tokens, normalized="yes")
