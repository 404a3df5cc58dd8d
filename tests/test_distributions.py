"""Per-leaf targets: uniform, ERK/ER (hand-computed), global, path mappings."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxprune
from jaxprune import distributions


def _params():
  return {
    "a": {"kernel": jnp.ones((100, 100)), "bias": jnp.ones(100)},
    "b": {"kernel": jnp.ones((100, 10)), "bias": jnp.ones(10)},
  }


def test_erk_hand_computed():
  # raw densities: (100+100)/10^4 = 0.02 and (100+10)/10^3 = 0.11; kept = 0.1 * 11000 = 1100
  # eps * (0.02 * 10^4 + 0.11 * 10^3) = 1100  ->  eps = 1100 / 310
  eps = 1100 / 310
  d = distributions.erk_densities([(100, 100), (100, 10)], 0.9)
  np.testing.assert_allclose(d, [0.02 * eps, 0.11 * eps], rtol=1e-6)


def test_erk_saturated_layer_becomes_dense_and_rest_resolved():
  # raw: 2000/1e6 = 0.002, 1002/2000 = 0.501. Without clipping layer 2 would exceed 1.
  d = distributions.erk_densities([(1000, 1000), (1000, 2)], 0.5)
  assert d[1] == 1.0
  assert d[0] == pytest.approx((0.5 * 1_002_000 - 2000) / 1_000_000, rel=1e-6)


def test_er_uses_only_last_two_axes():
  erk = distributions.erk_densities([(3, 3, 16, 32), (3, 3, 32, 64)], 0.8)
  er = distributions.erk_densities([(3, 3, 16, 32), (3, 3, 32, 64)], 0.8, kernel=False)
  ratio_er = (16 + 32) / (16 * 32) / ((32 + 64) / (32 * 64))
  assert er[0] / er[1] == pytest.approx(ratio_er, rel=1e-5)
  assert erk[0] != pytest.approx(er[0])


@pytest.mark.parametrize("dist", ["erk", "er"])
def test_erk_masks_meet_total_target_exactly_enough(dist):
  _, masks = jaxprune.prune(_params(), 0.9, distribution=dist)
  kept = int(masks["a"]["kernel"].sum() + masks["b"]["kernel"].sum())
  assert abs(kept - 1100) <= 2  # per-leaf rounding only
  assert masks["a"]["bias"].all()


def test_global_one_threshold_exact_total():
  params = {
    "a": jnp.arange(1.0, 101.0).reshape(10, 10),
    "b": 1000 + jnp.arange(50.0).reshape(5, 10),
  }
  _, masks = jaxprune.prune(params, 0.6, distribution="global")
  assert int(masks["a"].sum() + masks["b"].sum()) == 150 - 90
  assert int(masks["a"].sum()) == 10 and masks["b"].all()  # one threshold: "a" is emptied first
  _, norm = jaxprune.prune(params, 0.6, distribution="global_normalized")
  # Normalised scores: a / mean(a) = i / 50.5 and b / mean(b) = (1000 + j) / 1024.5; the 60
  # largest of these 150 are the 49 entries of "a" with i >= 52 (> 1.0297) and the 11 largest of
  # "b" (1039..1049, >= 1.0142, which beat i = 51: 1.0099).
  assert int(norm["a"].sum()) == 49 and int(norm["b"].sum()) == 11
  assert bool(norm["a"].reshape(-1)[51:].all()) and not bool(norm["a"].reshape(-1)[:51].any())
  assert bool(norm["b"].reshape(-1)[39:].all()) and not bool(norm["b"].reshape(-1)[:39].any())


def test_global_rejects_structures():
  with pytest.raises(ValueError, match="unstructured"):
    jaxprune.prune(_params(), 0.5, distribution="global", structure=jaxprune.structures.channels())


def test_global_rejects_a_per_slice_count():
  # One global threshold cannot keep the same count in every slice; it used to ignore `within`.
  within = jaxprune.structures.unstructured(within=-1)
  for distribution in ("global", "global_normalized"):
    with pytest.raises(ValueError, match=r"same count in every slice.*within=-1"):
      jaxprune.prune(_params(), 0.5, distribution=distribution, structure=within)
    with pytest.raises(ValueError, match="same count in every slice"):
      jaxprune.masked(optax.sgd(0.1), 0.5, distribution=distribution, structure=within).init(
        _params()
      )
  _, masks = jaxprune.prune(_params(), 0.5, distribution="uniform", structure=within)
  assert (masks["a"]["kernel"].sum(axis=0) == 50).all()  # 50 of 100 in every output column


def test_mapping_and_callable():
  _, masks = jaxprune.prune(_params(), 0.9, distribution={"a/kernel": 0.5, "b/.*": None})
  assert int(masks["a"]["kernel"].sum()) == 5000 and masks["b"]["kernel"].all()
  _, masks = jaxprune.prune(
    _params(), 0.9, distribution=lambda path, x: 0.25 if path.endswith("kernel") else None
  )
  assert int(masks["b"]["kernel"].sum()) == 750


def test_mapping_scaled_along_schedule():
  dist = distributions.get({"a/kernel": 0.6})
  leaves = jax.tree.leaves(_params())
  paths = ["a/bias", "a/kernel", "b/bias", "b/kernel"]
  prunable = dist.prunable(paths, leaves)
  assert prunable == [False, True, False, False]
  t = dist.targets(paths, leaves, prunable, 0.45, 0.9)
  assert float(t[1]) == pytest.approx(0.3)


def test_mapping_value_out_of_range():
  with pytest.raises(ValueError, match=r"\[0, 1\)"):
    jaxprune.prune(_params(), 0.5, distribution={"a/kernel": 1.2})


def test_unknown_distribution_and_type():
  with pytest.raises(ValueError, match="uniform"):
    distributions.get("gaussian")
  with pytest.raises(TypeError, match="mapping"):
    distributions.get(3)


def _with_counter():
  return {**_params(), "step": jnp.zeros((2, 2), jnp.int32)}


def test_mapping_naming_an_integer_leaf_is_an_error():
  with pytest.raises(
    ValueError, match=r"'step' \(dtype int32\).*0\.5.*\{'step': None\} before '\.\*'"
  ):
    jaxprune.prune(_with_counter(), 0.5, distribution={".*": 0.5})
  _, masks = jaxprune.prune(_with_counter(), 0.5, distribution={"step": None, ".*kernel": 0.5})
  assert int(masks["a"]["kernel"].sum()) == 5000 and bool(masks["step"].all())


def test_callable_naming_an_integer_leaf_is_an_error():
  with pytest.raises(ValueError, match=r"'step' \(dtype int32\).*Return None for it"):
    jaxprune.prune(_with_counter(), 0.5, distribution=lambda path, leaf: 0.5)
