"""A decoder-only language model: the Llama family and GPT-2, with hand-written attention.

Pre-norm blocks ``h + attn(norm(h))`` then ``h + mlp(norm(h))``. The attention is written the
way LLM code writes it: ``q_proj``/``k_proj``/``v_proj`` outputs reshaped into heads x head
dim, a causal mask, the heads merged back and ``o_proj``. The two variants:

- ``"llama"``: RMSNorm, rotary position embeddings (RoPE, the "rotate half" convention of
  Hugging Face's Llama, so its checkpoints give its logits; Llama 3's frequency rescaling
  when ``rope_scaling`` is set), a SwiGLU MLP
  ``down(silu(gate(x)) * up(x))``, optional grouped-query attention (``num_kv_heads <
  num_heads``), no biases, LM head untied unless asked.
- ``"gpt2"``: LayerNorm with bias, learned position embeddings, a GELU MLP (tanh
  approximation) ``down(gelu(up(x)))``, biases on every linear, LM head tied to the token
  embedding.

Parameters are float32; ``dtype`` is the computation dtype (softmax, norms' statistics and
the logits stay float32). Layer names: ``embed_tokens``, ``pos_embed`` (gpt2),
``block_0`` ... ``block_{L-1}`` (each with ``attn_norm``, ``q_proj``, ``k_proj``, ``v_proj``,
``o_proj``, ``mlp_norm``, ``gate_proj`` (llama), ``up_proj``, ``down_proj``),
``final_norm`` and ``lm_head`` (untied only). Kernels are ``[in, out]``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

VARIANTS = ("llama", "gpt2")
_INIT_STD = 0.02


def _positive_int(name: str, value: Any) -> None:
  if isinstance(value, bool) or not isinstance(value, int) or value < 1:
    raise ValueError(f"LMConfig got {name}={value!r}; expected a positive int, e.g. {name}=4.")


_LLAMA3_KEYS = ("factor", "high_freq_factor", "low_freq_factor", "original_max_position_embeddings")
_LLAMA3_EXAMPLE = (
  "rope_scaling={'rope_type': 'llama3', 'factor': 32.0, 'low_freq_factor': 1.0, "
  "'high_freq_factor': 4.0, 'original_max_position_embeddings': 8192}"
)


def _resolve_rope(config: LMConfig) -> tuple[float | None, tuple | None]:
  """The RoPE base and scaling of ``config`` (None for gpt2), checked."""
  theta, scaling = config.rope_theta, config.rope_scaling
  if config.variant == "gpt2":
    for name, value in (("rope_theta", theta), ("rope_scaling", scaling)):
      if value is not None:
        raise ValueError(
          f"LMConfig got {name}={value!r} with variant='gpt2', which has learned positions "
          f"and no RoPE; leave {name}=None for gpt2."
        )
    return None, None
  theta = 10000.0 if theta is None else float(theta)
  if not theta > 0:
    raise ValueError(f"LMConfig got rope_theta={theta!r}; expected > 0, e.g. 10000.0.")
  if (config.width // config.num_heads) % 2:
    raise ValueError(
      f"LMConfig got head dim {config.width // config.num_heads} (width {config.width} / "
      f"num_heads {config.num_heads}); RoPE needs an even head dim, e.g. num_heads="
      f"{config.num_heads * 2 if config.width % (config.num_heads * 2) == 0 else 1}."
    )
  return theta, None if scaling is None else _llama3_scaling(scaling)


def _llama3_scaling(scaling: Any) -> tuple[tuple[str, Any], ...]:
  """Llama 3's rope_scaling settings as sorted (key, value) pairs, checked."""
  items = dict(scaling)
  kind = items.get("rope_type", items.get("type"))
  keys = set(items) - {"rope_type", "type"}
  if kind != "llama3" or keys != set(_LLAMA3_KEYS):
    raise ValueError(
      f"LMConfig got rope_scaling={scaling!r}; only Llama 3's rescaling is implemented, "
      f"with exactly these settings: {_LLAMA3_EXAMPLE}."
    )
  values = {k: float(items[k]) for k in _LLAMA3_KEYS}
  if not (values["factor"] > 0 and values["high_freq_factor"] > values["low_freq_factor"] > 0):
    raise ValueError(
      f"LMConfig got rope_scaling={scaling!r}; expected factor > 0 and "
      f"high_freq_factor > low_freq_factor > 0, e.g. {_LLAMA3_EXAMPLE}."
    )
  values["original_max_position_embeddings"] = int(items["original_max_position_embeddings"])
  return tuple(sorted({**values, "rope_type": "llama3"}.items()))


