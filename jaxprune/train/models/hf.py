"""Hugging Face checkpoint folders in and out of `DecoderLM`: GPT-2 and the Llama family.

A folder holds ``config.json`` and the weights as ``model.safetensors`` or as shards
``model-00001-of-0000N.safetensors`` listed by ``model.safetensors.index.json``, read and
written with ``safetensors`` (NumPy, no torch, no network). Tensor names and layouts are
those of ``transformers``:

- GPT-2 (``model_type: "gpt2"``): ``wte``, ``wpe``, ``h.{i}.ln_1``, ``h.{i}.attn.c_attn``
  (a Conv1D: weight ``[in, 3 * width]``, q|k|v side by side), ``h.{i}.attn.c_proj``,
  ``h.{i}.ln_2``, ``h.{i}.mlp.c_fc``, ``h.{i}.mlp.c_proj``, ``ln_f``, optionally prefixed
  ``transformer.``; the head is tied to ``wte``.
- Llama (``model_type: "llama"``): ``model.embed_tokens``,
  ``model.layers.{i}.self_attn.{q,k,v,o}_proj``, ``model.layers.{i}.mlp.{gate,up,down}_proj``
  (torch Linear weights ``[out, in]``, transposed to Flax's ``[in, out]``),
  ``model.layers.{i}.input_layernorm``, ``model.layers.{i}.post_attention_layernorm``,
  ``model.norm`` and ``lm_head`` (absent when tied).

``load_hf(save_hf(folder, model, params))`` gives back the same config and bit-identical
params.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from jaxprune.train.models.lm import DecoderLM, LMConfig

CONFIG_FILE = "config.json"
SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
DEFAULT_SHARD_BYTES = 5 * 2**30
_SHARD = re.compile(r"model-\d{5}-of-\d{5}\.safetensors")
# Buffers some checkpoints carry that are not parameters: GPT-2's causal-mask tables and
# older Llama exports' rotary frequencies (recomputed from the config).
_BUFFERS = re.compile(
  r"(transformer\.)?h\.\d+\.attn\.(bias|masked_bias)|"
  r"model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq"
)

Params = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class _Tensor:
  """One checkpoint tensor: the param paths it holds (side by side) and its layout."""

  name: str
  paths: tuple[tuple[str, ...], ...]
  transpose: bool = False


# ---------------------------------------------------------------------------- configs


def _get(hf: Mapping[str, Any], key: str, model_type: str) -> Any:
  if key not in hf:
    raise ValueError(
      f"{CONFIG_FILE} of a {model_type!r} model has no {key!r}; the keys present are "
      f'{sorted(hf)}. Add it, e.g. "{key}": ..., as transformers writes it.'
    )
  return hf[key]


def _require(hf: Mapping[str, Any], key: str, default: Any, supported: tuple, why: str) -> None:
  value = hf.get(key, default)
  if value not in supported:
    raise ValueError(
      f"{CONFIG_FILE} sets {key}={value!r}, which DecoderLM does not implement ({why}); "
      f"supported: {list(supported)}."
    )


def config_from_hf(hf: Mapping[str, Any], **overrides: Any) -> LMConfig:
  """The `LMConfig` of a Hugging Face ``config.json`` (a GPT-2 or Llama one).

  Keys ``transformers`` itself defaults are optional here with the same defaults
  (``num_key_value_heads``, ``rms_norm_eps``, ``rope_theta``, ``tie_word_embeddings``,
  ``n_inner``, ``layer_norm_epsilon``); settings that change the computation in ways
  `DecoderLM` does not implement (RoPE scaling other than Llama 3's, biases on Llama
  linears, another activation) raise rather than load into a different model.

  Args:
    hf: The parsed ``config.json``.
    **overrides: `LMConfig` fields not stored by Hugging Face, e.g. ``dtype="bfloat16"``.

  Returns:
    The config.

  Raises:
    ValueError: For an unsupported ``model_type`` or setting, or a missing key.

  Example:
    >>> hf = {"model_type": "gpt2", "n_layer": 2, "n_embd": 64, "n_head": 4,
    ...       "n_positions": 128, "vocab_size": 256}
    >>> config = config_from_hf(hf)
    >>> config.variant, config.num_layers, config.mlp_width, config.tie_embeddings
    ('gpt2', 2, 256, True)
  """
  model_type = hf.get("model_type")
  if model_type == "gpt2":
    fields = _gpt2_fields(hf)
  elif model_type == "llama":
    fields = _llama_fields(hf)
  else:
    raise ValueError(
      f"{CONFIG_FILE} has model_type={model_type!r}; supported are 'gpt2' and 'llama' "
      '(add "model_type": "llama" for a Llama-family checkpoint in that layout).'
    )
  return LMConfig(**{**fields, **overrides})


def _gpt2_fields(hf: Mapping[str, Any]) -> dict[str, Any]:
  _require(hf, "activation_function", "gelu_new", ("gelu_new", "gelu_pytorch_tanh"), "GELU")
  _require(hf, "scale_attn_weights", True, (True,), "scores scaled by 1/sqrt(head_dim)")
  _require(hf, "scale_attn_by_inverse_layer_idx", False, (False,), "no per-layer scaling")
  _require(hf, "add_cross_attention", False, (False,), "decoder only")
  width = _get(hf, "n_embd", "gpt2")
  return dict(
    vocab_size=_get(hf, "vocab_size", "gpt2"),
    num_layers=_get(hf, "n_layer", "gpt2"),
    width=width,
    num_heads=_get(hf, "n_head", "gpt2"),
    mlp_width=hf.get("n_inner") or 4 * width,
    max_len=_get(hf, "n_positions", "gpt2"),
    variant="gpt2",
    norm_eps=hf.get("layer_norm_epsilon", 1e-5),
    tie_embeddings=hf.get("tie_word_embeddings", True),
  )


def _llama_fields(hf: Mapping[str, Any]) -> dict[str, Any]:
  _require(hf, "hidden_act", "silu", ("silu",), "SwiGLU with SiLU")
  _require(hf, "attention_bias", False, (False,), "no biases on q/k/v/o")
  _require(hf, "mlp_bias", False, (False,), "no biases on the MLP")
  heads, width = _get(hf, "num_attention_heads", "llama"), _get(hf, "hidden_size", "llama")
  head_dim = hf.get("head_dim")
  if head_dim is not None and head_dim * heads != width:
    raise ValueError(
      f"{CONFIG_FILE} sets head_dim={head_dim} with hidden_size={width} and "
      f"num_attention_heads={heads}; DecoderLM needs head_dim = hidden_size / heads = "
      f"{width / heads:g}."
    )
  return dict(
    vocab_size=_get(hf, "vocab_size", "llama"),
    num_layers=_get(hf, "num_hidden_layers", "llama"),
    width=width,
    num_heads=heads,
    num_kv_heads=hf.get("num_key_value_heads") or heads,
    mlp_width=_get(hf, "intermediate_size", "llama"),
    max_len=_get(hf, "max_position_embeddings", "llama"),
    variant="llama",
    norm_eps=hf.get("rms_norm_eps", 1e-6),
    rope_theta=hf.get("rope_theta", 10000.0),
    rope_scaling=_rope_scaling(hf.get("rope_scaling")),
    tie_embeddings=hf.get("tie_word_embeddings", False),
  )


def _rope_scaling(scaling: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
  """None for plain RoPE (absent or rope_type "default"); else the settings (checked later)."""
  if scaling is None or scaling.get("rope_type", scaling.get("type")) == "default":
    return None
  return scaling


def config_to_hf(config: LMConfig) -> dict[str, Any]:
  """The Hugging Face ``config.json`` contents of an `LMConfig` (inverse of `config_from_hf`).

  Args:
    config: A gpt2 config with ``num_kv_heads == num_heads`` (GPT-2 checkpoints have no
      grouped-query attention) or any llama config.

  Returns:
    A JSON-serialisable dict, with ``architectures`` and ``model_type`` as transformers
    writes them (``torch_dtype`` is added by `save_hf`).

  Example:
    >>> hf = config_to_hf(LMConfig.tiny(num_kv_heads=2))
    >>> hf["model_type"], hf["num_key_value_heads"], hf["intermediate_size"]
    ('llama', 2, 384)
    >>> config_from_hf(hf) == LMConfig.tiny(num_kv_heads=2)
    True
  """
  if config.variant == "gpt2":
    if config.num_kv_heads != config.num_heads:
      raise ValueError(
        f"GPT-2 checkpoints have no grouped-query attention; this gpt2 config has "
        f"num_kv_heads={config.num_kv_heads} != num_heads={config.num_heads}. Save a gpt2 "
        "model built with num_kv_heads=None, or use variant='llama'."
      )
    return {
      "architectures": ["GPT2LMHeadModel"],
      "model_type": "gpt2",
      "vocab_size": config.vocab_size,
      "n_positions": config.max_len,
      "n_embd": config.width,
      "n_layer": config.num_layers,
      "n_head": config.num_heads,
      "n_inner": config.mlp_width,
      "activation_function": "gelu_new",
      "layer_norm_epsilon": config.norm_eps,
      "resid_pdrop": config.dropout_rate,
      "embd_pdrop": config.dropout_rate,
      "attn_pdrop": 0.0,
      "tie_word_embeddings": config.tie_embeddings,
    }
  return {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "vocab_size": config.vocab_size,
    "hidden_size": config.width,
    "intermediate_size": config.mlp_width,
    "num_hidden_layers": config.num_layers,
    "num_attention_heads": config.num_heads,
    "num_key_value_heads": config.num_kv_heads,
    "head_dim": config.head_dim,
    "hidden_act": "silu",
    "max_position_embeddings": config.max_len,
    "rms_norm_eps": config.norm_eps,
    "rope_theta": config.rope_theta,
    "rope_scaling": None if config.rope_scaling is None else dict(config.rope_scaling),
    "attention_bias": False,
    "mlp_bias": False,
    "attention_dropout": 0.0,
    "tie_word_embeddings": config.tie_embeddings,
  }


# ---------------------------------------------------------------------------- tensors


def _layout(config: LMConfig) -> list[_Tensor]:
  """The checkpoint tensors of ``config`` in transformers' order, with the params they hold."""
  if config.variant == "gpt2":
    return _gpt2_layout(config)
  return _llama_layout(config)


