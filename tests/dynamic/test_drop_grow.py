"""SET and RigL scores against a NumPy transcription of google-research/rigl's update."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxprune import dynamic, structures
from jaxprune.masks import topk_mask


def reference_update(w, mask, grow, fraction, noise=None):
  """One drop-and-grow update as ``SparseSETOptimizerBase._get_update_op`` does it.

  Drop: keep the ``n_ones - n_prune`` largest |w| + noise among active entries (n_prune
  truncated in float32; ``generic_mask_update`` adds the noise to break ties). Grow: the
  ``n_prune`` largest grow scores among all entries not kept (dropped ones included);
  ties to the lower index, as ``tf.nn.top_k``.
  """
  w, mask, grow = (np.asarray(x).reshape(-1) for x in (w, mask, grow))
  noise = np.zeros(w.size, np.float32) if noise is None else np.asarray(noise).reshape(-1)
  n_ones = int(mask.sum())
  n_prune = int(np.float32(n_ones) * np.float32(fraction))
  n_keep = n_ones - n_prune
  drop_score = np.where(mask, np.abs(w).astype(np.float32) + noise.astype(np.float32), -np.inf)
  mask1 = np.zeros(w.size, bool)
  mask1[np.argsort(-drop_score, kind="stable")[:n_keep]] = True
  lifted = np.where(mask1, grow.min() - 1, grow)
  mask2 = np.zeros(w.size, bool)
  mask2[np.argsort(-lifted, kind="stable")[:n_prune]] = True
  assert not (mask1 & mask2).any()
  return mask1 | mask2


@jax.jit
def _rigl_mask(w, mask, g, fraction):
  scores = dynamic.rigl_scores(
    {"k": w}, grads={"k": g}, masks={"k": mask}, step=0, fraction=fraction
  )["k"]
  return topk_mask(scores, jnp.sum(mask))


@jax.jit
def _rigl_mask_keyed(w, mask, g, fraction, key):
  params, masks = {"a": jnp.ones(3), "k": w}, {"a": None, "k": mask}
  grads = {"a": jnp.ones(3), "k": g}
  scores = dynamic.rigl_scores(params, grads=grads, masks=masks, step=0, fraction=fraction, key=key)
  return scores["a"], topk_mask(scores["k"], jnp.sum(mask))


@jax.jit
def _set_mask(w, mask, key):
  params, masks = {"a": jnp.ones(3), "k": w}, {"a": None, "k": mask}
  scores = dynamic.set_scores(params, masks=masks, step=0, key=key, fraction=0.3)
  return scores["a"], topk_mask(scores["k"], jnp.sum(mask))


def _drop_noise(key, shape, leaf=1, leaves=2):
  """The documented tie-break draw: 1e-5 · tie_noise(drop_keys(key, leaves)[leaf], shape)."""
  k = dynamic.drop_grow.drop_keys(key, leaves)[leaf]
  return np.float32(1e-5) * np.asarray(dynamic.drop_grow.tie_noise(k, shape))


def _random_case(seed, shape=(24, 10), density=0.3):
  rng = np.random.default_rng(seed)
  w = rng.normal(size=shape).astype(np.float32)
  mask = rng.random(shape) < density
  w = np.where(mask, w, 0.0).astype(np.float32)
  g = rng.normal(size=shape).astype(np.float32)
  return w, mask, g


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.3, 0.77, 1.0])
def test_rigl_matches_reference(seed, fraction):
  w, mask, g = _random_case(seed)
  got = np.asarray(_rigl_mask(w, mask, g, fraction))
  want = reference_update(w, mask, np.abs(g), fraction).reshape(w.shape)
  np.testing.assert_array_equal(got, want)
  assert got.sum() == mask.sum()


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("fraction", [0.1, 0.3, 1.0])
def test_rigl_with_tie_break_noise_matches_reference(seed, fraction):
  w, mask, g = _random_case(seed)
  # Quantised weights: many active entries tie in magnitude, so the noise decides the drop.
  w = np.round(w * 2) / 2
  key = jax.random.key(100 + seed)
  dense, got = _rigl_mask_keyed(w, mask, g, fraction, key)  # "k" is leaf 1 of 2
  assert dense is None
  noise = _drop_noise(key, w.shape)
  want = reference_update(w, mask, np.abs(g), fraction, noise).reshape(w.shape)
  np.testing.assert_array_equal(np.asarray(got), want)


@pytest.mark.parametrize("seed", range(4))
def test_set_matches_reference(seed):
  w, mask, _ = _random_case(seed, shape=(7, 33))
  w = np.round(w * 2) / 2  # magnitude ties, broken by the noise
  key = jax.random.key(seed)
  dense, got = _set_mask(w, mask, key)  # "k" is leaf 1 of 2 in tree order
  assert dense is None
  grow = np.asarray(jax.random.uniform(dynamic.drop_grow.leaf_keys(key, 2)[1], w.shape))
  noise = _drop_noise(key, w.shape)
  got = np.asarray(got)
  want = reference_update(w, mask, grow, 0.3, noise).reshape(w.shape)
  np.testing.assert_array_equal(got, want)


def test_drop_ties_break_by_the_key_not_by_index():
  # 40 active weights of equal magnitude, 20 dropped: which 20 depends on the key alone.
  w = jnp.where(jnp.arange(80) % 2 == 0, 0.5, -0.5)
  mask = jnp.arange(80) < 40
  g = jnp.where(mask, 0.0, 1.0)  # the 20 grown come from the inactive half
  dropped = []
  for seed in (0, 0, 1):
    _, new = _rigl_mask_keyed(w, mask, g, 0.5, jax.random.key(seed))
    dropped.append(np.flatnonzero(np.asarray(mask & ~new)))
  np.testing.assert_array_equal(dropped[0], dropped[1])  # same key: same choice
  assert dropped[0].size == dropped[2].size == 20
  assert not np.array_equal(dropped[0], dropped[2])  # another key: another choice
  assert not np.array_equal(dropped[0], np.arange(20, 40))  # not the index order
  # Without a key the ranking is by index (the top-k keeps the lowest): the last 20 go.
  no_key = _rigl_mask(w, mask, g, 0.5)
  np.testing.assert_array_equal(np.flatnonzero(np.asarray(mask & ~no_key)), np.arange(20, 40))


def test_noise_breaks_ties_only():
  # Magnitudes 1e-2 apart: the 1e-5 noise never reorders them. 30 active, 9 dropped (the
  # smallest), 9 grown where the gradient is (10 inactive entries, ties to the lowest index).
  w = jnp.concatenate([jnp.linspace(0.01, 0.3, 30), jnp.zeros(10)])
  mask = jnp.arange(40) < 30
  g = jnp.where(mask, 0.0, 1.0)
  for seed in range(5):
    _, new = _rigl_mask_keyed(w, mask, g, 0.3, jax.random.key(seed))
    assert np.asarray(new).tolist() == [False] * 9 + [True] * 30 + [False]


def test_negative_noise_std_is_rejected():
  params, masks = {"k": jnp.ones(4)}, {"k": jnp.ones(4, bool)}
  with pytest.raises(ValueError, match="noise_std must be >= 0"):
    dynamic.set_scores(params, masks=masks, step=0, key=jax.random.key(0), noise_std=-1.0)
  with pytest.raises(ValueError, match="noise_std must be >= 0"):  # even with no key to use
    dynamic.drop_grow.rigl_scores(params, grads=params, masks=masks, step=0, noise_std=-1.0)
  for make in (dynamic.rigl, dynamic.set_):  # at construction, before any update
    with pytest.raises(ValueError, match="noise_std must be >= 0"):
      make(optax.sgd(0.1), 0.5, end=100, noise_std=float("nan"))


def test_dropped_weight_with_largest_gradient_is_regrown_and_stays_active():
  # Entry 0 is the smallest active weight (dropped) and has the largest gradient (regrown):
  # the reference keeps it as an old connection, so the mask does not change at all.
  w = jnp.array([0.01, 1.0, 2.0, 0.0, 0.0])
  mask = jnp.array([True, True, True, False, False])
  g = jnp.array([9.0, 0.0, 0.0, 1.0, 2.0])
  new = _rigl_mask(w, mask, g, 0.34)
  assert new.tolist() == [True, True, True, False, False]
  want = reference_update(np.asarray(w), np.asarray(mask), np.asarray(g), 0.34)
  assert new.tolist() == want.tolist()


def test_num_to_drop_truncates_like_the_reference():
  assert [int(dynamic.num_to_drop(jnp.int32(10), f)) for f in (0.0, 0.09, 0.1, 0.99)] == [
    0,
    0,
    1,
    9,
  ]
  # float32 product, then truncation: 0.3 * 10 is 3.0000001 in float32, so 3.
  assert int(dynamic.num_to_drop(jnp.int32(10), 0.3)) == int(np.float32(10) * np.float32(0.3))


def test_nonfinite_grow_scores_never_displace_survivors():
  w = jnp.array([1.0, 2.0, 3.0, 0.0, 0.0, 0.0])
  mask = jnp.array([True, True, True, False, False, False])
  grow = jnp.array([0.0, 0.0, 0.0, jnp.inf, jnp.nan, 5.0])
  grow_mask = jax.jit(lambda w, m, g: topk_mask(dynamic.drop_grow_scores(w, m, g, 0.34), 3))
  new = grow_mask(w, mask, grow)  # drop 1 (the 1.0)
  assert new.tolist() == [False, True, True, True, False, False]


def test_cosine_fraction_follows_rigl():
  f = dynamic.cosine(0.3, end=1000)
  assert float(f(0)) == pytest.approx(0.3)
  assert float(f(500)) == pytest.approx(0.15)
  assert float(f(1000)) == 0.0 and float(f(5000)) == 0.0
  assert float(dynamic.cosine(0.2)(12345)) == pytest.approx(0.2)
  with pytest.raises(ValueError, match="end must be a positive int"):
    dynamic.cosine(0.3, end=0)


@pytest.mark.parametrize(
  "structure",
  [structures.unstructured(within=-1), structures.unstructured(within=0), structures.n_of_m(2, 4)],
)
def test_counts_stay_constant_per_slice_and_group(structure):
  rng = np.random.default_rng(0)
  w = jnp.asarray(rng.normal(size=(16, 12)).astype(np.float32))
  mask = jax.jit(lambda s: structure.make(s, 0.5))(jnp.asarray(rng.random((16, 12))))

  @jax.jit
  def update(mask, g):
    s = dynamic.rigl_scores({"k": w}, grads={"k": g}, masks={"k": mask}, step=0, fraction=0.5)
    return structure.make(s["k"], 0.5)

  for _ in range(3):
    new = update(mask, jnp.asarray(rng.normal(size=(16, 12)).astype(np.float32)))
    np.testing.assert_array_equal(np.asarray(new.sum()), np.asarray(mask.sum()))
    if isinstance(structure, structures.Unstructured):
      red = 1 - structure.within % 2  # sum over the other axis: count per slice
      np.testing.assert_array_equal(new.sum(axis=red), mask.sum(axis=red))
    else:
      groups = np.asarray(new).reshape(4, 4, 12).sum(axis=1)
      assert (groups == 2).all()
    assert int((new & ~mask).sum()) > 0  # connections moved
    mask = new


def test_tie_noise_is_spread_and_depends_on_key_and_index():
  a = np.asarray(dynamic.drop_grow.tie_noise(jax.random.key(0), (200, 50)))
  b = np.asarray(dynamic.drop_grow.tie_noise(jax.random.key(1), (200, 50)))
  assert abs(a.mean()) < 0.05 and abs(a.std() - 1) < 0.05 and np.abs(a).max() < np.sqrt(3)
  assert len(np.unique(a)) > 9_900  # distinct per entry, so every tie is broken
  assert np.mean(a == b) < 0.01 and abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < 0.05
