"""Sparsity summaries: per-leaf and total counts of zeros (or of masked-out entries), as a table."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

from jaxprune._checks import check_mask_tree
from jaxprune._tree import is_float_array, leaves_with_paths, unwrap_variables

PyTree = Any


@dataclasses.dataclass(frozen=True)
class LeafSparsity:
  """One row of a `SparsitySummary`."""

  path: str
  shape: tuple[int, ...]
  size: int
  nonzero: int

  @property
  def sparsity(self) -> float:
    return 1.0 - self.nonzero / self.size if self.size else 0.0


@dataclasses.dataclass(frozen=True)
class SparsitySummary:
  """Per-leaf rows and totals; ``str()`` renders a table.

  Attributes:
    leaves: one `LeafSparsity` per array leaf (integer leaves included, never pruned).
    size: total entries.
    nonzero: total kept entries (nonzero values, or True mask entries when masks are given).
  """

  leaves: tuple[LeafSparsity, ...]

  @property
  def size(self) -> int:
    return sum(r.size for r in self.leaves)

  @property
  def nonzero(self) -> int:
    return sum(r.nonzero for r in self.leaves)

  @property
  def sparsity(self) -> float:
    return 1.0 - self.nonzero / self.size if self.size else 0.0

  @property
  def compression(self) -> float:
    """Total entries / nonzero entries (``inf`` when everything is zero)."""
    return self.size / self.nonzero if self.nonzero else float("inf")

  def as_dict(self) -> dict[str, Any]:
    """JSON-ready form: per-leaf sparsity and counts, and totals."""
    return {
      "leaves": {
        r.path: {
          "shape": list(r.shape),
          "size": r.size,
          "nonzero": r.nonzero,
          "sparsity": r.sparsity,
        }
        for r in self.leaves
      },
      "size": self.size,
      "nonzero": self.nonzero,
      "sparsity": self.sparsity,
      "compression": self.compression,
    }

  def __str__(self) -> str:
    width = max([len(r.path) for r in self.leaves] + [5])
    head = f"{'leaf':<{width}}  {'shape':>16}  {'size':>10}  {'nonzero':>10}  {'sparsity':>8}"
    lines = [head, "-" * len(head)]
    for r in self.leaves:
      lines.append(
        f"{r.path:<{width}}  {str(r.shape):>16}  {r.size:>10,}  {r.nonzero:>10,}  "
        f"{r.sparsity:>8.2%}"
      )
    lines.append("-" * len(head))
    lines.append(
      f"{'total':<{width}}  {'':>16}  {self.size:>10,}  {self.nonzero:>10,}  {self.sparsity:>8.2%}"
    )
    return "\n".join(lines)


def sparsity_summary(tree: PyTree, masks: PyTree | None = None) -> SparsitySummary:
  """Counts kept entries per leaf: nonzeros of params, or True entries of the masks.

  Without ``masks``, every zero counts as pruned, including weights that are zero for
  another reason (a bias initialised to 0 and not yet trained, a dead unit). With
  ``masks``, the count is the masks': an entry is pruned exactly where its mask is False,
  and a leaf with an all-True mask (every leaf that stays dense) counts as dense whatever
  its values. NNX states are accepted as they are (``Param`` and ``OptVariable`` leaves);
  paths are shown without NNX's trailing ``/value``.

  Args:
    tree: params (or a bool mask tree, counting its False entries).
    masks: optional bool masks for ``tree``, e.g. ``jaxprune.masks_of(opt_state)`` or the
      masks of `jaxprune.prune`.

  Returns:
    A `SparsitySummary`; ``print(summary)`` shows a table.

  Example:
    >>> import jax.numpy as jnp, jaxprune
    >>> params = {"w": jnp.array([[0.0, 1.0], [0.0, 2.0]]), "b": jnp.zeros(2)}
    >>> s = jaxprune.sparsity_summary(params)
    >>> s.sparsity, s.nonzero  # the zero bias counts as pruned
    (0.6666666666666667, 2)
    >>> masks = {"w": jnp.array([[False, True], [True, True]]), "b": jnp.ones(2, bool)}
    >>> s = jaxprune.sparsity_summary(params, masks)
    >>> s.nonzero, s.leaves[0].path, s.leaves[0].sparsity  # only the one masked-out entry
    (5, 'b', 0.0)
  """
  tree = unwrap_variables(tree)
  if masks is not None:
    check_mask_tree(tree, masks, "sparsity_summary")
    mask_leaves = [np.asarray(m, bool) for m in jax.tree.leaves(unwrap_variables(masks))]
  rows = []
  for i, (path, x) in enumerate(leaves_with_paths(tree)):
    if not hasattr(x, "shape"):
      continue
    a = np.asarray(x)
    if masks is not None:
      nonzero = int(np.count_nonzero(mask_leaves[i]))
    elif is_float_array(x) or a.dtype == bool:
      nonzero = int(np.count_nonzero(a))
    else:
      nonzero = a.size
    rows.append(LeafSparsity(path, tuple(a.shape), int(a.size), nonzero))
  return SparsitySummary(tuple(rows))