def _gpt2_layout(config: LMConfig) -> list[_Tensor]:
  out = [
    _Tensor("transformer.wte.weight", (("embed_tokens", "embedding"),)),
    _Tensor("transformer.wpe.weight", (("pos_embed", "embedding"),)),
  ]
  for i in range(config.num_layers):
    b, h = f"block_{i}", f"transformer.h.{i}"
    for hf_norm, norm in (("ln_1", "attn_norm"), ("ln_2", "mlp_norm")):
      out += [_Tensor(f"{h}.{hf_norm}.{w}", ((b, norm, p),)) for w, p in _LN]
    for w, p in (("weight", "kernel"), ("bias", "bias")):
      out.append(_Tensor(f"{h}.attn.c_attn.{w}", tuple((b, f"{x}_proj", p) for x in "qkv")))
      out.append(_Tensor(f"{h}.attn.c_proj.{w}", ((b, "o_proj", p),)))
      out.append(_Tensor(f"{h}.mlp.c_fc.{w}", ((b, "up_proj", p),)))
      out.append(_Tensor(f"{h}.mlp.c_proj.{w}", ((b, "down_proj", p),)))
  out += [_Tensor(f"transformer.ln_f.{w}", (("final_norm", p),)) for w, p in _LN]
  if not config.tie_embeddings:
    out.append(_Tensor("lm_head.weight", (("lm_head", "kernel"),), transpose=True))
  return out


