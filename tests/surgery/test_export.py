"""Sparse export: BCOO leaves hold exactly the kept weights."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxprune
from jaxprune.surgery import storage_bytes, to_bcoo, to_dense


def _params():
  k1, k2 = jax.random.split(jax.random.key(0))
  return {
    "dense": {"kernel": jax.random.normal(k1, (64, 32)), "bias": jnp.ones(32)},
    "conv": {"kernel": jax.random.normal(k2, (3, 3, 4, 8))},
  }


def test_bcoo_holds_exactly_the_kept_entries_including_kept_zeros():
  pruned, masks = jaxprune.prune(_params(), 0.9)
  pruned["dense"]["kernel"] = jnp.where(
    jnp.arange(64 * 32).reshape(64, 32) == int(jnp.argmax(masks["dense"]["kernel"])),
    0.0,
    pruned["dense"]["kernel"],
  )  # one kept weight that happens to be 0.0 is still stored
  out = to_bcoo(pruned, masks)
  for name in ("dense", "conv"):
    assert out[name]["kernel"].nse == int(masks[name]["kernel"].sum())
  assert out["dense"]["bias"] is pruned["dense"]["bias"]  # 1-D leaves stay dense
  restored = to_dense(out)
  assert jax.tree.all(jax.tree.map(np.array_equal, restored, jaxprune.apply_masks(pruned, masks)))
  # float32 values plus one int32 index per dimension for each stored entry, plus the bias.
  stored = {name: int(masks[name]["kernel"].sum()) for name in ("dense", "conv")}
  expected = 32 * 4 + stored["dense"] * (4 + 2 * 4) + stored["conv"] * (4 + 4 * 4)
  assert storage_bytes(out) == expected < storage_bytes(pruned) == (64 * 32 + 32 + 288) * 4


def test_sparse_matmul_matches_the_dense_one():
  pruned, masks = jaxprune.prune(_params(), 0.75)
  w = to_bcoo(pruned, masks)["dense"]["kernel"]
  x = jax.random.normal(jax.random.key(3), (5, 64))
  np.testing.assert_allclose(x @ w, x @ pruned["dense"]["kernel"], rtol=1e-5, atol=1e-5)


def test_without_masks_the_nonzero_entries_are_kept_and_full_leaves_stay_dense():
  params = _params()
  params["dense"]["kernel"] = params["dense"]["kernel"].at[:, :16].set(0.0)
  out = to_bcoo(params)
  assert out["dense"]["kernel"].nse == 64 * 16
  assert out["conv"]["kernel"] is params["conv"]["kernel"]  # nothing pruned: left as it is


def test_a_mask_tree_of_another_shape_is_refused():
  with pytest.raises(jaxprune.MaskMismatchError, match="does not match"):
    to_bcoo(_params(), {"dense": {"kernel": jnp.ones((64, 32), bool)}})
