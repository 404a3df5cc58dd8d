"""From scores to masks over a whole pytree: the shared path of `masked` and `prune`.

`Plan` fixes, once from the params' paths and shapes, which leaves are pruned and checks
the structure against each of them; `Plan.select` then turns scores and the current
sparsity into one bool mask per pruned leaf (inside jit; nothing here is Python-branched
on array values).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxprune import distributions, structures
from jaxprune._tree import leaves_with_paths
from jaxprune.criteria.registry import Criterion
from jaxprune.errors import MaskMismatchError
from jaxprune.groups.structure import BoundGroups, Groups
from jaxprune.masks import num_to_keep, num_to_keep_many, topk_mask
from jaxprune.segments import topk_masks

PyTree = Any


@dataclasses.dataclass(frozen=True)
class Plan:
  """Static facts about one params tree: its treedef, paths and which leaves are pruned."""

  treedef: Any
  paths: tuple[str, ...]
  shapes: tuple[tuple[int, ...], ...]
  prunable: tuple[bool, ...]
  distribution: distributions.Distribution
  structure: Any

  @classmethod
  def make(cls, params: PyTree, distribution: Any, structure: Any) -> Plan:
    """Resolves and validates ``distribution`` and ``structure`` against ``params``."""
    dist = distributions.get(distribution)
    struct = structures.get(structure)
    pairs = leaves_with_paths(params)
    paths = tuple(p for p, _ in pairs)
    leaves = [x for _, x in pairs]
    if isinstance(dist, distributions.ByPath):
      dist.check(list(paths))
    if isinstance(struct, Groups):  # coupled channels across leaves: masks per group
      if type(dist) is not distributions.Uniform:
        raise ValueError(
          f"structure=Groups prunes the same fraction of every group, so it needs "
          f"distribution='uniform'; got {dist!r}. Example: jaxprune.prune(params, 0.5, "
          "structure=groups)."
        )
      shapes = tuple(tuple(getattr(x, "shape", ())) for x in leaves)
      bound = struct.bind(paths, shapes)
      return cls(jax.tree.structure(params), paths, shapes, bound.prunable, dist, bound)
    prunable = tuple(dist.prunable(paths, leaves))
    if hasattr(struct, "restrict"):  # e.g. channels() keeps the output layer dense
      prunable = tuple(struct.restrict(paths, leaves, prunable))
    if isinstance(dist, distributions.Global) and not isinstance(struct, structures.Unstructured):
      raise ValueError(
        f"distribution='global' ranks single weights across leaves, so it needs unstructured "
        f"sparsity; got structure={struct!r}. Use distribution='uniform' (or 'erk') with this "
        "structure, or structure=None with 'global'."
      )
    if isinstance(dist, distributions.Global) and getattr(struct, "within", None) is not None:
      raise ValueError(
        f"distribution='global' ranks all weights against one threshold, so it cannot keep the "
        f"same count in every slice as structure={struct!r} asks. Use "
        f"distribution='uniform' (or 'erk') with unstructured(within={struct.within}), or "
        "structure=None with 'global'."
      )
    for path, leaf, on in zip(paths, leaves, prunable, strict=True):
      if on:
        struct.validate(tuple(leaf.shape), path)
    shapes = tuple(tuple(getattr(x, "shape", ())) for x in leaves)
    treedef = jax.tree.structure(params)
    return cls(treedef, paths, shapes, prunable, dist, struct)

  def check_tree(self, tree: PyTree, what: str = "params") -> list[Any]:
    """Flattens ``tree`` against the plan, raising if its structure or shapes differ."""
    if jax.tree.structure(tree) != self.treedef:
      raise MaskMismatchError(
        f"The {what} tree does not match the structure the masks were made for.\n"
        f"  expected: {self.treedef}\n  received: {jax.tree.structure(tree)}\n"
        "Pass the same params pytree to tx.init(params) and tx.update(grads, state, params)."
      )
    leaves = jax.tree.leaves(tree)
    for path, shape, x in zip(self.paths, self.shapes, leaves, strict=True):
      if tuple(getattr(x, "shape", ())) != shape:
        raise MaskMismatchError(
          f"{what} leaf {path!r} has shape {tuple(x.shape)}, expected {shape} (the shape at init)."
        )
    return leaves

  def select(
    self,
    leaves: list[jax.Array],
    scores: PyTree,
    sparsity: jax.Array | float,
    target: jax.Array | float,
    criterion: Criterion,
  ) -> list[jax.Array | None]:
    """Returns one bool mask per leaf (``None`` where the leaf is dense or unscored)."""
    score_leaves = self.treedef.flatten_up_to(scores)
    active = [on and s is not None for on, s in zip(self.prunable, score_leaves, strict=True)]
    if isinstance(self.structure, BoundGroups):
      if criterion.threshold is not None:
        raise ValueError(
          f"criterion {criterion.name!r} keeps single weights above a threshold; structure="
          "Groups ranks whole channels, so use a ranking criterion such as 'magnitude'."
        )
      return self.structure.select(leaves, score_leaves, sparsity)
    if criterion.threshold is not None:
      return [
        (jnp.asarray(s) >= criterion.threshold).reshape(x.shape) if on else None
        for s, x, on in zip(score_leaves, leaves, active, strict=True)
      ]
    if isinstance(self.distribution, distributions.Global):
      return self._select_global(leaves, score_leaves, active, sparsity)
    targets = self.distribution.targets(
      list(self.paths), leaves, list(self.prunable), sparsity, target
    )
    if not getattr(self.structure, "batched", False):  # a structure with its own selection
      return [
        self.structure.make(jnp.asarray(s).reshape(x.shape), t) if on else None
        for s, x, t, on in zip(score_leaves, leaves, targets, active, strict=True)
      ]
    # Ranked units of every leaf (entries, tiles, channels) go through one batched selection.
    on = [i for i, a in enumerate(active) if a]
    units = [
      self.structure.units(jnp.asarray(score_leaves[i]).reshape(leaves[i].shape)) for i in on
    ]
    counts = num_to_keep_many([u.size for u in units], [targets[i] for i in on])
    keeps = topk_masks(units, counts)
    out: list[jax.Array | None] = [None] * len(leaves)
    for i, keep in zip(on, keeps, strict=True):
      out[i] = self.structure.expand(keep, tuple(leaves[i].shape))
    return out

  def _select_global(self, leaves, score_leaves, active, sparsity):
    flat = []
    for s, on in zip(score_leaves, active, strict=True):
      if on:
        s = jnp.asarray(s, jnp.float32).reshape(-1)
        if self.distribution.normalize:  # NaN marks entries already pruned: not averaged
          s = s / jnp.maximum(jnp.nanmean(jnp.abs(s)), 1e-30)
        flat.append(s)
    if not flat:
      return [None] * len(leaves)
    allscores = jnp.concatenate(flat)
    keep = topk_mask(allscores, num_to_keep(allscores.size, sparsity))
    out, start = [], 0
    for x, on in zip(leaves, active, strict=True):
      if on:
        n = int(x.size)
        out.append(keep[start : start + n].reshape(x.shape))
        start += n
      else:
        out.append(None)
    return out


def plan_cache(distribution: Any, structure: Any) -> Callable[[PyTree], Plan]:
  """``params -> Plan``, made once per params structure and leaf shapes (then reused)."""
  plans: dict[Any, Plan] = {}

  def plan_for(params: PyTree) -> Plan:
    shapes = tuple(tuple(getattr(x, "shape", ())) for x in jax.tree.leaves(params))
    key = (jax.tree.structure(params), shapes)
    if key not in plans:
      plans[key] = Plan.make(params, distribution, structure)
    return plans[key]

  return plan_for
