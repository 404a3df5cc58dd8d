"""Tests of the decoder-only LM of the model zoo: sizes, causality, GQA, the block interface."""

import dataclasses

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxprune
from jaxprune.surgery import apply_resized, shrink
from jaxprune.train import models
from jaxprune.train.models import DecoderBlock, DecoderLM, LMConfig

TOKENS = jnp.asarray(np.random.default_rng(0).integers(0, 256, (2, 12)), jnp.int32)
SMALL = dict(num_layers=2, width=32, num_heads=4)


def n_params(config: LMConfig) -> int:
  """Parameters of the model of ``config``, traced abstractly (no memory, no compute)."""
  model = DecoderLM.from_config(config)
  shapes = jax.eval_shape(model.init, jax.random.key(0), jax.ShapeDtypeStruct((1, 8), jnp.int32))
  return models.count_params(shapes["params"])


def formula(c: LMConfig) -> int:
  """Parameter count by hand: embeddings, per block attention, MLP and norms, final norm."""
  d, hd = c.width, c.width // c.num_heads
  norm = 2 * d if c.variant == "gpt2" else d  # LayerNorm has a bias
  linears = [(d, c.num_heads * hd), (d, c.num_kv_heads * hd), (d, c.num_kv_heads * hd)]
  linears += [(c.num_heads * hd, d), (d, c.mlp_width), (c.mlp_width, d)]
  if c.variant == "llama":
    linears.append((d, c.mlp_width))  # the SwiGLU gate
  bias = c.variant == "gpt2"
  block = 2 * norm + sum(i * o + (o if bias else 0) for i, o in linears)
  embed = c.vocab_size * d + (c.max_len * d if c.variant == "gpt2" else 0)
  head = 0 if c.tie_embeddings else c.vocab_size * d
  return embed + c.num_layers * block + norm + head


def test_gpt2_124m_has_124439808_params_with_the_head_tied():
  config = LMConfig.gpt2_124m()
  assert (config.variant, config.tie_embeddings, config.mlp_width) == ("gpt2", True, 3072)
  assert n_params(config) == 124_439_808 == formula(config)


def test_llama_1b_has_the_parameters_of_its_shapes():
  config = LMConfig.llama_1b()
  assert (config.num_heads, config.num_kv_heads, config.head_dim) == (32, 8, 64)
  assert dict(config.rope_scaling)["factor"] == 32.0 and config.max_len == 131072
  # By hand: 128256*2048 embedding (tied head) + 16 * (2*2048 norms + 2048*(2048 + 2*512)
  # attention in + 2048*2048 out + 3*2048*8192 SwiGLU) + 2048 final norm.
  by_hand = 128256 * 2048 + 16 * (2 * 2048 + 2048 * 3072 + 2048 * 2048 + 3 * 2048 * 8192) + 2048
  assert by_hand == 1_235_814_400
  assert n_params(config) == by_hand == formula(config)


@pytest.mark.parametrize(
  "config",
  [
    LMConfig.tiny(),
    LMConfig.tiny(variant="gpt2"),
    LMConfig.tiny(num_kv_heads=2, tie_embeddings=True),
    LMConfig.tiny(variant="gpt2", tie_embeddings=False, mlp_width=100),
  ],
  ids=["llama", "gpt2", "llama-gqa-tied", "gpt2-untied"],
)
def test_parameter_counts_match_the_formula(config):
  assert n_params(config) == formula(config)


def test_tiny_preset_is_about_one_million_params():
  assert 0.8e6 < n_params(LMConfig.tiny()) < 1.2e6


def test_names_and_kernel_layouts_are_those_of_the_contract():
  config = LMConfig.tiny(num_kv_heads=2, **SMALL)
  params = DecoderLM.from_config(config).init(jax.random.key(0), TOKENS)["params"]
  assert sorted(params) == ["block_0", "block_1", "embed_tokens", "final_norm", "lm_head"]
  block = params["block_1"]
  shapes = {name: block[name]["kernel"].shape for name in block if "proj" in name}
  assert shapes == {
    "q_proj": (32, 32),
    "k_proj": (32, 16),
    "v_proj": (32, 16),
    "o_proj": (32, 32),
    "gate_proj": (32, 128),
    "up_proj": (32, 128),
    "down_proj": (128, 32),
  }
  assert sorted(block["attn_norm"]) == ["scale"]
  gpt2 = DecoderLM.from_config(LMConfig.tiny(variant="gpt2", **SMALL))
  params = gpt2.init(jax.random.key(0), TOKENS)["params"]
  assert sorted(params) == ["block_0", "block_1", "embed_tokens", "final_norm", "pos_embed"]
  assert sorted(params["block_0"]) == [
    "attn_norm", "down_proj", "k_proj", "mlp_norm", "o_proj", "q_proj", "up_proj", "v_proj"
  ]  # fmt: skip
  assert sorted(params["block_0"]["up_proj"]) == ["bias", "kernel"]
  assert sorted(params["block_0"]["mlp_norm"]) == ["bias", "scale"]
  assert params["pos_embed"]["embedding"].shape == (256, 32)


