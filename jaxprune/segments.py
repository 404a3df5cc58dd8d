"""Exact top-k masks of many arrays at once: a few selection programs for all of them.

Selecting array by array gives every pruned leaf its own program (sample sort, counting
loop, tie cut), so the compile time of a masked step grew with the number of pruned leaves.
`topk_masks` selects arrays in three groups, each with one program whatever its number of
arrays:

* arrays of at most `masks.SORT_LIMIT` entries are padded to one length, stacked and
  sorted together (the k-th key is read from the sort, as `masks.topk_mask` does);
* arrays of up to `LARGE` entries lay their keys (`masks.sortable_keys`) end to end in one
  buffer of fixed-size blocks, each array (a *segment*) padded to whole blocks. One sorted
  strided sample per segment brackets its k-th key; each counting pass then counts
  `_PARTS` thresholds per segment in one pass over the whole buffer (per block, then summed
  per segment), shrinking every bracket ~5x, until all have converged (on GPUs, a fixed
  number of radix passes instead, as in `masks`). The ties at each threshold are cut at
  the lowest flat indices: per-block tie counts give each segment's one boundary block,
  and only those blocks are scanned entry by entry;
* larger arrays are not copied into the buffer: the copy is one more pass over memory at
  every update, and a model has few of them. They are selected in place, one vmapped
  `masks.topk_keys_mask` per distinct size.

The masks are those of `masks.topk_mask`, entry for entry: exactly ``clip(k, 0, n)`` kept,
ties at the threshold to the lowest flat index, NaN lowest. Padding is NaN (key 0, below
every real key) after the segment's entries, so the k-th largest key of a padded segment
is that of the array and its ties are cut in the same place.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxprune import masks
from jaxprune.masks import (
  _MAX_KEY,
  _PARTS,
  _RADIX_BITS,
  SORT_LIMIT,
  sortable_keys,
  topk_keys_mask,
)

_ROWS, _COLS = 15, 64  # a block: 15 rows (at most 15 per 8-bit field) of 64 columns
_BLOCK = _ROWS * _COLS
LARGE = 1 << 20  # arrays of at least this many entries are selected in place
_SAMPLE_TOTAL = 1 << 16  # sampled keys of all segments together (each in [1024, 16384])


def topk_masks(scores: Sequence[jax.Array], ks: Sequence[Any] | jax.Array) -> list[jax.Array]:
  """Bool masks keeping exactly ``clip(k_i, 0, n_i)`` highest scores of each ``scores[i]``.

  Equal to ``[masks.topk_mask(s, k) for s, k in zip(scores, ks)]``, computed by one
  selection program per group of arrays (small, mid-sized, and each large size).

  Args:
    scores: arrays of any shapes (ranked as float32).
    ks: kept counts, one per array: a sequence of ints or int32 scalars, or one int32
      vector (e.g. from `masks.num_to_keep_many`).

  Returns:
    One bool mask per array, of its shape.

  Example:
    >>> import jax.numpy as jnp
    >>> a, b = topk_masks([jnp.array([0.5, 2.0, 2.0, 1.0]), jnp.arange(4.0)], [2, 3])
    >>> a.tolist(), b.tolist()
    ([False, True, True, False], [False, True, True, True])
  """
  if len(scores) != len(ks):
    raise ValueError(
      f"topk_masks needs one k per array; got {len(scores)} arrays and {len(ks)} counts."
    )
  if not isinstance(ks, jax.Array):
    ks = jnp.asarray([jnp.asarray(k, jnp.int32) for k in ks], jnp.int32).reshape(-1)
  sizes = [math.prod(jnp.shape(s)) for s in scores]
  out: list[Any] = [jnp.zeros(jnp.shape(s), bool) for s in scores]
  groups = [  # (program, the arrays it selects)
    (_sorted_masks, [i for i, n in enumerate(sizes) if 0 < n <= SORT_LIMIT]),
    (_blocked_masks, [i for i, n in enumerate(sizes) if SORT_LIMIT < n < LARGE]),
  ]
  for n in sorted({n for n in sizes if n >= LARGE}):
    groups.append((_stacked_masks, [i for i, m in enumerate(sizes) if m == n]))
  for select, group in groups:
    if not group:
      continue
    idx = np.asarray(group)
    ns = np.asarray([sizes[i] for i in group])
    flat = [jnp.asarray(scores[i], jnp.float32).reshape(-1) for i in group]
    k = jnp.clip(jnp.asarray(ks, jnp.int32)[idx], 0, jnp.asarray(ns, jnp.int32))
    for i, keep in zip(group, select(flat, ns, k), strict=True):
      out[i] = keep.reshape(jnp.shape(scores[i]))
  return out


def _stacked_masks(flat: list[jax.Array], ns: np.ndarray, k: jax.Array) -> list[jax.Array]:
  """Masks of large arrays of one size: `masks.topk_keys_mask`, vmapped over a stack."""
  if len(flat) == 1:
    return [topk_keys_mask(sortable_keys(flat[0]), k[0])]
  keep = jax.vmap(topk_keys_mask)(sortable_keys(jnp.stack(flat)), k)
  return list(keep)


def _sorted_masks(flat: list[jax.Array], ns: np.ndarray, k: jax.Array) -> list[jax.Array]:
  """Masks of small arrays: one sort of all of them, padded to one length."""
  width = int(ns.max())
  rows = sortable_keys(jnp.stack([_pad(x, width) for x in flat]))
  t = jnp.take_along_axis(jnp.sort(rows, axis=1), (width - jnp.maximum(k, 1))[:, None], 1)
  ties = rows == t
  room = k - jnp.sum(rows > t, axis=1, dtype=jnp.int32)
  keep = (rows > t) | (ties & (jnp.cumsum(ties, axis=1, dtype=jnp.int32) <= room[:, None]))
  return [keep[r, :n] for r, n in enumerate(ns)]


class _Layout:
  """Where each segment lies in the block buffer (all static)."""

  def __init__(self, ns: np.ndarray):
    self.blocks = -(-ns // _BLOCK)  # blocks per segment
    self.ends = np.cumsum(self.blocks)
    self.starts = self.ends - self.blocks
    self.owner = np.repeat(np.arange(len(ns)), self.blocks).astype(np.int32)  # block -> segment

  def per_segment(self, per_block: jax.Array) -> jax.Array:
    """Sums of a per-block array ``(blocks, ...)`` over each segment's blocks (exact int32)."""
    running = jnp.cumsum(per_block, axis=0, dtype=jnp.int32)
    running = jnp.concatenate([jnp.zeros_like(running[:1]), running])
    return running[self.ends] - running[self.starts]


