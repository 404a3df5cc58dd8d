"""Turning a pruned network into a smaller or sparse one.

* `remove_units`: physically removes dead neurons / filters from a chain of Dense and
  Conv layers (structured pruning made real: smaller kernels, same function).
* `to_bcoo` / `to_dense` / `storage_bytes`: export pruned leaves as
  `jax.experimental.sparse.BCOO` holding only the kept weights.
"""

from jaxprune.surgery.export import storage_bytes, to_bcoo, to_dense
from jaxprune.surgery.units import remove_units

__all__ = ["remove_units", "storage_bytes", "to_bcoo", "to_dense"]