_LN = (("weight", "scale"), ("bias", "bias"))


def _llama_layout(config: LMConfig) -> list[_Tensor]:
  out = [_Tensor("model.embed_tokens.weight", (("embed_tokens", "embedding"),))]
  for i in range(config.num_layers):
    b, h = f"block_{i}", f"model.layers.{i}"
    out.append(_Tensor(f"{h}.input_layernorm.weight", ((b, "attn_norm", "scale"),)))
    for x in "qkvo":
      out.append(_Tensor(f"{h}.self_attn.{x}_proj.weight", ((b, f"{x}_proj", "kernel"),), True))
    out.append(_Tensor(f"{h}.post_attention_layernorm.weight", ((b, "mlp_norm", "scale"),)))
    for x in ("gate", "up", "down"):
      out.append(_Tensor(f"{h}.mlp.{x}_proj.weight", ((b, f"{x}_proj", "kernel"),), True))
  out.append(_Tensor("model.norm.weight", (("final_norm", "scale"),)))
  if not config.tie_embeddings:
    out.append(_Tensor("lm_head.weight", (("lm_head", "kernel"),), transpose=True))
  return out


def _param_shapes(config: LMConfig) -> dict[tuple[str, ...], tuple[int, ...]]:
  """Path -> shape of every param of ``config``'s model (traced abstractly, no compute)."""
  model = DecoderLM.from_config(config)
  tokens = jax.ShapeDtypeStruct((1, 1), jnp.int32)
  abstract = jax.eval_shape(model.init, jax.random.key(0), tokens)["params"]
  flat = jax.tree_util.tree_flatten_with_path(abstract)[0]
  return {tuple(k.key for k in path): tuple(leaf.shape) for path, leaf in flat}


