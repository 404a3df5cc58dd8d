"""Invariants of `jaxprune.masked`: exact zeros, exact counts, no retrace, composition."""

import dataclasses
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxprune
from jaxprune import schedules

SCHEDULE = schedules.polynomial(begin=1, end=7, every=2)
TARGET = 0.8


def _params(seed=0):
  k1, k2 = jax.random.split(jax.random.key(seed))
  return {
    "l1": {"kernel": jax.random.normal(k1, (16, 32)), "bias": jnp.zeros(32)},
    "l2": {"kernel": jax.random.normal(k2, (32, 4)), "bias": jnp.zeros(4)},
  }


def _loss(params, batch):
  h = jnp.tanh(batch["x"] @ params["l1"]["kernel"] + params["l1"]["bias"])
  return jnp.mean((h @ params["l2"]["kernel"] + params["l2"]["bias"] - batch["y"]) ** 2)


def _batch(i):
  kx, ky = jax.random.split(jax.random.key(100 + i))
  return {"x": jax.random.normal(kx, (8, 16)), "y": jax.random.normal(ky, (8, 4))}


INNERS = {
  "sgd": lambda: optax.sgd(0.1),
  "sgd_momentum": lambda: optax.sgd(0.1, momentum=0.9),
  "adam": lambda: optax.adam(1e-2),
  "adamw": lambda: optax.adamw(1e-2, weight_decay=0.1),
  "lion": lambda: optax.lion(1e-3),
  "adafactor": lambda: optax.adafactor(1e-2),
  "chain_clip_adam": lambda: optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-2)),
  "inject_adam": lambda: optax.inject_hyperparams(optax.adam)(learning_rate=1e-2),
}


def _wrappers(inner_name, packed=False):
  """(name, tx): masked(inner), and masked placed inside chain / under MultiSteps."""
  inner = INNERS[inner_name]()
  kw = dict(schedule=SCHEDULE, packed=packed)
  yield "masked", jaxprune.masked(inner, TARGET, **kw)
  if inner_name == "adam":
    yield "in_chain", optax.chain(optax.clip(10.0), jaxprune.masked(inner, TARGET, **kw))
    yield "multisteps", optax.MultiSteps(jaxprune.masked(inner, TARGET, **kw), 2)


def _run(tx, steps=10, jit=True, params=None):
  params = _params() if params is None else params
  state = tx.init(params)

  def step(params, state, batch):
    grads = jax.grad(_loss)(params, batch)
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  step = jax.jit(step) if jit else step
  history = []
  for i in range(steps):
    params, state = step(params, state, _batch(i))
    history.append((params, jaxprune.masks_of(state)))
  return history


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("inner_name", list(INNERS))
def test_pruned_entries_exactly_zero_every_step(inner_name, packed):
  for wrapper, tx in _wrappers(inner_name, packed):
    for i, (params, masks) in enumerate(_run(tx)):
      for name in ("l1", "l2"):
        k, m = np.asarray(params[name]["kernel"]), np.asarray(masks[name]["kernel"])
        assert (k[~m] == 0.0).all(), (wrapper, i, name)
        assert (k[~m].view(np.int32) == 0).all()  # +0.0 exactly, not -0.0
        assert np.asarray(masks[name]["bias"]).all()
    # The final masks reach the exact target count (MultiSteps reaches it later).
    if wrapper != "multisteps":
      n = params["l1"]["kernel"].size
      assert int(masks["l1"]["kernel"].sum()) == n - round(TARGET * n)


def test_mask_counts_follow_the_schedule_exactly():
  history = _run(jaxprune.masked(optax.adam(1e-2), TARGET, schedule=SCHEDULE))
  n = 16 * 32
  for step, (_, masks) in enumerate(history):
    # the sparsity in force after `step` is the one set at the last update step <= step
    updates = [t for t in range(step + 1) if bool(SCHEDULE(t, TARGET)[0])]
    s = float(SCHEDULE(updates[-1], TARGET)[1]) if updates else 0.0
    assert int(masks["l1"]["kernel"].sum()) == n - round(s * n), step


def test_kept_entries_get_exactly_the_inner_update():
  params = _params()
  inner = optax.adam(1e-2)
  tx = jaxprune.masked(inner, 0.5)
  grads = jax.grad(_loss)(params, _batch(0))
  updates, state = tx.update(grads, tx.init(params), params)
  masks = jaxprune.masks_of(state)
  masked_grads = jax.tree.map(lambda g, m: jnp.where(m, g, 0.0), grads, masks)
  expected, _ = inner.update(masked_grads, inner.init(params), params)
  for u, e, m, p in zip(*map(jax.tree.leaves, (updates, expected, masks, params)), strict=True):
    np.testing.assert_array_equal(np.asarray(u)[np.asarray(m)], np.asarray(e)[np.asarray(m)])
    np.testing.assert_array_equal(np.asarray(u)[~np.asarray(m)], -np.asarray(p)[~np.asarray(m)])


