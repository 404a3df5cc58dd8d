"""Exact top-k masks of many arrays at once: one selection program per distinct size.

Selecting leaf by leaf gives every pruned leaf its own program (sample sort, counting loop,
tie cut), so the compile time of a masked step grew with the number of pruned leaves: a
12-block ViT's mask update added ~1,000 HLO instructions per leaf. Models repeat a few
layer sizes many times (a transformer block's projections, a ResNet stage's convolutions),
so `topk_masks` stacks the keys (`masks.sortable_keys`) of all arrays of one size and
selects them with one vmapped `masks.topk_keys_mask`: the program count follows the number
of distinct sizes, not of leaves. Members of a stack run the search loop together until the
last one converges.

The masks are those of `masks.topk_mask`, entry for entry: exactly ``clip(k, 0, n)`` kept,
ties at the threshold to the lowest flat index, NaN lowest.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxprune.masks import sortable_keys, topk_keys_mask, topk_mask


def topk_masks(scores: Sequence[jax.Array], ks: Sequence[Any] | jax.Array) -> list[jax.Array]:
  """Bool masks keeping exactly ``clip(k_i, 0, n_i)`` highest scores of each ``scores[i]``.

  Equal to ``[masks.topk_mask(s, k) for s, k in zip(scores, ks)]``, with one selection
  program per distinct array size.

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
  by_size: dict[int, list[int]] = {}
  for i, s in enumerate(scores):
    by_size.setdefault(math.prod(jnp.shape(s)), []).append(i)
  out: list[Any] = [None] * len(scores)
  for members in by_size.values():
    if len(members) == 1:
      (i,) = members
      out[i] = topk_mask(scores[i], ks[i])
      continue
    keys = jnp.stack([sortable_keys(scores[i]).reshape(-1) for i in members])
    counts = jnp.asarray(ks, jnp.int32)[np.asarray(members)]
    keep = jax.vmap(topk_keys_mask)(keys, counts)
    for row, i in enumerate(members):
      out[i] = keep[row].reshape(jnp.shape(scores[i]))
  return out
