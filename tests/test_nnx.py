"""Flax NNX end to end: nnx.Optimizer's masks with NNX states, and `nnx_loss_fn` for criteria."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import jaxprune


class _Mlp(nnx.Module):
  def __init__(self, rngs, dropout=0.0):
    self.l1 = nnx.Linear(6, 16, rngs=rngs)
    self.drop = nnx.Dropout(dropout, rngs=rngs)
    self.l2 = nnx.Linear(16, 3, rngs=rngs)

  def __call__(self, x):
    return self.l2(self.drop(nnx.relu(self.l1(x))))


def _batch():
  x = jax.random.normal(jax.random.key(5), (8, 6))
  return x, jnp.arange(8) % 3


def _loss(model, batch):
  x, y = batch
  return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()


def _pure_loss(params, batch):
  """The same loss written on a plain dict, independent of NNX."""
  x, y = batch
  h = jax.nn.relu(x @ params["l1"]["kernel"] + params["l1"]["bias"])
  logits = h @ params["l2"]["kernel"] + params["l2"]["bias"]
  return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def _trained_with_snip(sparsity=0.75, jit=True):
  model = _Mlp(nnx.Rngs(0))
  start = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  opt = nnx.Optimizer(
    model, jaxprune.masked(optax.sgd(0.0), sparsity, criterion="snip"), wrt=nnx.Param
  )
  loss_fn = jaxprune.nnx_loss_fn(model, _loss)
  batch = _batch()

  def step(model, opt):
    grads = nnx.grad(_loss)(model, batch)
    opt.update(model, grads, loss_fn=loss_fn, batch=batch)

  (nnx.jit(step) if jit else step)(model, opt)
  return model, opt, start, batch


@pytest.mark.parametrize("jit", [True, False])
def test_snip_with_nnx_optimizer_matches_prune_on_a_plain_dict(jit):
  model, opt, start, batch = _trained_with_snip(jit=jit)
  masks = jaxprune.masks_of(opt.opt_state)
  _, expected = jaxprune.prune(start, 0.75, criterion="snip", loss_fn=_pure_loss, batch=batch)
  for layer in ("l1", "l2"):
    got = np.asarray(jaxprune._tree.unwrap_variables(masks)[layer]["kernel"])
    np.testing.assert_array_equal(got, np.asarray(expected[layer]["kernel"]))
    kernel = np.asarray(getattr(model, layer).kernel[...])
    assert (kernel[~got] == 0).all() and (kernel[got] != 0).all()
  assert int(expected["l1"]["kernel"].sum()) == 24  # 96 weights at 75% sparsity


def test_optimizer_masks_apply_to_nnx_state_and_summarise_it():
  model, opt, _, _ = _trained_with_snip()
  state = nnx.state(model, nnx.Param)
  masks = jaxprune.masks_of(opt.opt_state)  # OptVariable leaves
  dense = jax.tree.map(jnp.ones_like, state)
  applied = jaxprune.apply_masks(dense, masks)
  assert jax.tree.structure(applied) == jax.tree.structure(state)  # Param leaves, as given
  assert float(applied["l1"]["kernel"][...].sum()) == 24.0
  assert float(applied["l2"]["bias"][...].sum()) == 3.0
  state["l2"]["bias"][...] = jnp.zeros(3)  # a zero bias that no mask removed
  s = jaxprune.sparsity_summary(state, masks=masks)
  rows = {r.path: r for r in s.leaves}
  assert set(rows) == {"l1/kernel", "l1/bias", "l2/kernel", "l2/bias"}  # no "/value"
  assert rows["l2/bias"].sparsity == 0.0 and rows["l1/bias"].sparsity == 0.0
  assert (rows["l1/kernel"].nonzero, rows["l2/kernel"].nonzero) == (24, 12)
  assert s.nonzero == 24 + 12 + 16 + 3
  zeros_only = {r.path: r for r in jaxprune.sparsity_summary(state).leaves}
  assert zeros_only["l2/bias"].sparsity == 1.0  # without masks, zeros count as pruned


def test_nnx_loss_fn_under_jit_and_grad_leaves_the_model_alone():
  model = _Mlp(nnx.Rngs(params=0, dropout=1), dropout=0.5)  # dropout: RNG state in the model
  loss_fn = jaxprune.nnx_loss_fn(model, _loss)
  params, batch = nnx.state(model, nnx.Param), _batch()
  snapshot = lambda: [nnx.to_pure_dict(s) for s in nnx.state(model, nnx.Param, nnx.RngCount)]
  before = snapshot()
  value = jax.jit(loss_fn)(params, batch)
  grads = jax.jit(jax.grad(loss_fn))(nnx.as_pure(params), batch)
  twin = nnx.clone(model)  # same RNG counter, so the same dropout mask
  np.testing.assert_allclose(value, _loss(twin, batch), rtol=1e-6)
  expected = nnx.grad(_loss)(nnx.clone(model), batch)
  chex_close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
  jax.tree.map(chex_close, nnx.to_pure_dict(grads), nnx.to_pure_dict(nnx.state(expected)))
  jax.tree.map(np.testing.assert_array_equal, before, snapshot())


def test_nnx_loss_fn_with_params_of_another_filter_says_which():
  model = _Mlp(nnx.Rngs(0))
  loss_fn = jaxprune.nnx_loss_fn(model, _loss)
  with pytest.raises(ValueError, match="(?s)do not match nnx.state\\(model, wrt\\).*wrt=nnx.Param"):
    loss_fn(nnx.state(model.l1, nnx.Param), _batch())


def test_masks_of_an_nnx_optimizer_are_plain_bool_arrays():
  model, opt, _, _ = _trained_with_snip()
  masks = jaxprune.masks_of(opt.opt_state)
  leaves = jax.tree.leaves(masks)
  assert leaves and all(isinstance(m, jax.Array) and m.dtype == jnp.bool_ for m in leaves)
  assert int(masks["l1"]["kernel"].sum()) == 24
  pruned = jaxprune.apply_masks(nnx.state(model, nnx.Param), masks)
  assert float((pruned["l1"]["kernel"][...] != 0).sum()) == 24.0