def test_packed_and_unpacked_trajectories_identical():
  a = _run(jaxprune.masked(optax.adam(1e-2), TARGET, schedule=SCHEDULE))
  b = _run(jaxprune.masked(optax.adam(1e-2), TARGET, schedule=SCHEDULE, packed=True))
  for (pa, ma), (pb, mb) in zip(a, b, strict=True):
    chex.assert_trees_all_equal(pa, pb)
    chex.assert_trees_all_equal(ma, mb)


def test_packed_masks_are_one_bit_per_weight():
  tx = jaxprune.masked(optax.sgd(0.1), 0.5, packed=True)
  state = tx.init(_params())
  bits = [x for x in jax.tree.leaves(state.masks)]
  assert all(b.dtype == jnp.uint8 for b in bits)
  assert sum(b.size for b in bits) == (16 * 32) // 8 + (32 * 4) // 8


def test_jit_and_eager_agree():
  tx = jaxprune.masked(optax.adam(1e-2), TARGET, schedule=SCHEDULE)
  eager = _run(tx, steps=8, jit=False)
  jitted = _run(tx, steps=8, jit=True)
  for (pe, me), (pj, mj) in zip(eager, jitted, strict=True):
    chex.assert_trees_all_equal(me, mj)
    chex.assert_trees_all_close(pe, pj, rtol=1e-5, atol=1e-6)


def test_no_retrace_across_mask_and_sparsity_updates():
  tx = jaxprune.masked(optax.adam(1e-2), TARGET, schedule=SCHEDULE)
  params = _params()
  state = tx.init(params)

  @jax.jit
  @chex.assert_max_traces(n=1)
  def step(params, state, batch):
    grads = jax.grad(_loss)(params, batch)
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  sparsities = set()
  for i in range(10):
    params, state = step(params, state, _batch(i))
    sparsities.add(int(jaxprune.masks_of(state)["l1"]["kernel"].sum()))
  assert len(sparsities) >= 4  # the masks really changed, several times, with one trace


def test_inject_hyperparams_of_masked_changes_sparsity_without_retrace():
  static = ("criterion", "schedule", "distribution", "structure", "packed", "seed")
  tx = optax.inject_hyperparams(jaxprune.masked, static_args=static)(
    inner=optax.adam(1e-2), sparsity=0.5, schedule=schedules.periodic(1)
  )
  params = _params()
  state = tx.init(params)

  @jax.jit
  @chex.assert_max_traces(n=1)
  def step(params, state):
    updates, state = tx.update(jax.grad(_loss)(params, _batch(0)), state, params)
    return optax.apply_updates(params, updates), state

  params, state = step(params, state)
  assert int(jaxprune.masks_of(state)["l1"]["kernel"].sum()) == 256
  state.hyperparams["sparsity"] = jnp.asarray(0.75, jnp.float32)
  params, state = step(params, state)
  assert int(jaxprune.masks_of(state)["l1"]["kernel"].sum()) == 128
  assert int((params["l1"]["kernel"] == 0).sum()) == 384


def test_masks_of_through_nesting():
  params = _params()
  base = jaxprune.masked(optax.adam(1e-3), 0.5)
  nested = [
    optax.chain(optax.clip(1.0), base),
    optax.inject_hyperparams(
      lambda learning_rate: optax.chain(
        optax.clip(1.0), jaxprune.masked(optax.adam(learning_rate), 0.5)
      )
    )(learning_rate=1e-3),
    optax.MultiSteps(base, 3),
    optax.chain(optax.chain(optax.identity(), base)),
  ]
  for tx in nested:
    masks = jaxprune.masks_of(tx.init(params))
    assert jax.tree.structure(masks) == jax.tree.structure(params)
    assert all(m.dtype == jnp.bool_ and m.all() for m in jax.tree.leaves(masks))
  with pytest.raises(ValueError, match="No jaxprune.masked state"):
    jaxprune.masks_of(optax.adam(1e-3).init(params))


def test_flax_linen_nnx_and_integer_leaves():
  import flax.linen as nn
  from flax import nnx

  linen_params = nn.Dense(8).init(jax.random.key(0), jnp.ones((1, 16)))["params"]
  tx = jaxprune.masked(optax.sgd(0.1), 0.5)
  updates, state = tx.update(
    jax.tree.map(jnp.ones_like, linen_params), tx.init(linen_params), linen_params
  )
  pruned = optax.apply_updates(linen_params, updates)
  assert int((pruned["kernel"] == 0).sum()) == 64

  model = nnx.Linear(16, 8, rngs=nnx.Rngs(0))
  optimizer = nnx.Optimizer(model, jaxprune.masked(optax.sgd(0.1), 0.75), wrt=nnx.Param)
  grads = jax.tree.map(jnp.ones_like, nnx.state(model, nnx.Param))
  optimizer.update(model, grads)
  assert int((model.kernel[...] == 0).sum()) == 96

  mixed = {"w": jnp.ones((4, 4)), "step": jnp.zeros((3, 3), jnp.int32)}
  tx = jaxprune.masked(optax.sgd(0.1), 0.5)
  state = tx.init(mixed)
  masks = jaxprune.masks_of(state)
  assert masks["step"].all() and int(masks["w"].sum()) == 16  # not pruned before update


