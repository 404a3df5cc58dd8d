"""Exact mask makers: keep exactly k entries of a score array, and 1-bit mask packing.

Selection never sorts a large leaf. Scores are mapped to order-preserving unsigned 32-bit
keys and the k-th largest key is found by counting passes over the leaf: a small sorted
sample brackets it, and each pass counts four thresholds at once, shrinking the range ~5x
(about 10 passes for a 4M-entry leaf). The mask keeps every key above it and, among keys
equal to it, the lowest flat indices. Small leaves (≤ `SORT_LIMIT` entries) take the k-th
key from a sort instead; both paths return identical masks. ``k`` may be a traced value, so
a changing sparsity never retraces.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

PyTree = Any
SORT_LIMIT = 2048  # leaves of at most this many entries are sorted
SAMPLE, SAMPLE_MIN, SAMPLE_DIVISOR = 1 << 14, 1024, 64  # sample size: n / 64 in [1024, 16384]
_PARTS = 4  # thresholds counted per pass by `_counts`
_BLOCK = 1024  # tie-cut block size in `_tie_cut`


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


def _sample_size(n: int) -> int:
  return int(np.clip(n // SAMPLE_DIVISOR, SAMPLE_MIN, SAMPLE))


def _columns(n: int, rows: int) -> int:
  """Columns ``c <= n / rows`` with ``c % 4 == 2`` (0 if none): the layout of a row sum.

  On XLA:CPU a sum over ``rows`` rows of ``c`` columns ran 2-5x slower when ``c`` was odd
  or a multiple of 8 than when it was 2 mod 4 (15 x 629145 took 5.6x as long as
  15 x 629142; benchmarks/RESULTS.md). The few entries left over are summed apart.
  """
  c = n // rows
  return max(c - (c - 2) % 4, 0)


def _counts(keys: jax.Array, ts: jax.Array) -> jax.Array:
  """Exact ``[sum(keys >= t) for t in ts]`` as int32, for up to `_PARTS` thresholds, in one
  pass over the flat uint32 ``keys``.

  A pass is limited by memory bandwidth, not arithmetic, so each entry adds its comparison
  bits for all thresholds into one uint32 (8 bits per threshold), summed in blocks of 15 then
  16 rows (at most 240 per field, no carry between fields) before the fields are unpacked.
  Counting four thresholds this way costs about as much as counting one.
  """
  parts = ts.shape[0]
  main = 15 * _columns(keys.shape[0], 15)
  total = jnp.sum(keys[main:, None] >= ts, axis=0, dtype=jnp.int32)
  if not main:
    return total
  shifts = jnp.arange(parts, dtype=jnp.uint32) * 8
  rows = keys[:main].reshape(15, -1)
  packed = sum(((rows >= ts[i]).astype(jnp.uint32) << shifts[i]) for i in range(parts))
  partial = jnp.sum(packed, axis=0, dtype=jnp.uint32)
  cut = 16 * _columns(partial.shape[0], 16)
  if cut:
    summed = jnp.sum(partial[:cut].reshape(16, -1), axis=0, dtype=jnp.uint32)
    partial = jnp.concatenate([summed, partial[cut:]])
  fields = (partial[:, None] >> shifts) & 0xFF
  return total + jnp.sum(fields, axis=0, dtype=jnp.int32)


_MAX_KEY = np.uint32(0xFFFFFFFF)


def _count_pair(keys: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array]:
  """``(count(keys >= t), count(keys > t))`` in one pass."""
  at_least, above = _counts(keys, jnp.stack([t, t + 1]))
  return at_least, jnp.where(t == _MAX_KEY, 0, above)  # t + 1 wrapped to 0


def _select(keys: jax.Array, k: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """The k-th largest key t (1 ≤ k ≤ n), with count(keys >= t) and count(keys > t).

  Arrays of at most `SORT_LIMIT` keys are sorted. Larger ones are searched on the key
  range: a sorted strided sample (n / `SAMPLE_DIVISOR` keys, clipped to [`SAMPLE_MIN`,
  `SAMPLE`]) gives a bracket that the first counting pass checks (a bracket that misses
  falls back to the full key range); every later pass counts `_PARTS` evenly spaced
  thresholds in the range, so it shrinks ~5x per pass: ~10 passes for a 4M-entry leaf.
  All counting runs inside one loop over the materialised keys (XLA would otherwise
  recompute the keys from the scores in every counting fusion outside the loop).
  """
  n = keys.shape[0]
  if n <= SORT_LIMIT:
    t = jnp.sort(keys)[n - k]
    return (t, *_count_pair(keys, t))
  stride = max(n // _sample_size(n), 1)
  sample = jnp.sort(keys[::stride])
  m = sample.shape[0]
  # Expected rank of the answer in the sample, widened by ~5 binomial standard deviations.
  q = (n - k).astype(jnp.float32) / n * m
  margin = 5.0 * jnp.sqrt(jnp.maximum(q * (1 - q / m), 1.0)) + 2.0
  lo = sample[jnp.clip(jnp.floor(q - margin).astype(jnp.int32), 0, m - 1)]
  hi = sample[jnp.clip(jnp.ceil(q + margin).astype(jnp.int32), 0, m - 1)]
  i = jnp.arange(1, _PARTS + 1, dtype=jnp.uint32)

  def body(carry):
    # Invariant once checked: lo <= answer <= hi, at_lo = count(>= lo), above = count(> hi).
    lo, hi, at_lo, above, checked = carry
    width = hi - lo
    split = lo + jnp.minimum(i * (width // (_PARTS + 1) + 1), width)  # in (lo, hi]
    check = jnp.stack([lo, hi + 1, hi + 1, hi + 1])  # hi + 1 wraps only for hi = max
    counts = _counts(keys, jnp.where(checked, split, check))
    # Check pass: keep the bracket if count(>= lo) >= k > count(> hi), else the full range.
    inside = (counts[0] >= k) & (counts[1] < k) & (hi < _MAX_KEY)
    checked_state = jax.tree.map(
      lambda a, b: jnp.where(inside, a, b),
      (lo, hi, counts[0], counts[1]),
      (jnp.uint32(0), _MAX_KEY, jnp.int32(n), jnp.int32(0)),
    )
    # Split pass: counts fall as t grows, so the thresholds that keep >= k form a prefix.
    passed = jnp.sum(counts >= k)
    nxt = jnp.minimum(passed, _PARTS - 1)
    last = passed == _PARTS
    split_state = (
      jnp.concatenate([lo[None], split])[passed],
      jnp.where(last, hi, split[nxt] - 1),
      jnp.concatenate([at_lo[None], counts])[passed],
      jnp.where(last, above, counts[nxt]),
    )
    new = jax.tree.map(lambda a, b: jnp.where(checked, a, b), split_state, checked_state)
    return (*new, jnp.bool_(True))

  init = (lo, hi, jnp.int32(0), jnp.int32(0), jnp.bool_(False))
  lo, _, at_least, above, _ = jax.lax.while_loop(lambda c: ~c[4] | (c[0] < c[1]), body, init)
  return lo, at_least, above


def kth_largest_key(keys: jax.Array, k: jax.Array | int) -> jax.Array:
  """Returns the k-th largest value of a flat uint32 array, for 1 ≤ k ≤ n (traceable k).

  Exact; large arrays are never sorted (see `_select`).

  Example:
    >>> import jax.numpy as jnp
    >>> int(kth_largest_key(jnp.array([5, 1, 9, 7], jnp.uint32), 2))
    7
  """
  n = keys.shape[0]
  return _select(keys, jnp.clip(jnp.asarray(k, jnp.int32), 1, max(n, 1)))[0]


def _tie_cut(keys: jax.Array, t: jax.Array, room: jax.Array) -> jax.Array:
  """Smallest flat index c with exactly ``room`` entries equal to ``t`` in ``keys[:c]``.

  Blocked, so no cumulative sum runs over the whole leaf: count the ties per block of
  `_BLOCK` (16 interleaved int16 partial sums first), find the block where the running
  count reaches ``room``, then scan only that block of ``keys``.
  """
  n = keys.shape[0]
  size = min(_BLOCK, n)
  main = n - n % size
  per_block = jnp.sum(
    jnp.sum((keys[:main] == t).reshape(-1, 16, size // 16), axis=1, dtype=jnp.int16)
    if size % 16 == 0
    else (keys[:main] == t).reshape(-1, size),
    axis=-1,
    dtype=jnp.int32,
  )
  if main < n:
    per_block = jnp.append(per_block, jnp.sum(keys[main:] == t, dtype=jnp.int32))
  running = jnp.cumsum(per_block)
  b = jnp.minimum(jnp.searchsorted(running, room), per_block.shape[0] - 1)
  need = room - jnp.where(b > 0, running[b - 1], 0)
  start = b * size
  first = jnp.minimum(start, n - size)  # the last block is read as the final `size` entries
  col = first + jnp.arange(size, dtype=jnp.int32)
  hits = (jax.lax.dynamic_slice(keys, (first,), (size,)) == t) & (col >= start)
  j = jnp.searchsorted(jnp.cumsum(hits, dtype=jnp.int32), need)  # the need-th tie of the block
  return jnp.where(room > 0, first + j + 1, 0).astype(jnp.int32)


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
  t, _, above = _select(keys, jnp.maximum(k, 1))
  # Keep every key above t and the first k - above of the keys equal to t. (Cutting the ties
  # unconditionally is cheaper on XLA:CPU than a lax.cond that skips it when all fit.)
  ties = keys == t
  keep = (keys > t) | (ties & (jnp.arange(n, dtype=jnp.int32) < _tie_cut(keys, t, k - above)))
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
