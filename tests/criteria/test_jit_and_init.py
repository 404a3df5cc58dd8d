"""Every criterion: same masks under jit and eagerly; pruning at initialisation in `masked`."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from criteria_models import mlp_apply, mlp_batch, mlp_params

import jaxprune
from jaxprune import criteria

SIZES = (16, 32, 8)
CRITERIA = [
  "magnitude",
  "random",
  "saliency",
  "snip",
  "taylor",
  "grasp",
  "obd",
  "fisher",
  "wanda",
  "obs",
]


def setup():
  params = mlp_params(jax.random.key(0), SIZES)
  batch = mlp_batch(jax.random.key(1), n=32, sizes=SIZES)
  loss_fn = criteria.classification_loss(mlp_apply, temperature=2.0)
  return params, batch, loss_fn


def activations(params, batch):
  x = batch["image"]
  h = jnp.tanh(x @ params["Dense_0"]["kernel"] + params["Dense_0"]["bias"])
  return {"Dense_0/kernel": x, "Dense_1/kernel": h}


@pytest.mark.parametrize("name", CRITERIA)
def test_same_masks_with_and_without_jit(name):
  params, batch, loss_fn = setup()
  key = jax.random.key(7)

  def masks(params, batch):
    grads = jax.grad(loss_fn)(params, batch)
    return jaxprune.prune(
      params,
      0.7,
      criterion=name,
      grads=grads,
      key=key,
      loss_fn=loss_fn,
      batch=batch,
      activations=activations(params, batch),
      hutchinson_samples=4,
    )[1]

  eager, jitted = masks(params, batch), jax.jit(masks)(params, batch)
  for a, b in zip(jax.tree.leaves(eager), jax.tree.leaves(jitted), strict=True):
    np.testing.assert_array_equal(a, b)
  kernel = np.asarray(eager["Dense_0"]["kernel"])
  assert kernel.sum() == kernel.size - round(0.7 * kernel.size)


@pytest.mark.parametrize(
  ("name", "distribution"), [("snip", "uniform"), ("grasp", "global"), ("random", "erk")]
)
def test_pruning_at_initialisation_fixes_masks_at_step_zero(name, distribution):
  params, batch, loss_fn = setup()
  tx = jaxprune.masked(
    optax.adam(1e-3),
    0.98,
    criterion=name,
    distribution=distribution,
    schedule=jaxprune.schedules.one_shot(0),
  )
  state = tx.init(params)

  @jax.jit
  def step(params, state, batch):
    grads = jax.grad(loss_fn)(params, batch)
    updates, state = tx.update(grads, state, params, loss_fn=loss_fn, batch=batch)
    return optax.apply_updates(params, updates), state

  params0 = params
  params, state = step(params, state, batch)
  first = jaxprune.masks_of(state)
  if name != "random":  # data-driven masks equal one-shot pruning of the initial params
    _, want = jaxprune.prune(
      params0, 0.98, criterion=name, distribution=distribution, loss_fn=loss_fn, batch=batch
    )
    for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(want), strict=True):
      np.testing.assert_array_equal(a, b)
  kept = sum(int(m.sum()) for m in (first["Dense_0"]["kernel"], first["Dense_1"]["kernel"]))
  if distribution != "erk":
    assert kept == 768 - round(0.98 * 768)
  for i in range(4):
    after = params
    params, state = step(params, state, mlp_batch(jax.random.key(10 + i), n=32, sizes=SIZES))
  for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(jaxprune.masks_of(state)), strict=True):
    np.testing.assert_array_equal(a, b)
  for layer in ("Dense_0", "Dense_1"):
    m, w = np.asarray(first[layer]["kernel"]), np.asarray(params[layer]["kernel"])
    assert (w[~m] == 0).all() and (w[m] != np.asarray(after[layer]["kernel"])[m]).any()
    assert 0 < m.sum() < m.size


def test_grasp_needs_loss_in_masked():
  params, batch, loss_fn = setup()
  tx = jaxprune.masked(optax.adam(1e-3), 0.9, criterion="grasp")
  state = tx.init(params)
  grads = jax.grad(loss_fn)(params, batch)
  with pytest.raises(jaxprune.MissingExtraError, match="loss_fn=loss_fn"):
    tx.update(grads, state, params, batch=batch)
  with pytest.raises(jaxprune.MissingExtraError, match="pass 'batch'"):
    tx.update(grads, state, params, loss_fn=loss_fn)


@pytest.mark.parametrize("name", ["grasp", "obd", "fisher"])
def test_missing_loss_fn_corrected_call_passes_the_batch_too(name):
  params, batch, loss_fn = setup()
  tx = jaxprune.masked(optax.adam(1e-3), 0.9, criterion=name)
  state = tx.init(params)
  with pytest.raises(
    jaxprune.MissingExtraError,
    match=r"(?s)batch: batch=batch.*params, "
    r"loss_fn=loss_fn, batch=batch\)",
  ):
    tx.update(params, state, params)
  with pytest.raises(
    jaxprune.MissingExtraError, match=rf"criterion='{name}', loss_fn=loss_fn, batch=batch\)"
  ):
    jaxprune.prune(params, 0.5, criterion=name)
