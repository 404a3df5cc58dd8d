"""Sparse variational dropout: the KL approximation, local reparameterization, eval, masks."""

import warnings

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import integrate

import jaxprune
from jaxprune import bayes
from jaxprune.bayes import variational


def _expected_log_abs(alpha: float) -> float:
  """E_{ε ~ N(1, α)} log|ε| by quadrature, split at the log singularity x = 0."""
  s = np.sqrt(alpha)
  pdf = lambda x: np.exp(-0.5 * ((x - 1.0) / s) ** 2) / (s * np.sqrt(2.0 * np.pi))
  f = lambda x: np.log(np.abs(x)) * pdf(x)
  lo, hi = 1.0 - 40.0 * s, 1.0 + 40.0 * s
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", integrate.IntegrationWarning)
    if lo < 0.0:
      a = integrate.quad(f, lo, 0.0, limit=400, epsabs=1e-11)[0]
      b = integrate.quad(f, 0.0, hi, limit=400, epsabs=1e-11)[0]
      return a + b
    return integrate.quad(f, lo, hi, limit=400, epsabs=1e-11)[0]


def test_kl_approximation_matches_numerical_integration():
  # −KL(α) = C + ½·log α − E_{ε~N(1,α)} log|ε|; as α → ∞ the right side tends to
  # C + (γ_E + log 2)/2, and the approximation tends to 0, so C = −(γ_E + log 2)/2.
  c = -(np.euler_gamma + np.log(2.0)) / 2.0
  las = np.linspace(-8.0, 8.0, 33)
  exact = np.array([c + 0.5 * la - _expected_log_abs(np.exp(la)) for la in las])
  approx = np.asarray(bayes.neg_kl(jnp.asarray(las, jnp.float32)))
  err = np.abs(approx - exact)
  assert err.max() < 0.01, list(zip(las, err, strict=True))
  # The approximation is not trivially close: its shape spans ~4 nats over this range.
  assert exact.max() - exact.min() > 4.0


def test_kl_quadrature_agrees_with_monte_carlo():
  rng = np.random.default_rng(0)
  for alpha in (0.1, 1.0, 20.0):
    eps = 1.0 + np.sqrt(alpha) * rng.standard_normal(2_000_000)
    mc = np.mean(np.log(np.abs(eps)))
    assert abs(mc - _expected_log_abs(alpha)) < 5e-3


def test_neg_kl_is_nonpositive_increasing_and_vanishes_at_large_alpha():
  la = jnp.linspace(-8.0, 8.0, 101)
  v = bayes.neg_kl(la)
  assert bool(jnp.all(v <= 0.0))
  assert bool(jnp.all(jnp.diff(v) > 0.0))
  assert abs(float(v[-1])) < 1e-3


def test_kl_penalty_sums_over_variational_layers_only():
  params = {
    "vd": {"kernel": jnp.array([[1.0, 0.5]]), "log_sigma2": jnp.array([[-2.0, 0.0]])},
    "dense": {"kernel": jnp.ones((3, 3)), "bias": jnp.ones(3)},
  }
  la = variational.log_alpha(params["vd"]["kernel"], params["vd"]["log_sigma2"])
  expected = -jnp.sum(bayes.neg_kl(la))
  np.testing.assert_allclose(bayes.kl_penalty(params), expected, rtol=1e-6)
  assert float(bayes.kl_penalty({"dense": params["dense"]})) == 0.0


def test_log_alpha_is_clipped():
  la = bayes.log_alpha(jnp.array([1e-6, 10.0]), jnp.array([10.0, -30.0]))
  assert la.tolist() == [8.0, -8.0]


def test_log_alphas_pairs_nested_and_value_wrapped_paths():
  params = {
    "block": {
      "layer": {"kernel": {"value": jnp.ones((2, 2))}, "log_sigma2": {"value": -jnp.ones((2, 2))}}
    },
    "other": {"kernel": jnp.ones((2, 2))},
  }
  las = bayes.log_alphas(params)
  assert list(las) == ["block/layer/kernel/value"]
  np.testing.assert_allclose(las["block/layer/kernel/value"], -1.0, atol=1e-6)


