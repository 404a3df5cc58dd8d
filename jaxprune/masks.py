"""Exact mask makers: keep exactly k entries of a score array, and 1-bit mask packing.

Selection never sorts a large leaf. Scores are mapped to order-preserving unsigned 32-bit
keys and the k-th largest key is found by bisection on the key (counting passes over the
leaf, in a range bracketed by a small sorted sample); the mask keeps every key above it
and, among keys equal to it, the lowest flat indices. Small
leaves (≤ `SORT_LIMIT` entries) take the k-th key from a sort instead; both paths return
identical masks. ``k`` may be a traced value, so a changing sparsity never retraces.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

PyTree = Any
SAMPLE = 1 << 14
SORT_LIMIT = 2 * SAMPLE  # larger leaves are sampled with a stride of at least 2


def sortable_keys(scores: jax.Array) -> jax.Array:
  """Maps float scores to uint32 keys with the same order (NaN sorts lowest, −0 = +0).

  Example:
    >>> import jax.numpy as jnp
    >>> k = sortable_keys(jnp.array([-1.0, 0.0, 2.0, jnp.nan]))
    >>> [int(i) for i in jnp.argsort(k)]
    [3, 0, 1, 2]
  """
  s = jnp.asarray(scores, jnp.float32)
  s = jnp.where(jnp.isnan(s), -jnp.inf, s)
  s = jnp.where(s == 0, jnp.float32(0), s)
  bits = jax.lax.bitcast_convert_type(s, jnp.uint32)
  negative = (bits >> 31) == 1
  # NaN became -inf, whose key is 0x007FFFFF; put it strictly below every real key.
  key = jnp.where(negative, ~bits, bits | jnp.uint32(0x80000000))
  return jnp.where(jnp.isnan(jnp.asarray(scores, jnp.float32)), jnp.uint32(0), key)


def _count_at_least(keys: jax.Array, t: jax.Array) -> jax.Array:
  """Exact ``sum(keys >= t)`` as int32. XLA:CPU vectorises float sums better than integer
  ones, and a float32 sum of 0/1 values is exact while the total stays below 2**24."""
  hits = keys >= t
  if keys.size < (1 << 24):
    return jnp.sum(hits.astype(jnp.float32)).astype(jnp.int32)
  return jnp.sum(hits, dtype=jnp.int32)


def _bisect(keys: jax.Array, k: jax.Array, lo: jax.Array, hi: jax.Array) -> jax.Array:
  """Largest t in [lo, hi] with count(keys >= t) >= k, given that lo satisfies it."""

  def cond(carry):
    lo, hi = carry
    return lo < hi

  def body(carry):
    lo, hi = carry
    mid = lo + (hi - lo) // 2 + (hi - lo) % 2  # upper middle, so the loop always shrinks
    ok = _count_at_least(keys, mid) >= k
    return jnp.where(ok, mid, lo), jnp.where(ok, hi, mid - 1)

  return jax.lax.while_loop(cond, body, (lo, hi))[0]


def kth_largest_key(keys: jax.Array, k: jax.Array | int) -> jax.Array:
  """Returns the k-th largest value of a flat uint32 array, for 1 ≤ k ≤ n (traceable k).

  Small arrays are sorted. Large ones are bisected on the key: a strided sample of
  `SAMPLE` keys brackets the answer first (checked with two exact counts; a bracket that
  misses falls back to the full key range), so a typical leaf needs ~20 counting passes
  instead of 32. The result is exact either way.
  """
  n = keys.shape[0]
  k = jnp.clip(jnp.asarray(k, jnp.int32), 1, max(n, 1))
  if n <= SORT_LIMIT:
    return jnp.sort(keys)[n - k]
  stride = max(n // SAMPLE, 1)
  sample = jnp.sort(keys[::stride])
  m = sample.shape[0]
  # Expected rank of the answer in the sample, widened by ~5 binomial standard deviations.
  q = (n - k).astype(jnp.float32) / n * m
  margin = 5.0 * jnp.sqrt(jnp.maximum(q * (1 - q / m), 1.0)) + 2.0
  lo = sample[jnp.clip(jnp.floor(q - margin).astype(jnp.int32), 0, m - 1)]
  hi = sample[jnp.clip(jnp.ceil(q + margin).astype(jnp.int32), 0, m - 1)]
  lo_ok = _count_at_least(keys, lo) >= k  # the answer is >= lo
  hi_ok = jnp.sum(keys > hi, dtype=jnp.int32) < k  # the answer is <= hi
  lo = jnp.where(lo_ok & hi_ok, lo, jnp.uint32(0))
  hi = jnp.where(lo_ok & hi_ok, hi, jnp.uint32(0xFFFFFFFF))
  return _bisect(keys, k, lo, hi)


def topk_mask(scores: jax.Array, k: jax.Array | int) -> jax.Array:
  """Boolean mask keeping exactly ``k`` highest-scoring entries of ``scores``.

  Ties at the threshold are broken by lowest flat index; NaN scores rank lowest. ``k`` is
  clipped to [0, n] and may be traced.

  Args:
    scores: array of any shape (cast to float32 for ranking).
    k: number of entries to keep.

  Returns:
    A bool array of ``scores.shape`` with exactly ``clip(k, 0, n)`` True entries.

  Example:
    >>> import jax.numpy as jnp
    >>> topk_mask(jnp.array([0.5, 2.0, 2.0, 1.0]), 2)
    Array([False,  True,  True, False], dtype=bool)
  """
  shape = jnp.shape(scores)
  keys = sortable_keys(scores).reshape(-1)
  n = keys.shape[0]
  if n == 0:
    return jnp.zeros(shape, bool)
  k = jnp.clip(jnp.asarray(k, jnp.int32), 0, n)
  t = kth_largest_key(keys, k)
  above = keys > t
  ties = keys == t
  room = k - jnp.sum(above, dtype=jnp.int32)
  # Usually every tie fits (continuous scores): skip the cumulative sum over the leaf then.
  keep = jax.lax.cond(
    jnp.sum(ties, dtype=jnp.int32) <= room,
    lambda: above | ties,
    lambda: above | (ties & (jnp.cumsum(ties, dtype=jnp.int32) <= room)),
  )
  return keep.reshape(shape)


def num_to_keep(n: int, sparsity: jax.Array | float) -> jax.Array:
  """Entries kept at ``sparsity`` among ``n``: ``n - round(sparsity * n)`` (half to even)."""
  s = jnp.asarray(sparsity, jnp.float32)
  return jnp.int32(n) - jnp.round(s * n).astype(jnp.int32)


def make_mask(scores: jax.Array, sparsity: jax.Array | float, structure: Any = None) -> jax.Array:
  """Mask for one leaf: exact count at ``sparsity`` under ``structure`` (default unstructured).

  Example:
    >>> import jax.numpy as jnp
    >>> m = make_mask(jnp.arange(10.0), 0.3)
    >>> int(m.sum()), bool(m[0])
    (7, False)
  """
  from jaxprune import structures  # local import: structures build on this module

  structure = structures.unstructured() if structure is None else structure
  return structure.make(scores, sparsity)


# ----------------------------------------------------------------------------- packing


def pack(mask: jax.Array) -> jax.Array:
  """Packs a bool mask into uint8 bytes, 1 bit per entry (flattened, little-endian bits).

  Example:
    >>> import jax.numpy as jnp
    >>> pack(jnp.array([True, False, True])).dtype
    dtype('uint8')
  """
  return jnp.packbits(jnp.asarray(mask, bool).reshape(-1), bitorder="little")


def unpack(packed: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """Inverse of `pack` for a mask of ``shape``."""
  n = int(np.prod(shape, dtype=np.int64))
  return jnp.unpackbits(packed, count=n, bitorder="little").astype(bool).reshape(shape)
