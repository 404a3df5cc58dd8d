"""Dynamic sparse training: drop and grow (SET, RigL), static sparse masks, STE and SR-STE.

* `rigl` / `set_`: `jaxprune.masked` with random ERK initial masks and a drop-and-grow
  criterion on a periodic schedule; the per-leaf count stays constant.
* `random_masks` / `static`: sparse from step 0 with masks that never change.
* `reset_entries`: optimizer state of chosen entries back to its initial value (used by
  `jaxprune.masked` for regrown entries).
* `ste`: straight-through training of dense weights kept in the optimizer state; the
  params are their exactly sparse view (SR-STE with ``decay > 0``).
"""

from jaxprune.dynamic.drop_grow import (
  cosine,
  drop_grow_scores,
  num_to_drop,
  rigl,
  rigl_criterion,
  rigl_scores,
  set_,
  set_criterion,
  set_scores,
)
from jaxprune.dynamic.reset import reset_entries
from jaxprune.dynamic.static import random_masks, static
from jaxprune.dynamic.ste import STEState, dense_params, ste

__all__ = [
  "STEState",
  "cosine",
  "dense_params",
  "drop_grow_scores",
  "num_to_drop",
  "random_masks",
  "reset_entries",
  "rigl",
  "rigl_criterion",
  "rigl_scores",
  "set_",
  "set_criterion",
  "set_scores",
  "static",
  "ste",
]
