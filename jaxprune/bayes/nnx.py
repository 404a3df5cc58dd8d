"""Flax NNX versions of the variational-dropout and L0 layers.

Same parameters, names and maths as the Linen layers (``kernel``, ``log_sigma2``,
``gate_log_alpha``), so `kl_penalty`, `l0_penalty` and the ``"log_alpha"`` / ``"l0_gate"``
criteria work unchanged on ``nnx.state(model, nnx.Param)``. Noise comes from the
``dropout`` stream of the `nnx.Rngs` given at construction (or ``rngs=`` at call time);
``deterministic`` follows `nnx.Dropout`: a constructor default, overridable per call and
by ``nnx.view(model, deterministic=True)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxprune.bayes import l0, variational

Initializer = Any
_LECUN = nnx.initializers.lecun_normal()


def _stream(rngs: nnx.Rngs | None, collection: str):
  return nnx.data(None) if rngs is None else rngs[collection].fork()


class _Stochastic(nnx.Module):
  """Resolves ``deterministic`` and the noise key like `nnx.Dropout`."""

  def _key(self, deterministic: bool | None, rngs: Any) -> jax.Array | None:
    det = self.deterministic if deterministic is None else deterministic
    if det is None:
      raise ValueError(
        f"{type(self).__name__} needs `deterministic`: pass it at construction "
        f"({type(self).__name__}(..., deterministic=False)), per call (layer(x, "
        "deterministic=True)) or with nnx.view(model, deterministic=True)."
      )
    if det:
      return None
    rngs = self.rngs if rngs is None else rngs
    if rngs is None:
      raise ValueError(
        f"{type(self).__name__} samples noise in training mode but has no rngs. Build it with "
        f"rngs=nnx.Rngs(params=0, dropout=1) or call layer(x, rngs=nnx.Rngs(dropout=key))."
      )
    if isinstance(rngs, nnx.Rngs):
      return rngs[self.rng_collection]()
    if isinstance(rngs, nnx.RngStream):
      return rngs()
    return rngs

  def set_view(self, deterministic: bool | None = None):
    """Used by ``nnx.view``: sets the default ``deterministic``."""
    if deterministic is not None:
      self.deterministic = deterministic


class VariationalLinear(_Stochastic):
  """NNX dense layer with sparse variational dropout (see `VariationalDense`).

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from jaxprune.bayes.nnx import VariationalLinear
    >>> layer = VariationalLinear(3, 4, rngs=nnx.Rngs(params=0, dropout=1))
    >>> layer(jnp.ones((2, 3))).shape, layer(jnp.ones((2, 3)), deterministic=True).shape
    ((2, 4), (2, 4))

  References:
    Molchanov, Ashukha, Vetrov. Variational Dropout Sparsifies Deep Neural Networks.
    ICML 2017.
  """

  def __init__(
    self,
    in_features: int,
    out_features: int,
    *,
    use_bias: bool = True,
    threshold: float | None = 3.0,
    deterministic: bool | None = False,
    kernel_init: Initializer = _LECUN,
    log_sigma2_init: float = -10.0,
    rng_collection: str = "dropout",
    rngs: nnx.Rngs,
  ):
    shape = (in_features, out_features)
    self.kernel = nnx.Param(kernel_init(rngs.params(), shape))
    self.log_sigma2 = nnx.Param(jnp.full(shape, log_sigma2_init, jnp.float32))
    self.bias = nnx.Param(jnp.zeros((out_features,))) if use_bias else nnx.data(None)
    self.threshold = threshold
    self.deterministic = deterministic
    self.rng_collection = rng_collection
    self.rngs = _stream(rngs, rng_collection)

  def __call__(self, x: jax.Array, *, deterministic: bool | None = None, rngs=None) -> jax.Array:
    key = self._key(deterministic, rngs)
    kernel, log_sigma2 = self.kernel[...], self.log_sigma2[...]
    if key is None:
      y = x @ variational._eval_kernel(kernel, log_sigma2, self.threshold)
    else:
      y = variational._sample(x @ kernel, jnp.square(x) @ jnp.exp(log_sigma2), key)
    return y if self.bias is None else y + self.bias[...]


class VariationalConv(_Stochastic):
  """NNX convolution (channels last) with sparse variational dropout.

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from jaxprune.bayes.nnx import VariationalConv
    >>> layer = VariationalConv(1, 8, (5, 5), padding="VALID", rngs=nnx.Rngs(0))
    >>> layer(jnp.ones((2, 28, 28, 1))).shape
    (2, 24, 24, 8)
  """

  def __init__(
    self,
    in_features: int,
    out_features: int,
    kernel_size: Sequence[int],
    *,
    strides: Sequence[int] | None = None,
    padding: str | Sequence[tuple[int, int]] = "SAME",
    use_bias: bool = True,
    threshold: float | None = 3.0,
    deterministic: bool | None = False,
    kernel_init: Initializer = _LECUN,
    log_sigma2_init: float = -10.0,
    rng_collection: str = "dropout",
    rngs: nnx.Rngs,
  ):
    shape = (*kernel_size, in_features, out_features)
    self.kernel = nnx.Param(kernel_init(rngs.params(), shape))
    self.log_sigma2 = nnx.Param(jnp.full(shape, log_sigma2_init, jnp.float32))
    self.bias = nnx.Param(jnp.zeros((out_features,))) if use_bias else nnx.data(None)
    self.strides = tuple(strides) if strides is not None else (1,) * len(kernel_size)
    self.padding = padding
    self.threshold = threshold
    self.deterministic = deterministic
    self.rng_collection = rng_collection
    self.rngs = _stream(rngs, rng_collection)

  def __call__(self, x: jax.Array, *, deterministic: bool | None = None, rngs=None) -> jax.Array:
    key = self._key(deterministic, rngs)
    kernel, log_sigma2 = self.kernel[...], self.log_sigma2[...]
    conv = lambda a, k: variational._conv(a, k, self.strides, self.padding)
    if key is None:
      y = conv(x, variational._eval_kernel(kernel, log_sigma2, self.threshold))
    else:
      y = variational._sample(conv(x, kernel), conv(jnp.square(x), jnp.exp(log_sigma2)), key)
    return y if self.bias is None else y + self.bias[...]


class L0Linear(_Stochastic):
  """NNX dense layer with hard-concrete gates per weight or per input neuron (see `L0Dense`).

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from jaxprune.bayes.nnx import L0Linear
    >>> layer = L0Linear(3, 4, gate="input", rngs=nnx.Rngs(0))
    >>> layer.gate_log_alpha.shape, layer(jnp.ones((2, 3))).shape
    ((3,), (2, 4))

  References:
    Louizos, Welling, Kingma. Learning Sparse Neural Networks through L0 Regularization.
    ICLR 2018.
  """

  def __init__(
    self,
    in_features: int,
    out_features: int,
    *,
    gate: str = "weight",
    use_bias: bool = True,
    deterministic: bool | None = False,
    kernel_init: Initializer = _LECUN,
    drop_rate_init: float = 0.5,
    beta: float = l0.BETA,
    gamma: float = l0.GAMMA,
    zeta: float = l0.ZETA,
    rng_collection: str = "dropout",
    rngs: nnx.Rngs,
  ):
    l0._check_gate(gate, drop_rate_init)
    shape = (in_features, out_features)
    self.kernel = nnx.Param(kernel_init(rngs.params(), shape))
    init = l0._init_logits(drop_rate_init)
    self.gate_log_alpha = nnx.Param(init(rngs.params(), l0.gate_shape(shape, gate)))
    self.bias = nnx.Param(jnp.zeros((out_features,))) if use_bias else nnx.data(None)
    self.beta, self.gamma, self.zeta = beta, gamma, zeta
    self.deterministic = deterministic
    self.rng_collection = rng_collection
    self.rngs = _stream(rngs, rng_collection)

  def __call__(self, x: jax.Array, *, deterministic: bool | None = None, rngs=None) -> jax.Array:
    key = self._key(deterministic, rngs)
    x, kernel = l0.apply_gates(
      x, self.kernel[...], self.gate_log_alpha[...], key, self.beta, self.gamma, self.zeta
    )
    y = x @ kernel
    return y if self.bias is None else y + self.bias[...]
