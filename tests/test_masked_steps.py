"""The steps of `jaxprune.masked`'s update, one at a time (plan, schedule, criterion, nest,
select, grow, enforce, reset); `test_masked.py` checks the whole wrapper."""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxprune import criteria, schedules
from jaxprune.masked import DenseMask, MaskedState, PackedMask
from jaxprune.masks import pack
from jaxprune.selection import Plan

masked = importlib.import_module("jaxprune.masked")  # the module; jaxprune.masked is the function

PARAMS = {"b": jnp.ones(3), "w": jnp.arange(1.0, 9.0).reshape(2, 4)}


def _plan(params=PARAMS):
  return Plan.make(params, "uniform", None)  # "b" (1-D) stays dense, "w" is pruned


def _state(count=3):
  return MaskedState(
    count=jnp.asarray(count, jnp.int32),
    masks=None,
    key=jax.random.key_data(jax.random.key(7)),
    inner_state=(),
  )


def test_plan_orders_leaves_by_path_and_keeps_vectors_dense():
  plan = _plan()
  assert plan.paths == ("b", "w")
  assert plan.prunable == (False, True)


def test_check_update_call_refuses_a_traced_flag_and_missing_params():
  masked._check_update_call(True, PARAMS)
  with pytest.raises(TypeError, match="masks_frozen must be a Python bool"):
    masked._check_update_call(jnp.asarray(True), PARAMS)
  with pytest.raises(ValueError, match=r"tx.update\(grads, opt_state, params\)"):
    masked._check_update_call(False, None)


@pytest.mark.parametrize("step, updates", [(0, True), (1, False), (2, True)])
def test_on_schedule_remasks_only_at_update_steps(step, updates):
  previous = [DenseMask((3,)), jnp.ones((2, 4), bool)]
  calls = []

  def remask(stored, current):
    calls.append(float(current))
    return [stored[0], jnp.zeros((2, 4), bool)]

  sched = schedules.periodic(2)
  out = masked._on_schedule(sched, 0.5, jnp.asarray(step, jnp.int32), previous, remask)
  assert calls == [0.5]  # lax.cond traces the branch either way, with the clamped sparsity
  assert bool(out[1].any()) == (not updates)
  assert out[0] == previous[0]  # a dense leaf passes through


@pytest.mark.parametrize("sparsity, clamped", [(1.5, 1.0), (-0.2, 0.0), (float("nan"), 0.0)])
def test_on_schedule_clamps_a_traced_sparsity(sparsity, clamped):
  seen = []

  def remask(stored, current):
    seen.append(current)
    return list(stored)

  one_shot = schedules.one_shot(0)
  masked._on_schedule(one_shot, jnp.float32(sparsity), jnp.int32(0), [jnp.ones(2, bool)], remask)
  assert float(seen[0]) == clamped


def test_score_supplies_key_masks_and_step_unless_the_caller_gives_a_key():
  received = {}

  def fn(params, *, grads=None, **extras):
    received.update(extras, grads=grads)
    return params

  crit = criteria.Criterion(name="probe", fn=fn, needs=("grads", "key", "masks", "step"))
  plan = _plan()
  mask = jnp.ones((2, 4), bool)
  own, step = jax.random.key(1), jnp.int32(5)
  extras = {"batch": 3}
  masked._score(crit, plan, PARAMS, "g", [None, mask], key=own, step=step, extras=extras)
  assert received["key"] is own and received["step"] is step and received["batch"] == 3
  assert received["grads"] == "g"
  assert received["masks"]["b"] is None and received["masks"]["w"] is mask
  theirs = jax.random.key(2)
  extras = {"key": theirs}
  masked._score(crit, plan, PARAMS, "g", [None, mask], key=own, step=step, extras=extras)
  assert received["key"] is theirs


def test_nest_ranks_pruned_entries_last_and_real_nans_lowest():
  scores = {"b": None, "w": jnp.array([[5.0, jnp.nan, 1.0, 2.0], [3.0, 4.0, 6.0, 7.0]])}
  mask = jnp.array([[False, True, True, True], [True, True, True, True]])
  out = masked._nest(_plan(), scores, [None, mask])
  assert out["b"] is None
  w = np.asarray(out["w"])
  assert np.isnan(w[0, 0])  # pruned: NaN, below everything in the mask makers' order
  assert w[0, 1] == -np.inf  # a real NaN score of a kept entry
  np.testing.assert_array_equal(w[1], [3.0, 4.0, 6.0, 7.0])


