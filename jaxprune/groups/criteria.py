"""The signed per-weight Taylor term ``w·g`` that ``Groups.by("taylor")`` sums and squares."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from jaxprune._tree import float_map
from jaxprune.criteria.registry import register

PyTree = Any


@register("signed_taylor", needs=("grads",))
def signed_taylor(params: PyTree, *, grads: PyTree, **extras: Any) -> PyTree:
  """Signed first-order term ``w · g`` per weight, for the group Taylor importance.

  Removing a whole group S changes the loss by ≈ −Σ_{s∈S} g_s·w_s to first order, so
  Molchanov et al. (2019) score a group by (Σ_{s∈S} g_s·w_s)²: use this criterion with
  ``structure=groups.by("taylor")``. On single weights it is not a ranking (it is signed).

  Example:
    >>> import jax.numpy as jnp, jaxprune
    >>> p, g = {"w": jnp.array([2.0, 1.0])}, {"w": jnp.array([0.5, -3.0])}
    >>> jaxprune.groups.signed_taylor(p, grads=g)["w"]
    Array([ 1., -3.], dtype=float32)

  References:
    Molchanov, Mallya, Tyree, Frosio, Kautz. Importance Estimation for Neural Network
    Pruning. CVPR 2019.
  """
  del extras
  return float_map(lambda w, gr: (w * gr).astype(jnp.float32), params, grads)
