"""Hugging Face checkpoint folders in and out of DecoderLM, against an independent NumPy model.

Each test writes a tiny random checkpoint in transformers' layout (names, Conv1D / Linear
layouts, config.json) with NumPy and safetensors only, loads it, and compares the logits with
a float64 NumPy forward pass written here from the checkpoint tensors (its own attention,
RoPE in Hugging Face's rotate-half convention, norms and MLPs).
"""

import json

import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import save_file

from jaxprune.train.models import DecoderLM, LMConfig, load_hf, save_hf
from jaxprune.train.models.hf import config_from_hf

TOKENS = np.array([[3, 17, 0, 42, 9, 9, 31], [5, 1, 44, 2, 28, 11, 7]], np.int32)

GPT2 = {
  "model_type": "gpt2",
  "architectures": ["GPT2LMHeadModel"],
  "vocab_size": 50,
  "n_positions": 16,
  "n_embd": 16,
  "n_layer": 2,
  "n_head": 4,
  "n_inner": None,
  "activation_function": "gelu_new",
  "layer_norm_epsilon": 1e-5,
}
LLAMA = {
  "model_type": "llama",
  "architectures": ["LlamaForCausalLM"],
  "vocab_size": 50,
  "hidden_size": 16,
  "intermediate_size": 24,
  "num_hidden_layers": 2,
  "num_attention_heads": 4,
  "num_key_value_heads": 2,
  "max_position_embeddings": 32,
  "rms_norm_eps": 1e-6,
  "rope_theta": 10000.0,
  "hidden_act": "silu",
  "tie_word_embeddings": False,
}
# Head dim 8: with an original context of 64, the 4 RoPE frequencies (wavelengths 6.3, 63,
# 628, 6283) fall in each of Llama 3's regimes (kept, interpolated, divided, divided).
LLAMA3 = LLAMA | {
  "hidden_size": 32,
  "rope_scaling": {
    "rope_type": "llama3",
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 64,
  },
}


# ------------------------------------------------------------ random checkpoints


def gpt2_tensors(hf: dict, seed: int = 0, prefix: str = "") -> dict[str, np.ndarray]:
  """Random GPT-2 tensors named and laid out as transformers' GPT2Model (Conv1D [in, out])."""
  rng = np.random.default_rng(seed)
  d, v, p = hf["n_embd"], hf["vocab_size"], hf["n_positions"]
  f = hf["n_inner"] or 4 * d
  w = lambda *shape: (0.3 * rng.standard_normal(shape)).astype(np.float32)
  out = {"wte.weight": w(v, d), "wpe.weight": w(p, d)}
  for i in range(hf["n_layer"]):
    out |= {
      f"h.{i}.ln_1.weight": 1 + w(d),
      f"h.{i}.ln_1.bias": w(d),
      f"h.{i}.attn.c_attn.weight": w(d, 3 * d),
      f"h.{i}.attn.c_attn.bias": w(3 * d),
      f"h.{i}.attn.c_proj.weight": w(d, d),
      f"h.{i}.attn.c_proj.bias": w(d),
      f"h.{i}.ln_2.weight": 1 + w(d),
      f"h.{i}.ln_2.bias": w(d),
      f"h.{i}.mlp.c_fc.weight": w(d, f),
      f"h.{i}.mlp.c_fc.bias": w(f),
      f"h.{i}.mlp.c_proj.weight": w(f, d),
      f"h.{i}.mlp.c_proj.bias": w(d),
    }
  out |= {"ln_f.weight": 1 + w(d), "ln_f.bias": w(d)}
  return {prefix + k: x for k, x in out.items()}