def test_select_then_within_never_revives_a_pruned_entry():
  plan = _plan()
  scores = {"b": None, "w": jnp.array([[9.0, 8.0, 1.0, 2.0], [3.0, 4.0, 5.0, 6.0]])}
  kept = jnp.array([[False, True, True, True], [True, True, True, True]])
  crit = criteria.get("magnitude")
  nested = masked._nest(plan, scores, [None, kept])
  fresh = plan.select([PARAMS["b"], PARAMS["w"]], nested, 0.5, 0.5, crit)
  assert fresh[0] is None and int(fresh[1].sum()) == 4
  assert not bool(fresh[1][0, 0])  # the highest score, but pruned already
  out = masked._within(fresh, [None, kept])
  assert out[0] is None
  np.testing.assert_array_equal(out[1], fresh[1] & kept)
  shrunk = masked._within([None, jnp.ones((2, 4), bool)], [None, kept])
  np.testing.assert_array_equal(shrunk[1], kept)


def test_remask_runs_criterion_nest_select_and_keeps_the_storage():
  plan = _plan()
  kept = jnp.array([[False, True, True, True], [True, True, True, True]])
  stored = [DenseMask((3,)), PackedMask(pack(kept), (2, 4))]
  crit = criteria.get("magnitude")
  out = masked._remask(
    stored,
    jnp.float32(0.5),
    crit=crit,
    plan=plan,
    target=0.5,
    params=PARAMS,
    grads=PARAMS,
    p_leaves=[PARAMS["b"], PARAMS["w"]],
    state=_state(),
    extras={},
  )
  assert out[0] is stored[0] and isinstance(out[1], PackedMask)
  expected = np.array([[False, False, False, False], [True, True, True, True]])
  np.testing.assert_array_equal(out[1].unpack(), expected)  # the largest 4 of w


def test_restored_packs_where_the_store_packed_and_keeps_unselected_leaves():
  new = jnp.array([True, False, True])
  stored = [DenseMask((3,)), PackedMask(pack(jnp.ones(3, bool)), (3,)), jnp.ones(3, bool)]
  stored.append(jnp.zeros(3, bool))
  out = masked._restored(stored, [new, new, new, None])
  assert out[0] is stored[0]
  assert isinstance(out[1], PackedMask) and out[1].shape == (3,)
  np.testing.assert_array_equal(out[1].unpack(), new)
  assert out[2] is new
  assert out[3] is stored[3]


def test_live_holds_back_the_entries_a_regrowing_update_revives():
  previous = [DenseMask((2,)), jnp.array([True, True, False, False])]
  stored = [DenseMask((2,)), PackedMask(pack(jnp.array([False, True, True, False])), (4,))]
  live, grown = masked._live(stored, previous, grow=True)
  assert grown[0] is None and live[0] is stored[0]
  np.testing.assert_array_equal(grown[1], [False, False, True, False])
  np.testing.assert_array_equal(live[1], [False, True, False, False])
  live, grown = masked._live(stored, previous, grow=False)
  assert grown is None
  np.testing.assert_array_equal(live[1], [False, True, True, False])


def test_zero_pruned_and_enforce_make_pruned_params_exactly_zero():
  p = [jnp.array([1.0, 2.0]), jnp.array([3.0, -4.0, 5.0])]
  g = [jnp.array([0.5, 0.5]), jnp.array([1.0, 1.0, 1.0])]
  live = [DenseMask((2,)), jnp.array([True, False, True])]
  grads = masked._zero_pruned(g, live)
  assert grads[0] is g[0]
  np.testing.assert_array_equal(grads[1], [1.0, 0.0, 1.0])
  u = [jnp.array([-0.1, -0.1]), jnp.array([-0.1, -0.1, -0.1], jnp.bfloat16)]
  out = masked._enforce(u, p, live)
  assert out[0] is u[0] and out[1].dtype == jnp.bfloat16
  after = optax.apply_updates(p, out)
  assert float(after[1][1]) == 0.0
  np.testing.assert_allclose(after[1][jnp.array([0, 2])], [2.9, 4.9], rtol=1e-2)


def test_mask_tree_stores_dense_packed_and_bool_leaves():
  plan = _plan()
  given = [jnp.ones(3, bool), jnp.eye(2, 4, dtype=bool)]
  tree = masked._mask_tree(plan, given, packed=False)
  assert tree["b"] == DenseMask((3,)) and tree["w"] is given[1]
  tree = masked._mask_tree(plan, given, packed=True)
  assert isinstance(tree["w"], PackedMask)
  np.testing.assert_array_equal(tree["w"].unpack(), given[1])


def test_check_criterion_refuses_a_solver_and_a_dense_drop_and_grow_start():
  masked._check_criterion(criteria.get("magnitude"), 0.9, None)
  with pytest.raises(ValueError, match="one-shot solver"):
    masked._check_criterion(criteria.get("obs"), 0.9, None)
  with pytest.raises(ValueError, match="needs a sparse starting mask"):
    masked._check_criterion(criteria.get("rigl"), 0.9, None)
  masked._check_criterion(criteria.get("rigl"), 0.9, lambda p: p)
