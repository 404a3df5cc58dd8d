"""Exact mask makers: keep exactly k entries of a score array, and 1-bit mask packing.

Selection never sorts a large leaf. Scores are mapped to order-preserving unsigned 32-bit
keys and the k-th largest key is found by counting passes over the leaf: a small sorted
sample brackets it, and each pass counts four thresholds at once, shrinking the range ~5x
(about 10 passes for a 4M-entry leaf). The mask keeps every key above it and, among keys
equal to it, the lowest flat indices. Small leaves (≤ `SORT_LIMIT` entries) take the k-th
key from a sort instead; both paths return identical masks. ``k`` may be a traced value, so
a changing sparsity never retraces.

Backends. The algorithm is the same everywhere; layouts that only pay off on XLA:CPU are
chosen with ``jax.default_backend() == "cpu"`` (at trace time), each with its measurement
in benchmarks/RESULTS.md:

* kept everywhere, as algorithmic choices: four thresholds per counting pass packed as
  8-bit fields of one uint32 (fewer passes over memory, which bounds a pass on any
  backend), summed over 15 then 16 rows so no field overflows; the tie cut that scans one
  block instead of a cumulative sum over the leaf, run unconditionally (no ``lax.cond``);
* CPU only: the column count of the ``15 x c`` counting view (``c`` = 2 mod 4, see
  `_columns`; elsewhere ``c = n // 15``);
* GPU only: the k-th key comes from `_select_radix`, a fixed number of counting passes,
  instead of the search loop, because XLA:GPU copies a ``while_loop``'s condition to the
  host and waits for it after every iteration.

All give identical results; tests run every backend's variant on CPU too.
"""

from __future__ import annotations

import decimal
import fractions
import math
import numbers
import operator
from collections.abc import Sequence
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
  """Columns ``c <= n / rows`` of the ``rows x c`` view that a counting pass sums.

  On XLA:CPU, ``c`` is the largest with ``c % 4 == 2`` (0 if none): a sum over ``rows`` rows
  of ``c`` columns ran 2-5x slower when ``c`` was odd or a multiple of 8 than when it was
  2 mod 4 (15 x 629145 took 5.6x as long as 15 x 629142; benchmarks/RESULTS.md). That is a
  property of XLA:CPU's vectorised loops, not of the algorithm, so other backends take the
  plain ``n // rows``. The few entries left over are summed apart either way.
  """
  c = n // rows
  if jax.default_backend() != "cpu":
    return c
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
  if jax.default_backend() == "gpu":
    return _select_radix(keys, k)
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


_RADIX_BITS = 4  # bits of the answer fixed per pass by `_select_radix`