def _block_counts(buf: jax.Array, ts: jax.Array) -> jax.Array:
  """``count(keys >= ts[b, j])`` within each block b, as int32 ``(blocks, parts)``.

  As `masks._counts`: the comparison bits of up to `_PARTS` thresholds are packed as 8-bit
  fields of one uint32 and summed over a block's 15 rows before the fields are unpacked.
  """
  out = []
  for first in range(0, ts.shape[1], _PARTS):
    part = ts[:, first : first + _PARTS]
    shifts = jnp.arange(part.shape[1], dtype=jnp.uint32) * 8
    packed = sum(
      (buf >= part[:, j, None, None]).astype(jnp.uint32) << shifts[j] for j in range(part.shape[1])
    )
    fields = (jnp.sum(packed, axis=1, dtype=jnp.uint32)[..., None] >> shifts) & 0xFF
    out.append(jnp.sum(fields, axis=1, dtype=jnp.int32))
  return jnp.concatenate(out, axis=1)


def _pad(x: jax.Array, n: int) -> jax.Array:
  """Flat float scores padded to ``n`` entries with NaN (key 0, below every real key)."""
  return jnp.pad(x, (0, n - x.shape[0]), constant_values=jnp.nan)


def _blocked_masks(flat: list[jax.Array], ns: np.ndarray, k: jax.Array) -> list[jax.Array]:
  """Masks of mid-sized arrays from one block buffer of all their keys."""
  lay = _Layout(ns)
  padded = [_pad(x, b * _BLOCK) for x, b in zip(flat, lay.blocks, strict=True)]
  buf = sortable_keys(jnp.concatenate(padded)).reshape(-1, _ROWS, _COLS)

  def counts(ts: jax.Array) -> jax.Array:  # (segments, parts) thresholds -> counts
    return lay.per_segment(_block_counts(buf, ts[lay.owner]))

  kk = jnp.maximum(k, 1)
  search = _radix if jax.default_backend() == "gpu" else _search
  t, above = search(buf, lay, counts, kk)
  cut = _tie_cuts(buf, lay, t, k - above)
  tb = t[lay.owner][:, None, None]
  pos = jnp.arange(buf.size, dtype=jnp.int32).reshape(buf.shape)
  keep = ((buf > tb) | ((buf == tb) & (pos < cut[lay.owner][:, None, None]))).reshape(-1)
  return [keep[s * _BLOCK : s * _BLOCK + n] for s, n in zip(lay.starts, ns, strict=True)]