def test_random_criterion_uses_state_key_and_is_reproducible():
  tx = jaxprune.masked(optax.sgd(0.0), 0.5, criterion="random", seed=3)
  a = _run(tx, steps=1)[0][1]
  b = _run(tx, steps=1)[0][1]
  chex.assert_trees_all_equal(a, b)
  c = _run(jaxprune.masked(optax.sgd(0.0), 0.5, criterion="random", seed=4), steps=1)[0][1]
  assert not np.array_equal(a["l1"]["kernel"], c["l1"]["kernel"])


def test_random_criterion_draws_a_new_key_per_mask_update_only():
  params = {"w": jnp.ones((8, 8))}
  # A regrowing copy of "random", so that each update may choose a different mask.
  redraw = dataclasses.replace(jaxprune.criteria.get("random"), regrow=True)
  tx = jaxprune.masked(optax.sgd(0.0), 0.5, criterion=redraw, schedule=schedules.periodic(2))
  state = tx.init(params)
  grads = jax.tree.map(jnp.zeros_like, params)
  update = jax.jit(tx.update)
  seen = []
  for _ in range(5):  # updates at steps 0, 2 and 4
    _, state = update(grads, state, params)
    seen.append(np.asarray(jaxprune.masks_of(state)["w"]))
  assert not np.array_equal(seen[0], seen[2]) and not np.array_equal(seen[2], seen[4])
  np.testing.assert_array_equal(seen[0], seen[1])  # step 1 keeps the masks
  assert int(seen[4].sum()) == 32


def test_masks_frozen_compiles_out_the_update_and_matches_the_cond():
  params = _params()
  tx = jaxprune.masked(optax.adam(1e-2), 0.5, schedule=schedules.periodic(3))
  state = tx.init(params)
  grads = jax.tree.map(jnp.ones_like, params)
  cond = jax.jit(tx.update)
  frozen = jax.jit(functools.partial(tx.update, masks_frozen=True))
  for step in range(7):
    u_cond, s_cond = cond(grads, state, params)
    if step % 3:  # the schedule keeps the masks: the frozen update is the same update
      u_frozen, s_frozen = frozen(grads, state, params)
      chex.assert_trees_all_equal((u_cond, s_cond), (u_frozen, s_frozen))
    params, state = optax.apply_updates(params, u_cond), s_cond
  text = frozen.lower(grads, state, params).as_text()
  assert "while" not in text and "sort" not in text  # no selection code at all
  with pytest.raises(TypeError, match="masks_frozen must be a Python bool"):
    tx.update(grads, state, params, masks_frozen=jnp.bool_(True))


def test_frozen_steps_need_no_criterion_inputs_but_updating_steps_do():
  params = _params()
  tx = jaxprune.masked(optax.sgd(0.1), 0.5, criterion="grasp", schedule=schedules.one_shot(0))
  state = tx.init(params)
  grads = jax.tree.map(jnp.ones_like, params)
  tx.update(grads, state, params, masks_frozen=True)  # the criterion does not run
  with pytest.raises(jaxprune.MissingExtraError, match="loss_fn"):
    tx.update(grads, state, params)


def test_saliency_criterion_uses_this_steps_gradient():
  params = _params()
  grads = jax.tree.map(jnp.ones_like, params)
  grads["l1"]["kernel"] = grads["l1"]["kernel"].at[0].set(1e6)  # row 0 salient
  tx = jaxprune.masked(optax.sgd(0.0), 0.9, criterion="saliency")
  _, state = tx.update(grads, tx.init(params), params)
  assert np.asarray(jaxprune.masks_of(state)["l1"]["kernel"][0]).all()


def test_strict_dtype_promotion_and_bf16_params():
  params = jax.tree.map(lambda x: x.astype(jnp.bfloat16), _params())
  # sgd: optax's own adam is not strict-promotion clean; our code must be.
  tx = jaxprune.masked(optax.sgd(1e-2), 0.5, schedule=SCHEDULE, distribution="erk")
  with jax.numpy_dtype_promotion("strict"):
    grads = jax.tree.map(jnp.ones_like, params)
    state = tx.init(params)
    for _ in range(8):
      updates, state = jax.jit(tx.update)(grads, state, params)
      params = optax.apply_updates(params, updates)
  assert params["l1"]["kernel"].dtype == jnp.bfloat16
  masks = jaxprune.masks_of(state)
  assert int((params["l1"]["kernel"] == 0).sum()) == int((~masks["l1"]["kernel"]).sum()) > 0


