"""Masks for sparse training from step 0: random with ERK densities, and fixed-mask training.

Static sparse training is `jaxprune.masked` with ``initial_masks=`` and no schedule: the
masks never change. The masks can come from `random_masks` (the RigL paper's static ERK
baseline), from `jaxprune.prune` at initialisation (SNIP, GraSP), or from a lottery ticket.
"""

from __future__ import annotations

from typing import Any

import jax
import optax

from jaxprune.masked import masked
from jaxprune.prune import prune

PyTree = Any


def random_masks(
  params: PyTree,
  sparsity: float,
  *,
  key: jax.Array,
  distribution: Any = "erk",
  structure: Any = None,
) -> PyTree:
  """Uniformly random masks with exactly the per-leaf counts `jaxprune.masked` keeps.

  Each pruned leaf of n entries at its target s (from ``distribution``) keeps exactly
  n − round(s·n) entries, chosen uniformly at random; leaves the distribution leaves dense
  get all-True masks. The counts match what a mask update at the same target keeps, so a
  drop-and-grow run starting from these masks moves connections without changing them.

  Args:
    params: the params pytree (only shapes and dtypes are read).
    sparsity: overall target in [0, 1).
    key: PRNG key.
    distribution: ``"erk"`` (default), ``"uniform"``, ``"er"`` or any
      `jaxprune.distributions` value.
    structure: a `jaxprune.structures` object (default unstructured).

  Returns:
    Bool masks mirroring ``params``.

  Example:
    >>> import jax, jax.numpy as jnp, jaxprune
    >>> params = {"a": jnp.ones((100, 100)), "b": jnp.ones((100, 10))}
    >>> masks = jaxprune.dynamic.random_masks(params, 0.9, key=jax.random.key(0))
    >>> int(masks["a"].sum()), int(masks["b"].sum())  # ERK: the small layer is denser
    (710, 390)
  """
  _, masks = prune(
    params, sparsity, criterion="random", distribution=distribution, structure=structure, key=key
  )
  return masks


def static(
  inner: optax.GradientTransformation,
  masks: PyTree,
  *,
  packed: bool = False,
) -> optax.GradientTransformationExtraArgs:
  """Static sparse training: ``inner`` on the entries of ``masks``, which never change.

  Equivalent to ``jaxprune.masked(inner, None, initial_masks=masks)``: the run is sparse
  from the first update (no dense steps), pruned entries are exactly 0.0 after every
  `optax.apply_updates`.

  Args:
    inner: any optax transformation.
    masks: bool masks mirroring params, or a callable ``params -> masks`` (e.g.
      ``lambda p: random_masks(p, 0.9, key=key)``).
    packed: store masks as 1 bit per weight.

  Returns:
    The `jaxprune.masked` transformation.

  Example:
    >>> import jax, jax.numpy as jnp, optax, jaxprune
    >>> params = {"w": jnp.ones((4, 4))}
    >>> masks = {"w": jnp.eye(4, dtype=bool)}
    >>> tx = jaxprune.dynamic.static(optax.sgd(0.1), masks)
    >>> state = tx.init(params)
    >>> updates, state = tx.update({"w": jnp.ones((4, 4))}, state, params)
    >>> optax.apply_updates(params, updates)["w"][0].tolist()
    [0.8999999761581421, 0.0, 0.0, 0.0]
  """
  return masked(inner, None, initial_masks=masks, packed=packed)
