"""Language-model metrics against a float64 NumPy computation."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprune.train.lm_metrics import (
  bits_per_byte,
  cross_entropy_sum,
  next_token_nats,
  perplexity,
  token_nats,
)


def _numpy_nats(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
  logits = logits.astype(np.float64)
  shifted = logits - logits.max(-1, keepdims=True)
  log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
  return -np.take_along_axis(log_probs, targets[..., None], -1)[..., 0]


def _random(seed=0, shape=(3, 7), vocab=256):
  rng = np.random.default_rng(seed)
  logits = rng.normal(0, 3, (*shape, vocab)).astype(np.float32)
  targets = rng.integers(0, vocab, shape).astype(np.int32)
  return logits, targets


def test_token_nats_match_numpy_and_the_mean_is_nats_per_token():
  logits, targets = _random()
  expected = _numpy_nats(logits, targets)
  np.testing.assert_allclose(
    token_nats(jnp.asarray(logits), jnp.asarray(targets)), expected, rtol=1e-5
  )
  mean = jax.jit(next_token_nats)(jnp.asarray(logits), jnp.asarray(targets))
  np.testing.assert_allclose(float(mean), expected.mean(), rtol=1e-5)


def test_weights_leave_padding_out():
  logits, targets = _random(1)
  mask = np.ones(targets.shape, bool)
  mask[-1, 4:] = False
  expected = _numpy_nats(logits, targets)[mask].mean()
  garbage = logits.copy()
  garbage[~mask] = 1e4 * np.random.default_rng(2).normal(size=garbage[~mask].shape)
  for lg in (logits, garbage):  # what sits under the padding does not matter
    got = next_token_nats(jnp.asarray(lg), jnp.asarray(targets), jnp.asarray(mask))
    np.testing.assert_allclose(float(got), expected, rtol=1e-5)
  total, count = cross_entropy_sum(jnp.asarray(logits), jnp.asarray(targets), jnp.asarray(mask))
  assert float(count) == mask.sum()
  np.testing.assert_allclose(float(total), _numpy_nats(logits, targets)[mask].sum(), rtol=1e-5)


def test_sums_over_batches_equal_the_whole():
  logits, targets = _random(3, shape=(6, 5))
  parts = [
    cross_entropy_sum(jnp.asarray(logits[i : i + 2]), jnp.asarray(targets[i : i + 2]))
    for i in (0, 2, 4)
  ]
  total = sum(float(t) for t, _ in parts) / sum(float(c) for _, c in parts)
  np.testing.assert_allclose(total, _numpy_nats(logits, targets).mean(), rtol=1e-5)


def test_low_precision_logits_are_scored_in_float32():
  logits, targets = _random(4)
  nats = token_nats(jnp.asarray(logits, jnp.bfloat16), jnp.asarray(targets))
  assert nats.dtype == jnp.float32
  rounded = np.asarray(jnp.asarray(logits, jnp.bfloat16).astype(jnp.float32))
  np.testing.assert_allclose(nats, _numpy_nats(rounded, targets), rtol=1e-5)


def test_bits_per_byte_and_perplexity():
  nats = np.array([0.5, 1.88, math.log(256)])
  np.testing.assert_allclose(bits_per_byte(jnp.asarray(nats)), nats / math.log(2), rtol=1e-6)
  np.testing.assert_allclose(perplexity(jnp.asarray(nats)), np.exp(nats), rtol=1e-6)
  assert float(bits_per_byte(math.log(2))) == pytest.approx(1.0)


def test_all_padding_gives_nan_not_a_number_that_looks_real():
  logits, targets = _random(5)
  got = next_token_nats(jnp.asarray(logits), jnp.asarray(targets), jnp.zeros(targets.shape, bool))
  assert math.isnan(float(got))


def test_mismatched_shapes_are_refused():
  logits, targets = _random(6)
  with pytest.raises(ValueError, match=r"targets \(3, 6\)"):
    next_token_nats(jnp.asarray(logits), jnp.asarray(targets[:, :-1]))
  with pytest.raises(ValueError, match=r"weights \(3,\)"):
    cross_entropy_sum(jnp.asarray(logits), jnp.asarray(targets), jnp.ones(3, bool))