def llama_tensors(hf: dict, seed: int = 0) -> dict[str, np.ndarray]:
  """Random Llama tensors named and laid out as transformers' LlamaForCausalLM ([out, in])."""
  rng = np.random.default_rng(seed)
  d, v, f = hf["hidden_size"], hf["vocab_size"], hf["intermediate_size"]
  heads, kv = hf["num_attention_heads"], hf["num_key_value_heads"]
  hd = d // heads
  w = lambda *shape: (0.3 * rng.standard_normal(shape)).astype(np.float32)
  out = {"model.embed_tokens.weight": w(v, d)}
  for i in range(hf["num_hidden_layers"]):
    a, m = f"model.layers.{i}.self_attn", f"model.layers.{i}.mlp"
    out |= {
      f"model.layers.{i}.input_layernorm.weight": 1 + w(d),
      f"{a}.q_proj.weight": w(heads * hd, d),
      f"{a}.k_proj.weight": w(kv * hd, d),
      f"{a}.v_proj.weight": w(kv * hd, d),
      f"{a}.o_proj.weight": w(d, heads * hd),
      f"model.layers.{i}.post_attention_layernorm.weight": 1 + w(d),
      f"{m}.gate_proj.weight": w(f, d),
      f"{m}.up_proj.weight": w(f, d),
      f"{m}.down_proj.weight": w(d, f),
    }
  out["model.norm.weight"] = 1 + w(d)
  if not hf["tie_word_embeddings"]:
    out["lm_head.weight"] = w(v, d)
  return out


def write(folder, hf: dict, tensors: dict[str, np.ndarray], shards: int = 1) -> None:
  """Writes config.json and the tensors, in ``shards`` files with an index when > 1."""
  folder.mkdir(parents=True, exist_ok=True)
  (folder / "config.json").write_text(json.dumps(hf))
  if shards == 1:
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    return
  names = list(tensors)
  weight_map = {}
  for s, part in enumerate(np.array_split(np.arange(len(names)), shards), start=1):
    file = f"model-{s:05d}-of-{shards:05d}.safetensors"
    save_file({names[j]: tensors[names[j]] for j in part}, folder / file)
    weight_map |= {names[j]: file for j in part}
  index = {"metadata": {"total_size": sum(x.nbytes for x in tensors.values())}}
  (folder / "model.safetensors.index.json").write_text(
    json.dumps(index | {"weight_map": weight_map})
  )


# ------------------------------------------------------------ the NumPy reference


def softmax(x):
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def attend(q, k, v):
  """Causal attention per head: q [T, H, hd], k/v [T, H, hd] (kv heads already repeated)."""
  t, hd = q.shape[0], q.shape[-1]
  out = np.empty_like(q)
  for h in range(q.shape[1]):
    scores = q[:, h] @ k[:, h].T / np.sqrt(hd)
    scores[np.triu_indices(t, 1)] = -np.inf
    out[:, h] = softmax(scores) @ v[:, h]
  return out


def layer_norm(x, w, b, eps):
  mu = x.mean(-1, keepdims=True)
  var = ((x - mu) ** 2).mean(-1, keepdims=True)
  return (x - mu) / np.sqrt(var + eps) * w + b