def test_kl_weight_warmup_ramp_and_scaling():
  w = lambda t: float(bayes.kl_weight(t, num_examples=100, warmup_steps=10, ramp_steps=20))
  assert w(0) == 0.0 and w(10) == 0.0
  np.testing.assert_allclose(w(20), 0.5 / 100, rtol=1e-6)
  np.testing.assert_allclose(w(30), 1.0 / 100, rtol=1e-6)
  np.testing.assert_allclose(w(10_000), 1.0 / 100, rtol=1e-6)
  step_fn = lambda t: float(bayes.kl_weight(t, num_examples=4, warmup_steps=3))
  assert [step_fn(t) for t in (2, 3)] == [0.0, 0.25]
  jitted = jax.jit(lambda t: bayes.kl_weight(t, num_examples=100, ramp_steps=20))
  np.testing.assert_allclose(jitted(jnp.int32(10)), 0.005, rtol=1e-6)
  with pytest.raises(ValueError, match="num_examples"):
    bayes.kl_weight(0, num_examples=0)


def _dense_variables(key, n_in=5, n_out=3):
  k1, k2 = jax.random.split(key)
  return {
    "params": {
      "kernel": jax.random.normal(k1, (n_in, n_out)),
      "log_sigma2": jax.random.uniform(k2, (n_in, n_out), minval=-3.0, maxval=0.5),
      "bias": jnp.linspace(-1.0, 1.0, n_out),
    }
  }


def test_dense_local_reparameterization_matches_weight_sampling():
  variables = _dense_variables(jax.random.key(0))
  p = variables["params"]
  x = jax.random.normal(jax.random.key(1), (4, 5))
  layer = bayes.VariationalDense(3)
  n = 50_000
  keys = jax.random.split(jax.random.key(2), n)
  lrt = jax.jit(
    jax.vmap(lambda k: layer.apply(variables, x, deterministic=False, rngs={"dropout": k}))
  )(keys)
  w = p["kernel"] + jnp.exp(0.5 * p["log_sigma2"]) * jax.random.normal(jax.random.key(3), (n, 5, 3))
  direct = jnp.einsum("bi,nio->nbo", x, w) + p["bias"]
  mean = x @ p["kernel"] + p["bias"]
  var = jnp.square(x) @ jnp.exp(p["log_sigma2"])
  for samples in (lrt, direct):
    np.testing.assert_allclose(samples.mean(0), mean, atol=4.0 * float(jnp.sqrt(var.max() / n)))
    np.testing.assert_allclose(samples.var(0), var, rtol=0.03)
  # Independent noise per example: the sampled pre-activations of two examples are uncorrelated.
  corr = np.corrcoef(np.asarray(lrt[:, 0, 0]), np.asarray(lrt[:, 1, 0]))[0, 1]
  assert abs(corr) < 0.02


def test_conv_local_reparameterization_matches_weight_sampling():
  layer = bayes.VariationalConv(2, (3, 3), padding="VALID")
  x = jax.random.normal(jax.random.key(0), (1, 5, 5, 2))
  variables = layer.init(jax.random.key(1), x, deterministic=True)
  p = dict(variables["params"])
  p["log_sigma2"] = jax.random.uniform(jax.random.key(2), p["kernel"].shape, minval=-3.0, maxval=0)
  variables = {"params": p}
  n = 20_000
  keys = jax.random.split(jax.random.key(3), n)
  lrt = jax.jit(
    jax.vmap(lambda k: layer.apply(variables, x, deterministic=False, rngs={"dropout": k}))
  )(keys)
  noise = jax.random.normal(jax.random.key(4), (n, *p["kernel"].shape))
  w = p["kernel"] + jnp.exp(0.5 * p["log_sigma2"]) * noise
  # Direct weight sampling, as one matmul over image patches (same (kh, kw, c) order as w).
  patches = jnp.stack([x[0, i : i + 3, j : j + 3, :] for i in range(3) for j in range(3)], 2)
  direct = jnp.einsum("hwk,nko->nhwo", patches.reshape(3, 3, 18), w.reshape(n, 18, 2))
  direct = direct[:, None] + p["bias"]
  mean = variational._conv(x, p["kernel"], (1, 1), "VALID") + p["bias"]
  var = variational._conv(jnp.square(x), jnp.exp(p["log_sigma2"]), (1, 1), "VALID")
  for samples in (lrt, direct):
    np.testing.assert_allclose(samples.mean(0), mean, atol=4.0 * float(jnp.sqrt(var.max() / n)))
    np.testing.assert_allclose(samples.var(0), var, rtol=0.05)