def _llama_mlp_width(width: int) -> int:
  """SwiGLU width with the parameters of a 4x GELU MLP: 8/3 width, rounded up to 64."""
  return 64 * math.ceil(8 * width / 3 / 64)


@dataclasses.dataclass(frozen=True)
class LMConfig:
  """The shape and variant of a `DecoderLM` (frozen, hashable; the defaults are `tiny`).

  Attributes:
    vocab_size: Number of tokens (256 for byte-level text).
    num_layers: Number of decoder blocks.
    width: Width of the residual stream (d_model).
    num_heads: Query heads; must divide ``width`` (head dim = width / num_heads).
    num_kv_heads: Key/value heads (grouped-query attention); must divide ``num_heads``.
      ``None`` means ``num_heads`` (plain multi-head attention).
    mlp_width: Hidden width of the MLP. ``None`` means ``4 * width`` for gpt2 and
      ``8/3 * width`` rounded up to a multiple of 64 for llama.
    max_len: Longest sequence (the learned position table of gpt2; the context of llama).
    variant: ``"llama"`` or ``"gpt2"``.
    norm_eps: Epsilon of the RMSNorm / LayerNorm.
    rope_theta: RoPE base (llama only). ``None`` means 10000 for llama.
    rope_scaling: Llama 3's RoPE frequency rescaling (llama only), as in Hugging Face's
      ``config.json``: ``{"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
      "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}``, kept as a tuple
      of sorted ``(key, value)`` pairs. ``None``: plain RoPE.
    tie_embeddings: Whether the LM head is the transposed token embedding. ``None`` means
      True for gpt2 and False for llama.
    dtype: Computation dtype name, e.g. ``"float32"`` or ``"bfloat16"``.
    dropout_rate: Dropout on the embeddings and each residual branch while training.

  Example:
    >>> config = LMConfig.tiny(num_kv_heads=2)
    >>> config.head_dim, config.mlp_width, config.tie_embeddings, config.rope_theta
    (32, 384, False, 10000.0)
  """

  vocab_size: int = 256
  num_layers: int = 4
  width: int = 128
  num_heads: int = 4
  num_kv_heads: int | None = None
  mlp_width: int | None = None
  max_len: int = 256
  variant: str = "llama"
  norm_eps: float = 1e-5
  rope_theta: float | None = None
  rope_scaling: tuple[tuple[str, Any], ...] | None = None
  tie_embeddings: bool | None = None
  dtype: str = "float32"
  dropout_rate: float = 0.0

  def __post_init__(self):
    if self.variant not in VARIANTS:
      raise ValueError(
        f"LMConfig got variant={self.variant!r}; expected one of {VARIANTS}, e.g. "
        "LMConfig(variant='gpt2')."
      )
    for name in ("vocab_size", "num_layers", "width", "num_heads", "max_len"):
      _positive_int(name, getattr(self, name))
    kv = self.num_heads if self.num_kv_heads is None else self.num_kv_heads
    _positive_int("num_kv_heads", kv)
    if self.width % self.num_heads:
      raise ValueError(
        f"LMConfig got width={self.width} and num_heads={self.num_heads}; the heads must "
        f"divide the width, e.g. LMConfig(width={self.width}, num_heads="
        f"{math.gcd(self.width, self.num_heads)})."
      )
    if self.num_heads % kv:
      raise ValueError(
        f"LMConfig got num_heads={self.num_heads} and num_kv_heads={kv}; the key/value "
        f"heads must divide the query heads, e.g. num_kv_heads={math.gcd(self.num_heads, kv)}."
      )
    mlp = self.mlp_width
    if mlp is None:
      mlp = 4 * self.width if self.variant == "gpt2" else _llama_mlp_width(self.width)
    _positive_int("mlp_width", mlp)
    theta, scaling = _resolve_rope(self)
    tie = (self.variant == "gpt2") if self.tie_embeddings is None else self.tie_embeddings
    if not isinstance(tie, bool):
      raise ValueError(f"LMConfig got tie_embeddings={tie!r}; expected True, False or None.")
    dtype = jnp.dtype(self.dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
      raise ValueError(
        f"LMConfig got dtype={self.dtype!r}; expected a float dtype, e.g. dtype='bfloat16'."
      )
    if not 0.0 <= self.dropout_rate < 1.0:
      raise ValueError(f"LMConfig got dropout_rate={self.dropout_rate!r}; expected 0 <= p < 1.")
    if not self.norm_eps > 0:
      raise ValueError(f"LMConfig got norm_eps={self.norm_eps!r}; expected > 0, e.g. 1e-5.")
    resolved = {
      "num_kv_heads": kv,
      "mlp_width": mlp,
      "rope_theta": theta,
      "rope_scaling": scaling,
      "tie_embeddings": tie,
      "dtype": dtype.name,
      "norm_eps": float(self.norm_eps),
      "dropout_rate": float(self.dropout_rate),
    }
    for name, value in resolved.items():
      object.__setattr__(self, name, value)

  @property
  def head_dim(self) -> int:
    """Width of one attention head, ``width // num_heads``."""
    return self.width // self.num_heads

  @classmethod
  def tiny(cls, **overrides: Any) -> LMConfig:
    """A ~0.9M-parameter byte-level llama (4 blocks of width 128, 4 heads), for tests."""
    return cls(**overrides)

  @classmethod
  def gpt2_124m(cls, **overrides: Any) -> LMConfig:
    """GPT-2 small: 12 blocks of width 768, 12 heads, 50257 tokens, 1024 positions.

    It has 124,439,808 parameters (the head is tied to the token embedding).
    """
    shape = dict(vocab_size=50257, num_layers=12, width=768, num_heads=12, max_len=1024)
    return cls(**{**shape, "variant": "gpt2", **overrides})

  @classmethod
  def llama_1b(cls, **overrides: Any) -> LMConfig:
    """The config of Llama 3.2 1B: 16 blocks of width 2048, 32 query and 8 key/value heads.

    SwiGLU width 8192, 128256 tokens, tied head, RoPE base 500000 with Llama 3's rescaling
    (factor 32) for a 131072-token context; 1,235,814,400 parameters.
    """
    shape = dict(vocab_size=128256, num_layers=16, width=2048, num_heads=32, num_kv_heads=8)
    scaling = dict(rope_type="llama3", factor=32.0, low_freq_factor=1.0, high_freq_factor=4.0)
    scaling["original_max_position_embeddings"] = 8192
    more = dict(mlp_width=8192, max_len=131072, rope_theta=500000.0, tie_embeddings=True)
    return cls(**{**shape, **more, "rope_scaling": scaling, **overrides})


# The attributes DecoderLM shares with LMConfig (its vocab_size is DecoderLM's num_classes).
_SHARED = tuple(f.name for f in dataclasses.fields(LMConfig) if f.name != "vocab_size")


def _dense(features: int, config: LMConfig, name: str, std: float = _INIT_STD) -> nn.Dense:
  return nn.Dense(
    features,
    use_bias=config.variant == "gpt2",
    dtype=config.dtype,
    param_dtype=jnp.float32,
    kernel_init=nn.initializers.normal(std),
    name=name,
  )


def _norm(config: LMConfig, name: str) -> nn.Module:
  if config.variant == "gpt2":
    return nn.LayerNorm(config.norm_eps, dtype=config.dtype, param_dtype=jnp.float32, name=name)
  return nn.RMSNorm(config.norm_eps, dtype=config.dtype, param_dtype=jnp.float32, name=name)


def rope_frequencies(head_dim: int, theta: float, scaling: Any = None) -> jax.Array:
  """RoPE inverse frequencies ``theta^(-2i / head_dim)``, ``i < head_dim / 2``, float32.

  With Llama 3's ``scaling`` (factor s, low/high frequency factors l < h, original context
  C), a frequency f of wavelength ``w = 2 pi / f`` is kept when ``w < C / h``, divided by s
  when ``w > C / l``, and in between interpolated: ``(1 - a) f / s + a f`` with
  ``a = (C / w - l) / (h - l)``.

  Args:
    head_dim: Width of one head (even).
    theta: The RoPE base, e.g. 10000.
    scaling: ``None`` or `LMConfig.rope_scaling` (pairs or a dict) of rope_type "llama3".

  Returns:
    The ``head_dim / 2`` frequencies.

  Example:
    >>> rope_frequencies(4, 100.0).tolist()
    [1.0, 0.10000000149011612]
  """
  inv_freq = 1.0 / theta ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim)
  if scaling is None:
    return inv_freq
  s = dict(scaling)
  factor, low, high = s["factor"], s["low_freq_factor"], s["high_freq_factor"]
  context = s["original_max_position_embeddings"]
  wavelen = 2 * math.pi / inv_freq
  smooth = (context / wavelen - low) / (high - low)
  between = (1 - smooth) * inv_freq / factor + smooth * inv_freq
  scaled = jnp.where(wavelen > context / low, inv_freq / factor, between)
  return jnp.where(wavelen < context / high, inv_freq, scaled)


