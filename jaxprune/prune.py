"""`prune`: one-shot pruning of a params pytree outside training."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxprune import criteria, structures
from jaxprune._checks import check_mask_tree, check_sparsity, resolve_sparsity
from jaxprune._tree import unwrap_variables
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
  check_sparsity(sparsity, "jaxprune.prune(params, 0.9)")
  crit = criteria.get(criterion)
  structure = structures.get(structure)
  sparsity = resolve_sparsity(sparsity, crit, structure, "jaxprune.prune(params, 0.9)")
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

  NNX: ``params`` may be ``nnx.state(model, nnx.Param)`` and ``masks`` may hold
  `flax.nnx.Variable` leaves, as the masks in an `nnx.Optimizer`'s state do; the result has
  the structure of ``params``.

  Example:
    >>> import jax.numpy as jnp, jaxprune
    >>> jaxprune.apply_masks({"w": jnp.ones(2)}, {"w": jnp.array([True, False])})["w"]
    Array([1., 0.], dtype=float32)
  """
  check_mask_tree(params, masks, "apply_masks")
  treedef = jax.tree.structure(params)
  m_leaves = jax.tree.leaves(unwrap_variables(masks))
  out = [
    jnp.where(m, p, jnp.zeros_like(p))
    for p, m in zip(jax.tree.leaves(params), m_leaves, strict=True)
  ]
  return jax.tree.unflatten(treedef, out)
