"""Sparse variational dropout: layers with a learned noise level per weight, and their KL.

Each weight has a Gaussian posterior q(w) = N(θ, σ²) with dropout rate α = σ²/θ². With the
log-uniform prior the KL term pushes α up; weights with log α ≥ 3 (dropout rate above
~95%) carry only noise and are removed. Training samples pre-activations with the local
reparameterization trick, b ~ N(xθ, x²σ²), so the noise is independent per example.

The layers store ``kernel`` (θ) and ``log_sigma2`` (log σ²) side by side; `kl_penalty`,
`log_alphas` and the ``"log_alpha"`` criterion find the pairs by name in any params pytree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxprune.bayes import _paths

PyTree = Any
Initializer = Any

LOG_SIGMA2 = "log_sigma2"
# Constants of the KL approximation, Molchanov et al. (2017), eq. 14.
K1, K2, K3 = 0.63576, 1.8732, 1.48695
_EPS = 1e-8


def log_alpha(kernel: jax.Array, log_sigma2: jax.Array) -> jax.Array:
  """Returns log α = log σ² − log(θ² + 1e-8), clipped to [−8, 8].

  Args:
    kernel: the means θ.
    log_sigma2: the log variances log σ² (same shape).

  Returns:
    float32 log α with the shape of ``kernel``.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxprune.bayes import log_alpha
    >>> log_alpha(jnp.array([1.0, 1e-3]), jnp.array([-2.0, 0.0])).round(2)
    Array([-2.,  8.], dtype=float32)
  """
  kernel = jnp.asarray(kernel, jnp.float32)
  la = jnp.asarray(log_sigma2, jnp.float32) - jnp.log(jnp.square(kernel) + _EPS)
  return jnp.clip(la, -8.0, 8.0)


def keep_mask(kernel: jax.Array, log_sigma2: jax.Array, threshold: float = 3.0) -> jax.Array:
  """Returns the bool mask log α < ``threshold`` (True = the weight is kept).

  Args:
    kernel: the means θ.
    log_sigma2: the log variances log σ².
    threshold: log α at or above which a weight is removed (3: dropout rate > 95%).

  Returns:
    bool array with the shape of ``kernel``.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxprune.bayes import keep_mask
    >>> keep_mask(jnp.array([1.0, 1e-3]), jnp.zeros(2)).tolist()
    [True, False]
  """
  return log_alpha(kernel, log_sigma2) < threshold


def neg_kl(log_alpha_: jax.Array) -> jax.Array:
  """Approximate −KL(q ‖ p) per weight against the log-uniform prior.

  −KL ≈ k1·σ(k2 + k3·log α) − ½·log(1 + 1/α) − k1, with k1 = 0.63576, k2 = 1.8732,
  k3 = 1.48695; ½·log(1 + 1/α) is computed as ½·softplus(−log α) for stability.

  Args:
    log_alpha_: log α per weight.

  Returns:
    −KL per weight (≤ 0, tending to 0 as α → ∞).

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxprune.bayes import neg_kl
    >>> [round(float(v), 3) for v in neg_kl(jnp.array([-8.0, 0.0, 8.0]))]
    [-4.636, -0.431, -0.0]

  References:
    Molchanov, Ashukha, Vetrov. Variational Dropout Sparsifies Deep Neural Networks.
    ICML 2017, eq. 14.
  """
  la = jnp.asarray(log_alpha_, jnp.float32)
  return K1 * jax.nn.sigmoid(K2 + K3 * la) - 0.5 * jax.nn.softplus(-la) - K1


def log_alphas(params: PyTree) -> dict[str, jax.Array]:
  """Returns ``{kernel_path: log α}`` for every variational layer in ``params``.

  A variational layer is a ``kernel`` leaf with a ``log_sigma2`` sibling (Linen dicts, plain
  dicts and ``nnx.State`` alike); other leaves are ignored.

  Args:
    params: params pytree.

  Returns:
    A dict from "/"-joined kernel paths to clipped log α arrays.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxprune.bayes import VariationalDense, log_alphas
    >>> layer = VariationalDense(3)
    >>> variables = layer.init(jax.random.key(0), jnp.ones((1, 2)), deterministic=True)
    >>> params = variables["params"]
    >>> {k: v.shape for k, v in log_alphas(params).items()}
    {'kernel': (2, 3)}
  """
  return {path: log_alpha(k, s) for path, k, s in _paths.pairs(params, LOG_SIGMA2)}


def kl_penalty(params: PyTree) -> jax.Array:
  """Sum of the approximate KL(q ‖ log-uniform prior) over all variational weights.

  KL = Σ_ij [k1 − k1·σ(k2 + k3·log α_ij) + ½·log(1 + 1/α_ij)], summed over every
  ``kernel`` that has a ``log_sigma2`` sibling; other leaves do not contribute. In the
  ELBO per example, weight it by `kl_weight` (which includes 1/N).

  Args:
    params: params pytree containing variational layers.

  Returns:
    A float32 scalar (0.0 when there is no variational layer).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxprune.bayes import VariationalDense, kl_penalty
    >>> layer = VariationalDense(3)
    >>> variables = layer.init(jax.random.key(0), jnp.ones((1, 2)), deterministic=True)
    >>> params = variables["params"]
    >>> bool(kl_penalty(params) > 0)
    True

  References:
    Molchanov, Ashukha, Vetrov. Variational Dropout Sparsifies Deep Neural Networks.
    ICML 2017.
  """
  total = jnp.zeros([], jnp.float32)
  for la in log_alphas(params).values():
    total = total - jnp.sum(neg_kl(la))
  return total


def kl_weight(
  step: jax.Array | int,
  *,
  num_examples: int,
  warmup_steps: int = 0,
  ramp_steps: int = 0,
) -> jax.Array:
  """KL weight for the per-example ELBO loss: 0, then a linear ramp to 1, all divided by N.

  w(t) = min(max((t − warmup) / ramp, 0), 1) / N (a step function at ``warmup`` when
  ``ramp_steps = 0``), so ``loss = mean_cross_entropy + w(t) · kl_penalty(params)`` is the
  negative ELBO per example once the ramp is over.

  Args:
    step: optimizer step (may be traced).
    num_examples: N, the size of the training set.
    warmup_steps: steps with weight 0 (plain training of θ with noise).
    ramp_steps: steps of the linear ramp from 0 to 1/N.

  Returns:
    float32 scalar weight.

  Example:
    >>> from jaxprune.bayes import kl_weight
    >>> [round(float(kl_weight(t, num_examples=10, warmup_steps=2, ramp_steps=4)), 3)
    ...  for t in (0, 4, 9)]
    [0.0, 0.05, 0.1]
  """
  if num_examples < 1:
    raise ValueError(
      f"kl_weight: num_examples must be the training-set size (>= 1); got {num_examples!r}. "
      "Example: kl_weight(step, num_examples=60000, warmup_steps=0, ramp_steps=3000)."
    )
  if warmup_steps < 0 or ramp_steps < 0:
    raise ValueError(
      f"kl_weight: warmup_steps and ramp_steps must be >= 0; got {warmup_steps!r} and "
      f"{ramp_steps!r}. Example: kl_weight(step, num_examples=60000, ramp_steps=3000)."
    )
  t = jnp.asarray(step, jnp.float32) - warmup_steps
  frac = jnp.where(t >= 0, 1.0, 0.0) if ramp_steps == 0 else jnp.clip(t / ramp_steps, 0.0, 1.0)
  return (frac / num_examples).astype(jnp.float32)


def _sample(mean: jax.Array, var: jax.Array, key: jax.Array) -> jax.Array:
  """Local reparameterization: mean + sqrt(var)·ε with ε ~ N(0, 1)."""
  eps = jax.random.normal(key, mean.shape, mean.dtype)
  return mean + jnp.sqrt(var + _EPS) * eps


class VariationalDense(nn.Module):
  """Dense layer with sparse variational dropout (params ``kernel`` = θ, ``log_sigma2``).

  Training (``deterministic=False``) samples pre-activations b ~ N(xθ, x²σ²) with a key
  from the ``rng_collection`` stream; evaluation computes x·(θ ⊙ [log α < threshold]).

  Attributes:
    features: number of outputs.
    use_bias: add a (deterministic) bias.
    threshold: weights with log α ≥ threshold are zero at evaluation (None: keep all).
    deterministic: default for the call argument of the same name.
    kernel_init: initializer of θ.
    bias_init: initializer of the bias.
    log_sigma2_init: initial value of log σ² (−10: almost no noise at the start).
    rng_collection: the PRNG stream of the noise (``rngs={"dropout": key}``).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxprune.bayes import VariationalDense
    >>> layer = VariationalDense(4)
    >>> variables = layer.init(jax.random.key(0), jnp.ones((2, 3)), deterministic=True)
    >>> y = layer.apply(variables, jnp.ones((2, 3)), deterministic=False,
    ...                 rngs={"dropout": jax.random.key(1)})
    >>> y.shape
    (2, 4)

  References:
    Molchanov, Ashukha, Vetrov. Variational Dropout Sparsifies Deep Neural Networks.
    ICML 2017. Kingma, Salimans, Welling. Variational Dropout and the Local
    Reparameterization Trick. NeurIPS 2015.
  """

  features: int
  use_bias: bool = True
  threshold: float | None = 3.0
  deterministic: bool | None = None
  kernel_init: Initializer = nn.initializers.lecun_normal()
  bias_init: Initializer = nn.initializers.zeros_init()
  log_sigma2_init: float = -10.0
  rng_collection: str = "dropout"

  @nn.compact
  def __call__(self, inputs: jax.Array, deterministic: bool | None = None) -> jax.Array:
    deterministic = nn.merge_param("deterministic", self.deterministic, deterministic)
    shape = (jnp.shape(inputs)[-1], self.features)
    kernel = self.param("kernel", self.kernel_init, shape)
    log_sigma2 = self.param(LOG_SIGMA2, nn.initializers.constant(self.log_sigma2_init), shape)
    if deterministic:
      y = inputs @ _eval_kernel(kernel, log_sigma2, self.threshold)
    else:
      mean = inputs @ kernel
      var = jnp.square(inputs) @ jnp.exp(log_sigma2)
      y = _sample(mean, var, self.make_rng(self.rng_collection))
    if self.use_bias:
      y = y + self.param("bias", self.bias_init, (self.features,))
    return y


def _eval_kernel(kernel: jax.Array, log_sigma2: jax.Array, threshold: float | None) -> jax.Array:
  if threshold is None:
    return kernel
  return jnp.where(keep_mask(kernel, log_sigma2, threshold), kernel, jnp.zeros_like(kernel))


def _conv(x: jax.Array, kernel: jax.Array, strides, padding) -> jax.Array:
  nd = kernel.ndim - 2
  dn = jax.lax.ConvDimensionNumbers(
    lhs_spec=(0, nd + 1, *range(1, nd + 1)),
    rhs_spec=(nd + 1, nd, *range(nd)),
    out_spec=(0, nd + 1, *range(1, nd + 1)),
  )
  return jax.lax.conv_general_dilated(x, kernel, strides, padding, dimension_numbers=dn)


def _conv_geometry(
  layer: str, inputs: jax.Array, kernel_size: Sequence[int], strides: Sequence[int] | None
) -> tuple[tuple[int, ...], tuple[int, ...]]:
  """Checks a conv layer's input rank; returns its kernel size and strides as tuples."""
  ksize = tuple(kernel_size)
  if jnp.ndim(inputs) != len(ksize) + 2:
    raise ValueError(
      f"{layer} with kernel_size={ksize} expects inputs of shape (batch, "
      f"{', '.join(['spatial'] * len(ksize))}, channels); got shape {jnp.shape(inputs)}. "
      "Add a batch axis: layer.apply(variables, x[None])."
    )
  return ksize, tuple(strides) if strides is not None else (1,) * len(ksize)


