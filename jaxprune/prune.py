"""`prune`: one-shot pruning of a params pytree outside training."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxprune import criteria, structures
from jaxprune.masked import _check_overrides, _check_sparsity
from jaxprune.selection import Plan

PyTree = Any


def prune(
  params: PyTree,
  sparsity: float | None,
  *,
  criterion: Any = "magnitude",
  distribution: Any = "uniform",
  structure: Any = None,
  grads: PyTree | None = None,
  key: jax.Array | None = None,
  **extras: Any,
) -> tuple[PyTree, PyTree]:
  """Prunes ``params`` once and returns ``(pruned_params, masks)``.

  Args:
    params: any pytree of arrays (Flax Linen dicts, ``nnx.State``, plain dicts).
    sparsity: fraction of prunable weights to remove, in [0, 1); ``None`` where a threshold
      criterion or a structure with a fixed sparsity (``n_of_m``) decides it. A sparsity
      that would be overridden is an error unless it agrees.
    criterion: registered name or ``fn(params, **extras) -> scores``.
    distribution: how the sparsity is split over leaves (see `jaxprune.distributions`).
    structure: a `jaxprune.structures` object (default unstructured).
    grads: gradients, for criteria that need them (``"saliency"``...).
    key: PRNG key for stochastic criteria (default ``jax.random.key(0)``).
    **extras: further criterion inputs (``loss_fn=``, ``batch=``, ``activations=``...).

  Returns:
    ``(pruned_params, masks)``: pruned entries are exactly 0; ``masks`` mirrors params
    with bool arrays (all True for leaves that stay dense).

  Example:
    >>> import jax.numpy as jnp, jaxprune
    >>> pruned, masks = jaxprune.prune({"w": jnp.arange(8.0).reshape(2, 4)}, 0.25)
    >>> int(masks["w"].sum()), pruned["w"][0].tolist()
    (6, [0.0, 0.0, 2.0, 3.0])
  """
  _check_sparsity(sparsity)
  crit = criteria.get(criterion)
  structure = structures.get(structure)
  _check_overrides(sparsity, crit, structure)
  if sparsity is None:
    sparsity = getattr(structure, "sparsity", None)
    if sparsity is None and crit.threshold is None:
      raise ValueError(
        "jaxprune.prune needs a sparsity unless a threshold criterion or a structure with a "
        "fixed sparsity decides it. Example: jaxprune.prune(params, 0.9)."
      )
    sparsity = 0.0 if sparsity is None else sparsity
  plan = Plan.make(params, distribution, structure)
  leaves = jax.tree.leaves(params)
  key = jax.random.key(0) if key is None else key
  given = {"grads": grads, "key": key, **extras}
  crit.check_extras(given, where="prune")
  if crit.prune_fn is not None:
    targets = plan.distribution.targets(
      list(plan.paths), leaves, list(plan.prunable), sparsity, sparsity
    )
    return crit.prune_fn(params, jax.tree.unflatten(plan.treedef, targets), plan.structure, **given)
  scores = crit.fn(params, **given)
  fresh = plan.select(leaves, scores, sparsity, sparsity, crit)
  masks = [
    jnp.ones(jnp.shape(x), bool) if m is None else m for x, m in zip(leaves, fresh, strict=True)
  ]
  pruned = [jnp.where(m, x, jnp.zeros_like(x)) for x, m in zip(leaves, masks, strict=True)]
  return jax.tree.unflatten(plan.treedef, pruned), jax.tree.unflatten(plan.treedef, masks)


def apply_masks(params: PyTree, masks: PyTree) -> PyTree:
  """Zeros the entries of ``params`` where ``masks`` is False (same structure required).

  Example:
    >>> import jax.numpy as jnp, jaxprune
    >>> jaxprune.apply_masks({"w": jnp.ones(2)}, {"w": jnp.array([True, False])})["w"]
    Array([1., 0.], dtype=float32)
  """
  check_mask_tree(params, masks, "apply_masks")
  return jax.tree.map(lambda p, m: jnp.where(m, p, jnp.zeros_like(p)), params, masks)


def check_mask_tree(params: PyTree, masks: PyTree, caller: str) -> None:
  """Raises `MaskMismatchError` unless ``masks`` has the tree structure of ``params``."""
  from jaxprune.errors import MaskMismatchError

  if jax.tree.structure(params) != jax.tree.structure(masks):
    raise MaskMismatchError(
      f"{caller}: the mask tree does not match the params tree.\n"
      f"  params: {jax.tree.structure(params)}\n  masks:  {jax.tree.structure(masks)}\n"
      "Use masks from jaxprune.masks_of(opt_state) or jaxprune.prune(params, ...)."
    )