@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_eval_is_deterministic_and_drops_high_alpha_weights(kind):
  if kind == "dense":
    layer, x = bayes.VariationalDense(3), jax.random.normal(jax.random.key(0), (4, 5))
  else:
    layer = bayes.VariationalConv(3, (3, 3))
    x = jax.random.normal(jax.random.key(0), (2, 6, 6, 5))
  variables = layer.init(jax.random.key(1), x, deterministic=True)
  p = dict(variables["params"])
  p["log_sigma2"] = jnp.where(
    jnp.arange(p["kernel"].size).reshape(p["kernel"].shape) % 2, 5.0, -9.0
  )
  variables = {"params": p}
  run = jax.jit(
    lambda k, det: layer.apply(variables, x, deterministic=det, rngs={"dropout": k}),
    static_argnums=1,
  )
  e1, e2 = run(jax.random.key(2), True), run(jax.random.key(3), True)
  np.testing.assert_array_equal(e1, e2)
  assert not np.allclose(run(jax.random.key(2), False), run(jax.random.key(3), False))
  keep = bayes.keep_mask(p["kernel"], p["log_sigma2"])
  assert 0 < int(keep.sum()) < keep.size
  kept = jnp.where(keep, p["kernel"], 0.0)
  expected = x @ kept if kind == "dense" else variational._conv(x, kept, (1, 1), "SAME")
  np.testing.assert_allclose(e1, expected + p["bias"], rtol=1e-5, atol=1e-5)
  no_cut = jax.jit(lambda v: layer.clone(threshold=None).apply(v, x, deterministic=True))(variables)
  assert not np.allclose(no_cut, e1)


def test_conv_rejects_inputs_without_batch_axis():
  layer = bayes.VariationalConv(3, (3, 3))
  with pytest.raises(ValueError, match=r"x\[None\]"):
    layer.init(jax.random.key(0), jnp.ones((6, 6, 1)), deterministic=True)


class _Mixed(nn.Module):
  @nn.compact
  def __call__(self, x, deterministic=True):
    x = nn.relu(bayes.VariationalDense(8, name="vd")(x, deterministic))
    return nn.Dense(2, name="plain")(x)


def test_masked_log_alpha_gives_exact_zeros_in_params():
  model = _Mixed()
  x = jax.random.normal(jax.random.key(0), (4, 6))
  params = model.init(jax.random.key(1), x)["params"]
  ls2 = jax.random.uniform(jax.random.key(2), (6, 8), minval=-12.0, maxval=2.0)
  params = {**params, "vd": {**params["vd"], "log_sigma2": ls2}}
  expected_keep = bayes.keep_mask(params["vd"]["kernel"], ls2)
  assert 0 < int(expected_keep.sum()) < expected_keep.size
  tx = jaxprune.masked(optax.adam(1e-2), None, criterion="log_alpha")
  state = tx.init(params)

  def loss(p):
    return jnp.sum(model.apply({"params": p}, x) ** 2) + bayes.kl_penalty(p)

  @jax.jit
  def step(p, s):
    updates, s = tx.update(jax.grad(loss)(p), s, p)
    return optax.apply_updates(p, updates), s

  new, state = step(params, state)
  k = new["vd"]["kernel"]
  assert bool(jnp.all(jnp.where(expected_keep, k != 0, k == 0)))
  masks = jaxprune.masks_of(state)
  np.testing.assert_array_equal(masks["vd"]["kernel"], expected_keep)
  # Non-variational kernels and the log σ² leaves stay dense.
  assert bool(jnp.all(masks["plain"]["kernel"])) and bool(jnp.all(masks["vd"]["log_sigma2"]))
  assert int(jnp.count_nonzero(new["plain"]["kernel"])) == new["plain"]["kernel"].size
  # Removed weights stay exactly zero on later steps.
  for _ in range(3):
    new, state = step(new, state)
  assert bool(jnp.all(jnp.where(expected_keep, True, new["vd"]["kernel"] == 0)))
  # The layer's own evaluation mask agrees with the optimizer's.
  out_masked = model.apply({"params": jaxprune.apply_masks(params, masks)}, x)
  np.testing.assert_allclose(out_masked, model.apply({"params": params}, x), rtol=1e-5)
