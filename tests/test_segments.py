"""Batched selection: the same masks as leaf-by-leaf selection, and a program that does not
grow with the number of leaves of one size."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxprune import masks, segments
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


@pytest.fixture(params=["cpu", "gpu"])
def backend(request, monkeypatch):
  """Traces the selection as on ``request.param`` (the GPU variant runs here on the CPU)."""
  if request.param != jax.default_backend():
    monkeypatch.setattr(jax, "default_backend", lambda: request.param)
  return request.param


@pytest.mark.parametrize("large", [segments.LARGE, 6000])
def test_blocked_selection_matches_leaf_by_leaf_on_many_blocks(backend, large, monkeypatch):
  # Segments of many blocks, ties spanning block and segment boundaries, NaNs, and every
  # edge count; with large=6000 the two biggest arrays take the in-place path instead.
  monkeypatch.setattr(segments, "LARGE", large)
  rng = np.random.default_rng(1)
  shapes = [(37, 101), (9000,), (60, 50), (2100,), (3, 3, 64, 7), (9000,), (5,)]
  scores = []
  for i, shape in enumerate(shapes):
    x = np.round(rng.normal(size=shape) * (1 + 3 * (i % 2))) / 2  # many ties
    x[rng.random(shape) < 0.05] = np.nan
    scores.append(jnp.asarray(x, jnp.float32))
  n = [int(np.prod(s)) for s in shapes]
  for counts in ([0, 1, 2, 3, 4, 5, 6], n, [c // 2 for c in n], [c - 1 for c in n]):
    select = jax.jit(lambda s, c: segments.topk_masks(s, c))  # a new function: traced anew
    got = select(scores, [jnp.int32(c) for c in counts])
    for s, c, g in zip(scores, counts, got, strict=True):
      np.testing.assert_array_equal(np.asarray(g), np.asarray(masks.topk_mask(s, c)))
      assert int(g.sum()) == min(max(c, 0), s.size)
  text = select.lower(scores, [jnp.int32(1)] * len(shapes)).as_text()
  assert ("while" in text) == (backend == "cpu")  # the GPU variant runs a fixed pass count


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


def test_leaves_of_many_sizes_share_one_search():
  # Ten mid-sized arrays of ten different sizes: one counting loop for all of them (one per
  # size before), and one more for each distinct size of at least `LARGE` entries.
  scores = [jnp.ones((3000 + 97 * i,)) for i in range(10)]
  select = jax.jit(lambda s, c: segments.topk_masks(s, c))
  text = select.lower(scores, [jnp.int32(5)] * 10).as_text()
  assert text.count("stablehlo.while") == 1
  big = [jnp.ones((segments.LARGE,)), jnp.ones((segments.LARGE,)), jnp.ones((segments.LARGE + 8,))]
  text = select.lower(scores + big, [jnp.int32(5)] * 13).as_text()
  assert text.count("stablehlo.while") == 3
