"""Batched selection: the same masks as leaf-by-leaf selection, and a program that does not
grow with the number of leaves of one size."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxprune import masks
from jaxprune.segments import topk_masks
from jaxprune.selection import Plan


@settings(max_examples=25, deadline=None)
@given(
  st.lists(st.sampled_from([(0,), (1,), (7,), (3, 5), (5, 3), (2049,), (70, 60)]), max_size=6),
  st.integers(0, 2**16),
)
def test_topk_masks_equal_leaf_by_leaf_masks(shapes, seed):
  rng = np.random.default_rng(seed)
  scores, ks = [], []
  for shape in shapes:
    n = int(np.prod(shape))
    x = np.round(rng.normal(size=shape) * 4) / 4  # ties
    x[rng.random(shape) < 0.1] = np.nan
    scores.append(jnp.asarray(x, jnp.float32))
    ks.append(int(rng.integers(-1, n + 2)))
  got = jax.jit(topk_masks)(scores, [jnp.int32(k) for k in ks])
  for s, k, g in zip(scores, ks, got, strict=True):
    np.testing.assert_array_equal(np.asarray(g), np.asarray(masks.topk_mask(s, k)))


def test_topk_masks_needs_one_count_per_array():
  with pytest.raises(ValueError, match="one k per array"):
    topk_masks([jnp.ones(3)], [1, 2])


def test_num_to_keep_many_matches_num_to_keep_traced_and_concrete():
  rng = np.random.default_rng(0)
  ns = [int(n) for n in rng.integers(0, 2**31 - 1, 50)] + [0, 1, 10]
  s = rng.random(len(ns)).astype(np.float32)
  s[:3] = [1.0, -0.5, np.nan]
  got = jax.jit(lambda v: masks.num_to_keep_many(ns, list(v)))(jnp.asarray(s))
  want = [
    int(jax.jit(lambda v, n=n: masks.num_to_keep(n, v))(x)) for n, x in zip(ns, s, strict=True)
  ]
  assert got.tolist() == want
  assert masks.num_to_keep_many([10, 10], [0.25, 0.35]).tolist() == [8, 6]  # decimal values
  mixed = jax.jit(lambda v: masks.num_to_keep_many([2**26, 2**26], [0.9, v]))(jnp.float32(0.9))
  assert mixed.tolist() == [6710886, 6710888]  # concrete 0.9 is 9/10; traced is float32's


def _select_instructions(num_leaves: int) -> int:
  params = {f"w{i}": jnp.ones((64, 32)) for i in range(num_leaves)}
  plan = Plan.make(params, "uniform", None)
  leaves = jax.tree.leaves(params)

  def select(scores, sparsity):
    from jaxprune.criteria.registry import get

    return plan.select(leaves, scores, sparsity, sparsity, get("magnitude"))

  hlo = jax.jit(select).lower(params, jnp.float32(0.5)).compile().as_text()
  return len(re.findall(r"^\s+(?:ROOT )?[%\w.\-]+ = ", hlo, flags=re.M))


def test_selection_program_does_not_grow_per_leaf_of_one_shape():
  # Leaf by leaf, each 64x32 leaf added ~900 instructions (its own search, tie cut and
  # count); leaves of one size now share one program, so each adds only its own slicing
  # and scoring (about 60 instructions).
  few, many = _select_instructions(2), _select_instructions(16)
  assert (many - few) / 14 < 100, (few, many)