def _hf_shape(tensor: _Tensor, shapes: Mapping[tuple[str, ...], tuple[int, ...]]) -> tuple:
  parts = [shapes[p] for p in tensor.paths]
  if tensor.transpose:
    return tuple(reversed(parts[0]))
  return (*parts[0][:-1], sum(s[-1] for s in parts))


def _hf_name(name: str, variant: str) -> str:
  """The canonical name of a GPT-2 tensor saved with or without ``transformer.``."""
  if variant == "gpt2" and not name.startswith(("transformer.", "lm_head.")):
    return f"transformer.{name}"
  return name


def params_from_hf(
  config: LMConfig, tensors: Mapping[str, Any], param_dtype: Any = np.float32
) -> Params:
  """`DecoderLM` params from checkpoint tensors (name -> array, as in the safetensors files).

  Args:
    config: The model's config (e.g. from `config_from_hf`).
    tensors: Every tensor of the checkpoint. Arrays are read only when used, so lazy
      mappings (shapes checked first) work.
    param_dtype: The dtype of the returned params.

  Returns:
    Nested dict of NumPy arrays, the ``params`` collection of ``DecoderLM.from_config(config)``.

  Raises:
    ValueError: Naming the tensor and the expected shape, when one is missing, unknown or
      mis-shaped, or when a tied checkpoint's ``lm_head.weight`` differs from the embedding.
  """
  return _from_hf(config, _EagerTensors(tensors), param_dtype)


class _EagerTensors:
  """In-memory tensors behind the interface of the lazy file reader."""

  def __init__(self, tensors: Mapping[str, Any]):
    self._tensors = tensors

  def names(self) -> list[str]:
    return list(self._tensors)

  def shape(self, name: str) -> tuple[int, ...]:
    return tuple(np.shape(self._tensors[name]))

  def get(self, name: str) -> np.ndarray:
    return np.asarray(self._tensors[name])


def _from_hf(config: LMConfig, source: Any, param_dtype: Any) -> Params:
  layout = _layout(config)
  shapes = _param_shapes(config)
  canonical: dict[str, str] = {}
  for name in source.names():
    if _BUFFERS.fullmatch(name):
      continue
    key = _hf_name(name, config.variant)
    if key in canonical:
      raise ValueError(f"The checkpoint holds {canonical[key]!r} and {name!r}: the same tensor.")
    canonical[key] = name
  expected = {t.name: _hf_shape(t, shapes) for t in layout}
  _check_names(config, canonical, expected, source)
  params: Params = {}
  for tensor in layout:
    value = np.asarray(source.get(canonical[tensor.name]), dtype=param_dtype)
    if tensor.transpose:
      value = np.ascontiguousarray(value.T)
    sizes = [shapes[p][-1] for p in tensor.paths]
    parts = np.split(value, np.cumsum(sizes)[:-1], axis=-1) if len(sizes) > 1 else [value]
    for path, part in zip(tensor.paths, parts, strict=True):
      node = params
      for key in path[:-1]:
        node = node.setdefault(key, {})
      node[path[-1]] = np.ascontiguousarray(part)
  return params


