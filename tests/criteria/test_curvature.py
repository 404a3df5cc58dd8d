"""GraSP, OBD and Fisher against brute-force Hessians and per-example loops."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from criteria_models import jit_score
from jax.flatten_util import ravel_pytree

import jaxprune
from jaxprune import criteria


def brute_hessian(loss_fn, params, batch):
  flat, unravel = ravel_pytree(params)
  h = jax.jit(jax.hessian(lambda v: loss_fn(unravel(v), batch)))(flat)
  return flat, unravel, h


def test_hvp_matches_hessian(mlp):
  params, loss_fn, batch = mlp
  flat, unravel, h = brute_hessian(loss_fn, params, batch)
  v = jax.random.normal(jax.random.key(3), flat.shape)
  hvp = jax.jit(lambda p, v: criteria.hvp(lambda q: loss_fn(q, batch), p, v))
  got = ravel_pytree(hvp(params, unravel(v)))[0]
  np.testing.assert_allclose(got, h @ v, rtol=1e-5, atol=1e-6)


def test_grasp_matches_brute_force(mlp):
  params, loss_fn, batch = mlp
  flat, unravel, h = brute_hessian(loss_fn, params, batch)
  g = jax.grad(loss_fn)(params, batch)
  g_weights = jax.tree.map(lambda x: x if x.ndim > 1 else jnp.zeros_like(x), g)  # as reference
  grasp_score = -flat * (h @ ravel_pytree(g_weights)[0])  # the paper's S = −θ ⊙ Hg
  got = ravel_pytree(jit_score(criteria.grasp, loss_fn=loss_fn)(params, batch=batch))[0]
  np.testing.assert_allclose(got, -grasp_score, rtol=1e-5, atol=1e-7)


def test_grasp_batches_average(mlp):
  params, loss_fn, batch = mlp
  parts = [jax.tree.map(lambda a: a[:4], batch), jax.tree.map(lambda a: a[4:], batch)]
  grasp = jit_score(criteria.grasp, loss_fn=loss_fn)
  a = ravel_pytree(grasp(params, batch=batch))[0]
  b = ravel_pytree(grasp(params, batches=parts))[0]
  assert not np.allclose(a, b)  # unequal parts: the mean of their losses is not the batch's ...
  mean_loss = lambda p, _: (loss_fn(p, parts[0]) + loss_fn(p, parts[1])) / 2
  c = ravel_pytree(jit_score(criteria.grasp, loss_fn=mean_loss)(params, batch=0))[0]
  np.testing.assert_allclose(b, c, rtol=1e-5, atol=1e-8)  # ... it is their average loss


def test_grasp_removes_highest_grasp_scores():
  """Reference convention: the weights with the HIGHEST S = −θ ⊙ Hg are removed.

  Loss ½ Σ (w_q − c_q)² at w = 1: g_q = 1 − c_q, H = I, so S_q = c_q − 1, and zeroing w_q
  changes the squared gradient norm by exactly 2c_q − 1: GraSP removes the weights whose
  removal increases gradient flow most, i.e. the largest c_q.
  """
  c = jnp.array([[0.3, 2.5, -1.0, 1.7], [4.0, 0.0, 0.9, 3.2]])
  params = {"w": jnp.ones((2, 4))}
  loss_fn = lambda p, b: 0.5 * jnp.sum((p["w"] - b) ** 2)
  _, masks = jaxprune.prune(params, 0.5, criterion="grasp", loss_fn=loss_fn, batch=c)
  removed = ~np.asarray(masks["w"])
  np.testing.assert_array_equal(removed, np.asarray(c) >= 1.7)  # the four largest c_q

  def grad_norm_change(q):
    w = params["w"].reshape(-1).at[q].set(0.0).reshape(2, 4)
    g0 = jax.grad(loss_fn)(params, c)["w"]
    g1 = jax.grad(loss_fn)({"w": w}, c)["w"]
    return float(jnp.sum(g1**2) - jnp.sum(g0**2))

  delta = np.array([grad_norm_change(q) for q in range(8)]).reshape(2, 4)
  assert delta[removed].min() > delta[~removed].max()


def test_grasp_prune_removes_top_reference_scores(mlp):
  params, loss_fn, batch = mlp
  flat, unravel, h = brute_hessian(loss_fn, params, batch)
  g = jax.grad(loss_fn)(params, batch)
  g_weights = jax.tree.map(lambda x: x if x.ndim > 1 else jnp.zeros_like(x), g)
  reference = unravel(-flat * (h @ ravel_pytree(g_weights)[0]))
  prune = lambda p, b: jaxprune.prune(p, 0.4, criterion="grasp", loss_fn=loss_fn, batch=b)[1]
  masks = jax.jit(prune)(params, batch)
  for layer in ("Dense_0", "Dense_1"):
    s = np.asarray(reference[layer]["kernel"]).ravel()
    n_removed = round(0.4 * s.size)
    want_removed = np.zeros(s.size, bool)
    want_removed[np.argsort(-s)[:n_removed]] = True
    np.testing.assert_array_equal(~np.asarray(masks[layer]["kernel"]).ravel(), want_removed)
    assert masks[layer]["bias"].all()


def test_obd_exact_for_separable_loss():
  h = jnp.array([[1.0, 4.0], [0.5, 2.0]])
  loss_fn = lambda p, b: 0.5 * jnp.sum(b * p["w"] ** 2) + jnp.sum(jnp.sin(p["b"]))
  params = {"w": jnp.array([[1.0, -2.0], [3.0, 0.5]]), "b": jnp.array([0.3, -0.7])}
  s = criteria.obd(params, loss_fn=loss_fn, batch=h, key=jax.random.key(0), hutchinson_samples=3)
  np.testing.assert_allclose(s["w"], 0.5 * h * params["w"] ** 2, rtol=1e-6)
  np.testing.assert_allclose(s["b"], 0.5 * -jnp.sin(params["b"]) * params["b"] ** 2, rtol=1e-6)


def _hutchinson_error(loss_fn, params, batch, k, exact):
  errs = []
  estimate = jax.jit(
    lambda p, key: criteria.hutchinson_diagonal(lambda q: loss_fn(q, batch), p, key, k)
  )
  for seed in range(3):
    est = estimate(params, jax.random.key(seed))
    errs.append(np.linalg.norm(ravel_pytree(est)[0] - exact) / np.linalg.norm(exact))
  return float(np.mean(errs))


def test_hutchinson_converges_to_exact_diagonal(mlp):
  params, loss_fn, batch = mlp
  _, _, h = brute_hessian(loss_fn, params, batch)
  exact = np.diag(h)
  errs = [_hutchinson_error(loss_fn, params, batch, k, exact) for k in (4, 64, 1024)]
  assert errs[0] > errs[1] > errs[2]
  assert errs[2] < 0.25 * errs[0]  # ~ 1/√k: 16× fewer errors would be 1/16
  assert errs[2] < 0.1


def test_obd_matches_brute_force_diagonal(mlp):
  params, loss_fn, batch = mlp
  flat, unravel, h = brute_hessian(loss_fn, params, batch)
  want = 0.5 * np.diag(h) * np.asarray(flat) ** 2
  crit = criteria.obd_criterion(num_samples=2048)
  key = jax.random.key(0)
  got = jax.jit(lambda p, b: crit(p, loss_fn=loss_fn, batch=b, key=key))(params, batch)
  got = ravel_pytree(got)[0]
  assert np.linalg.norm(got - want) < 0.1 * np.linalg.norm(want)
  # An explicit extra overrides the factory's default.
  few = jit_score(crit, loss_fn=loss_fn, hutchinson_samples=2)(params, batch=batch, key=key)
  assert np.linalg.norm(ravel_pytree(few)[0] - want) > np.linalg.norm(got - want)


@pytest.mark.parametrize("chunk", [5, 64])  # scan over chunks + remainder; one vmap
def test_fisher_per_example_matches_loop(mlp, chunk):
  params, loss_fn, batch = mlp
  n = batch["label"].shape[0]
  grad = jax.jit(jax.grad(loss_fn))
  sq = [
    jax.tree.map(jnp.square, grad(params, jax.tree.map(lambda a: a[i : i + 1], batch)))
    for i in range(n)
  ]
  want = jax.tree.map(lambda w, *s: sum(s) / n * w**2, params, *sq)
  got = jit_score(criteria.fisher, loss_fn=loss_fn, fisher_chunk_size=chunk)(params, batch=batch)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-9)


def test_fisher_per_batch(mlp):
  params, loss_fn, batch = mlp
  halves = [jax.tree.map(lambda a: a[:8], batch), jax.tree.map(lambda a: a[8:], batch)]
  g = [jax.grad(loss_fn)(params, b) for b in halves]
  want = jax.tree.map(lambda w, a, b: (a**2 + b**2) / 2 * w**2, params, *g)
  crit = criteria.fisher_criterion(per_example=False)
  got = jit_score(crit, loss_fn=loss_fn)(params, batches=halves, key=jax.random.key(0))
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-9)


def test_fisher_per_example_over_batches_weights_by_examples(mlp):
  params, loss_fn, batch = mlp
  parts = [jax.tree.map(lambda a: a[:4], batch), jax.tree.map(lambda a: a[4:], batch)]
  fisher = jit_score(criteria.fisher, loss_fn=loss_fn)
  a, b = fisher(params, batch=batch), fisher(params, batches=parts)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-9)


def test_bad_configuration_messages():
  with pytest.raises(ValueError, match="obd_criterion"):
    criteria.obd_criterion(num_samples=0)
  with pytest.raises(ValueError, match="positive Python int"):
    criteria.hutchinson_diagonal(jnp.sum, jnp.ones(2), jax.random.key(0), num_samples=2.5)


def test_hutchinson_unrolled_equals_looped(mlp):
  params, loss_fn, batch = mlp
  est = lambda unroll: jax.jit(
    lambda p: criteria.hutchinson_diagonal(
      lambda q: loss_fn(q, batch), p, jax.random.key(5), 3, unroll=unroll
    )
  )(params)
  for a, b in zip(jax.tree.leaves(est(True)), jax.tree.leaves(est(False)), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-8)
