"""Data-free criteria: weight magnitude and random scores."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxprune._tree import float_map, is_float_array
from jaxprune.criteria.registry import register

PyTree = Any


@register("magnitude")
def magnitude(params: PyTree, **extras: Any) -> PyTree:
  """Magnitude |w|: small weights are removed first (Han et al. 2015; Zhu & Gupta 2017).

  Example:
    >>> import jax.numpy as jnp, jaxprune
    >>> jaxprune.criteria.magnitude({"w": jnp.array([-3.0, 1.0])})["w"]
    Array([3., 1.], dtype=float32)
  """
  del extras
  return float_map(jnp.abs, params)


@register("random", needs=("key",))
def random(params: PyTree, *, key: jax.Array, **extras: Any) -> PyTree:
  """Uniform random scores from ``key``: a data-free baseline (random pruning).

  Example:
    >>> import jax, jax.numpy as jnp, jaxprune
    >>> s = jaxprune.criteria.random({"w": jnp.ones(3)}, key=jax.random.key(0))
    >>> s["w"].shape
    (3,)
  """
  del extras
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(key, max(len(leaves), 1))
  out = [
    jax.random.uniform(k, x.shape, jnp.float32) if is_float_array(x) else None
    for k, x in zip(keys, leaves, strict=False)
  ]
  return jax.tree.unflatten(treedef, out)