def _check_names(
  config: LMConfig, canonical: Mapping[str, str], expected: Mapping[str, tuple], source: Any
) -> None:
  """Raises for a missing, unknown or mis-shaped tensor (tied heads: equal to the embedding)."""
  what = f"a {config.variant} model of {config.num_layers} layers, width {config.width}"
  missing = [n for n in expected if n not in canonical]
  if missing:
    listed = ", ".join(f"{_display(n, config)} {list(expected[n])}" for n in missing[:5])
    raise ValueError(
      f"The checkpoint lacks {len(missing)} tensor(s) of {what}: {listed}"
      f"{' ...' if len(missing) > 5 else ''}. Is config.json the one of these weights?"
    )
  for name, want in expected.items():
    got = source.shape(canonical[name])
    if got != want:
      raise ValueError(
        f"Tensor {canonical[name]!r} has shape {list(got)}; {what} (config.json) expects "
        f"{list(want)}."
      )
  extra = [canonical[n] for n in canonical if n not in expected]
  if extra == ["lm_head.weight"] and config.tie_embeddings:
    embed = next(n for n in expected if n.endswith(("wte.weight", "embed_tokens.weight")))
    if not np.array_equal(source.get("lm_head.weight"), source.get(canonical[embed])):
      raise ValueError(
        "config.json ties the LM head to the token embedding (tie_word_embeddings), but the "
        f"checkpoint's lm_head.weight differs from {canonical[embed]}. Set "
        '"tie_word_embeddings": false in config.json to load the separate head.'
      )
    extra = []
  if extra:
    raise ValueError(
      f"The checkpoint has {len(extra)} tensor(s) that {what} does not have: "
      f"{extra[:5]}{' ...' if len(extra) > 5 else ''}. Expected names such as "
      f"{[_display(n, config) for n in list(expected)[:3]]}."
    )


def _display(name: str, config: LMConfig) -> str:
  return name.removeprefix("transformer.") if config.variant == "gpt2" else name


def params_to_hf(config: LMConfig, params: Params, dtype: Any = None) -> dict[str, np.ndarray]:
  """Checkpoint tensors (transformers' names and layouts) of `DecoderLM` params.

  Args:
    config: The model's config.
    params: The ``params`` collection of ``DecoderLM.from_config(config)``.
    dtype: Dtype of the tensors, e.g. ``"bfloat16"``; ``None`` keeps the params' dtype.

  Returns:
    Name -> contiguous NumPy array, in transformers' order.

  Raises:
    ValueError: If a param is missing, unexpected or of the wrong shape (named by path).
  """
  shapes = _param_shapes(config)
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  given = {tuple(getattr(k, "key", k) for k in path): leaf for path, leaf in flat}
  for path, want in shapes.items():
    if path not in given:
      raise ValueError(f"params lack {'/'.join(path)} (shape {list(want)}) of this config.")
    if tuple(np.shape(given[path])) != want:
      raise ValueError(
        f"params[{'/'.join(path)}] has shape {list(np.shape(given[path]))}; the config "
        f"expects {list(want)}. Save the params with the model that produced them."
      )
  unknown = sorted("/".join(p) for p in given if p not in shapes)
  if unknown:
    raise ValueError(f"params have entries this config's model does not have: {unknown[:5]}.")
  out = {}
  for tensor in _layout(config):
    parts = [np.asarray(given[p]) for p in tensor.paths]
    value = parts[0].T if tensor.transpose else np.concatenate(parts, axis=-1)
    if dtype is not None:
      value = value.astype(jnp.dtype(dtype))
    out[tensor.name] = np.ascontiguousarray(value)
  return out


# ---------------------------------------------------------------------------- folders


