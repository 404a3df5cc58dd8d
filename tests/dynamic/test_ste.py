"""STE / SR-STE: params are the exact sparse view of dense weights trained straight through."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxprune
from jaxprune import dynamic, schedules, structures

NM = structures.n_of_m(2, 4)


def _params():
  k1, k2 = jax.random.split(jax.random.key(0))
  return {"k": jax.random.normal(k1, (8, 8)), "b": jnp.zeros(8), "o": jax.random.normal(k2, (8, 4))}


def _grads(i, params):
  return jax.tree.map(lambda x: jax.random.normal(jax.random.key(10 + i), x.shape), params)


def _nm_ok(mask):
  groups = np.asarray(mask).reshape(-1, 4, mask.shape[-1])  # runs of 4 along axis -2
  return (groups.sum(axis=1) == 2).all()


@pytest.mark.parametrize("decay", [0.0, 0.3])
def test_sr_ste_sgd_step_by_hand(decay):
  lr = 0.1
  tx = dynamic.ste(optax.sgd(lr), 0.5, structure=NM, decay=decay)
  params = _params()
  state = tx.init(params)
  step = jax.jit(tx.update)
  dense = params
  masks = jax.tree.map(lambda x: jnp.ones(x.shape, bool), params)
  for i in range(4):
    g = _grads(i, params)
    updates, state = step(g, state, params)
    params = optax.apply_updates(params, updates)
    # by hand: SR-STE gradient on the dense weights, masks from |dense| (2:4), exact view
    for name in ("k", "o"):
      gd = g[name] + decay * jnp.where(masks[name], 0.0, dense[name])
      new_dense = dense[name] - lr * gd
      new_mask = NM.make(jnp.abs(new_dense), 0.5)
      got_dense = dynamic.dense_params(params, state)[name]
      np.testing.assert_allclose(got_dense, new_dense, rtol=1e-6, atol=1e-7)
      np.testing.assert_array_equal(jaxprune.masks_of(state)[name], new_mask)
      assert _nm_ok(new_mask)
      # the exact-zeros promise holds for the params: exactly the masked dense weights
      np.testing.assert_array_equal(params[name], jnp.where(new_mask, got_dense, 0.0))
      masks[name] = new_mask
    dense = dynamic.dense_params(params, state)
    np.testing.assert_array_equal(params["b"], dense["b"])  # the bias is never pruned


def test_pruned_weights_keep_training_and_can_come_back():
  tx = dynamic.ste(optax.sgd(1.0), 0.5)
  params = {"w": jnp.array([[3.0, 1.0], [2.0, 4.0]])}
  state = tx.init(params)
  g = {"w": jnp.array([[0.0, -1.5], [0.0, 0.0]])}  # pushes w[0, 1] up, pruned or not
  trajectory = []
  for _ in range(3):
    updates, state = tx.update(g, state, params)
    params = optax.apply_updates(params, updates)
    trajectory.append(params["w"].tolist())
  assert trajectory == [
    [[3.0, 0.0], [0.0, 4.0]],
    [[0.0, 4.0], [0.0, 4.0]],
    [[0.0, 5.5], [0.0, 4.0]],
  ]
  assert dynamic.dense_params(params, state)["w"].tolist() == [[3.0, 5.5], [2.0, 4.0]]


def test_schedule_and_frozen_steps():
  # masks re-chosen only at steps 0 and 2; masks_frozen=True on the others gives the same run
  sched = schedules.periodic(every=2, end=2)
  tx = dynamic.ste(optax.adam(0.5), 0.75, schedule=sched)
  p1 = p2 = _params()
  s1, s2 = tx.init(p1), tx.init(p2)
  seen = []
  for i in range(5):
    g1, g2 = _grads(i, p1), _grads(i, p2)
    u1, s1 = jax.jit(tx.update)(g1, s1, p1)
    frozen = i not in (0, 2)
    u2, s2 = jax.jit(tx.update, static_argnames="masks_frozen")(g2, s2, p2, masks_frozen=frozen)
    p1, p2 = optax.apply_updates(p1, u1), optax.apply_updates(p2, u2)
    chex_equal = jax.tree.map(lambda a, b: bool((a == b).all()), p1, p2)
    assert all(jax.tree.leaves(chex_equal))
    seen.append(np.asarray(jaxprune.masks_of(s1)["k"]))
    assert int(seen[-1].sum()) == 16  # 64 entries at 75%
  np.testing.assert_array_equal(seen[0], seen[1])
  assert (seen[2] != seen[1]).any()
  np.testing.assert_array_equal(seen[2], seen[4])


def test_eager_equals_jit_and_masked_composes_in_chain():
  tx = optax.chain(optax.clip_by_global_norm(1.0), dynamic.ste(optax.adam(0.1), 0.5, structure=NM))
  pa = pb = _params()
  sa, sb = tx.init(pa), tx.init(pb)
  for i in range(3):
    ua, sa = tx.update(_grads(i, pa), sa, pa)
    ub, sb = jax.jit(tx.update)(_grads(i, pb), sb, pb)
    pa, pb = optax.apply_updates(pa, ua), optax.apply_updates(pb, ub)
  for a, b in zip(jax.tree.leaves(pa), jax.tree.leaves(pb), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-6)
  np.testing.assert_array_equal(jaxprune.masks_of(sa)["k"], jaxprune.masks_of(sb)["k"])
  assert _nm_ok(pa["k"] != 0)


def test_ste_rejects_data_dependent_criteria_and_negative_decay():
  with pytest.raises(ValueError, match="data-free criterion"):
    dynamic.ste(optax.sgd(0.1), 0.5, criterion="grasp")
  with pytest.raises(ValueError, match="decay"):
    dynamic.ste(optax.sgd(0.1), 0.5, decay=-1.0)
  with pytest.raises(ValueError, match="exactly one jaxprune.dynamic.ste state"):
    dynamic.dense_params({"w": jnp.ones((2, 2))}, optax.sgd(0.1).init({"w": jnp.ones((2, 2))}))


def test_a_step_can_donate_params_and_an_eagerly_built_state():
  params = _params()
  tx = dynamic.ste(optax.adam(1e-2), None, structure=NM)
  state = tx.init(params)  # eager: the dense weights must not alias the params' buffers

  def step(params, state):
    updates, state = tx.update(_grads(0, params), state, params)
    return optax.apply_updates(params, updates), state

  expected, _ = jax.jit(step)(params, state)
  got, state = jax.jit(step, donate_argnums=(0, 1))(params, state)
  np.testing.assert_array_equal(got["k"], expected["k"])
  assert _nm_ok(jaxprune.masks_of(state)["k"])
