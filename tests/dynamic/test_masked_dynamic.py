"""Drop and grow through `jaxprune.masked`: constant counts, grown entries, state reset."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxprune
from jaxprune import dynamic, schedules, structures

SHAPES = {"a": (16, 12), "b": (12, 8)}  # distinct shapes: a state leaf's shape names its param


def _params(seed=0):
  keys = jax.random.split(jax.random.key(seed), 3)
  out = {k: jax.random.normal(kk, s) for (k, s), kk in zip(SHAPES.items(), keys, strict=False)}
  out["bias"] = jnp.zeros(8)
  return out


def _grads(i):
  return jax.tree.map(lambda x: jax.random.normal(jax.random.key(100 + i), x.shape), _params())


def _tx(inner, criterion="set", structure=None, packed=False, alpha=0.5):
  make = dynamic.set_criterion if criterion == "set" else dynamic.rigl_criterion
  return jaxprune.masked(
    inner,
    0.5,
    criterion=make(alpha),
    schedule=schedules.periodic(every=1),
    structure=structure,
    packed=packed,
    initial_masks=lambda p: dynamic.random_masks(
      p, 0.5, key=jax.random.key(7), distribution="uniform", structure=structure
    ),
  )


def _inner_state(state):
  found = []
  jax.tree.map(
    lambda x: found.append(x) if isinstance(x, jaxprune.MaskedState) else None,
    state,
    is_leaf=lambda x: isinstance(x, jaxprune.MaskedState),
  )
  return found[0].inner_state


@pytest.mark.parametrize(
  "structure", [None, structures.unstructured(within=-1), structures.n_of_m(2, 4)]
)
def test_counts_constant_and_grown_entries_exactly_zero(structure):
  tx = _tx(optax.adam(0.1), "rigl", structure)
  params = _params()
  state = tx.init(params)
  step = jax.jit(tx.update)
  masks = jaxprune.masks_of(state)
  first = masks
  for i in range(4):
    updates, state = step(_grads(i), state, params)
    params = optax.apply_updates(params, updates)
    new = jaxprune.masks_of(state)
    for k in SHAPES:
      old_m, new_m = np.asarray(masks[k]), np.asarray(new[k])
      if structure is not None:  # within=-1 and 2:4 (along -2): exact per column
        np.testing.assert_array_equal(new_m.sum(axis=0), np.asarray(first[k]).sum(axis=0))
      assert new_m.sum() == old_m.sum()
      grown = new_m & ~old_m
      assert grown.any()  # alpha = 0.5: connections move at every step
      assert (np.asarray(params[k])[grown] == 0.0).all()  # exactly 0 at the step they grow
      assert (np.asarray(params[k])[~new_m] == 0.0).all()
    masks = new


INNERS = {
  "adam": lambda: optax.adam(0.1),
  "adamw": lambda: optax.adamw(0.1, weight_decay=0.1),
  "lion": lambda: optax.lion(0.1),
  "adafactor": lambda: optax.adafactor(0.1),
  "sgd_momentum": lambda: optax.sgd(0.1, momentum=0.9),
  "chain_clip_adam": lambda: optax.chain(optax.clip(1.0), optax.adam(0.1)),
  "inject_adam": lambda: optax.inject_hyperparams(optax.adam)(learning_rate=0.1),
  "multisteps_adam": lambda: optax.MultiSteps(optax.adam(0.1), every_k_schedule=1),
}


@pytest.mark.parametrize("name", sorted(INNERS))
def test_grown_entries_get_fresh_optimizer_state(name):
  inner = INNERS[name]()
  tx = _tx(inner)
  params = _params()
  state = tx.init(params)
  step = jax.jit(tx.update)
  fresh = jax.tree.leaves(inner.init(params))
  nontrivial = 0
  for i in range(6):
    before = jax.tree.leaves(_inner_state(state))
    old = jaxprune.masks_of(state)
    updates, state = step(_grads(i), state, params)
    params = optax.apply_updates(params, updates)
    new = jaxprune.masks_of(state)
    after = jax.tree.leaves(_inner_state(state))
    for k, shape in SHAPES.items():
      grown = np.asarray(new[k] & ~old[k])
      for b, a, f in zip(before, after, fresh, strict=True):
        if a.shape != shape:
          continue
        np.testing.assert_array_equal(np.asarray(a)[grown], np.asarray(f)[grown])
        nontrivial += int((np.asarray(b)[grown] != np.asarray(f)[grown]).sum())
  # Some grown entries had state to reset (dropped earlier, regrown later), else the check
  # above could not fail.
  assert nontrivial > 0


def test_dropped_and_regrown_weight_keeps_its_value_and_state():
  # The smallest active weight (dropped) has by far the largest gradient (regrown): as in
  # the reference, it stays an old connection, trained as usual.
  params = {"w": jnp.array([[0.01, 1.0, 2.0, 0.0, 0.0, 0.0]]).T * jnp.ones((1, 2))}
  masks = {"w": params["w"] != 0}
  tx = jaxprune.masked(
    optax.adam(0.1),
    0.5,
    criterion=dynamic.rigl_criterion(0.34),
    schedule=schedules.periodic(every=1),
    initial_masks=masks,
  )
  state = tx.init(params)
  g = {"w": jnp.array([[9.0, 0.1, 0.1, 1.0, 1.0, 1.0]]).T * jnp.ones((1, 2))}
  updates, state = tx.update(g, state, params)
  params = optax.apply_updates(params, updates)
  np.testing.assert_array_equal(jaxprune.masks_of(state)["w"], masks["w"])
  np.testing.assert_allclose(params["w"][0], [0.01 - 0.1, 0.01 - 0.1], rtol=1e-5)
  mu = _inner_state(state)[0].mu["w"]
  assert (mu[0] != 0).all()


def test_jit_and_eager_give_the_same_masks_and_packed_masks_work():
  runs = {}
  for name, packed, jit in [("eager", False, False), ("jit", False, True), ("packed", True, True)]:
    tx = _tx(optax.adam(0.1), "set", packed=packed)
    params, state = _params(), None
    state = tx.init(params)
    update = jax.jit(tx.update) if jit else tx.update
    for i in range(3):
      updates, state = update(_grads(i), state, params)
      params = optax.apply_updates(params, updates)
    runs[name] = jaxprune.masks_of(state)
  for other in ("jit", "packed"):
    for k in SHAPES:
      np.testing.assert_array_equal(runs["eager"][k], runs[other][k])


def test_no_retrace_across_updates():
  tx = dynamic.rigl(optax.adam(0.1), 0.5, every=2, end=6, distribution="uniform")
  params = _params()
  state = tx.init(params)

  @jax.jit
  @chex.assert_max_traces(n=1)
  def step(params, state, grads):
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  for i in range(8):  # updates at 0, 2, 4, 6 and none in between
    params, state = step(params, state, _grads(i))


@pytest.mark.parametrize("build", [dynamic.rigl, dynamic.set_], ids=["rigl", "set_"])
@pytest.mark.parametrize(
  "steps, match",
  [
    (dict(begin=10, end=3), r"begin=10.*end=3"),
    (dict(begin=5, end=5), r"begin=5.*end=5"),  # the one update would drop nothing
    (dict(begin=0, end=10, every=0), "every"),
    (dict(begin=-1, end=10), "begin"),
  ],
)
def test_drop_and_grow_schedules_that_never_move_a_connection_are_refused(build, steps, match):
  with pytest.raises(ValueError, match=match):
    build(optax.sgd(0.1), 0.5, **steps)
