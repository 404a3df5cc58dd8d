"""The rules `masked` enforces: nested masks, start masks, regrowth, and misuse that raises."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxprune
from jaxprune import schedules, structures
from jaxprune.errors import MaskMismatchError, SparsityError

MODEL = nn.Sequential([nn.Dense(16), nn.relu, nn.Dense(4)])
X = jax.random.normal(jax.random.key(1), (32, 8))
Y = jax.random.randint(jax.random.key(2), (32,), 0, 4)


def _params(seed=0):
  return MODEL.init(jax.random.key(seed), X[:1])["params"]


def _loss(params, batch):
  x, y = batch
  logits = MODEL.apply({"params": params}, x)
  return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def _extras(name, params):
  """Every extra any registered criterion may need."""
  del name
  acts = jaxprune.criteria.capture_inputs(MODEL.apply, {"params": params}, X)
  return {"loss_fn": _loss, "batch": (X, Y), "activations": acts}


NESTED = [
  n
  for n in jaxprune.criteria.names()
  if jaxprune.criteria.get(n).prune_fn is None
  and jaxprune.criteria.get(n).threshold is None
  and not jaxprune.criteria.get(n).regrow
]


@pytest.mark.parametrize("name", NESTED)
def test_masks_only_shrink_under_a_schedule_for_every_criterion(name):
  params = _params()
  tx = jaxprune.masked(
    optax.adam(1e-2), 0.9, criterion=name, schedule=schedules.polynomial(0, 6, 1)
  )
  state = tx.init(params)

  @jax.jit
  def step(params, state):
    grads = jax.grad(_loss)(params, (X, Y))
    updates, state = tx.update(grads, state, params, **_extras(name, params))
    return optax.apply_updates(params, updates), state

  previous = None
  for _ in range(7):
    params, state = step(params, state)
    masks = jaxprune.masks_of(state)
    if previous is not None:
      for old, new in zip(jax.tree.leaves(previous), jax.tree.leaves(masks), strict=True):
        assert not bool(jnp.any(new & ~old)), f"{name} revived a pruned entry"
    previous = masks
  kernel = masks["layers_0"]["kernel"]
  assert int(kernel.sum()) == kernel.size - round(0.9 * kernel.size)


def test_random_criterion_no_longer_kills_the_network():
  # Fresh random scores at every update used to drop trained weights and revive pruned ones
  # at 0 until every kernel was empty; nested masks keep exactly the scheduled count alive.
  params = _params()
  tx = jaxprune.masked(
    optax.sgd(0.1), 0.5, criterion="random", schedule=schedules.polynomial(0, 20, 1)
  )
  state = tx.init(params)

  @jax.jit
  def step(params, state):
    updates, state = tx.update(jax.grad(_loss)(params, (X, Y)), state, params)
    return optax.apply_updates(params, updates), state

  for _ in range(21):
    params, state = step(params, state)
  kernel = params["layers_0"]["kernel"]
  assert int((kernel != 0).sum()) == kernel.size // 2


def test_initial_masks_are_sparse_from_the_first_step_and_never_change():
  params = _params()
  pruned, masks = jaxprune.prune(params, 0.75)
  tx = jaxprune.masked(optax.adam(1e-2), None, initial_masks=masks)
  state = tx.init(params)  # the dense params: the first update must zero them
  update = jax.jit(tx.update)
  for _ in range(3):
    grads = jax.grad(_loss)(params, (X, Y))
    updates, state = update(grads, state, params)
    params = optax.apply_updates(params, updates)
    for p, m in zip(jax.tree.leaves(params), jax.tree.leaves(masks), strict=True):
      assert bool(jnp.all(jnp.where(m, True, p == 0.0)))
    for a, b in zip(jax.tree.leaves(jaxprune.masks_of(state)), jax.tree.leaves(masks), strict=True):
      np.testing.assert_array_equal(a, b)
  assert jaxprune.check_sparse(params, state) == sum(
    int((~m).sum()) for m in jax.tree.leaves(masks)
  )
  del pruned


def test_initial_masks_from_a_callable_and_with_a_schedule():
  params = _params()
  start = lambda p: jaxprune.prune(p, 0.5)[1]
  tx = jaxprune.masked(
    optax.sgd(0.1), 0.8, initial_masks=start, schedule=schedules.polynomial(1, 3, 1, initial=0.5)
  )
  state = tx.init(params)
  kernel = jaxprune.masks_of(state)["layers_0"]["kernel"]
  assert int(kernel.sum()) == kernel.size // 2
  for _ in range(4):
    updates, state = tx.update(jax.grad(_loss)(params, (X, Y)), state, params)
    params = optax.apply_updates(params, updates)
    new = jaxprune.masks_of(state)["layers_0"]["kernel"]
    assert not bool(jnp.any(new & ~kernel))
    kernel = new
  assert int(kernel.sum()) == kernel.size - round(0.8 * kernel.size)


def test_initial_masks_misuse_raises():
  params = _params()
  masks = jax.tree.map(lambda p: jnp.ones(p.shape, bool), params)
  bias_pruned = {**masks, "layers_0": {**masks["layers_0"], "bias": jnp.zeros(16, bool)}}
  with pytest.raises(ValueError, match="layers_0/bias.*keeps dense"):
    jaxprune.masked(optax.sgd(0.1), None, initial_masks=bias_pruned).init(params)
  as_float = jax.tree.map(lambda m: m.astype(jnp.float32), masks)
  with pytest.raises(TypeError, match="dtype float32"):
    jaxprune.masked(optax.sgd(0.1), None, initial_masks=as_float).init(params)
  with pytest.raises(MaskMismatchError):
    jaxprune.masked(optax.sgd(0.1), None, initial_masks={"x": 1}).init(params)
  with pytest.raises(ValueError, match="sparsity=None needs"):
    jaxprune.masked(optax.sgd(0.1), None)


def test_sparsity_that_a_structure_or_criterion_overrides_is_rejected():
  with pytest.raises(ValueError, match="fixes the sparsity at 0.5"):
    jaxprune.masked(optax.sgd(0.1), 0.9, structure=structures.n_of_m(2, 4))
  with pytest.raises(ValueError, match="sparsity=None"):
    jaxprune.masked(optax.sgd(0.1), 0.5, criterion="log_alpha")
  params = {"w": jnp.arange(64.0).reshape(8, 8)}
  for sparsity in (None, 0.5):
    tx = jaxprune.masked(optax.sgd(0.1), sparsity, structure=structures.n_of_m(2, 4))
    _, state = tx.update(params, tx.init(params), params)
    assert int(jaxprune.masks_of(state)["w"].sum()) == 32


def test_traced_sparsity_is_clamped():
  params = {"w": jnp.arange(1.0, 17.0).reshape(4, 4)}
  tx = optax.inject_hyperparams(jaxprune.masked, static_args=("criterion",))(
    inner=optax.sgd(0.0), sparsity=0.5
  )
  state = tx.init(params)
  update = jax.jit(tx.update)
  kept = []
  for value in (1.5, -0.5, float("nan"), 0.25):
    state.hyperparams["sparsity"] = jnp.asarray(value)
    _, new = update(params, state, params)
    kept.append(int(jaxprune.masks_of(new)["w"].sum()))
  assert kept == [0, 16, 16, 12]


def test_changed_leaf_shapes_raise_mask_mismatch():
  tx = jaxprune.masked(optax.sgd(0.1), 0.5)
  state = tx.init({"w": jnp.ones((4, 4))})
  bigger = {"w": jnp.ones((4, 8))}
  for frozen in (False, True):
    with pytest.raises(MaskMismatchError, match=r"'w' has shape \(4, 8\).*shape \(4, 4\)"):
      tx.update(bigger, state, bigger, masks_frozen=frozen)
  broadcast = {"w": jnp.ones((1, 4))}  # would broadcast against the (4, 4) mask
  with pytest.raises(MaskMismatchError, match=r"\(1, 4\)"):
    tx.update(broadcast, state, broadcast, masks_frozen=True)


def test_check_sparse_names_the_leaf_after_a_rescaling_transform():
  params = {"a": {"kernel": jnp.arange(1.0, 17.0).reshape(4, 4)}}
  tx = optax.chain(jaxprune.masked(optax.scale_by_adam(), 0.5), optax.scale(-0.1))
  state = tx.init(params)
  updates, state = tx.update(jax.tree.map(jnp.ones_like, params), state, params)
  after = optax.apply_updates(params, updates)
  with pytest.raises(
    SparsityError, match=r"a/kernel: 8 of 8 pruned entries nonzero(.|\n)*masked last"
  ):
    jaxprune.check_sparse(after, state)
  good = optax.chain(optax.clip(1.0), jaxprune.masked(optax.adam(0.1), 0.5))
  state = good.init(params)
  updates, state = good.update(jax.tree.map(jnp.ones_like, params), state, params)
  assert jaxprune.check_sparse(optax.apply_updates(params, updates), state) == 8


def test_check_sparse_reports_non_finite_params():
  params = {"w": jnp.array([[1.0, jnp.nan], [3.0, 4.0]])}
  tx = jaxprune.masked(optax.sgd(0.1), 0.5)
  state = tx.init(params)
  updates, state = tx.update(jax.tree.map(jnp.zeros_like, params), state, params)
  after = optax.apply_updates(params, updates)
  assert bool(jnp.isnan(after["w"][0, 1]))  # NaN ranks lowest, is pruned, and stays NaN
  with pytest.raises(SparsityError, match=r"1 NaN/inf(.|\n)*diverged"):
    jaxprune.check_sparse(after, state)
  with pytest.raises(SparsityError, match="w: 1 of 2"):
    jaxprune.check_sparse(after, {"w": jnp.array([[False, False], [True, True]])})


@jaxprune.criteria.register("_revive_test", needs=("masks",), regrow=True, overwrite=True)
def _revive(params, *, masks, **extras):
  """Keeps the previously pruned entries (all of them revived) for the test below."""
  del extras
  return jax.tree.map(
    lambda p, m: None if m is None else jnp.where(m, 0.0, 1.0) + 1e-3 * jnp.abs(p),
    params,
    masks,
    is_leaf=lambda x: x is None,
  )


@pytest.mark.parametrize(
  "inner",
  [
    optax.adam(0.1),
    optax.sgd(0.1, momentum=0.9),
    optax.lion(0.1),
    optax.adafactor(0.1),
    optax.chain(optax.clip(1.0), optax.adamw(0.1)),
    optax.inject_hyperparams(optax.adam)(learning_rate=0.1),
  ],
  ids=["adam", "sgd_momentum", "lion", "adafactor", "chain_adamw", "inject"],
)
def test_regrown_entries_start_at_zero_with_fresh_optimizer_state(inner):
  params = {"w": jnp.arange(1.0, 17.0).reshape(4, 4), "b": jnp.ones(4)}
  start = {"w": jnp.arange(16).reshape(4, 4) >= 8, "b": jnp.ones(4, bool)}
  tx = jaxprune.masked(
    inner, 0.5, criterion="_revive_test", initial_masks=start, schedule=schedules.periodic(3)
  )
  state = tx.init(params)
  grads = {"w": jnp.ones((4, 4)), "b": jnp.ones(4)}
  update = jax.jit(tx.update)
  for step in range(4):  # masks swap at steps 0 and 3
    updates, state = update(grads, state, params)
    params = optax.apply_updates(params, updates)
    mask = jaxprune.masks_of(state)["w"]
    assert int(mask.sum()) == 8
    if step in (0, 3):
      grown = np.asarray(mask)
      np.testing.assert_array_equal(params["w"][grown], 0.0)  # grown at exactly 0
      fresh = inner.init(params)
      for old, new in zip(jax.tree.leaves(state.inner_state), jax.tree.leaves(fresh), strict=True):
        if old.shape == (4, 4):
          np.testing.assert_array_equal(np.asarray(old)[grown], np.asarray(new)[grown])
    np.testing.assert_array_equal(params["w"][~np.asarray(mask)], 0.0)


def _half_masks(params, seed=3):
  """Uniformly random masks keeping exactly half of every kernel (biases dense)."""
  return jaxprune.dynamic.random_masks(
    params, 0.5, key=jax.random.key(seed), distribution="uniform"
  )


def test_a_schedule_prunes_further_from_initial_masks_and_never_revives():
  params = _params()
  start = _half_masks(params)
  sched = schedules.polynomial(begin=0, end=8, every=2)
  tx = jaxprune.masked(optax.sgd(0.1), 0.9, initial_masks=start, schedule=sched)
  state = tx.init(params)
  update = jax.jit(tx.update)
  keep = jax.jit(jaxprune.masks.num_to_keep, static_argnums=0)  # the traced-sparsity count
  previous = start
  for step in range(10):
    updates, state = update(jax.grad(_loss)(params, (X, Y)), state, params)
    params = optax.apply_updates(params, updates)
    masks = jaxprune.masks_of(state)
    for path in ("layers_0", "layers_2"):
      new, old, m = masks[path]["kernel"], previous[path]["kernel"], start[path]["kernel"]
      assert not bool(jnp.any(new & ~old)), (step, path)  # only shrinks
      assert not bool(jnp.any(new & ~m)), (step, path)  # every kept entry was kept by m
      n, (on, s) = new.size, sched(step, 0.9)
      # The schedule's sparsity is the whole leaf's: exactly n - round(s n) kept once it
      # passes m's 50%, m itself before; no change between updates.
      expected = min(int(keep(n, s)), n // 2) if bool(on) else int(old.sum())
      assert int(new.sum()) == expected, (step, path)
      np.testing.assert_array_equal(params[path]["kernel"][~new], 0.0)
    previous = masks
  kernel = previous["layers_0"]["kernel"]
  assert int(kernel.sum()) == kernel.size - round(0.9 * kernel.size)


def test_a_target_below_the_initial_masks_sparsity_is_refused():
  # Masks only shrink from initial_masks: a final target below theirs would never move them.
  params = _params()
  start = _half_masks(params)
  tx = jaxprune.masked(
    optax.sgd(0.1), 0.25, initial_masks=start, schedule=schedules.polynomial(0, 8, 2)
  )
  with pytest.raises(ValueError, match=r"(?s)sparsity=0.25.*50\.0% sparse.*only shrink"):
    tx.init(params)


def test_a_sparsity_that_fixed_initial_masks_override_is_rejected():
  params = _params()
  start = _half_masks(params)
  tx = jaxprune.masked(optax.sgd(0.1), 0.9, initial_masks=start)
  with pytest.raises(ValueError, match=r"(?s)sparsity=0.9.*50\.0% sparse.*masked\(inner, None"):
    tx.init(params)
  with pytest.raises(ValueError, match="sparsity=0.9"):
    jaxprune.masked(optax.sgd(0.1), 0.9, initial_masks=lambda p: _half_masks(p)).init(params)
  for agrees in (None, 0.5):  # None, or the masks' own sparsity, trains the fixed masks
    tx = jaxprune.masked(optax.sgd(0.1), agrees, initial_masks=start)
    _, state = tx.update(jax.grad(_loss)(params, (X, Y)), tx.init(params), params)
    kernel = jaxprune.masks_of(state)["layers_0"]["kernel"]
    np.testing.assert_array_equal(kernel, start["layers_0"]["kernel"])


@pytest.mark.parametrize("name", ["rigl", "set"])
def test_drop_and_grow_from_dense_params_is_refused(name):
  with pytest.raises(ValueError, match=rf"(?s)sparse starting mask.*dynamic\.{name}"):
    jaxprune.masked(optax.sgd(0.1), 0.8, criterion=name, schedule=schedules.periodic(2))
  with pytest.raises(ValueError, match="initial_masks="):
    jaxprune.masked(optax.sgd(0.1), 0.8, criterion=name)
  params = _params()
  all_true = jax.tree.map(lambda p: jnp.ones(p.shape, bool), params)
  dense_start = jaxprune.masked(
    optax.sgd(0.1), 0.8, criterion=name, schedule=schedules.periodic(2), initial_masks=all_true
  )
  with pytest.raises(ValueError, match=r"(?s)sparse starting mask.*all-True initial_masks"):
    dense_start.init(params)
  tx = jaxprune.masked(
    optax.sgd(0.1),
    0.5,
    criterion=name,
    schedule=schedules.periodic(2),
    initial_masks=_half_masks(params),
  )
  _, state = tx.update(jax.grad(_loss)(params, (X, Y)), tx.init(params), params)
  assert int(jaxprune.masks_of(state)["layers_0"]["kernel"].sum()) == 64


@pytest.mark.parametrize("bad", [1.2, -0.1, float("nan")])
def test_concrete_injected_sparsity_out_of_range_raises_at_init(bad):
  params = {"w": jnp.arange(1.0, 17.0).reshape(4, 4)}
  tx = optax.inject_hyperparams(jaxprune.masked)(inner=optax.sgd(0.1), sparsity=bad)
  with pytest.raises(ValueError, match=r"(?s)sparsity.*\[0, 1\].*inject_hyperparams"):
    tx.init(params)
  # Traced at init (under jit), it cannot be checked; it stays clamped as documented.
  state = jax.jit(tx.init)(params)
  assert float(state.hyperparams["sparsity"]) == pytest.approx(bad, nan_ok=True)
