"""Exporting pruned params: sparse `BCOO` leaves that store only the kept weights."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import sparse

from jaxprune._checks import check_mask_tree
from jaxprune._tree import is_float_array

PyTree = Any


def _is_sparse(x: Any) -> bool:
  return isinstance(x, sparse.BCOO)


def to_bcoo(params: PyTree, masks: PyTree | None = None) -> PyTree:
  """Stores every pruned leaf as a `jax.experimental.sparse.BCOO` of its kept entries.

  A leaf is converted when it is a floating array with at least 2 dimensions and its mask
  removes something (without ``masks``: when it has zeros). The BCOO holds exactly the
  kept entries, zeros among them included, so ``to_dense(to_bcoo(p, m))`` is
  ``jaxprune.apply_masks(p, m)``; every other leaf is returned as it is. BCOO leaves work
  in ``x @ w`` and under ``jax.experimental.sparse.sparsify``. Runs on the host (the
  number of stored entries sets the shapes), so call it outside ``jax.jit``.

  Args:
    params: any pytree of arrays.
    masks: bool masks with the same structure (e.g. ``jaxprune.masks_of(opt_state)`` or
      from `jaxprune.prune`); None to keep the nonzero entries.

  Returns:
    The params pytree with BCOO leaves in place of the pruned ones.

  Example:
    >>> import jax.numpy as jnp, jaxprune
    >>> from jaxprune.surgery import to_bcoo, to_dense
    >>> pruned, masks = jaxprune.prune({"w": jnp.arange(1.0, 9.0).reshape(2, 4)}, 0.75)
    >>> sparse_params = to_bcoo(pruned, masks)
    >>> sparse_params["w"].nse, (jnp.ones((1, 2)) @ sparse_params["w"]).tolist()
    (2, [[0.0, 0.0, 7.0, 8.0]])
  """
  if masks is None:
    masks = jax.tree.map(lambda x: np.asarray(x) != 0 if is_float_array(x) else None, params)
  else:
    check_mask_tree(params, masks, "to_bcoo")

  def convert(x, m):
    if m is None or not is_float_array(x) or np.ndim(x) < 2:
      return x
    keep = np.asarray(m, bool)
    if keep.all():
      return x
    indices = np.argwhere(keep).astype(np.int32)
    return sparse.BCOO((jnp.asarray(np.asarray(x)[keep]), jnp.asarray(indices)), shape=x.shape)

  return jax.tree.map(convert, params, masks, is_leaf=lambda x: x is None)


def to_dense(tree: PyTree) -> PyTree:
  """Turns the BCOO leaves of ``tree`` (from `to_bcoo`) back into dense arrays."""
  return jax.tree.map(lambda x: x.todense() if _is_sparse(x) else x, tree, is_leaf=_is_sparse)


def storage_bytes(tree: PyTree) -> int:
  """Bytes the arrays of ``tree`` occupy; a BCOO leaf counts its values and indices.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxprune.surgery import storage_bytes, to_bcoo
    >>> w = {"w": jnp.zeros((100, 100)).at[0, :10].set(1.0)}
    >>> storage_bytes(w), storage_bytes(to_bcoo(w))
    (40000, 120)
  """
  leaves = jax.tree.leaves(tree, is_leaf=_is_sparse)
  total = 0
  for x in leaves:
    if _is_sparse(x):
      total += x.data.nbytes + x.indices.nbytes
    elif hasattr(x, "nbytes"):
      total += int(x.nbytes)
  return total