@pytest.mark.parametrize("bad", [1.0, -0.1, 1.5])
def test_sparsity_out_of_range(bad):
  with pytest.raises(ValueError, match=r"in \[0, 1\)"):
    jaxprune.masked(optax.adam(1e-3), bad)


def test_unknown_names_list_valid_choices():
  with pytest.raises(ValueError, match="magnitude"):
    jaxprune.masked(optax.adam(1e-3), 0.5, criterion="magnitud")
  with pytest.raises(ValueError, match="erk"):
    jaxprune.masked(optax.adam(1e-3), 0.5, distribution="erk2").init(_params())


def test_missing_extra_shows_the_call():
  @jaxprune.criteria.register("needs_loss_for_test", needs=("loss_fn", "batch"), overwrite=True)
  def needs_loss(params, *, loss_fn, batch, **extras):
    del extras
    return jax.tree.map(jnp.abs, jax.grad(loss_fn)(params, batch))

  params = _params()
  tx = jaxprune.masked(optax.sgd(0.1), 0.5, criterion="needs_loss_for_test")
  state = tx.init(params)
  with pytest.raises(jaxprune.MissingExtraError, match=r"loss_fn=loss_fn, batch=batch"):
    tx.update(params, state, params)
  updates, _ = tx.update(params, state, params, loss_fn=_loss, batch=_batch(0))
  assert updates["l1"]["kernel"].shape == (16, 32)


def test_update_without_params_and_mismatched_trees():
  params = _params()
  tx = jaxprune.masked(optax.sgd(0.1), 0.5)
  state = tx.init(params)
  with pytest.raises(ValueError, match=r"tx.update\(grads, opt_state, params\)"):
    tx.update(params, state)
  other = {"l1": params["l1"]}
  with pytest.raises(jaxprune.MaskMismatchError, match="do not match the tree"):
    tx.update(other, state, other)
  with pytest.raises(jaxprune.MaskMismatchError, match="does not match"):
    jaxprune.apply_masks(params, {"l1": jaxprune.masks_of(state)["l1"]})


def test_path_mapping_that_matches_nothing():
  with pytest.raises(ValueError, match="matches no parameter path.*l1/kernel"):
    jaxprune.masked(optax.sgd(0.1), 0.5, distribution={"Dense_9/kernel": 0.5}).init(_params())


def test_structure_on_leaf_with_too_few_dims():
  with pytest.raises(ValueError, match="at least 2 dimensions"):
    jaxprune.masked(
      optax.sgd(0.1), 0.5, structure=jaxprune.structures.channels(), distribution={".*": 0.5}
    ).init(_params())


def test_n_of_m_indivisible_axis_error():
  with pytest.raises(ValueError, match="not divisible by 3"):
    jaxprune.masked(optax.sgd(0.1), None, structure=jaxprune.structures.n_of_m(1, 3)).init(
      _params()
    )


FEATURES = {
  "n_of_m": dict(structure=jaxprune.structures.n_of_m(2, 4)),
  "block": dict(structure=jaxprune.structures.block((4, 4))),
  "channels": dict(structure=jaxprune.structures.channels()),
  "within": dict(structure=jaxprune.structures.unstructured(within=-1)),
  "erk": dict(distribution="erk"),
  "global": dict(distribution="global_normalized"),
  "mapping": dict(distribution={"l1/kernel": 0.5, "l2/kernel": 0.75}),
  "random": dict(criterion="random"),
  "saliency": dict(criterion="saliency"),
}


@pytest.mark.parametrize("feature", list(FEATURES))
def test_packed_matches_unpacked_for_every_feature(feature):
  kw = dict(schedule=SCHEDULE, **FEATURES[feature])
  target = None if feature == "n_of_m" else TARGET  # n_of_m fixes the sparsity
  a = _run(jaxprune.masked(optax.adam(1e-2), target, **kw), steps=8)
  b = _run(jaxprune.masked(optax.adam(1e-2), target, packed=True, **kw), steps=8)
  for (pa, ma), (pb, mb) in zip(a, b, strict=True):
    chex.assert_trees_all_equal(ma, mb)
    chex.assert_trees_all_equal(pa, pb)
    for p, m in zip(jax.tree.leaves(pb), jax.tree.leaves(mb), strict=True):
      assert (np.asarray(p)[~np.asarray(m)] == 0).all()
  assert int((~a[-1][1]["l1"]["kernel"]).sum()) > 0  # the feature really pruned something