def gpt2_reference(hf: dict, t: dict[str, np.ndarray], tokens: np.ndarray) -> np.ndarray:
  """GPT-2 logits in float64 from the checkpoint tensors (names without a prefix)."""
  t = {k.removeprefix("transformer."): np.asarray(x, np.float64) for k, x in t.items()}
  d, heads, eps = hf["n_embd"], hf["n_head"], hf["layer_norm_epsilon"]
  gelu = lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))
  logits = []
  for seq in tokens:
    x = t["wte.weight"][seq] + t["wpe.weight"][: len(seq)]
    for i in range(hf["n_layer"]):
      p = lambda n, i=i: t[f"h.{i}.{n}"]
      a = layer_norm(x, p("ln_1.weight"), p("ln_1.bias"), eps)
      qkv = a @ p("attn.c_attn.weight") + p("attn.c_attn.bias")
      q, k, v = (z.reshape(len(seq), heads, d // heads) for z in np.split(qkv, 3, axis=-1))
      a = attend(q, k, v).reshape(len(seq), d)
      x = x + a @ p("attn.c_proj.weight") + p("attn.c_proj.bias")
      m = layer_norm(x, p("ln_2.weight"), p("ln_2.bias"), eps)
      m = gelu(m @ p("mlp.c_fc.weight") + p("mlp.c_fc.bias"))
      x = x + m @ p("mlp.c_proj.weight") + p("mlp.c_proj.bias")
    x = layer_norm(x, t["ln_f.weight"], t["ln_f.bias"], eps)
    logits.append(x @ t["wte.weight"].T)
  return np.stack(logits)


def llama3_frequencies(inv_freq, scaling):
  """Meta's apply_scaling (Llama 3.1 reference code), frequency by frequency."""
  factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
  old_context = scaling["original_max_position_embeddings"]
  out = []
  for freq in inv_freq:
    wavelen = 2 * np.pi / freq
    if wavelen < old_context / high:
      out.append(freq)
    elif wavelen > old_context / low:
      out.append(freq / factor)
    else:
      smooth = (old_context / wavelen - low) / (high - low)
      out.append((1 - smooth) * freq / factor + smooth * freq)
  return np.array(out)


def rope_hf(x, theta, scaling=None):
  """transformers' apply_rotary_pos_emb: x * cos + rotate_half(x) * sin, x [T, H, hd]."""
  hd = x.shape[-1]
  inv_freq = 1.0 / theta ** (np.arange(0, hd, 2) / hd)
  if scaling is not None:
    inv_freq = llama3_frequencies(inv_freq, scaling)
  freqs = np.outer(np.arange(x.shape[0]), inv_freq)
  emb = np.concatenate([freqs, freqs], axis=-1)[:, None, :]
  rotate_half = np.concatenate([-x[..., hd // 2 :], x[..., : hd // 2]], axis=-1)
  return x * np.cos(emb) + rotate_half * np.sin(emb)


def llama_reference(hf: dict, t: dict[str, np.ndarray], tokens: np.ndarray) -> np.ndarray:
  """Llama logits in float64 from the checkpoint tensors (torch Linear weights [out, in])."""
  t = {k: np.asarray(x, np.float64) for k, x in t.items()}
  d, heads, kv = hf["hidden_size"], hf["num_attention_heads"], hf["num_key_value_heads"]
  hd, eps, theta = d // heads, hf["rms_norm_eps"], hf["rope_theta"]
  rms = lambda x, w: x / np.sqrt((x**2).mean(-1, keepdims=True) + eps) * w
  silu = lambda x: x / (1 + np.exp(-x))
  head = t["model.embed_tokens.weight"] if hf["tie_word_embeddings"] else t["lm_head.weight"]
  logits = []
  for seq in tokens:
    n = len(seq)
    x = t["model.embed_tokens.weight"][seq]
    for i in range(hf["num_hidden_layers"]):
      p = lambda name, i=i: t[f"model.layers.{i}.{name}"]
      a = rms(x, p("input_layernorm.weight"))
      q = (a @ p("self_attn.q_proj.weight").T).reshape(n, heads, hd)
      k = (a @ p("self_attn.k_proj.weight").T).reshape(n, kv, hd)
      v = (a @ p("self_attn.v_proj.weight").T).reshape(n, kv, hd)
      q, k = rope_hf(q, theta, hf.get("rope_scaling")), rope_hf(k, theta, hf.get("rope_scaling"))
      k, v = np.repeat(k, heads // kv, axis=1), np.repeat(v, heads // kv, axis=1)
      x = x + attend(q, k, v).reshape(n, d) @ p("self_attn.o_proj.weight").T
      m = rms(x, p("post_attention_layernorm.weight"))
      gate, up = m @ p("mlp.gate_proj.weight").T, m @ p("mlp.up_proj.weight").T
      x = x + (silu(gate) * up) @ p("mlp.down_proj.weight").T
    logits.append(rms(x, t["model.norm.weight"]) @ head.T)
  return np.stack(logits)


def logits_of(folder) -> np.ndarray:
  model, params = load_hf(folder)
  return np.asarray(model.apply({"params": params}, jnp.asarray(TOKENS), train=False))


def assert_close(got, want):
  assert got.dtype == np.float32 and got.shape == want.shape
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-5)


# ------------------------------------------------------------ loading


@pytest.mark.parametrize("prefix", ["", "transformer."])
def test_gpt2_checkpoint_gives_the_reference_logits(tmp_path, prefix):
  tensors = gpt2_tensors(GPT2, prefix=prefix)
  if prefix:  # as GPT2LMHeadModel can save it: the tied head stored too
    tensors["lm_head.weight"] = tensors["transformer.wte.weight"].copy()
  else:  # as the original release: causal-mask buffers stored with the weights
    tensors["h.0.attn.bias"] = np.tril(np.ones((1, 1, 16, 16), np.float32))
    tensors["h.1.attn.masked_bias"] = np.array(-1e4, np.float32)
  write(tmp_path, GPT2, tensors)
  model, params = load_hf(tmp_path)
  assert model.config == LMConfig(
    vocab_size=50, num_layers=2, width=16, num_heads=4, max_len=16, variant="gpt2"
  )
  assert "lm_head" not in params
  assert_close(logits_of(tmp_path), gpt2_reference(GPT2, tensors, TOKENS))


@pytest.mark.parametrize(
  "changes",
  [
    {},  # grouped-query attention (4 query heads, 2 key/value heads), untied head
    {"num_key_value_heads": 4, "tie_word_embeddings": True, "rope_theta": 500000.0},
    {"num_key_value_heads": 1, "intermediate_size": 40},
    LLAMA3,
  ],
  ids=["gqa", "mha-tied", "mqa", "llama3-rope"],
)
def test_llama_checkpoint_gives_the_reference_logits(tmp_path, changes):
  hf = LLAMA | changes
  tensors = llama_tensors(hf)
  write(tmp_path, hf, tensors)
  model, params = load_hf(tmp_path)
  config = model.config
  assert (config.num_heads, config.num_kv_heads) == (4, hf["num_key_value_heads"])
  assert config.tie_embeddings == hf["tie_word_embeddings"]
  assert ("lm_head" in params) != hf["tie_word_embeddings"]
  head_dim = hf["hidden_size"] // 4
  assert params["block_0"]["k_proj"]["kernel"].shape == (
    hf["hidden_size"],
    head_dim * hf["num_key_value_heads"],
  )
  assert_close(logits_of(tmp_path), llama_reference(hf, tensors, TOKENS))


def test_llama3_rope_frequencies_are_meta_s_rescaling():
  from jaxprune.train.models.lm import rope_frequencies

  config = config_from_hf(LLAMA3)
  assert dict(config.rope_scaling) == LLAMA3["rope_scaling"]
  inv_freq = 1.0 / 10000.0 ** (np.arange(0, 8, 2) / 8)
  want = llama3_frequencies(inv_freq, LLAMA3["rope_scaling"])
  assert want[0] == inv_freq[0] and want[2] == inv_freq[2] / 8  # kept, divided
  assert inv_freq[1] / 8 < want[1] < inv_freq[1]  # interpolated
  got = rope_frequencies(8, config.rope_theta, config.rope_scaling)
  np.testing.assert_allclose(got, want, rtol=1e-6)


def test_bfloat16_checkpoint_loads_exactly_into_float32_params(tmp_path):
  tensors = {k: x.astype(ml_dtypes.bfloat16) for k, x in llama_tensors(LLAMA).items()}
  write(tmp_path, LLAMA | {"torch_dtype": "bfloat16"}, tensors)
  _, params = load_hf(tmp_path)
  q = params["block_1"]["q_proj"]["kernel"]
  assert q.dtype == np.float32
  np.testing.assert_array_equal(q, tensors["model.layers.1.self_attn.q_proj.weight"].T)
  assert_close(logits_of(tmp_path), llama_reference(LLAMA, tensors, TOKENS))


@pytest.mark.parametrize("hf", [GPT2, LLAMA], ids=["gpt2", "llama"])
def test_sharded_checkpoint_loads_like_the_single_file(tmp_path, hf):
  tensors = gpt2_tensors(hf) if hf is GPT2 else llama_tensors(hf)
  write(tmp_path / "single", hf, tensors)
  write(tmp_path / "sharded", hf, tensors, shards=3)
  assert not (tmp_path / "sharded" / "model.safetensors").exists()
  _, single = load_hf(tmp_path / "single")
  _, sharded = load_hf(tmp_path / "sharded")
  assert_trees_equal(sharded, single)


def assert_trees_equal(a, b):
  assert a.keys() == b.keys()
  for key in a:
    if isinstance(a[key], dict):
      assert_trees_equal(a[key], b[key])
    else:
      assert a[key].dtype == b[key].dtype
      np.testing.assert_array_equal(a[key], b[key])


# ------------------------------------------------------------ saving


@pytest.mark.parametrize("hf", [GPT2, LLAMA, LLAMA3], ids=["gpt2", "llama", "llama3"])
def test_saved_checkpoint_is_transformers_layout_and_loads_back_exactly(tmp_path, hf):
  tensors = gpt2_tensors(hf) if hf is GPT2 else llama_tensors(hf)
  write(tmp_path / "in", hf, tensors)
  model, params = load_hf(tmp_path / "in")
  files = save_hf(tmp_path / "out", model, params, max_shard_bytes=2_000)
  index = json.loads((tmp_path / "out" / "model.safetensors.index.json").read_text())
  shards = sorted({p.name for p in files if p.suffix == ".safetensors"})
  assert len(shards) > 2 and sorted(set(index["weight_map"].values())) == shards
  written = {}
  for shard in shards:
    with safe_open(tmp_path / "out" / shard, framework="np") as f:
      assert f.metadata() == {"format": "pt"}
      written |= {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
  assert written.keys() == index["weight_map"].keys()
  assert index["metadata"]["total_size"] == sum(x.nbytes for x in written.values())
  for name, value in tensors.items():  # every tensor back under its name (GPT-2: prefixed)
    saved = written[f"transformer.{name}" if hf is GPT2 else name]
    np.testing.assert_array_equal(saved, value)
  assert len(written) == len(tensors)
  saved_config = json.loads((tmp_path / "out" / "config.json").read_text())
  assert config_from_hf(saved_config) == model.config
  assert saved_config["torch_dtype"] == "float32"
  again, back = load_hf(tmp_path / "out")
  assert again == model
  assert_trees_equal(back, params)


def test_save_of_a_model_made_here_matches_the_reference_and_casts_to_bfloat16(tmp_path):
  import jax

  config = LMConfig.tiny(num_layers=2, width=32, num_heads=4, num_kv_heads=2, vocab_size=50)
  model = DecoderLM.from_config(config)
  params = model.init(jax.random.key(0), jnp.asarray(TOKENS))["params"]
  save_hf(tmp_path / "f32", model, params)
  hf = json.loads((tmp_path / "f32" / "config.json").read_text())
  with safe_open(tmp_path / "f32" / "model.safetensors", framework="np") as f:
    tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
  want = np.asarray(model.apply({"params": params}, jnp.asarray(TOKENS)))
  assert_close(want, llama_reference(hf, tensors, TOKENS))

  save_hf(tmp_path / "bf16", config, params, dtype="bfloat16")
  with safe_open(tmp_path / "bf16" / "model.safetensors", framework="np") as f:
    assert f.get_slice("model.norm.weight").get_dtype() == "BF16"
  _, back = load_hf(tmp_path / "bf16")
  kernel = np.asarray(params["block_0"]["up_proj"]["kernel"])
  np.testing.assert_array_equal(back["block_0"]["up_proj"]["kernel"], bf16_round(kernel))


def bf16_round(x):
  return x.astype(ml_dtypes.bfloat16).astype(np.float32)


def test_save_refuses_a_folder_with_a_checkpoint_unless_overwrite(tmp_path):
  write(tmp_path / "in", LLAMA, llama_tensors(LLAMA))
  model, params = load_hf(tmp_path / "in")
  save_hf(tmp_path / "out", model, params, max_shard_bytes=2_000)
  with pytest.raises(ValueError, match="already holds a checkpoint.*overwrite=True"):
    save_hf(tmp_path / "out", model, params)
  zeroed = {**params, "final_norm": {"scale": np.zeros(16, np.float32)}}
  save_hf(tmp_path / "out", model, zeroed, overwrite=True)
  left = sorted(p.name for p in (tmp_path / "out").iterdir())
  assert left == ["config.json", "model.safetensors"]  # the old shards and index are gone
  _, back = load_hf(tmp_path / "out")
  assert_trees_equal(back, zeroed)


# ------------------------------------------------------------ errors


def test_missing_tensor_is_named_with_its_expected_shape(tmp_path):
  tensors = llama_tensors(LLAMA)
  del tensors["model.layers.1.self_attn.k_proj.weight"]
  write(tmp_path, LLAMA, tensors)
  with pytest.raises(ValueError, match=r"lacks 1 .*layers\.1\.self_attn\.k_proj\.weight \[8, 16\]"):
    load_hf(tmp_path)


def test_unknown_tensor_is_named(tmp_path):
  tensors = gpt2_tensors(GPT2)
  tensors["h.0.attn.q_norm.weight"] = np.ones(16, np.float32)
  write(tmp_path, GPT2, tensors)
  with pytest.raises(ValueError, match=r"does not have: \['h\.0\.attn\.q_norm\.weight'\]"):
    load_hf(tmp_path)


def test_misshaped_tensor_is_named_with_both_shapes(tmp_path):
  tensors = gpt2_tensors(GPT2)
  tensors["h.1.attn.c_attn.weight"] = tensors["h.1.attn.c_attn.weight"][:, :32]
  write(tmp_path, GPT2, tensors)
  with pytest.raises(
    ValueError, match=r"'h\.1\.attn\.c_attn\.weight' has shape \[16, 32\].*\[16, 48\]"
  ):
    load_hf(tmp_path)


def test_layer_count_mismatch_names_the_extra_layer(tmp_path):
  write(tmp_path, LLAMA | {"num_hidden_layers": 1}, llama_tensors(LLAMA))
  with pytest.raises(ValueError, match=r"model\.layers\.1\.input_layernorm\.weight"):
    load_hf(tmp_path)


def test_tied_config_with_a_different_lm_head_is_refused(tmp_path):
  hf = LLAMA | {"tie_word_embeddings": True}
  tensors = llama_tensors(hf) | {"lm_head.weight": np.ones((50, 16), np.float32)}
  write(tmp_path, hf, tensors)
  with pytest.raises(ValueError, match="lm_head.weight differs from model.embed_tokens.weight"):
    load_hf(tmp_path)


@pytest.mark.parametrize(
  "change, message",
  [
    ({"model_type": "mistral"}, "model_type='mistral'; supported are 'gpt2' and 'llama'"),
    ({"rope_scaling": {"rope_type": "linear", "factor": 2.0}}, "only Llama 3's rescaling"),
    ({"rope_scaling": {"rope_type": "llama3", "factor": 32.0}}, "only Llama 3's rescaling"),
    ({"attention_bias": True}, "attention_bias=True"),
    ({"hidden_act": "gelu"}, "hidden_act='gelu'"),
    ({"head_dim": 8}, "head_dim=8"),
    ({"hidden_size": None}, "no 'hidden_size'"),
  ],
)
def test_unsupported_llama_configs_are_refused(tmp_path, change, message):
  hf = {k: v for k, v in (LLAMA | change).items() if v is not None}
  write(tmp_path, hf, llama_tensors(LLAMA))
  with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
    load_hf(tmp_path)


def test_missing_config_key_and_missing_shard_are_named(tmp_path):
  hf = {k: v for k, v in GPT2.items() if k != "n_head"}
  write(tmp_path / "a", hf, gpt2_tensors(GPT2))
  with pytest.raises(ValueError, match="no 'n_head'"):
    load_hf(tmp_path / "a")
  write(tmp_path / "b", GPT2, gpt2_tensors(GPT2), shards=2)
  (tmp_path / "b" / "model-00002-of-00002.safetensors").unlink()
  with pytest.raises(ValueError, match="lists the shard 'model-00002-of-00002.safetensors'"):
    load_hf(tmp_path / "b")
  with pytest.raises(ValueError, match="has no config.json"):
    load_hf(tmp_path)


def test_save_refuses_params_of_another_model(tmp_path):
  write(tmp_path / "in", GPT2, gpt2_tensors(GPT2))
  model, params = load_hf(tmp_path / "in")
  bad = {**params, "block_0": {**params["block_0"], "q_proj": {"kernel": np.zeros((16, 8))}}}
  with pytest.raises(ValueError, match=r"block_0/q_proj/bias \(shape \[16\]\)"):
    save_hf(tmp_path / "out", model, bad)
  with pytest.raises(ValueError, match="no grouped-query attention"):
    save_hf(tmp_path / "gqa", LMConfig(variant="gpt2", num_kv_heads=2), params)
