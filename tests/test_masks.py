"""Exact counts, tie-breaking and packing of the mask makers (property-based)."""

from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxprune import masks, structures

shapes = st.lists(st.integers(1, 12), min_size=1, max_size=3).map(tuple)
sparsities = st.floats(0.0, 0.999, allow_nan=False)


def _kept(n, sparsity, traced=True):
  """Reference count: a traced sparsity is exact for its float32 value, a concrete one for
  its decimal value (see `masks.num_to_keep`)."""
  s = Fraction(float(np.float32(sparsity))) if traced else Fraction(str(sparsity))
  return n - round(s * n)


def _scores(shape, seed, kind):
  rng = np.random.default_rng(seed)
  if kind == "normal":
    return rng.normal(size=shape).astype(np.float32)
  if kind == "ties":
    return rng.integers(0, 3, size=shape).astype(np.float32)
  return np.zeros(shape, np.float32)


@given(shapes, sparsities, st.integers(0, 2**16), st.sampled_from(["normal", "ties", "zeros"]))
def test_topk_exact_count_under_jit(shape, sparsity, seed, kind):
  s = _scores(shape, seed, kind)
  n = s.size
  want = _kept(n, sparsity)
  m = jax.jit(structures.unstructured().make)(s, sparsity)
  assert int(m.sum()) == want
  if 0 < want < n:  # everything kept scores at least as high as everything removed
    assert s[np.asarray(m)].min() >= s[~np.asarray(m)].max()


@given(st.integers(0, 2**16), st.integers(0, 40_000))
def test_large_leaf_search_matches_reference(seed, k):
  n = 40_000  # above SORT_LIMIT: the sampled search path
  x = jnp.asarray(np.random.default_rng(seed).normal(size=n).astype(np.float32))
  x = jnp.round(x * 50) / 50  # many ties
  m = masks.topk_mask(x, k)
  np.testing.assert_array_equal(np.asarray(m), _reference_topk(np.asarray(x), k))


def _reference_topk(x, k):
  x = np.where(np.isnan(x), -np.inf, x)
  order = np.lexsort((np.arange(x.size), -x))  # by score desc, then index asc
  expected = np.zeros(x.size, bool)
  expected[order[:k]] = True
  return expected


@pytest.fixture(params=["cpu", "gpu", "tpu"])
def layout(request, monkeypatch):
  """Traces the mask makers as for this backend (all run on CPU): the CPU layout, the GPU's
  fixed-pass search, and the bracket search with the plain layout (TPU)."""
  if request.param != jax.default_backend():
    monkeypatch.setattr(jax, "default_backend", lambda: request.param)
  return request.param


