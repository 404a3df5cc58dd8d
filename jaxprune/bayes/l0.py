"""L0 regularization with hard-concrete gates: layers whose weights are multiplied by gates z.

Each gate has a logit log α. Training samples a stretched, clipped binary-concrete gate

  u ~ U(0, 1),  s = σ((log u − log(1 − u) + log α) / β),  z = clip(s·(ζ − γ) + γ, 0, 1),

which is exactly 0 or 1 with positive probability, so the expected number of nonzero gates,
Σ P(z ≠ 0) = Σ σ(log α − β·log(−γ/ζ)), is differentiable in log α and enters the loss.
At test time z = clip(σ(log α)·(ζ − γ) + γ, 0, 1), which is 0 exactly when
log α ≤ log(−γ/ζ) (= −log 11 for the defaults).

Gates are per weight (``gate="weight"``, unstructured) or per input neuron / input channel
(``gate="input"``, a gate zeroes a whole row of the kernel: structured sparsity). The layers
store the logits as ``gate_log_alpha`` beside ``kernel``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxprune.bayes import _paths
from jaxprune.bayes.variational import _conv, _conv_geometry

PyTree = Any
Initializer = Any

GATE = "gate_log_alpha"
BETA, GAMMA, ZETA = 2.0 / 3.0, -0.1, 1.1
_GATES = ("weight", "input")


def prob_nonzero(
  log_alpha: jax.Array, beta: float = BETA, gamma: float = GAMMA, zeta: float = ZETA
) -> jax.Array:
  """P(z ≠ 0) = σ(log α − β·log(−γ/ζ)) for a hard-concrete gate.

  Derivation: z = 0 iff s ≤ t with t = −γ/(ζ − γ); s ≤ t iff L ≤ β·logit(t) − log α for
  the logistic L = log u − log(1 − u), and logit(t) = log(−γ/ζ); the logistic CDF is σ.

  Args:
    log_alpha: gate logits.
    beta: temperature.
    gamma: lower stretch limit.
    zeta: upper stretch limit.

  Returns:
    float32 probabilities with the shape of ``log_alpha``.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxprune.bayes import prob_nonzero
    >>> prob_nonzero(jnp.array([0.0])).round(4)
    Array([0.8318], dtype=float32)

  References:
    Louizos, Welling, Kingma. Learning Sparse Neural Networks through L0 Regularization.
    ICLR 2018, eq. 12.
  """
  shift = beta * math.log(-gamma / zeta)
  return jax.nn.sigmoid(jnp.asarray(log_alpha, jnp.float32) - shift)


def sample_gates(
  key: jax.Array,
  log_alpha: jax.Array,
  shape: Sequence[int] | None = None,
  beta: float = BETA,
  gamma: float = GAMMA,
  zeta: float = ZETA,
) -> jax.Array:
  """Samples hard-concrete gates z ∈ [0, 1] (differentiable in ``log_alpha``).

  u ~ U(0, 1), s = σ((log u − log(1 − u) + log α)/β), z = clip(s·(ζ − γ) + γ, 0, 1).

  Args:
    key: PRNG key.
    log_alpha: gate logits; broadcast to ``shape``.
    shape: sample shape (default ``log_alpha.shape``), e.g. ``(batch, features)``.
    beta: temperature.
    gamma: lower end of the stretch interval (< 0).
    zeta: upper end of the stretch interval (> 1).

  Returns:
    float32 gates of ``shape``.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxprune.bayes import sample_gates
    >>> z = sample_gates(jax.random.key(0), jnp.zeros(3), shape=(1000, 3))
    >>> bool((z >= 0).all() & (z <= 1).all())
    True
  """
  la = jnp.asarray(log_alpha, jnp.float32)
  shape = la.shape if shape is None else tuple(shape)
  u = jax.random.uniform(key, shape, jnp.float32, minval=1e-6, maxval=1.0 - 1e-6)
  s = jax.nn.sigmoid((jnp.log(u) - jnp.log1p(-u) + la) / beta)
  return jnp.clip(s * (zeta - gamma) + gamma, 0.0, 1.0)


def deterministic_gates(
  log_alpha: jax.Array, gamma: float = GAMMA, zeta: float = ZETA
) -> jax.Array:
  """Deterministic test-time gates clip(σ(log α)·(ζ − γ) + γ, 0, 1).

  A gate is exactly 0 when log α ≤ log(−γ/ζ) (the same cut the ``"l0_gate"`` criterion uses).

  Args:
    log_alpha: gate logits.
    gamma: lower stretch limit.
    zeta: upper stretch limit.

  Returns:
    float32 gates in [0, 1] with the shape of ``log_alpha``.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxprune.bayes import deterministic_gates
    >>> deterministic_gates(jnp.array([-5.0, 0.0, 5.0])).round(3)
    Array([0. , 0.5, 1. ], dtype=float32)
  """
  la = jnp.asarray(log_alpha, jnp.float32)
  z = jnp.clip(jax.nn.sigmoid(la) * (zeta - gamma) + gamma, 0.0, 1.0)
  return jnp.where(gate_open(la, gamma, zeta), z, 0.0)


def gate_open(log_alpha: jax.Array, gamma: float = GAMMA, zeta: float = ZETA) -> jax.Array:
  """True where the test-time gate is nonzero: log α > log(−γ/ζ).

  Args:
    log_alpha: gate logits.
    gamma: lower stretch limit.
    zeta: upper stretch limit.

  Returns:
    bool array with the shape of ``log_alpha``.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxprune.bayes import gate_open
    >>> gate_open(jnp.array([-3.0, -2.0])).tolist()
    [False, True]
  """
  return jnp.asarray(log_alpha, jnp.float32) > open_cut(gamma, zeta)


def open_cut(gamma: float = GAMMA, zeta: float = ZETA) -> float:
  """Returns log(−γ/ζ), the logit at or below which a test-time gate is exactly 0.

  Args:
    gamma: lower stretch limit (< 0).
    zeta: upper stretch limit (> 1).

  Returns:
    The cut as a Python float (−log 11 ≈ −2.398 for the defaults).

  Raises:
    ValueError: unless gamma < 0 and zeta > 1.

  Example:
    >>> from jaxprune.bayes.l0 import open_cut
    >>> round(open_cut(), 3)
    -2.398
  """
  if not (gamma < 0.0 and zeta > 1.0):
    raise ValueError(
      f"hard-concrete gates need gamma < 0 < 1 < zeta; got gamma={gamma!r}, zeta={zeta!r}. "
      "The usual values are gamma=-0.1, zeta=1.1."
    )
  return math.log(-gamma / zeta)


def l0_penalty(
  params: PyTree,
  *,
  weighted: bool = True,
  beta: float = BETA,
  gamma: float = GAMMA,
  zeta: float = ZETA,
) -> jax.Array:
  """Expected L0 norm: Σ_g n_g·σ(log α_g − β·log(−γ/ζ)) over every gate in ``params``.

  A gate is a ``gate_log_alpha`` leaf with a ``kernel`` sibling. n_g is the number of
  weights the gate switches (1 for per-weight gates, the row size for per-input gates) when
  ``weighted``, else 1 (the expected number of open gates).

  Args:
    params: params pytree containing L0 layers.
    weighted: count weights (True) or gates (False).
    beta: temperature.
    gamma: lower end of the stretch interval.
    zeta: upper end of the stretch interval.

  Returns:
    A float32 scalar (0.0 when there is no L0 layer).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxprune.bayes import L0Dense, l0_penalty
    >>> layer = L0Dense(3, gate="input")
    >>> params = layer.init(jax.random.key(0), jnp.ones((1, 2)), deterministic=True)["params"]
    >>> round(float(l0_penalty(params, weighted=False)), 2)  # 2 gates, each open w.p. ~0.83
    1.66

  References:
    Louizos, Welling, Kingma. Learning Sparse Neural Networks through L0 Regularization.
    ICLR 2018.
  """
  total = jnp.zeros([], jnp.float32)
  for _, kernel, la in _paths.pairs(params, GATE):
    per_gate = kernel.size // la.size if weighted else 1
    total = total + per_gate * jnp.sum(prob_nonzero(la, beta, gamma, zeta))
  return total


def kernel_gates(kernel_shape: tuple[int, ...], gates: jax.Array) -> jax.Array:
  """Broadcasts gates to a kernel: per-weight gates as is, per-input gates along axis −2.

  Args:
    kernel_shape: the kernel's shape ``(..., n_in, n_out)``.
    gates: per-weight gates (the kernel's shape) or per-input gates ``(n_in,)``.

  Returns:
    ``gates`` reshaped to broadcast against the kernel.

  Raises:
    ValueError: when the gates fit neither layout.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxprune.bayes.l0 import kernel_gates
    >>> kernel_gates((5, 5, 3, 8), jnp.ones(3)).shape
    (1, 1, 3, 1)
  """
  if tuple(gates.shape) == tuple(kernel_shape):
    return gates
  if gates.ndim == 1 and len(kernel_shape) >= 2 and gates.shape[0] == kernel_shape[-2]:
    return gates.reshape((1,) * (len(kernel_shape) - 2) + (gates.shape[0], 1))
  raise ValueError(
    f"gate_log_alpha of shape {tuple(gates.shape)} fits neither its kernel of shape "
    f"{tuple(kernel_shape)} (per-weight gates) nor its input axis ({kernel_shape[-2]},) "
    "(per-input gates). Create gates with L0Dense(..., gate='weight' or 'input')."
  )


def _init_logits(drop_rate: float) -> Initializer:
  mean = math.log(1.0 - drop_rate) - math.log(drop_rate)

  def init(key, shape, dtype=jnp.float32):
    return mean + 1e-2 * jax.random.normal(key, shape, dtype)

  return init


def _check_gate(gate: str, drop_rate: float) -> None:
  if gate not in _GATES:
    raise ValueError(
      f"gate must be one of {_GATES}; got {gate!r}. Per-weight gates: L0Dense(300, "
      "gate='weight'); whole input neurons/channels: L0Dense(300, gate='input')."
    )
  if not 0.0 < drop_rate < 1.0:
    raise ValueError(f"drop_rate_init must be in (0, 1); got {drop_rate!r}. E.g. 0.5.")


def apply_gates(
  inputs: jax.Array,
  kernel: jax.Array,
  log_alpha: jax.Array,
  key: jax.Array | None,
  beta: float = BETA,
  gamma: float = GAMMA,
  zeta: float = ZETA,
) -> tuple[jax.Array, jax.Array]:
  """Applies gates to a layer's inputs (per-input gates) or kernel (per-weight gates).

  Args:
    inputs: the layer's inputs, ``(batch, ..., n_in)``.
    kernel: the kernel, ``(..., n_in, n_out)``.
    log_alpha: gate logits, of the kernel's shape or ``(n_in,)``.
    key: PRNG key to sample gates (training), or None for the deterministic gates.
    beta: temperature.
    gamma: lower stretch limit.
    zeta: upper stretch limit.

  Returns:
    ``(inputs, kernel)`` with the gates multiplied in. Per-input gates get an independent
    sample per example (broadcast over spatial axes); per-weight gates one sample per call.
  """
  per_weight = tuple(log_alpha.shape) == tuple(kernel.shape)
  if key is None:
    z = deterministic_gates(log_alpha, gamma, zeta)
  elif per_weight:
    z = sample_gates(key, log_alpha, None, beta, gamma, zeta)
  else:
    zshape = (jnp.shape(inputs)[0],) + (1,) * (jnp.ndim(inputs) - 2) + (kernel.shape[-2],)
    z = sample_gates(key, log_alpha, zshape, beta, gamma, zeta)
  if per_weight:
    return inputs, kernel * z.astype(kernel.dtype)
  return inputs * z.astype(inputs.dtype), kernel


def gate_shape(kernel_shape: tuple[int, ...], gate: str) -> tuple[int, ...]:
  """The logits' shape: the kernel's for ``"weight"`` gates, ``(n_in,)`` for ``"input"``."""
  return tuple(kernel_shape) if gate == "weight" else (kernel_shape[-2],)


class _L0Base(nn.Module):
  """Shared gate logic of `L0Dense` and `L0Conv`."""

  def gated(self, inputs, kernel, deterministic):
    """Returns (inputs, kernel) with gates applied."""
    la = self.param(GATE, _init_logits(self.drop_rate_init), gate_shape(kernel.shape, self.gate))
    key = None if deterministic else self.make_rng(self.rng_collection)
    return apply_gates(inputs, kernel, la, key, self.beta, self.gamma, self.zeta)


class L0Dense(_L0Base):
  """Dense layer whose weights (or input neurons) are switched by hard-concrete gates.

  Attributes:
    features: number of outputs.
    gate: ``"weight"`` (one gate per kernel entry) or ``"input"`` (one per input neuron).
    use_bias: add a bias (not gated).
    deterministic: default for the call argument of the same name.
    kernel_init: initializer of the kernel.
    bias_init: initializer of the bias.
    drop_rate_init: d, setting the initial logits to log((1 − d)/d) (σ(log α) = 1 − d).
    beta: temperature.
    gamma: lower stretch limit.
    zeta: upper stretch limit.
    rng_collection: PRNG stream of the gate noise.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxprune.bayes import L0Dense
    >>> layer = L0Dense(4, gate="input")
    >>> variables = layer.init(jax.random.key(0), jnp.ones((2, 3)), deterministic=True)
    >>> variables["params"]["gate_log_alpha"].shape
    (3,)
    >>> layer.apply(variables, jnp.ones((2, 3)), deterministic=True).shape
    (2, 4)

  References:
    Louizos, Welling, Kingma. Learning Sparse Neural Networks through L0 Regularization.
    ICLR 2018.
  """

  features: int
  gate: str = "weight"
  use_bias: bool = True
  deterministic: bool | None = None
  kernel_init: Initializer = nn.initializers.lecun_normal()
  bias_init: Initializer = nn.initializers.zeros_init()
  drop_rate_init: float = 0.5
  beta: float = BETA
  gamma: float = GAMMA
  zeta: float = ZETA
  rng_collection: str = "dropout"

  @nn.compact
  def __call__(self, inputs: jax.Array, deterministic: bool | None = None) -> jax.Array:
    _check_gate(self.gate, self.drop_rate_init)
    deterministic = nn.merge_param("deterministic", self.deterministic, deterministic)
    kernel = self.param("kernel", self.kernel_init, (jnp.shape(inputs)[-1], self.features))
    inputs, kernel = self.gated(inputs, kernel, deterministic)
    y = inputs @ kernel
    if self.use_bias:
      y = y + self.param("bias", self.bias_init, (self.features,))
    return y


class L0Conv(_L0Base):
  """Convolution (channels last) with hard-concrete gates per weight or per input channel.

  Attributes:
    features: number of output channels.
    kernel_size: spatial window, e.g. ``(5, 5)``.
    strides: spatial strides (default 1).
    padding: ``"SAME"``, ``"VALID"`` or explicit pairs.
    gate: ``"weight"`` or ``"input"`` (one gate per input channel).
    use_bias: add a bias (not gated).
    deterministic: default for the call argument of the same name.
    kernel_init: initializer of the kernel.
    bias_init: initializer of the bias.
    drop_rate_init: d, setting the initial logits to log((1 − d)/d).
    beta: temperature.
    gamma: lower stretch limit.
    zeta: upper stretch limit.
    rng_collection: PRNG stream of the gate noise.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxprune.bayes import L0Conv
    >>> layer = L0Conv(8, (3, 3), gate="input")
    >>> variables = layer.init(jax.random.key(0), jnp.ones((1, 6, 6, 2)), deterministic=True)
    >>> layer.apply(variables, jnp.ones((1, 6, 6, 2)), deterministic=True).shape
    (1, 6, 6, 8)

  References:
    Louizos, Welling, Kingma. Learning Sparse Neural Networks through L0 Regularization.
    ICLR 2018.
  """

  features: int
  kernel_size: Sequence[int]
  strides: Sequence[int] | None = None
  padding: str | Sequence[tuple[int, int]] = "SAME"
  gate: str = "weight"
  use_bias: bool = True
  deterministic: bool | None = None
  kernel_init: Initializer = nn.initializers.lecun_normal()
  bias_init: Initializer = nn.initializers.zeros_init()
  drop_rate_init: float = 0.5
  beta: float = BETA
  gamma: float = GAMMA
  zeta: float = ZETA
  rng_collection: str = "dropout"

  @nn.compact
  def __call__(self, inputs: jax.Array, deterministic: bool | None = None) -> jax.Array:
    _check_gate(self.gate, self.drop_rate_init)
    deterministic = nn.merge_param("deterministic", self.deterministic, deterministic)
    ksize, strides = _conv_geometry("L0Conv", inputs, self.kernel_size, self.strides)
    kernel = self.param("kernel", self.kernel_init, (*ksize, jnp.shape(inputs)[-1], self.features))
    inputs, kernel = self.gated(inputs, kernel, deterministic)
    y = _conv(inputs, kernel, strides, self.padding)
    if self.use_bias:
      y = y + self.param("bias", self.bias_init, (self.features,))
    return y
