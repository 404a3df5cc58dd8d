"""NNX layers: same maths as the Linen layers, and penalties/criteria on nnx.state."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import jaxprune
from jaxprune import bayes
from jaxprune.bayes import nnx as bnnx


def _linen_params(state):
  return jax.tree.map(lambda v: v, nnx.to_pure_dict(state))


def test_variational_linear_matches_linen_and_is_deterministic_in_eval():
  layer = bnnx.VariationalLinear(5, 3, rngs=nnx.Rngs(params=0, dropout=1))
  layer.log_sigma2[...] = jnp.linspace(-12.0, 2.0, 15).reshape(5, 3)
  x = jax.random.normal(jax.random.key(0), (4, 5))
  params = _linen_params(nnx.state(layer, nnx.Param))
  linen = bayes.VariationalDense(3).apply({"params": params}, x, deterministic=True)
  np.testing.assert_allclose(layer(x, deterministic=True), linen, rtol=1e-6)
  np.testing.assert_array_equal(layer(x, deterministic=True), layer(x, deterministic=True))
  assert not np.allclose(layer(x), layer(x))  # training mode draws fresh noise per call
  eval_view = nnx.view(layer, deterministic=True)
  np.testing.assert_array_equal(eval_view(x), layer(x, deterministic=True))


def test_variational_conv_matches_linen():
  layer = bnnx.VariationalConv(2, 3, (3, 3), padding="VALID", rngs=nnx.Rngs(0))
  layer.log_sigma2[...] = jnp.where(jnp.arange(54).reshape(3, 3, 2, 3) % 3 == 0, 4.0, -9.0)
  x = jax.random.normal(jax.random.key(0), (1, 6, 6, 2))
  params = _linen_params(nnx.state(layer, nnx.Param))
  linen = bayes.VariationalConv(3, (3, 3), padding="VALID")
  expected = linen.apply({"params": params}, x, deterministic=True)
  np.testing.assert_allclose(layer(x, deterministic=True), expected, rtol=1e-5, atol=1e-6)


def test_l0_linear_matches_linen_in_eval():
  layer = bnnx.L0Linear(5, 3, gate="input", rngs=nnx.Rngs(0))
  layer.gate_log_alpha[...] = jnp.array([-5.0, -1.0, 0.0, 2.0, 9.0])
  x = jax.random.normal(jax.random.key(1), (4, 5))
  params = _linen_params(nnx.state(layer, nnx.Param))
  linen = bayes.L0Dense(3, gate="input").apply({"params": params}, x, deterministic=True)
  np.testing.assert_allclose(layer(x, deterministic=True), linen, rtol=1e-6)


class _Net(nnx.Module):
  def __init__(self, rngs):
    self.vd = bnnx.VariationalLinear(6, 8, deterministic=True, rngs=rngs)
    self.plain = nnx.Linear(8, 2, rngs=rngs)

  def __call__(self, x):
    return self.plain(nnx.relu(self.vd(x)))


def test_penalty_and_log_alpha_masks_on_nnx_state():
  model = _Net(nnx.Rngs(params=0, dropout=1))
  model.vd.log_sigma2[...] = jax.random.uniform(jax.random.key(2), (6, 8), minval=-12.0, maxval=2)
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  kernel, ls2 = model.vd.kernel[...], model.vd.log_sigma2[...]
  la = bayes.log_alpha(kernel, ls2)
  np.testing.assert_allclose(bayes.kl_penalty(params), -jnp.sum(bayes.neg_kl(la)), rtol=1e-6)
  keep = bayes.keep_mask(kernel, ls2)
  assert 0 < int(keep.sum()) < keep.size
  tx = jaxprune.masked(optax.sgd(1e-2), None, criterion="log_alpha")
  opt_state = tx.init(params)
  x = jnp.ones((3, 6))

  def loss(p):
    return jnp.sum(nnx.merge(graphdef, p, rest)(x) ** 2) + bayes.kl_penalty(p)

  updates, opt_state = jax.jit(tx.update)(jax.grad(loss)(params), opt_state, params)
  params = optax.apply_updates(params, updates)
  nnx.update(model, params)
  k = model.vd.kernel[...]
  assert bool(jnp.all(jnp.where(keep, k != 0, k == 0)))
  assert int(jnp.count_nonzero(model.plain.kernel[...])) == model.plain.kernel.size


class _Stochastic(nnx.Module):
  def __init__(self, rngs):
    self.vd = bnnx.VariationalLinear(6, 8, rngs=rngs)
    self.out = bnnx.L0Linear(8, 2, gate="input", rngs=rngs)

  def __call__(self, x):
    return self.out(nnx.relu(self.vd(x)))


def test_training_with_nnx_optimizer_and_masked():
  model = _Stochastic(nnx.Rngs(params=0, dropout=1))
  opt = nnx.Optimizer(
    model, jaxprune.masked(optax.adam(1e-2), None, criterion="log_alpha"), wrt=nnx.Param
  )
  x = jnp.ones((4, 6))

  @nnx.jit
  def step(model, opt):
    def loss(m):
      p = nnx.state(m, nnx.Param)
      return jnp.sum(m(x) ** 2) + (bayes.kl_penalty(p) + bayes.l0_penalty(p)) / 100

    value, grads = nnx.value_and_grad(loss)(model)
    opt.update(model, grads)
    return value

  losses = [float(step(model, opt)) for _ in range(5)]
  assert all(np.isfinite(losses)) and losses[-1] < losses[0]
