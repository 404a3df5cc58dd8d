"""Sparsity summaries: per-leaf and total counts of zeros, printable as a table."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from jaxprune._tree import is_float_array, leaves_with_paths

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
    nonzero: total nonzero (kept) entries.
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


def sparsity_summary(tree: PyTree) -> SparsitySummary:
  """Counts zeros per leaf of params (or False entries of a bool mask tree).

  Args:
    tree: params, or masks from `jaxprune.masks_of` / `jaxprune.prune`.

  Returns:
    A `SparsitySummary`; ``print(summary)`` shows a table.

  Example:
    >>> import jax.numpy as jnp, jaxprune
    >>> s = jaxprune.sparsity_summary({"w": jnp.array([[0.0, 1.0], [0.0, 2.0]])})
    >>> s.sparsity, s.nonzero
    (0.5, 2)
  """
  rows = []
  for path, x in leaves_with_paths(tree):
    if not hasattr(x, "shape"):
      continue
    a = np.asarray(x)
    nonzero = int(np.count_nonzero(a)) if (is_float_array(x) or a.dtype == bool) else a.size
    rows.append(LeafSparsity(path, tuple(a.shape), int(a.size), nonzero))
  return SparsitySummary(tuple(rows))