def test_get_model_builds_it_from_config_file_keywords():
  model = models.get_model("decoder_lm", num_classes=256, num_layers=2, variant="gpt2")
  assert isinstance(model, DecoderLM)
  assert model.config == LMConfig(num_layers=2, variant="gpt2")
  defaults = {f.name: f.default for f in dataclasses.fields(LMConfig)}
  fields = {f.name: f.default for f in dataclasses.fields(DecoderLM) if f.name in defaults}
  assert fields == {k: v for k, v in defaults.items() if k != "vocab_size"}  # same defaults
  assert DecoderLM().config == LMConfig()
  assert DecoderLM.from_config(LMConfig.gpt2_124m()).config == LMConfig.gpt2_124m()
  with pytest.raises(TypeError, match="unexpected keyword.*'depth'"):
    models.get_model("decoder_lm", num_classes=256, depth=2)


@pytest.mark.parametrize("variant", ["llama", "gpt2"])
def test_logits_at_a_position_depend_only_on_it_and_earlier_tokens(variant):
  model = DecoderLM.from_config(LMConfig.tiny(variant=variant, **SMALL))
  params = model.init(jax.random.key(1), TOKENS)["params"]
  apply = jax.jit(lambda t: model.apply({"params": params}, t, train=False))
  logits = apply(TOKENS)
  assert logits.shape == (2, 12, 256) and logits.dtype == jnp.float32
  changed = apply(TOKENS.at[:, 7].set((TOKENS[:, 7] + 1) % 256))
  np.testing.assert_array_equal(changed[:, :7], logits[:, :7])
  assert np.abs(changed[:, 7:] - logits[:, 7:]).min(axis=-1).max() > 0  # later ones change
  assert not np.allclose(changed[:, 7:], logits[:, 7:], atol=1e-3)


def test_grouped_query_attention_equals_multi_head_with_repeated_kv_heads():
  gqa = DecoderLM.from_config(LMConfig.tiny(num_kv_heads=2, **SMALL))
  params = gqa.init(jax.random.key(2), TOKENS)["params"]
  mha = DecoderLM.from_config(LMConfig.tiny(**SMALL))
  wide = jax.tree.map(lambda x: x, params)
  for i in range(2):
    for name in ("k_proj", "v_proj"):  # kv head j serves query heads 2j and 2j + 1
      kernel = params[f"block_{i}"][name]["kernel"].reshape(32, 2, 1, 8)
      wide[f"block_{i}"] = {
        **wide[f"block_{i}"],
        name: {"kernel": jnp.broadcast_to(kernel, (32, 2, 2, 8)).reshape(32, 32)},
      }
  np.testing.assert_allclose(
    gqa.apply({"params": params}, TOKENS), mha.apply({"params": wide}, TOKENS), atol=1e-5
  )


@pytest.mark.parametrize("variant", ["llama", "gpt2"])
def test_embed_then_one_block_function_then_head_is_the_model(variant):
  config = LMConfig.tiny(variant=variant, num_layers=3, width=32, num_heads=4)
  model = DecoderLM.from_config(config)
  params = model.init(jax.random.key(3), TOKENS)["params"]
  traces = []

  @jax.jit
  def block(p, h):
    traces.append(1)
    return DecoderBlock(config).apply({"params": p}, h)

  hidden = model.apply({"params": params}, TOKENS, method="embed")
  assert hidden.shape == (2, 12, 32)
  for i in range(3):
    hidden = block(params[f"block_{i}"], hidden)
  logits = model.apply({"params": params}, hidden, method="head")
  assert len(traces) == 1  # one compiled function serves every block
  np.testing.assert_allclose(logits, model.apply({"params": params}, TOKENS), atol=1e-5)


def test_tied_head_is_the_transposed_token_embedding():
  config = LMConfig.tiny(variant="gpt2", **SMALL)
  model = DecoderLM.from_config(config)
  params = model.init(jax.random.key(4), TOKENS)["params"]
  hidden = jnp.ones((1, 3, 32))
  norm = params["final_norm"]
  normed = (hidden - hidden.mean(-1, keepdims=True)) / jnp.sqrt(hidden.var(-1) + 1e-5)[..., None]
  want = (normed * norm["scale"] + norm["bias"]) @ params["embed_tokens"]["embedding"].T
  got = model.apply({"params": params}, hidden, method="head")
  np.testing.assert_allclose(got, want, atol=1e-5)


