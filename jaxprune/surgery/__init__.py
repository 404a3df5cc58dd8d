"""Turning a pruned network into a smaller or sparse one.

* `remove_units`: physically removes dead neurons / filters from a chain of Dense and
  Conv layers (structured pruning made real: smaller kernels, same function).
* `shrink` / `apply_resized`: delete the pruned channel groups traced by
  `jaxprune.groups.trace` (any architecture the tracing follows: residual, attention...)
  and run the same Flax module at its new widths; `save_checkpoint` writes the result.
* `to_bcoo` / `to_dense` / `storage_bytes`: export pruned leaves as
  `jax.experimental.sparse.BCOO` holding only the kept weights.
"""

from jaxprune.surgery.export import storage_bytes, to_bcoo, to_dense
from jaxprune.surgery.shrink import apply_resized, removed_channels, save_checkpoint, shrink
from jaxprune.surgery.units import remove_units

__all__ = [
  "apply_resized",
  "remove_units",
  "removed_channels",
  "save_checkpoint",
  "shrink",
  "storage_bytes",
  "to_bcoo",
  "to_dense",
]
