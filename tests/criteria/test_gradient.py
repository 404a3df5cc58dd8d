"""SNIP, Taylor and saliency: definitions, batch handling, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from criteria_models import jit_score

import jaxprune
from jaxprune import criteria
from jaxprune.errors import MissingExtraError


def test_snip_is_mask_sensitivity(mlp):
  """SNIP = |∂L(c ⊙ w)/∂c| at c = 1, normalised to sum 1."""
  params, loss_fn, batch = mlp
  ones = jax.tree.map(jnp.ones_like, params)
  dc = jax.grad(lambda c: loss_fn(jax.tree.map(jnp.multiply, c, params), batch))(ones)
  want = jax.tree.map(jnp.abs, dc)
  total = sum(jnp.sum(x) for x in jax.tree.leaves(want))
  got = jit_score(criteria.snip, loss_fn=loss_fn)(params, batch=batch)
  for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
    np.testing.assert_allclose(g, w / total, rtol=1e-5, atol=1e-8)
  np.testing.assert_allclose(sum(jnp.sum(x) for x in jax.tree.leaves(got)), 1.0, rtol=1e-5)


def test_snip_batches_equal_one_big_batch(mlp):
  params, loss_fn, batch = mlp
  halves = [jax.tree.map(lambda a: a[:8], batch), jax.tree.map(lambda a: a[8:], batch)]
  snip = jit_score(criteria.snip, loss_fn=loss_fn)
  one, two = snip(params, batch=batch), snip(params, batches=halves)
  for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(two), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-9)


def test_snip_from_grads_without_loss(mlp):
  params, loss_fn, batch = mlp
  grads = jax.grad(loss_fn)(params, batch)
  a = jit_score(criteria.snip)(params, grads=grads)
  b = jit_score(criteria.snip, loss_fn=loss_fn)(params, batch=batch)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_allclose(x, y, rtol=1e-6)


def test_taylor_averages_absolute_values_per_batch():
  loss_fn = lambda p, b: jnp.sum(p["w"] * b)  # the gradient is the batch itself
  params = {"w": jnp.array([1.0, 2.0, -1.0])}
  batches = [jnp.array([1.0, 1.0, 3.0]), jnp.array([-1.0, 0.0, 1.0])]
  taylor = criteria.taylor(params, loss_fn=loss_fn, batches=batches)["w"]
  np.testing.assert_allclose(taylor, [1.0, 1.0, 2.0])
  # SNIP averages the gradients first: the first weight's gradients cancel.
  snip = criteria.snip(params, loss_fn=loss_fn, batches=batches)["w"]
  np.testing.assert_allclose(snip, np.array([0.0, 1.0, 2.0]) / 3.0, rtol=1e-6)


def test_taylor_from_grads_is_saliency(mlp):
  params, loss_fn, batch = mlp
  grads = jax.grad(loss_fn)(params, batch)
  a, b = criteria.taylor(params, grads=grads), criteria.saliency(params, grads=grads)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("name", ["snip", "taylor"])
def test_missing_loss_and_grads(mlp, name):
  params, _, _ = mlp
  with pytest.raises(MissingExtraError, match="loss_fn=loss_fn, batch=batch"):
    jaxprune.prune(params, 0.5, criterion=name)


@pytest.mark.parametrize("name", ["snip", "taylor", "grasp", "obd", "fisher"])
def test_loss_without_batch(mlp, name):
  params, loss_fn, _ = mlp
  with pytest.raises(MissingExtraError, match="no data: pass 'batch'"):
    jaxprune.prune(params, 0.5, criterion=name, loss_fn=loss_fn)


def test_batch_and_batches_together(mlp):
  params, loss_fn, batch = mlp
  with pytest.raises(ValueError, match="pass one"):
    criteria.snip(params, loss_fn=loss_fn, batch=batch, batches=[batch])


def test_batches_must_be_a_list(mlp):
  params, loss_fn, batch = mlp
  with pytest.raises(ValueError, match="non-empty list"):
    criteria.taylor(params, loss_fn=loss_fn, batches=batch)


def test_classification_loss_temperature():
  apply_fn = lambda p, x: x @ p["w"]
  params = {"w": jnp.array([[2.0, -2.0]])}
  batch = {"image": jnp.ones((1, 1)), "label": jnp.zeros(1, jnp.int32)}
  hot = criteria.classification_loss(apply_fn, temperature=4.0)(params, batch)
  np.testing.assert_allclose(hot, jnp.log1p(jnp.exp(-1.0)), rtol=1e-6)  # logits / 4 = ±0.5
  with pytest.raises(ValueError, match="temperature must be positive"):
    criteria.classification_loss(apply_fn, temperature=0.0)