def test_dropout_acts_only_in_training_and_needs_a_key():
  model = DecoderLM.from_config(LMConfig.tiny(dropout_rate=0.5, **SMALL))
  variables = model.init(jax.random.key(5), TOKENS)
  evaluation = model.apply(variables, TOKENS, train=False)
  dense = DecoderLM.from_config(LMConfig.tiny(**SMALL)).apply(variables, TOKENS, train=True)
  np.testing.assert_array_equal(evaluation, dense)
  train = lambda s: model.apply(variables, TOKENS, train=True, rngs={"dropout": jax.random.key(s)})
  noisy = [train(1), train(2)]
  assert not np.allclose(noisy[0], noisy[1], atol=1e-3)
  assert not np.allclose(noisy[0], evaluation, atol=1e-3)
  with pytest.raises(flax.errors.InvalidRngError, match="dropout"):
    model.apply(variables, TOKENS, train=True)


def test_bfloat16_computation_keeps_float32_params_and_logits():
  config = LMConfig.tiny(dtype="bfloat16", **SMALL)
  model = DecoderLM.from_config(config)
  params = model.init(jax.random.key(6), TOKENS)["params"]
  assert {x.dtype for x in jax.tree.leaves(params)} == {jnp.dtype("float32")}
  jaxpr = jax.make_jaxpr(lambda p: model.apply({"params": p}, TOKENS))(params)
  dots = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == "dot_general"]
  logits = model.apply({"params": params}, TOKENS)
  assert logits.dtype == jnp.float32
  full = DecoderLM.from_config(dataclasses.replace(config, dtype="float32"))
  want = full.apply({"params": params}, TOKENS)
  assert np.abs(logits - want).max() < 0.05 * np.abs(want).max()
  assert not dots or all(e.invars[0].aval.dtype == jnp.bfloat16 for e in dots)


@pytest.mark.parametrize(
  "kwargs, message",
  [
    (dict(variant="mamba"), "variant='mamba'; expected one of"),
    (dict(width=30, num_heads=4), "the heads must divide the width"),
    (dict(num_heads=4, num_kv_heads=3), "num_kv_heads=3; the key/value heads must divide"),
    (dict(variant="gpt2", rope_theta=1e4), "no RoPE; leave rope_theta=None"),
    (dict(variant="gpt2", rope_scaling={"factor": 2.0}), "no RoPE; leave rope_scaling=None"),
    (dict(rope_scaling={"rope_type": "yarn", "factor": 2.0}), "only Llama 3's rescaling"),
    (dict(width=12, num_heads=4), "RoPE needs an even head dim"),
    (dict(num_layers=0), "num_layers=0; expected a positive int"),
    (dict(dtype="int32"), "expected a float dtype"),
    (dict(dropout_rate=1.0), "dropout_rate=1.0"),
  ],
)
def test_bad_configs_are_refused(kwargs, message):
  with pytest.raises(ValueError, match=message.replace("(", r"\(")):
    LMConfig(**kwargs)
  with pytest.raises(ValueError, match=message.replace("(", r"\(")):
    models.get_model("decoder_lm", num_classes=256, **kwargs)


def test_tokens_must_be_int_and_at_most_max_len():
  model = DecoderLM.from_config(LMConfig.tiny(max_len=8, **SMALL))
  variables = model.init(jax.random.key(0), TOKENS[:, :8])
  with pytest.raises(TypeError, match=r"int tokens \[batch, time\]; got float32"):
    model.apply(variables, jnp.zeros((2, 8)))
  with pytest.raises(ValueError, match="12 tokens per sequence; max_len is 8"):
    model.apply(variables, TOKENS)


@pytest.mark.parametrize(
  "kwargs", [dict(variant="llama", num_heads=8, num_kv_heads=4), dict(variant="gpt2", num_heads=4)]
)
def test_traced_heads_and_mlp_units_shrink_to_a_model_with_the_masked_logits(kwargs):
  # Heads are read from the projections' widths, so the shrunk model runs with the same code.
  model = DecoderLM.from_config(LMConfig.tiny(num_layers=2, width=32, **kwargs))
  variables = model.init(jax.random.key(0), TOKENS)
  variables = {
    "params": jax.tree.map(
      lambda x: x + 0.1 * jax.random.normal(jax.random.key(1), x.shape), variables["params"]
    )
  }
  groups = jaxprune.groups.trace(model.apply, variables, TOKENS)
  pruned, masks = jaxprune.prune(variables["params"], 0.25, structure=groups)
  small, _ = shrink({"params": pruned}, groups, masks)
  q = small["params"]["block_0"]["q_proj"]["kernel"]
  assert q.shape[1] < variables["params"]["block_0"]["q_proj"]["kernel"].shape[1]
  np.testing.assert_allclose(
    apply_resized(model, small, TOKENS),
    model.apply({"params": pruned}, TOKENS),
    rtol=1e-5,
    atol=1e-5,
  )