def rotary(x: jax.Array, theta: float, scaling: Any = None) -> jax.Array:
  """Rotary position embedding of ``x [B, T, heads, head_dim]`` at positions 0..T-1.

  Hugging Face Llama's convention: the angle of position t and frequency i is
  ``t * f_i`` (`rope_frequencies`), and the pairs rotated together are entries ``i`` and
  ``i + head_dim / 2`` ("rotate half"), not adjacent entries.

  Args:
    x: Queries or keys, ``[B, T, heads, head_dim]`` with an even head_dim.
    theta: The RoPE base, e.g. 10000.
    scaling: Llama 3's frequency rescaling (see `rope_frequencies`), or ``None``.

  Returns:
    The rotated array, same shape and dtype (computed in float32).

  Example:
    >>> x = jnp.ones((1, 2, 1, 2))
    >>> [round(float(v), 4) for v in rotary(x, 10000.0)[0, 1, 0]]  # position 1: 1 radian
    [-0.3012, 1.3818]
  """
  t, dim = x.shape[1], x.shape[-1]
  inv_freq = rope_frequencies(dim, theta, scaling)
  angles = jnp.arange(t, dtype=jnp.float32)[:, None] * inv_freq[None, :]
  cos, sin = jnp.cos(angles)[None, :, None, :], jnp.sin(angles)[None, :, None, :]
  x32 = x.astype(jnp.float32)
  x1, x2 = x32[..., : dim // 2], x32[..., dim // 2 :]
  out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
  return out.astype(x.dtype)


def causal_attention(q: jax.Array, k: jax.Array, v: jax.Array) -> jax.Array:
  """Softmax attention of each position over itself and the earlier ones.

  Grouped-query: query head ``h`` reads key/value head ``h // (heads / kv_heads)``, as
  Hugging Face's ``repeat_kv``.

  Args:
    q: Queries ``[B, T, heads, head_dim]``.
    k: Keys ``[B, T, kv_heads, head_dim]`` (kv_heads divides heads).
    v: Values, same shape as ``k``.

  Returns:
    ``[B, T, heads, head_dim]`` in ``q``'s dtype (scores and softmax in float32).

  Example:
    >>> q = k = jnp.zeros((1, 3, 2, 4))
    >>> v = jnp.arange(3.0)[None, :, None, None] * jnp.ones((1, 3, 1, 4))
    >>> causal_attention(q, k, v)[0, :, 0, 0].tolist()  # running means of v
    [0.0, 0.5, 1.0]
  """
  b, t, heads, dim = q.shape
  kv_heads = k.shape[2]
  q = q.reshape(b, t, kv_heads, heads // kv_heads, dim)
  scores = jnp.einsum("bqkgd,bskd->bkgqs", q, k, preferred_element_type=jnp.float32)
  scores = scores / math.sqrt(dim)
  causal = jnp.tril(jnp.ones((t, t), bool))
  scores = jnp.where(causal, scores, -jnp.inf)
  weights = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
  out = jnp.einsum("bkgqs,bskd->bqkgd", weights, v)
  return out.reshape(b, t, heads, dim)


class DecoderBlock(nn.Module):
  """One pre-norm decoder block: causal self-attention, then the MLP, each residual.

  The same class (and so one compiled function) serves every block of a `DecoderLM`:
  ``DecoderBlock(config).apply({"params": params["block_3"]}, hidden)``.

  Attributes:
    config: The `LMConfig` of the model.

  Example:
    >>> block = DecoderBlock(LMConfig.tiny(width=32, num_heads=2))
    >>> hidden = jnp.ones((1, 5, 32))
    >>> variables = block.init(jax.random.key(0), hidden)
    >>> sorted(variables["params"])
    ['attn_norm', 'down_proj', 'gate_proj', 'k_proj', 'mlp_norm', 'o_proj', 'q_proj',
     'up_proj', 'v_proj']
    >>> block.apply(variables, hidden).shape
    (1, 5, 32)
  """

  config: LMConfig

  @nn.compact
  def __call__(self, hidden: jax.Array, train: bool = False) -> jax.Array:
    """Maps ``hidden [B, T, width]`` to the block's output, same shape (positions 0..T-1)."""
    cfg = self.config
    residual_std = _INIT_STD / math.sqrt(2 * cfg.num_layers)
    b, t, _ = hidden.shape
    drop = nn.Dropout(cfg.dropout_rate, deterministic=not train)

    x = _norm(cfg, "attn_norm")(hidden)
    q = _dense(cfg.num_heads * cfg.head_dim, cfg, "q_proj")(x)
    k = _dense(cfg.num_kv_heads * cfg.head_dim, cfg, "k_proj")(x)
    v = _dense(cfg.num_kv_heads * cfg.head_dim, cfg, "v_proj")(x)
    # Head counts come from the projections' widths, so a model with heads removed
    # (`surgery.shrink`, then `surgery.apply_resized`) runs with the same code.
    q = q.reshape(b, t, -1, cfg.head_dim)
    k = k.reshape(b, t, -1, cfg.head_dim)
    v = v.reshape(b, t, -1, cfg.head_dim)
    if cfg.variant == "llama":
      q = rotary(q, cfg.rope_theta, cfg.rope_scaling)
      k = rotary(k, cfg.rope_theta, cfg.rope_scaling)
    attn = causal_attention(q, k, v).reshape(b, t, -1)
    hidden = hidden + drop(_dense(cfg.width, cfg, "o_proj", residual_std)(attn))

    x = _norm(cfg, "mlp_norm")(hidden)
    up = _dense(cfg.mlp_width, cfg, "up_proj")(x)
    if cfg.variant == "llama":
      mid = nn.silu(_dense(cfg.mlp_width, cfg, "gate_proj")(x)) * up
    else:
      mid = nn.gelu(up, approximate=True)
    return hidden + drop(_dense(cfg.width, cfg, "down_proj", residual_std)(mid))


class DecoderLM(nn.Module):
  """A decoder-only LM: int tokens ``[B, T]`` to float32 next-token logits ``[B, T, vocab]``.

  The attributes are those of `LMConfig` with ``num_classes`` as the vocabulary size, so
  ``get_model("decoder_lm", num_classes=256, num_layers=2)`` builds one from a config file;
  `from_config` builds one from an `LMConfig` and `config` gives it back. Besides
  ``__call__``, ``model.apply(variables, tokens, method="embed")`` gives the hidden states
  entering ``block_0`` and ``model.apply(variables, hidden, method="head")`` the logits from
  the last block's output. With ``dropout_rate > 0``, training needs a ``"dropout"`` key.

  Attributes:
    num_classes: Vocabulary size (the ``vocab_size`` of `LMConfig`).
    num_layers: See `LMConfig` (the other attributes too).

  Example:
    >>> model = DecoderLM.from_config(LMConfig.tiny(num_layers=2, width=64))
    >>> tokens = jnp.zeros((2, 8), jnp.int32)
    >>> variables = model.init(jax.random.key(0), tokens)
    >>> sorted(variables["params"])
    ['block_0', 'block_1', 'embed_tokens', 'final_norm', 'lm_head']
    >>> model.apply(variables, tokens, train=False).shape
    (2, 8, 256)
  """

  num_classes: int = 256
  num_layers: int = 4
  width: int = 128
  num_heads: int = 4
  num_kv_heads: int | None = None
  mlp_width: int | None = None
  max_len: int = 256
  variant: str = "llama"
  norm_eps: float = 1e-5
  rope_theta: float | None = None
  rope_scaling: Any = None
  tie_embeddings: bool | None = None
  dtype: str = "float32"
  dropout_rate: float = 0.0

  # Dtype of the inputs (tokens), read by code that initialises or traces any model on a
  # dummy input (`jaxprune.train.state.create_train_state`, FLOP counting); not a field.
  input_dtype = "int32"

  def __post_init__(self):
    super().__post_init__()
    _ = self.config  # validates the attributes when the module is built

  @property
  def config(self) -> LMConfig:
    """The resolved `LMConfig` of this model."""
    return LMConfig(vocab_size=self.num_classes, **{n: getattr(self, n) for n in _SHARED})

  @classmethod
  def from_config(cls, config: LMConfig, **kwargs: Any) -> DecoderLM:
    """The model of ``config`` (``kwargs``: Linen's ``name``/``parent``, rarely needed)."""
    if not isinstance(config, LMConfig):
      raise TypeError(
        f"DecoderLM.from_config got {type(config).__name__}; expected an LMConfig, e.g. "
        "DecoderLM.from_config(LMConfig.tiny())."
      )
    fields = {n: getattr(config, n) for n in _SHARED}
    return cls(num_classes=config.vocab_size, **fields, **kwargs)

  def setup(self):
    cfg = self.config
    init = nn.initializers.normal(_INIT_STD)
    embed = dict(dtype=cfg.dtype, param_dtype=jnp.float32, embedding_init=init)
    self.embed_tokens = nn.Embed(cfg.vocab_size, cfg.width, **embed)
    if cfg.variant == "gpt2":
      self.pos_embed = nn.Embed(cfg.max_len, cfg.width, **embed)
    self.blocks = [DecoderBlock(cfg, name=f"block_{i}") for i in range(cfg.num_layers)]
    self.final_norm = _norm(cfg, "final_norm")
    if not cfg.tie_embeddings:
      head = dict(use_bias=False, dtype=cfg.dtype, param_dtype=jnp.float32, kernel_init=init)
      self.lm_head = nn.Dense(cfg.vocab_size, **head)
    self.dropout = nn.Dropout(cfg.dropout_rate)

  def _check_tokens(self, tokens: jax.Array) -> None:
    if tokens.ndim != 2 or not jnp.issubdtype(tokens.dtype, jnp.integer):
      raise TypeError(
        f"DecoderLM takes int tokens [batch, time]; got {tokens.dtype} of shape "
        f"{tokens.shape}. E.g. model.apply(variables, jnp.zeros((2, 16), jnp.int32))."
      )
    if tokens.shape[1] > self.max_len:
      raise ValueError(
        f"DecoderLM got {tokens.shape[1]} tokens per sequence; max_len is {self.max_len}. "
        f"Pass at most {self.max_len} (e.g. tokens[:, -{self.max_len}:]) or build the model "
        f"with max_len={tokens.shape[1]}."
      )

  def embed(self, tokens: jax.Array, train: bool = False) -> jax.Array:
    """Token embeddings (plus learned positions for gpt2): ``[B, T] -> [B, T, width]``."""
    self._check_tokens(tokens)
    hidden = self.embed_tokens(tokens)
    if self.config.variant == "gpt2":
      hidden = hidden + self.pos_embed(jnp.arange(tokens.shape[1]))
    return self.dropout(hidden, deterministic=not train)

  def head(self, hidden: jax.Array) -> jax.Array:
    """Final norm and LM head: ``[B, T, width] -> float32 logits [B, T, vocab]``."""
    hidden = self.final_norm(hidden)
    if self.config.tie_embeddings:
      logits = self.embed_tokens.attend(hidden)
    else:
      logits = self.lm_head(hidden)
    return logits.astype(jnp.float32)

  def __call__(self, tokens: jax.Array, train: bool = False) -> jax.Array:
    hidden = self.embed(tokens, train=train)
    for block in self.blocks:
      hidden = block(hidden, train=train)
    return self.head(hidden)