def _search(buf, lay, counts, k):
  """Every segment's k-th largest key t and ``count(> t)``: bracketed by a sorted sample,
  then narrowed by counting passes until every bracket is one key."""
  padded = lay.blocks * _BLOCK
  m = int(np.clip(_SAMPLE_TOTAL // len(padded), masks.SAMPLE_MIN, masks.SAMPLE))
  stride = padded // m  # >= 2: a large segment has more than 2 * SAMPLE_MIN entries
  at = (lay.starts * _BLOCK)[:, None] + stride[:, None] * np.arange(m)[None, :]
  sample = jnp.sort(buf.reshape(-1)[jnp.asarray(at, jnp.int32)], axis=1)  # (segments, m)
  # Expected rank of the answer in the sample (from the lowest key; the sample covers the
  # segment's first stride * m entries), widened by ~5 binomial standard deviations.
  q = (jnp.asarray(stride * m, jnp.float32) - k) / jnp.asarray(stride, jnp.float32)
  margin = 5.0 * jnp.sqrt(jnp.maximum(q * (1 - q / m), 1.0)) + 2.0
  pick = lambda r: jnp.take_along_axis(sample, jnp.clip(r, 0, m - 1)[:, None], 1)[:, 0]
  lo = pick(jnp.floor(q - margin).astype(jnp.int32))
  hi = pick(jnp.ceil(q + margin).astype(jnp.int32))
  i = jnp.arange(1, _PARTS + 1, dtype=jnp.uint32)
  full = jnp.asarray(lay.blocks * _BLOCK, jnp.int32)
  kcol = k[:, None]

  def body(carry):
    # Invariant once checked: lo <= answer <= hi, at_lo = count(>= lo), above = count(> hi).
    lo, hi, at_lo, above, checked = carry
    width = hi - lo
    split = lo[:, None] + jnp.minimum(i * (width[:, None] // (_PARTS + 1) + 1), width[:, None])
    check = jnp.stack([lo, hi + 1, hi + 1, hi + 1], axis=1)  # hi + 1 wraps only for max
    c = counts(jnp.where(checked[:, None], split, check))
    # Check pass: keep the bracket if count(>= lo) >= k > count(> hi), else the full range.
    inside = (c[:, 0] >= k) & (c[:, 1] < k) & (hi < _MAX_KEY)
    checked_state = (
      jnp.where(inside, lo, jnp.uint32(0)),
      jnp.where(inside, hi, _MAX_KEY),
      jnp.where(inside, c[:, 0], full),
      jnp.where(inside, c[:, 1], 0),
    )
    # Split pass: counts fall as t grows, so the thresholds that keep >= k form a prefix.
    passed = jnp.sum(c >= kcol, axis=1)
    nxt = jnp.minimum(passed, _PARTS - 1)[:, None]
    final = passed == _PARTS
    pick = lambda a: jnp.take_along_axis(a, passed[:, None], 1)[:, 0]
    split_state = (
      pick(jnp.concatenate([lo[:, None], split], 1)),
      jnp.where(final, hi, jnp.take_along_axis(split, nxt, 1)[:, 0] - 1),
      pick(jnp.concatenate([at_lo[:, None], c], 1)),
      jnp.where(final, above, jnp.take_along_axis(c, nxt, 1)[:, 0]),
    )
    new = tuple(jnp.where(checked, a, b) for a, b in zip(split_state, checked_state, strict=True))
    return (*new, jnp.ones_like(checked))

  zeros = jnp.zeros_like(k)
  init = (lo, hi, zeros, zeros, jnp.zeros(k.shape, bool))
  done = lambda c: ~(jnp.all(c[4]) & jnp.all(c[0] >= c[1]))
  lo, _, _, above, _ = jax.lax.while_loop(done, body, init)
  return lo, above


def _radix(buf, lay, counts, k):
  """`_search` in a fixed number of passes (no data-dependent loop), as `masks._select_radix`."""
  widths = [_RADIX_BITS] * (32 // _RADIX_BITS)
  if 32 % _RADIX_BITS:
    widths.insert(0, 32 % _RADIX_BITS)
  base = jnp.zeros_like(k, jnp.uint32)
  at_lo = jnp.asarray(lay.blocks * _BLOCK, jnp.int32)
  above = jnp.zeros_like(k)
  shift = 32
  for w in widths:
    shift -= w
    ts = base[:, None] + (jnp.arange(1, 1 << w, dtype=jnp.uint32) << shift)
    c = counts(ts)
    digit = jnp.sum(c >= k[:, None], axis=1, dtype=jnp.int32)
    bounds = jnp.concatenate([at_lo[:, None], c, above[:, None]], 1)
    at_lo = jnp.take_along_axis(bounds, digit[:, None], 1)[:, 0]
    above = jnp.take_along_axis(bounds, digit[:, None] + 1, 1)[:, 0]
    base = base + (digit.astype(jnp.uint32) << shift)
  return base, above


def _tie_cuts(buf, lay, t, room):
  """Per segment, the flat buffer position before which its first ``room`` ties lie."""
  ties = buf == t[lay.owner][:, None, None]
  per_block = jnp.sum(ties, axis=(1, 2), dtype=jnp.int32)
  running = jnp.cumsum(per_block, dtype=jnp.int32)
  before_segment = (running - per_block)[lay.starts]  # ties in earlier segments
  within = running - before_segment[lay.owner]  # ties up to and including each block
  # The boundary block: the first of the segment where the running tie count reaches room.
  short = lay.per_segment((within < room[lay.owner]).astype(jnp.int32))
  b = jnp.asarray(lay.starts, jnp.int32) + jnp.minimum(short, jnp.asarray(lay.blocks - 1))
  need = room - (within - per_block)[b]
  hits = jnp.cumsum(ties[b].reshape(b.shape[0], -1), axis=1, dtype=jnp.int32) < need[:, None]
  cut = b * _BLOCK + jnp.sum(hits, axis=1, dtype=jnp.int32) + 1
  return jnp.where(room > 0, cut, jnp.asarray(lay.starts * _BLOCK, jnp.int32))
