"""Exact kept counts n - round(s * n) for leaves of up to 2**31 - 1 entries.

A concrete sparsity is exact for its decimal value; a traced one for its float32 value. Both
are checked against `fractions.Fraction` references without building large arrays, except
one real mask of 2**24 + 1 entries.
"""

from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxprune import masks

LARGE = [2**24 + 1, 5 * 10**7 + 1, 10**8 + 7, 2**26]
SIZES = st.sampled_from(LARGE) | st.integers(0, 2**31 - 1)
SPARSITIES = st.floats(0.0, 1.0) | st.sampled_from([0.1, 0.25, 0.35, 0.5, 0.9, 0.95, 0.99, 0.999])

traced_keep = jax.jit(masks.num_to_keep, static_argnums=0)


def _reference(n: int, s: Fraction) -> int:
  return n - min(max(round(s * n), 0), n)  # round() of a Fraction is half to even


@settings(max_examples=300)
@given(SIZES, SPARSITIES)
def test_concrete_sparsity_is_exact_for_its_decimal_value(n, s):
  got = masks.num_to_keep(n, s)
  assert isinstance(got, np.int32)
  assert int(got) == _reference(n, Fraction(str(s)))


@settings(max_examples=200)
@given(st.sampled_from(LARGE + [0, 1, 10, 12_345, 2**31 - 1]), SPARSITIES)  # n is static
def test_traced_sparsity_is_exact_for_its_float32_value(n, s):
  assert int(traced_keep(n, s)) == _reference(n, Fraction(float(np.float32(s))))


@pytest.mark.parametrize("n", LARGE + [1, 10, 2**31 - 1])
def test_traced_count_over_many_float32_values_and_exact_ties(n):
  # One traced call per size over an array of sparsities: random values, values whose
  # product with n is an integer or lies halfway between two (ties), and edge cases.
  rng = np.random.default_rng(n)
  k = rng.integers(0, n + 1, 2000)
  s = np.concatenate(
    [
      rng.random(4000),
      k / n,
      (k + 0.5) / n,
      np.arange(1, 200) / 256,  # exact binary fractions: exact ties for even n
      [0.0, -0.0, 1e-45, 1e-40, 1.2e-38, 2**-25, 0.5, 1 - 2**-24, 1.0, 1.5, -0.25],
    ]
  ).astype(np.float32)
  got = np.asarray(traced_keep(n, jnp.asarray(s)))
  want = [_reference(n, Fraction(float(x))) for x in s]
  np.testing.assert_array_equal(got, want)


def test_the_reported_counts():
  assert int(masks.num_to_keep(100_000_007, 0.9)) == 10_000_001
  assert int(masks.num_to_keep(2**26, 0.9)) == 6_710_886
  assert int(masks.num_to_keep(2**26, np.float32(0.9))) == 6_710_886  # prints as 0.9
  assert int(traced_keep(2**26, 0.9)) == 6_710_888  # float32(0.9) = 0.89999997615...
  assert int(traced_keep(2**26, 0.75)) == int(masks.num_to_keep(2**26, 0.75)) == 2**24


def test_out_of_range_sparsities_clamp_and_nan():
  n = 10**8 + 7
  for s in (1.0, 1.5, float("inf")):
    assert int(masks.num_to_keep(n, s)) == 0 and int(traced_keep(n, s)) == 0
  for s in (0.0, -0.0, -0.5, float("-inf")):
    assert int(masks.num_to_keep(n, s)) == n and int(traced_keep(n, s)) == n
  assert int(traced_keep(n, float("nan"))) == n  # traced NaN removes nothing
  with pytest.raises(ValueError, match="NaN"):
    masks.num_to_keep(n, float("nan"))


def test_leaf_sizes_beyond_int32_indexing_are_refused():
  with pytest.raises(ValueError, match=r"n=2,147,483,648"):
    masks.num_to_keep(2**31, 0.5)


def test_real_mask_of_2_pow_24_plus_1_entries_keeps_the_exact_count():
  n = 2**24 + 1  # float32 cannot hold n: the old float32 product kept 4,194,305 here
  scores = jax.random.normal(jax.random.key(0), (n,))
  mask = jax.jit(masks.make_mask)(scores, 0.75)  # traced sparsity, exact in float32
  assert int(mask.sum()) == n - round(Fraction(3, 4) * n) == 4_194_304
  s, m = np.asarray(scores), np.asarray(mask)
  assert s[m].min() >= s[~m].max()
