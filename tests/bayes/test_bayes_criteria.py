"""The "log_alpha" and "l0_gate" threshold criteria: registration, scores, masks, jit."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxprune
from jaxprune import bayes


def _vd_params():
  return {
    "vd": {
      "kernel": jnp.array([[1.0, 0.1, 1e-4], [0.5, -0.5, 2.0]]),
      "log_sigma2": jnp.array([[0.0, 0.0, -30.0], [-4.0, 3.0, 0.0]]),
      "bias": jnp.zeros(3),
    },
    "plain": {"kernel": jnp.ones((3, 2)), "bias": jnp.zeros(2)},
  }


def test_both_criteria_are_registered_as_threshold_criteria():
  names = jaxprune.criteria.names()
  assert "log_alpha" in names and "l0_gate" in names
  for name in ("log_alpha", "l0_gate"):
    assert jaxprune.criteria.get(name).threshold is not None


def test_log_alpha_scores_only_variational_kernels():
  scores = bayes.log_alpha_scores(_vd_params())
  assert scores["vd"]["log_sigma2"] is None and scores["vd"]["bias"] is None
  assert scores["plain"]["kernel"] is None
  la = bayes.log_alpha(_vd_params()["vd"]["kernel"], _vd_params()["vd"]["log_sigma2"])
  np.testing.assert_array_equal(scores["vd"]["kernel"], -la)


@pytest.mark.parametrize("threshold", [3.0, 1.0, -1.0])
def test_log_alpha_masks_follow_the_threshold_exactly(threshold):
  params = _vd_params()
  la = bayes.log_alpha(params["vd"]["kernel"], params["vd"]["log_sigma2"])
  # log α here: [[0, 4.6, -8 (clipped)], [-2.6, 4.4, -1.4]]
  pruned, masks = jaxprune.prune(params, None, criterion=bayes.log_alpha_criterion(threshold))
  np.testing.assert_array_equal(masks["vd"]["kernel"], la < threshold)
  np.testing.assert_array_equal(masks["vd"]["kernel"], bayes.keep_mask(*_vd_pair(), threshold))
  assert bool(jnp.all(masks["plain"]["kernel"])) and bool(jnp.all(masks["vd"]["log_sigma2"]))
  np.testing.assert_array_equal(pruned["vd"]["kernel"] == 0, la >= threshold)


def _vd_pair():
  p = _vd_params()["vd"]
  return p["kernel"], p["log_sigma2"]


def test_log_alpha_boundary_value_is_removed():
  # log α exactly at the threshold is removed (kept iff log α < threshold), like keep_mask.
  params = {"kernel": jnp.ones((1, 2)), "log_sigma2": jnp.array([[3.0, 2.5]])}
  _, masks = jaxprune.prune(params, None, criterion=bayes.log_alpha_criterion(3.0))
  assert masks["kernel"].tolist() == [[False, True]]
  _, masks = jaxprune.prune(params, None, criterion="log_alpha")
  assert masks["kernel"].tolist() == [[False, True]]


def test_l0_gate_scores_broadcast_per_input_gates_over_rows_and_channels():
  dense = {"kernel": jnp.ones((3, 2)), "gate_log_alpha": jnp.array([-9.0, 0.0, 1.0])}
  conv = {"kernel": jnp.ones((2, 2, 3, 4)), "gate_log_alpha": jnp.array([-9.0, 0.0, 1.0])}
  per_weight = {"kernel": jnp.ones((2, 2)), "gate_log_alpha": jnp.array([[-9.0, 0.0], [1, 2]])}
  s = bayes.l0_gate_scores({"d": dense, "c": conv, "w": per_weight})
  np.testing.assert_array_equal(s["d"]["kernel"][:, 0], [-9.0, 0.0, 1.0])
  np.testing.assert_array_equal(s["c"]["kernel"][1, 0, :, 3], [-9.0, 0.0, 1.0])
  np.testing.assert_array_equal(s["w"]["kernel"], per_weight["gate_log_alpha"])
  assert s["d"]["gate_log_alpha"] is None


def test_l0_gate_rejects_gates_that_fit_no_axis():
  bad = {"kernel": jnp.ones((3, 2)), "gate_log_alpha": jnp.zeros(5)}
  with pytest.raises(ValueError, match="per-input gates"):
    bayes.l0_gate_scores(bad)


def test_l0_gate_criterion_with_custom_stretch_moves_the_cut():
  params = {"kernel": jnp.ones((2, 1)), "gate_log_alpha": jnp.array([-2.0, -1.0])}
  # default cut log(0.1/1.1) = -2.40 keeps both; gamma=-0.5, zeta=1.5 cuts at log(1/3) = -1.10
  _, m_default = jaxprune.prune(params, None, criterion="l0_gate")
  _, m_wide = jaxprune.prune(params, None, criterion=bayes.l0_gate_criterion(-0.5, 1.5))
  assert m_default["kernel"].ravel().tolist() == [True, True]
  assert m_wide["kernel"].ravel().tolist() == [False, True]
  with pytest.raises(ValueError, match="gamma < 0"):
    bayes.l0_gate_criterion(0.1, 1.1)


def test_periodic_log_alpha_masks_follow_training_without_retracing():
  params = _vd_params()
  tx = jaxprune.masked(
    optax.sgd(0.0), None, criterion="log_alpha", schedule=jaxprune.schedules.periodic(2)
  )
  state = tx.init(params)

  @jax.jit
  @chex.assert_max_traces(n=1)
  def step(p, s):
    updates, s = tx.update(jax.tree.map(jnp.zeros_like, p), s, p)
    return optax.apply_updates(p, updates), s

  p, state = step(params, state)  # step 0: masks from the current log α
  first = jaxprune.masks_of(state)["vd"]["kernel"]
  # Raise log σ² of a kept weight: the next mask update (step 2) removes it.
  p = {**p, "vd": {**p["vd"], "log_sigma2": p["vd"]["log_sigma2"].at[0, 0].set(8.0)}}
  p, state = step(p, state)  # step 1: no update
  np.testing.assert_array_equal(jaxprune.masks_of(state)["vd"]["kernel"], first)
  p, state = step(p, state)  # step 2: update
  later = jaxprune.masks_of(state)["vd"]["kernel"]
  assert bool(first[0, 0]) and not bool(later[0, 0])
  assert float(p["vd"]["kernel"][0, 0]) == 0.0