class _FileTensors:
  """The tensors of one or more safetensors files, read lazily by name."""

  def __init__(self, files: Mapping[str, Path]):
    self._files = files  # tensor name -> file

  def names(self) -> list[str]:
    return list(self._files)

  def shape(self, name: str) -> tuple[int, ...]:
    with safe_open(self._files[name], framework="np") as f:
      return tuple(f.get_slice(name).get_shape())

  def get(self, name: str) -> np.ndarray:
    with safe_open(self._files[name], framework="np") as f:
      return f.get_tensor(name)


def _weight_files(folder: Path) -> dict[str, Path]:
  """Tensor name -> file, from ``model.safetensors`` or the index of the shards."""
  if (folder / SINGLE_FILE).exists():
    with safe_open(folder / SINGLE_FILE, framework="np") as f:
      return dict.fromkeys(f.keys(), folder / SINGLE_FILE)
  if not (folder / INDEX_FILE).exists():
    raise ValueError(
      f"{folder} has neither {SINGLE_FILE} nor {INDEX_FILE} (it holds "
      f"{sorted(p.name for p in folder.iterdir())}). Pass a Hugging Face checkpoint folder."
    )
  weight_map = json.loads((folder / INDEX_FILE).read_text())["weight_map"]
  files: dict[str, Path] = {}
  for shard in sorted(set(weight_map.values())):
    path = folder / shard
    if not path.exists():
      raise ValueError(f"{INDEX_FILE} in {folder} lists the shard {shard!r}, which is missing.")
    with safe_open(path, framework="np") as f:
      files.update(dict.fromkeys(f.keys(), path))
  for name, shard in weight_map.items():
    if files.get(name) != folder / shard:
      raise ValueError(f"{INDEX_FILE} puts tensor {name!r} in {shard!r}, which lacks it.")
  return files


def load_hf(
  folder: str | os.PathLike, *, param_dtype: Any = np.float32, **overrides: Any
) -> tuple[DecoderLM, Params]:
  """Loads a Hugging Face GPT-2 or Llama checkpoint folder into a `DecoderLM`.

  Args:
    folder: Holds ``config.json`` and ``model.safetensors`` or sharded safetensors files
      with ``model.safetensors.index.json``.
    param_dtype: Dtype of the returned params (float32 by default, whatever the files').
    **overrides: `LMConfig` fields Hugging Face does not store, e.g. ``dtype="bfloat16"``
      (computation) or ``dropout_rate=0.1`` (for fine-tuning).

  Returns:
    ``(model, params)``: the model (its config is ``model.config``) and its ``params`` as
    NumPy arrays on the host (place them with ``jax.device_put`` or a sharding), so
    ``model.apply({"params": params}, tokens)`` gives the logits.

  Raises:
    ValueError: For an unsupported config, or a missing, unknown or mis-shaped tensor
      (named, with the expected shape).

  Example:
    >>> import tempfile
    >>> model = DecoderLM.from_config(LMConfig.tiny(num_layers=1, width=32, num_heads=2))
    >>> params = model.init(jax.random.key(0), jnp.zeros((1, 4), jnp.int32))["params"]
    >>> with tempfile.TemporaryDirectory() as folder:
    ...   _ = save_hf(folder, model, params)
    ...   loaded, back = load_hf(folder)
    >>> loaded == model, np.array_equal(back["block_0"]["q_proj"]["kernel"],
    ...                                 params["block_0"]["q_proj"]["kernel"])
    (True, True)
  """
  folder = Path(folder)
  if not (folder / CONFIG_FILE).exists():
    raise ValueError(f"{folder} has no {CONFIG_FILE}; pass a Hugging Face checkpoint folder.")
  config = config_from_hf(json.loads((folder / CONFIG_FILE).read_text()), **overrides)
  params = _from_hf(config, _FileTensors(_weight_files(folder)), param_dtype)
  return DecoderLM.from_config(config), params