class VariationalConv(nn.Module):
  """Convolution (channels last) with sparse variational dropout on every kernel entry.

  Training samples output pre-activations b ~ N(conv(x, θ), conv(x², σ²)) (local
  reparameterization); evaluation convolves with θ ⊙ [log α < threshold].

  Attributes:
    features: number of output channels.
    kernel_size: spatial window, e.g. ``(5, 5)``.
    strides: spatial strides (default 1).
    padding: ``"SAME"``, ``"VALID"`` or explicit pairs.
    use_bias: add a (deterministic) bias.
    threshold: weights with log α ≥ threshold are zero at evaluation (None: keep all).
    deterministic: default for the call argument of the same name.
    kernel_init: initializer of θ.
    bias_init: initializer of the bias.
    log_sigma2_init: initial value of log σ².
    rng_collection: the PRNG stream of the noise.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxprune.bayes import VariationalConv
    >>> layer = VariationalConv(8, (5, 5), padding="VALID")
    >>> variables = layer.init(jax.random.key(0), jnp.ones((1, 28, 28, 1)), deterministic=True)
    >>> layer.apply(variables, jnp.ones((1, 28, 28, 1)), deterministic=True).shape
    (1, 24, 24, 8)

  References:
    Molchanov, Ashukha, Vetrov. Variational Dropout Sparsifies Deep Neural Networks.
    ICML 2017.
  """

  features: int
  kernel_size: Sequence[int]
  strides: Sequence[int] | None = None
  padding: str | Sequence[tuple[int, int]] = "SAME"
  use_bias: bool = True
  threshold: float | None = 3.0
  deterministic: bool | None = None
  kernel_init: Initializer = nn.initializers.lecun_normal()
  bias_init: Initializer = nn.initializers.zeros_init()
  log_sigma2_init: float = -10.0
  rng_collection: str = "dropout"

  @nn.compact
  def __call__(self, inputs: jax.Array, deterministic: bool | None = None) -> jax.Array:
    deterministic = nn.merge_param("deterministic", self.deterministic, deterministic)
    ksize, strides = _conv_geometry("VariationalConv", inputs, self.kernel_size, self.strides)
    shape = (*ksize, jnp.shape(inputs)[-1], self.features)
    kernel = self.param("kernel", self.kernel_init, shape)
    log_sigma2 = self.param(LOG_SIGMA2, nn.initializers.constant(self.log_sigma2_init), shape)
    if deterministic:
      y = _conv(inputs, _eval_kernel(kernel, log_sigma2, self.threshold), strides, self.padding)
    else:
      mean = _conv(inputs, kernel, strides, self.padding)
      var = _conv(jnp.square(inputs), jnp.exp(log_sigma2), strides, self.padding)
      y = _sample(mean, var, self.make_rng(self.rng_collection))
    if self.use_bias:
      y = y + self.param("bias", self.bias_init, (self.features,))
    return y
