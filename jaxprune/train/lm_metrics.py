"""Language-model metrics: next-token cross-entropy in nats, bits per byte, perplexity.

All are pure JAX functions, usable inside ``jax.jit``. Over several evaluation batches,
add up `cross_entropy_sum` (total nats and scored tokens) and divide once at the end: the
mean of per-batch means would weigh a padded last batch like a full one.

With byte tokens (`jaxprune.data.text`) one token is one byte, so bits per byte is the
cross-entropy in bits: ``nats / ln 2``. Perplexity is ``exp(nats)``, per token.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

LN2 = math.log(2.0)


def _check(logits: jax.Array, targets: jax.Array, weights: jax.Array | None) -> None:
  if logits.shape[:-1] != targets.shape or (weights is not None and weights.shape != targets.shape):
    got = "" if weights is None else f", weights {weights.shape}"
    raise ValueError(
      f"Expected logits [..., vocab] and integer targets (and weights) shaped like logits' "
      f"leading axes, got logits {logits.shape}, targets {targets.shape}{got}; e.g. logits "
      "[B, T, 256] with targets and weights [B, T]."
    )


def token_nats(logits: jax.Array, targets: jax.Array) -> jax.Array:
  """Next-token cross-entropy of every position, in nats: ``-log softmax(logits)[target]``.

  Computed in float32 whatever the dtype of ``logits``.

  Args:
    logits: ``[..., vocab]`` scores of the next token.
    targets: integer ``[...]``, the tokens that came next.

  Returns:
    float32 ``[...]``.

  Example:
    >>> logits = jnp.log(jnp.array([[0.5, 0.25, 0.25]]))
    >>> [round(float(x), 6) for x in token_nats(logits, jnp.array([0]))]
    [0.693147]
  """
  _check(logits, targets, None)
  return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), targets)


def cross_entropy_sum(
  logits: jax.Array, targets: jax.Array, weights: jax.Array | None = None
) -> tuple[jax.Array, jax.Array]:
  """Total next-token cross-entropy in nats and the number of scored tokens.

  Args:
    logits: ``[..., vocab]``.
    targets: integer ``[...]``.
    weights: ``[...]`` (bool or float), 0 for padding; None to score every position
      (e.g. the ``"mask"`` of `jaxprune.data.text_eval_batches`).

  Returns:
    ``(sum of weights * nats, sum of weights)``, float32 scalars.

  Example:
    >>> logits = jnp.zeros((1, 3, 256))  # uniform: ln 256 nats per token
    >>> total, count = cross_entropy_sum(logits, jnp.zeros((1, 3), int), jnp.array([[1, 1, 0]]))
    >>> round(float(total), 5), float(count)
    (11.09035, 2.0)
  """
  _check(logits, targets, weights)
  nats = token_nats(logits, targets)
  w = jnp.ones_like(nats) if weights is None else weights.astype(jnp.float32)
  return jnp.sum(w * nats), jnp.sum(w)


def next_token_nats(
  logits: jax.Array, targets: jax.Array, weights: jax.Array | None = None
) -> jax.Array:
  """Mean next-token cross-entropy in nats per scored token (the usual LM loss).

  ``sum(w * nats) / sum(w)``; NaN when no token is scored (all weights 0).

  Args:
    logits: ``[..., vocab]``.
    targets: integer ``[...]``.
    weights: ``[...]``, 0 for padding; None to score every position.

  Returns:
    A float32 scalar.

  Example:
    >>> logits = jnp.zeros((2, 4, 256))
    >>> round(float(next_token_nats(logits, jnp.ones((2, 4), int))), 6)  # ln 256
    5.545177
  """
  total, count = cross_entropy_sum(logits, targets, weights)
  return total / count


def bits_per_byte(nats_per_token: jax.Array | float) -> jax.Array:
  """Bits per byte of a byte-level model: its nats per token divided by ``ln 2``.

  Example:
    >>> float(bits_per_byte(jnp.log(256.0)))  # a uniform guess over bytes: 8 bits
    8.0
  """
  return jnp.asarray(nats_per_token, jnp.float32) / LN2


def perplexity(nats_per_token: jax.Array | float) -> jax.Array:
  """Perplexity per token: ``exp(mean nats per token)``.

  Example:
    >>> round(float(perplexity(jnp.log(256.0))), 3)  # a uniform guess over 256 bytes
    256.0
  """
  return jnp.exp(jnp.asarray(nats_per_token, jnp.float32))


def byte_metrics(nats_sum: float, count: float) -> dict[str, float]:
  """The reported metrics of a byte-level LM from summed nats over ``count`` scored bytes.

  Host floats (float64), for summaries: ``nats_per_byte``, ``bits_per_byte``,
  ``perplexity`` and ``tokens`` (the bytes scored).

  Example:
    >>> out = byte_metrics(10 * math.log(4.0), 10.0)
    >>> out["bits_per_byte"], round(out["perplexity"], 9), out["tokens"]
    (2.0, 4.0, 10)
  """
  nats = float(nats_sum) / float(count)
  return {
    "nats_per_byte": nats,
    "bits_per_byte": nats / LN2,
    "perplexity": math.exp(nats),
    "tokens": int(round(float(count))),
  }