def _select_radix(keys: jax.Array, k: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """`_select` in a fixed number of passes, with no loop whose trip count depends on data.

  Each pass fixes the next `_RADIX_BITS` bits of the answer, most significant first: it
  counts the keys at or above each of the ``2**bits - 1`` thresholds that split the current
  bucket, and the answer's digit is the number of thresholds that still keep ``>= k``
  (counts fall as the threshold grows). 32 bits take ``ceil(32 / bits)`` passes. Used on
  GPUs, where XLA runs a ``while_loop`` by copying its condition to the host and blocking
  on it after every iteration: the ~10 iterations of the sample-and-bracket search made
  a RigL update cost 14x a dense step on an H200 (benchmarks/RESULTS.md). Eight passes
  with 15 thresholds each read the keys eight times and never wait for the host.
  """
  n = keys.shape[0]
  widths = [_RADIX_BITS] * (32 // _RADIX_BITS)
  if 32 % _RADIX_BITS:
    widths.insert(0, 32 % _RADIX_BITS)
  base = jnp.uint32(0)  # the answer's bits fixed so far (lower bits zero)
  at_lo, above = jnp.int32(n), jnp.int32(0)  # count(>= base), count(>= top of the bucket)
  shift = 32
  for w in widths:
    shift -= w
    # base has zeros below shift + w, so no threshold wraps past 2**32 - 1.
    ts = base + (jnp.arange(1, 1 << w, dtype=jnp.uint32) << shift)
    counts = jnp.sum(keys[:, None] >= ts, axis=0, dtype=jnp.int32)  # one fused pass
    digit = jnp.sum(counts >= k, dtype=jnp.int32)
    bounds = jnp.concatenate([at_lo[None], counts, above[None]])
    at_lo, above = bounds[digit], bounds[digit + 1]
    base = base + (digit.astype(jnp.uint32) << shift)
  return base, at_lo, above


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
  `_BLOCK`, find the block where the running count reaches ``room``, then scan only that
  block of ``keys``. (A CPU-only layout of 16 interleaved int16 partial sums per block was
  measured again at 0.62-1.00x the plain sum, so every backend sums each block directly;
  benchmarks/selection_layout.py --tie-cut.)
  """
  n = keys.shape[0]
  size = min(_BLOCK, n)
  main = n - n % size
  ties = keys[:main] == t
  per_block = jnp.sum(ties.reshape(-1, size), axis=-1, dtype=jnp.int32)
  if main < n:
    per_block = jnp.append(per_block, jnp.sum(keys[main:] == t, dtype=jnp.int32))
  running = jnp.cumsum(per_block)
  b = jnp.minimum(jnp.sum(running < room, dtype=jnp.int32), per_block.shape[0] - 1)
  need = room - jnp.where(b > 0, running[b - 1], 0)
  start = b * size
  first = jnp.minimum(start, n - size)  # the last block is read as the final `size` entries
  col = first + jnp.arange(size, dtype=jnp.int32)
  hits = (jax.lax.dynamic_slice(keys, (first,), (size,)) == t) & (col >= start)
  j = jnp.sum(jnp.cumsum(hits, dtype=jnp.int32) < need, dtype=jnp.int32)  # the need-th tie
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
  return topk_keys_mask(sortable_keys(scores).reshape(-1), k).reshape(shape)


def topk_keys_mask(keys: jax.Array, k: jax.Array | int) -> jax.Array:
  """`topk_mask` of flat `sortable_keys` (so a caller that stacks keys copies them once).

  Example:
    >>> import jax.numpy as jnp
    >>> topk_keys_mask(jnp.array([3, 9, 9, 1], jnp.uint32), 2).tolist()
    [False, True, True, False]
  """
  n = keys.shape[0]
  if n == 0:
    return jnp.zeros(0, bool)
  k = jnp.clip(jnp.asarray(k, jnp.int32), 0, n)
  t, _, above = _select(keys, jnp.maximum(k, 1))
  # Keep every key above t and the first k - above of the keys equal to t. (Cutting the ties
  # unconditionally is cheaper on XLA:CPU than a lax.cond that skips it when all fit.)
  ties = keys == t
  return (keys > t) | (ties & (jnp.arange(n, dtype=jnp.int32) < _tie_cut(keys, t, k - above)))


_MAX_ENTRIES = 2**31 - 1  # int32 flat indexing


def _decimal(sparsity: Any) -> fractions.Fraction:
  """The exact rational value of a concrete scalar sparsity, as written in decimal."""
  if isinstance(sparsity, numbers.Rational):  # int, bool, Fraction
    return fractions.Fraction(sparsity)
  if isinstance(sparsity, decimal.Decimal):
    return fractions.Fraction(sparsity)
  value = np.asarray(sparsity)[()]
  if isinstance(value, np.integer | np.bool_):
    return fractions.Fraction(int(value))
  f = float(value)
  if math.isnan(f):
    raise ValueError(
      f"sparsity is NaN (got {sparsity!r}); expected a fraction in [0, 1], "
      "e.g. num_to_keep(n, 0.9)."
    )
  if math.isinf(f):
    return fractions.Fraction(1 if f > 0 else -1)
  # The shortest decimal string that round-trips in the value's own dtype: 0.9, not the
  # binary 0.90000000000000002220446... (float64) or 0.89999997615814208984375 (float32).
  return fractions.Fraction(str(value))


def _u64_add(hi: jax.Array, lo: jax.Array, add_hi: jax.Array, add_lo: jax.Array):
  """(hi, lo) + (add_hi, add_lo) for unsigned 64-bit values held as two uint32 words."""
  low = lo + add_lo
  return hi + add_hi + (low < lo).astype(jnp.uint32), low


def _u64_shr_low(hi: jax.Array, lo: jax.Array, shift: jax.Array) -> jax.Array:
  """Low 32 bits of (hi, lo) >> shift, for 1 <= shift <= 63 (no shift by 32 or more)."""
  a = jnp.clip(shift, 1, 31)
  b = jnp.clip(shift.astype(jnp.int32) - 32, 0, 31).astype(jnp.uint32)
  return jnp.where(shift < 32, (lo >> a) | (hi << (32 - a)), hi >> b)


def _removed_traced(n: int, sparsity: jax.Array) -> jax.Array:
  """``round(s * n)`` (half to even) for the float32 value s of ``sparsity``, computed
  exactly in 32-bit integers, clamped to [0, n] (NaN and s <= 0 remove nothing)."""
  bits = jax.lax.bitcast_convert_type(jnp.asarray(sparsity, jnp.float32), jnp.uint32)
  negative = (bits >> 31) == 1
  magnitude = bits & jnp.uint32(0x7FFFFFFF)
  exponent = magnitude >> 23
  fraction = magnitude & jnp.uint32(0x7FFFFF)
  # s = mantissa * 2**-shift exactly; subnormals have no implicit bit and exponent 1.
  mantissa = jnp.where(exponent == 0, fraction, fraction | jnp.uint32(0x800000))  # < 2**24
  shift = (150 - jnp.maximum(exponent, 1).astype(jnp.int32)).clip(1, 56).astype(jnp.uint32)
  # product = mantissa * n < 2**55, from 16-bit halves (each partial product fits in 32 bits).
  m_hi, m_lo = mantissa >> 16, mantissa & jnp.uint32(0xFFFF)
  n_hi, n_lo = jnp.uint32(n >> 16), jnp.uint32(n & 0xFFFF)
  middle = m_hi * n_lo + m_lo * n_hi  # < 2**24 + 2**31
  hi, lo = _u64_add(m_hi * n_hi, m_lo * n_lo, middle >> 16, middle << 16)
  # Round half to even: (product + 2**(shift-1) - 1 + q_odd) >> shift, q = product >> shift.
  # A shift of 56 or more leaves product / 2**shift < 1/2: the result is 0 either way.
  q_odd = _u64_shr_low(hi, lo, shift) & 1
  half = shift - 1  # 2**half - 1 as two words
  one = jnp.uint32(1)
  half_lo = jnp.where(half < 32, (one << jnp.minimum(half, 31)) - 1, jnp.uint32(0xFFFFFFFF))
  high = jnp.clip(half.astype(jnp.int32) - 32, 0, 31).astype(jnp.uint32)
  half_hi = jnp.where(half < 32, jnp.uint32(0), (one << high) - 1)
  hi, lo = _u64_add(hi, lo, half_hi.astype(jnp.uint32), half_lo)
  hi, lo = _u64_add(hi, lo, jnp.uint32(0), q_odd)
  removed = _u64_shr_low(hi, lo, shift).astype(jnp.int32)
  removed = jnp.where(magnitude >= jnp.uint32(0x3F800000), n, removed)  # s >= 1 (and inf)
  return jnp.where(negative | (magnitude > jnp.uint32(0x7F800000)), 0, removed)  # s < 0, NaN


def num_to_keep(n: int, sparsity: Any) -> jax.Array | np.int32:
  """Entries kept at ``sparsity`` among ``n``: exactly ``n - round(s * n)`` (half to even).

  The count is exact for every leaf size int32 indexing allows (``n < 2**31``), with no
  float rounding of the product, and clamped to [0, n] (s >= 1 keeps 0, s <= 0 keeps n):

  * A concrete sparsity (Python number, NumPy scalar, or an untraced 0-d array) is taken at
    the decimal value it prints as (``0.9`` means 9/10) and the count is computed on the
    host; the result is a concrete ``np.int32``. NaN raises a ``ValueError``.
  * A traced sparsity (under ``jit``, a schedule, ``inject_hyperparams``) is exact with
    respect to its **float32 value** s_f32: ``n - round(s_f32 * n)`` with the real product,
    computed in 32-bit integer arithmetic (no x64 needed). float32(0.9) is
    0.89999997615814208984375, so for n = 2**26 a traced 0.9 keeps 6,710,888 entries while
    a Python 0.9 keeps 6,710,886; the two rules agree whenever the float32 rounding of s
    does not cross a rounding boundary of s * n. A traced NaN keeps all n entries. Pass a
    Python float for decimal exactness.

  Args:
    n: number of entries (a static Python int, ``0 <= n < 2**31``).
    sparsity: fraction removed, scalar or array (elementwise when traced).

  Returns:
    The kept count as int32: ``np.int32`` for a concrete scalar sparsity, else a jax array.

  Example:
    >>> int(num_to_keep(2**26, 0.9)), int(jax.jit(lambda s: num_to_keep(2**26, s))(0.9))
    (6710886, 6710888)
    >>> int(num_to_keep(10, 0.25)), int(num_to_keep(10, 0.35))  # 2.5 -> 2, 3.5 -> 4
    (8, 6)
  """
  n = operator.index(n)
  if not 0 <= n <= _MAX_ENTRIES:
    raise ValueError(
      f"num_to_keep needs 0 <= n < 2**31 (int32 indexing); got n={n:,}. Split the leaf, "
      "e.g. prune it as several smaller leaves."
    )
  if not isinstance(sparsity, jax.core.Tracer) and np.ndim(sparsity) == 0:
    s = _decimal(sparsity)
    return np.int32(n - min(max(round(s * n), 0), n))
  return jnp.int32(n) - _removed_traced(n, sparsity)


def num_to_keep_many(ns: Sequence[int], sparsities: Sequence[Any]) -> jax.Array:
  """`num_to_keep` of many leaves as one int32 vector: entry i is ``num_to_keep(ns[i], s_i)``.

  Traced sparsities are counted by one vectorised program instead of one per leaf (the
  exact integer rounding is ~40 operations, which a model with hundreds of leaves would
  otherwise repeat hundreds of times); concrete ones are counted on the host, as
  `num_to_keep` does.

  Example:
    >>> num_to_keep_many([10, 100], [0.25, jnp.float32(0.5)]).tolist()
    [8, 50]
  """
  if len(ns) != len(sparsities):
    raise ValueError(
      f"num_to_keep_many needs one sparsity per size; got {len(ns)} sizes and "
      f"{len(sparsities)} sparsities."
    )
  concrete = np.array(
    [not isinstance(s, jax.core.Tracer) and np.ndim(s) == 0 for s in sparsities], bool
  )
  host = np.array(
    [num_to_keep(n, s) if c else 0 for n, s, c in zip(ns, sparsities, concrete, strict=True)],
    np.int32,
  )
  if concrete.all():
    return jnp.asarray(host)
  for n in ns:
    num_to_keep(n, 0.0)  # checks the size
  sizes = np.asarray(ns, np.int64)
  svec = jnp.stack([jnp.asarray(s, jnp.float32).reshape(()) for s in sparsities])
  traced = jnp.asarray(sizes, jnp.int32) - _removed_traced(sizes, svec)
  return jnp.where(concrete, host, traced)


def make_mask(scores: jax.Array, sparsity: jax.Array | float, structure: Any = None) -> jax.Array:
  """Mask for one leaf: exact count at ``sparsity`` under ``structure`` (default unstructured).

  Args:
    scores: the leaf's scores (higher = keep).
    sparsity: fraction of entries removed (may be traced).
    structure: a `jaxprune.structures` object (anything with ``make(scores, sparsity)``);
      None keeps any ``n - round(sparsity * n)`` entries, as ``structures.unstructured()``.

  Example:
    >>> import jax.numpy as jnp
    >>> m = make_mask(jnp.arange(10.0), 0.3)
    >>> int(m.sum()), bool(m[0])
    (7, False)
  """
  if structure is None:
    return topk_mask(scores, num_to_keep(scores.size, sparsity))
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
