"""The units that structured drop-and-grow moves, and the structures it accepts.

Drop-and-grow (`jaxprune.dynamic.rigl`, `jaxprune.dynamic.set_`) moves connections at a
constant count. Which connections move together depends on the structure:

* ``None`` / `jaxprune.structures.unstructured` (``within=`` too) and
  `jaxprune.structures.n_of_m`: single weights. The drop ranks a leaf's active weights;
  the mask maker grows back within each slice (``within``) or each group of ``m`` (N:M), so
  those counts stay exact.
* `jaxprune.structures.channels` and `jaxprune.structures.block`: whole units (output
  channels, tiles). `unit_view` shows a leaf as ``(*units, entries)``: a unit is dropped by
  the mean ``|w|`` of its entries (the score the structure itself ranks by with
  ``"magnitude"``) and grown by the L2 norm of its dense gradient (RigL) or at random (SET).

Traced `jaxprune.groups.Groups` and structures of other types are refused
(`check_structure` says why and what to call instead).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp

from jaxprune import distributions, structures
from jaxprune.groups.structure import BoundGroups, Groups


@dataclasses.dataclass(frozen=True)
class UnitView:
  """A leaf seen as whole units of a `Channels` or `Block` structure.

  Attributes:
    structure: the structure whose units these are.
  """

  structure: structures.Channels | structures.Block

  def tiles(self, x: jax.Array) -> jax.Array:
    """``x`` reshaped to ``(*units, entries)``: the last axis holds one unit's entries.

    Example:
      >>> import jax.numpy as jnp, jaxprune
      >>> view = UnitView(jaxprune.structures.block((2, 2)))
      >>> view.tiles(jnp.arange(16.0).reshape(4, 4))[0, 1].tolist()
      [2.0, 3.0, 6.0, 7.0]
    """
    s = self.structure
    if isinstance(s, structures.Channels):
      axis = s.axis % x.ndim
      return jnp.moveaxis(x, axis, 0).reshape(x.shape[axis], -1)
    lead = x.shape[: x.ndim - len(s.shape)]
    split = []
    for d, b in zip(x.shape[len(lead) :], s.shape, strict=True):
      split += [d // b, b]
    t = x.reshape(*lead, *split)
    outer = [len(lead) + 2 * i for i in range(len(s.shape))]
    inner = [len(lead) + 2 * i + 1 for i in range(len(s.shape))]
    t = jnp.transpose(t, [*range(len(lead)), *outer, *inner])
    return t.reshape(*t.shape[: len(lead) + len(s.shape)], math.prod(s.shape))

  def expand(self, keep: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Per-unit ``keep`` (shape ``tiles(x).shape[:-1]``) spread over a leaf of ``shape``.

    Example:
      >>> import jax.numpy as jnp, jaxprune
      >>> view = UnitView(jaxprune.structures.channels())
      >>> view.expand(jnp.array([True, False, True]), (2, 3)).tolist()
      [[True, False, True], [True, False, True]]
    """
    s = self.structure
    if isinstance(s, structures.Channels):
      axis = s.axis % len(shape)
      others = [d for d in range(len(shape)) if d != axis]
      return jnp.broadcast_to(jnp.expand_dims(keep, others), shape)
    lead = len(shape) - len(s.shape)
    for i, b in enumerate(s.shape):
      keep = jnp.repeat(keep, b, axis=lead + i)
    return keep


def unit_view(structure: Any) -> UnitView | None:
  """The `UnitView` of ``structure`` (``None`` for structures that move single weights)."""
  struct = structures.get(structure)
  if isinstance(struct, structures.Channels | structures.Block):
    return UnitView(struct)
  return None


def _groups_error(structure: Any, call: str) -> ValueError:
  return ValueError(
    f"{call} cannot move traced channel groups: structure={structure!r}. A group's channel "
    "spans several leaves (its kernel column, bias and norm entries, and its consumers' "
    "rows), and a channel masked in all of them gets a dense gradient of exactly 0.0 in "
    "every member, since each path through it multiplies two zeroed weights. So RigL "
    "would have no gradient to rank channels to grow, and a channel grown at 0.0 (as "
    "grown weights are) would stay at 0.0. Move whole output channels per leaf instead, "
    f"{call}(optax.adam(1e-3), 0.5, end=..., structure=jaxprune.structures.channels()), or "
    "prune the groups gradually: jaxprune.masked(optax.adam(1e-3), 0.5, structure=groups, "
    "schedule=jaxprune.schedules.polynomial(begin=0, end=1000, every=100))."
  )


def check_structure(structure: Any, distribution: Any, call: str) -> None:
  """Raises unless drop-and-grow can move connections of ``structure`` under ``distribution``.

  Args:
    structure: the ``structure=`` given (``None``, a name or a structure object).
    distribution: the ``distribution=`` given.
    call: the public function, e.g. ``"jaxprune.dynamic.rigl"``, shown in the messages.

  Example:
    >>> import jaxprune
    >>> check_structure(jaxprune.structures.channels(), "erk", "jaxprune.dynamic.rigl")
    >>> class Positive:  # a user-defined structure: unknown units
    ...   def validate(self, shape, path=""): pass
    ...   def make(self, scores, sparsity): return scores > 0
    >>> check_structure(Positive(), "erk", "jaxprune.dynamic.rigl")
    Traceback (most recent call last):
    ...
    ValueError: jaxprune.dynamic.rigl moves connections of ...
  """
  if isinstance(structure, Groups | BoundGroups):
    raise _groups_error(structure, call)
  struct = structures.get(structure)
  if not isinstance(struct, structures.Structure):
    raise ValueError(
      f"{call} moves connections of the built-in structures only (single weights, N:M "
      "groups, whole channels or blocks); it cannot tell which entries of "
      f"structure={structure!r} move together, so the masks could stay fixed without a "
      f"word. Use one of them, e.g. {call}(optax.adam(1e-3), 0.9, end=..., "
      "structure=jaxprune.structures.channels()), or train that structure's masks with "
      "jaxprune.masked(..., structure=...)."
    )
  dist = distributions.get(distribution)
  if isinstance(dist, distributions.Global) and getattr(struct, "within", None) is not None:
    raise ValueError(
      f"distribution='global' ranks single weights across all leaves, so structure="
      f"{struct!r} (the same count in every slice) would be ignored. Use "
      f"{call}(optax.adam(1e-3), 0.9, end=..., distribution='uniform', structure={struct!r})"
      f" or {call}(optax.adam(1e-3), 0.9, end=..., distribution='global')."
    )