def save_hf(
  folder: str | os.PathLike,
  model: DecoderLM | LMConfig,
  params: Params,
  *,
  max_shard_bytes: int = DEFAULT_SHARD_BYTES,
  dtype: Any = None,
  overwrite: bool = False,
) -> list[Path]:
  """Writes `DecoderLM` params as a Hugging Face checkpoint folder that `load_hf` and
  transformers read.

  Args:
    folder: Created if needed. It must not already hold a checkpoint unless ``overwrite``.
    model: The `DecoderLM` or its `LMConfig`.
    params: Its ``params`` collection (JAX or NumPy arrays).
    max_shard_bytes: Largest safetensors file; above it the tensors (in order) go to
      ``model-0000i-of-0000n.safetensors`` files listed by ``model.safetensors.index.json``
      (a tensor larger than the limit gets a file of its own).
    dtype: Dtype of the written tensors, e.g. ``"bfloat16"``; ``None`` keeps the params'.
    overwrite: Replace the config and weight files of an existing checkpoint in ``folder``.

  Returns:
    The files written (config, weights, index).

  Raises:
    ValueError: If the params do not fit the model, the folder holds a checkpoint and
      ``overwrite`` is False, or the model cannot be written in this format.

  Example:
    >>> import tempfile
    >>> config = LMConfig.tiny(num_layers=1, width=32, num_heads=2, variant="gpt2")
    >>> params = DecoderLM.from_config(config).init(
    ...   jax.random.key(0), jnp.zeros((1, 4), jnp.int32))["params"]
    >>> with tempfile.TemporaryDirectory() as folder:
    ...   [p.name for p in save_hf(folder, config, params, max_shard_bytes=70_000)]
    ['config.json', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors',
     'model.safetensors.index.json']
  """
  config = model.config if isinstance(model, DecoderLM) else model
  if not isinstance(config, LMConfig):
    raise TypeError(
      f"save_hf got {type(model).__name__}; expected a DecoderLM or an LMConfig, e.g. "
      "save_hf(folder, model, params)."
    )
  if isinstance(max_shard_bytes, bool) or not isinstance(max_shard_bytes, int):
    raise ValueError(f"save_hf got max_shard_bytes={max_shard_bytes!r}; expected an int > 0.")
  if max_shard_bytes < 1:
    raise ValueError(f"save_hf got max_shard_bytes={max_shard_bytes}; expected an int > 0.")
  hf_config = config_to_hf(config)
  tensors = params_to_hf(config, params, dtype)
  folder = Path(folder)
  folder.mkdir(parents=True, exist_ok=True)
  old = _checkpoint_files(folder)
  if old and not overwrite:
    raise ValueError(
      f"{folder} already holds a checkpoint ({[p.name for p in old]}); pass a new folder "
      "or save_hf(folder, model, params, overwrite=True)."
    )
  for path in old:
    path.unlink()
  written_dtype = next(iter(tensors.values())).dtype.name
  hf_config["torch_dtype"] = written_dtype
  (folder / CONFIG_FILE).write_text(json.dumps(hf_config, indent=2) + "\n")
  return [folder / CONFIG_FILE, *_write_shards(folder, tensors, max_shard_bytes)]


def _checkpoint_files(folder: Path) -> list[Path]:
  names = (CONFIG_FILE, SINGLE_FILE, INDEX_FILE)
  return sorted(p for p in folder.iterdir() if p.name in names or _SHARD.fullmatch(p.name))


def _write_shards(folder: Path, tensors: Mapping[str, np.ndarray], limit: int) -> list[Path]:
  shards: list[dict[str, np.ndarray]] = [{}]
  size = 0
  for name, value in tensors.items():
    if shards[-1] and size + value.nbytes > limit:
      shards.append({})
      size = 0
    shards[-1][name] = value
    size += value.nbytes
  metadata = {"format": "pt"}
  if len(shards) == 1:
    save_file(shards[0], folder / SINGLE_FILE, metadata=metadata)
    return [folder / SINGLE_FILE]
  files, weight_map = [], {}
  for i, shard in enumerate(shards, start=1):
    path = folder / f"model-{i:05d}-of-{len(shards):05d}.safetensors"
    save_file(shard, path, metadata=metadata)
    weight_map.update(dict.fromkeys(shard, path.name))
    files.append(path)
  total = int(sum(math.prod(v.shape) * v.dtype.itemsize for v in tensors.values()))
  index = {"metadata": {"total_size": total}, "weight_map": weight_map}
  (folder / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")
  return [*files, folder / INDEX_FILE]
