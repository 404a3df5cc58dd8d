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


def test_prune_sparsity_errors_show_the_prune_call():
  with pytest.raises(
    ValueError, match=r"got 90\. For 90% sparsity: jaxprune\.prune\(params, 0\.9\)"
  ):
    jaxprune.prune({"w": jnp.ones((4, 4))}, 90)
  with pytest.raises(TypeError, match=r"got str.*Example: jaxprune\.prune\(params, 0\.9\)\.$"):
    jaxprune.prune({"w": jnp.ones((4, 4))}, "0.9")


def test_apply_masks_rejects_a_mask_that_would_broadcast():
  params = {"w": jnp.ones((3, 4))}
  with pytest.raises(jaxprune.MaskMismatchError, match=r"'w' has shape \(1, 4\).*\(3, 4\)"):
    jaxprune.apply_masks(params, {"w": jnp.array([[True, False, True, True]])})


def test_summary_with_masks_counts_masked_entries_not_zeros():
  params = {"w": jnp.arange(12.0).reshape(3, 4), "b": jnp.zeros(4)}
  smallest = lambda p, **extras: jax.tree.map(lambda x: -jnp.abs(x), p)
  pruned, masks = jaxprune.prune(params, 0.5, criterion=smallest)  # keeps 0.0 .. 5.0
  plain = {r.path: r.nonzero for r in jaxprune.sparsity_summary(pruned).leaves}
  assert plain == {"b": 0, "w": 5}  # zeros alone: the kept 0.0 and the bias look pruned
  s = jaxprune.sparsity_summary(pruned, masks=masks)
  assert (s.nonzero, s.size) == (10, 16)
  rows = {r.path: r.sparsity for r in s.leaves}
  assert rows == {"b": 0.0, "w": 0.5}
  with pytest.raises(jaxprune.MaskMismatchError, match="sparsity_summary"):
    jaxprune.sparsity_summary(pruned, masks={"w": masks["w"]})
