"""One-shot `prune`, `apply_masks` and `sparsity_summary`."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxprune


def test_prune_magnitude_zeroes_smallest_and_returns_masks():
  w = jax.random.normal(jax.random.key(0), (20, 30))
  params = {"w": w, "b": jnp.arange(30.0)}
  pruned, masks = jaxprune.prune(params, 0.7)
  assert int((pruned["w"] == 0).sum()) == 420 and masks["b"].all()
  assert float(jnp.abs(w)[~masks["w"]].max()) <= float(jnp.abs(w)[masks["w"]].min())
  np.testing.assert_array_equal(pruned["b"], params["b"])


def test_prune_saliency_needs_grads():
  with pytest.raises(jaxprune.MissingExtraError, match="grads=grads"):
    jaxprune.prune({"w": jnp.ones((4, 4))}, 0.5, criterion="saliency")
  g = {"w": jnp.arange(16.0).reshape(4, 4)}
  _, masks = jaxprune.prune({"w": jnp.ones((4, 4))}, 0.5, criterion="saliency", grads=g)
  assert np.asarray(masks["w"]).reshape(-1).tolist() == [False] * 8 + [True] * 8


def test_prune_custom_callable_criterion():
  _, masks = jaxprune.prune({"w": jnp.arange(6.0).reshape(2, 3)}, 0.5, criterion=lambda p, **e: p)
  assert masks["w"].tolist() == [[False, False, False], [True, True, True]]


def test_summary_table_and_counts():
  tree = {"dense": {"kernel": jnp.array([[0.0, 1.0], [0.0, 0.0]]), "bias": jnp.ones(2)}}
  s = jaxprune.sparsity_summary(tree)
  assert (s.size, s.nonzero) == (6, 3)
  assert s.sparsity == pytest.approx(0.5) and s.compression == pytest.approx(2.0)
  rows = {r.path: r for r in s.leaves}
  assert rows["dense/kernel"].sparsity == pytest.approx(0.75)
  text = str(s)
  assert "dense/kernel" in text and "75.00%" in text and "total" in text
  assert s.as_dict()["leaves"]["dense/bias"]["nonzero"] == 2


def test_summary_of_masks():
  _, masks = jaxprune.prune({"w": jnp.ones((10, 10))}, 0.9)
  assert jaxprune.sparsity_summary(masks).nonzero == 10