@pytest.mark.parametrize(
  "n", [1, 14, 15, 16, 29, 30, 31, 239, 240, 241, 509, 510, 15 * 16 * 3 + 7, 100_003, 262_144]
)
def test_counts_match_numpy_at_block_boundaries(n, layout):
  rng = np.random.default_rng(n)
  keys = rng.integers(0, 2**32, n, dtype=np.uint32)
  keys[: n // 3] = keys[0]  # repeated keys
  ts = np.array([0, keys[0], rng.integers(0, 2**32), 2**32 - 1], np.uint32)
  got = jax.jit(lambda k, t: masks._counts(k, t))(jnp.asarray(keys), jnp.asarray(ts))
  assert np.asarray(got).tolist() == [int((keys >= t).sum()) for t in ts]


@pytest.mark.parametrize("rows", [15, 16])
def test_count_layout_columns_leave_a_short_tail(rows, layout):
  for n in range(0, 2000):
    c = masks._columns(n, rows)
    assert c * rows <= n and n - c * rows < 5 * rows
    if layout == "cpu":
      assert c == 0 or c % 4 == 2
    else:
      assert c == n // rows


@pytest.mark.parametrize("n", [3_000, 40_000, 40_960, 100_003])
def test_search_and_tie_cut_match_reference_with_each_layout(n, layout):
  x = np.random.default_rng(n).normal(size=n).astype(np.float32)
  x = np.round(x * 20) / 20  # many ties, so the tie cut decides
  topk = jax.jit(lambda s, k: masks.topk_mask(s, k))  # a fresh trace for this layout
  for k in (1, n // 10, n // 2, n - 1):
    np.testing.assert_array_equal(np.asarray(topk(x, k)), _reference_topk(x, k))


def test_misleading_sample_falls_back_to_the_full_range():
  # The strided sample sees only the even entries, which are all larger than the odd ones,
  # so its bracket misses the answer: the result must still be exact.
  n = 4 * masks.SAMPLE
  x = np.random.default_rng(0).random(n).astype(np.float32)
  x[:: n // masks.SAMPLE] += 10.0
  for k in (1, n // 8, n // 2, n - 1):
    got = masks.topk_mask(jnp.asarray(x), k)
    np.testing.assert_array_equal(np.asarray(got), _reference_topk(x, k))


def test_kth_largest_key_over_the_whole_uint32_range(layout):
  rng = np.random.default_rng(1)
  keys = rng.integers(0, 2**32, 50_000, dtype=np.uint32)
  keys[:100] = 2**32 - 1
  keys[100:200] = 0
  ranked = np.sort(keys)[::-1]
  for k in (1, 100, 101, 25_000, 49_800, 49_801, 50_000):
    assert int(masks.kth_largest_key(jnp.asarray(keys), k)) == ranked[k - 1]


@settings(max_examples=20)
@given(st.integers(0, 2**16), st.floats(0.0, 1.0), st.sampled_from([0.0, 0.01, 0.5]))
def test_large_leaf_with_nans_and_zeros_matches_reference(seed, frac_k, frac_special):
  rng = np.random.default_rng(seed)
  n = 70_001
  x = (rng.normal(size=n) * 0.02).astype(np.float32)
  special = rng.random(n) < frac_special
  x[special] = rng.choice(np.array([0.0, np.nan], np.float32), special.sum())
  k = int(frac_k * n)
  m = jax.jit(masks.topk_mask)(jnp.asarray(x), k)
  np.testing.assert_array_equal(np.asarray(m), _reference_topk(x, k))


def test_ties_broken_by_lowest_index_and_deterministic():
  m = masks.topk_mask(jnp.zeros(10), 3)
  assert np.flatnonzero(np.asarray(m)).tolist() == [0, 1, 2]
  m2 = jax.jit(masks.topk_mask)(jnp.zeros(100_000), 7)
  assert np.flatnonzero(np.asarray(m2)).tolist() == list(range(7))


def test_nan_scores_rank_lowest_and_count_stays_exact():
  s = jnp.array([1.0, jnp.nan, 3.0, jnp.nan, -jnp.inf, 2.0])
  m = masks.topk_mask(s, 4)
  assert int(m.sum()) == 4
  assert np.asarray(m).tolist() == [True, False, True, False, True, True]
  big = jnp.full((50_000,), jnp.nan).at[:10].set(1.0)
  assert int(masks.topk_mask(big, 25).sum()) == 25


def test_sparsity_rounding_half_to_even():
  assert int(masks.num_to_keep(10, 0.25)) == 8  # round(2.5) = 2
  assert int(masks.num_to_keep(10, 0.35)) == 6  # round(3.5) = 4


@settings(max_examples=12)
@given(st.integers(1, 6), st.sampled_from([(1, 4), (2, 4), (3, 4), (1, 2), (4, 8)]), sparsities)
def test_n_of_m_exact_per_group(rows, nm, seed_s):
  n, m = nm
  s = np.random.default_rng(int(seed_s * 1e6)).normal(size=(m * 3, rows)).astype(np.float32)
  mask = np.asarray(jax.jit(structures.n_of_m(n, m).make)(s, 0.5))
  groups = mask.reshape(3, m, rows)
  assert (groups.sum(axis=1) == n).all()
  dense = np.asarray(structures.n_of_m(n, m).make(s, 0.0))
  assert dense.all()  # target 0 keeps the leaf dense


def test_n_of_m_conv_axis_is_input_channels():
  s = np.random.default_rng(0).normal(size=(3, 3, 8, 5)).astype(np.float32)
  mask = np.asarray(structures.n_of_m(2, 4).make(s, 0.5))
  assert (mask.reshape(3, 3, 2, 4, 5).sum(axis=3) == 2).all()


@given(st.sampled_from([(2, 2), (1, 4), (4, 1)]), sparsities, st.integers(0, 1000))
def test_block_exact_block_count(bshape, sparsity, seed):
  s = np.random.default_rng(seed).normal(size=(8, 8)).astype(np.float32)
  mask = np.asarray(structures.block(bshape).make(s, sparsity))
  nb = 64 // (bshape[0] * bshape[1])
  kept_blocks = _kept(nb, sparsity, traced=False)
  assert mask.sum() == kept_blocks * bshape[0] * bshape[1]
  tiles = mask.reshape(8 // bshape[0], bshape[0], 8 // bshape[1], bshape[1])
  assert ((tiles.all(axis=(1, 3))) | (~tiles.any(axis=(1, 3)))).all()  # whole tiles only


@settings(max_examples=12)
@given(st.integers(2, 20), sparsities, st.integers(0, 1000))
def test_channels_exact_channel_count(c, sparsity, seed):
  s = np.random.default_rng(seed).normal(size=(3, 3, 4, c)).astype(np.float32)
  mask = np.asarray(jax.jit(structures.channels().make)(s, sparsity))
  per_channel = mask.reshape(-1, c)
  assert (per_channel.all(0) | ~per_channel.any(0)).all()
  assert per_channel.all(0).sum() == _kept(c, sparsity)


@settings(max_examples=12)
@given(shapes, sparsities, st.integers(0, 1000))
def test_within_axis_exact_per_slice(shape, sparsity, seed):
  s = np.random.default_rng(seed).normal(size=shape + (5,)).astype(np.float32)
  mask = np.asarray(jax.jit(structures.unstructured(within=-1).make)(s, sparsity))
  per = int(np.prod(shape))
  assert (mask.reshape(-1, 5).sum(0) == _kept(per, sparsity)).all()


@settings(max_examples=12)
@given(shapes, st.integers(0, 1000))
def test_pack_roundtrip(shape, seed):
  m = np.random.default_rng(seed).random(shape) < 0.3
  packed = masks.pack(m)
  assert packed.dtype == jnp.uint8 and packed.size == -(-m.size // 8)
  np.testing.assert_array_equal(np.asarray(masks.unpack(packed, shape)), m)


@pytest.mark.parametrize(
  "structure, shape, match",
  [
    (structures.n_of_m(2, 4), (6, 3), "not divisible by 4"),
    (structures.block((2, 2)), (3, 4), "not divisible"),
    (structures.channels(), (5,), "at least 2 dimensions"),
    (structures.n_of_m(5, 4), (8, 2), "0 < n <= m"),
  ],
)
def test_structure_validation_errors(structure, shape, match):
  with pytest.raises(ValueError, match=match):
    structure.validate(shape, "Dense_0/kernel")


def test_unknown_structure_lists_valid():
  with pytest.raises(ValueError, match="n_of_m"):
    structures.get("diagonal")


@pytest.mark.parametrize("shape, sparsity", [((10,), 0.3), ((4, 6), 0.5), ((3, 8), 0.9)])
def test_make_mask_defaults_to_unstructured_and_uses_the_given_structure(shape, sparsity):
  scores = jax.random.normal(jax.random.key(0), shape)
  default = masks.make_mask(scores, sparsity)
  np.testing.assert_array_equal(default, structures.unstructured().make(scores, sparsity))
  per_row = masks.make_mask(scores, sparsity, structures.unstructured(within=0))
  np.testing.assert_array_equal(per_row, structures.unstructured(within=0).make(scores, sparsity))
  assert int(default.sum()) == _kept(scores.size, sparsity, traced=False)
