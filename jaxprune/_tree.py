"""Small pytree helpers shared by the engine: "/"-joined paths and prunable leaves."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

PyTree = Any


def key_str(entry: Any) -> str:
  """Returns the readable name of one path entry (dict key, attribute or index)."""
  for attr in ("key", "name", "idx"):
    if hasattr(entry, attr):
      return str(getattr(entry, attr))
  return str(entry)


def path_str(path: tuple[Any, ...]) -> str:
  """Joins a `jax.tree_util` key path with "/", e.g. ``"Dense_0/kernel"``."""
  return "/".join(key_str(e) for e in path)


def leaves_with_paths(tree: PyTree, is_leaf: Callable[[Any], bool] | None = None):
  """Returns ``[(path_string, leaf), ...]`` in `jax.tree.leaves` order."""
  flat, _ = jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_leaf)
  return [(path_str(p), x) for p, x in flat]


def is_float_array(x: Any) -> bool:
  """True for array-likes with a floating dtype (integer leaves are never pruned)."""
  return hasattr(x, "dtype") and hasattr(x, "shape") and jnp.issubdtype(x.dtype, jnp.floating)


def float_map(fn: Callable[..., Any], *trees: PyTree) -> PyTree:
  """Maps ``fn`` over floating leaves of ``trees[0]`` (and the matching leaves of the rest);
  other leaves become ``None`` (unscored, so they stay dense)."""
  return jax.tree.map(lambda x, *r: fn(x, *r) if is_float_array(x) else None, *trees)


def _variable_type() -> type | None:
  nnx = sys.modules.get("flax.nnx")  # no NNX Variable can exist unless flax.nnx is imported
  return getattr(nnx, "Variable", None)


def unwrap_variables(tree: PyTree) -> PyTree:
  """Replaces every `flax.nnx.Variable` node (``Param``, ``OptVariable``...) by its value.

  NNX wraps each array of ``nnx.state(model)`` in a ``Param``, and `nnx.Optimizer` wraps its
  optax state (so the masks in it) in ``OptVariable``: the same arrays under different node
  types. Unwrapped, params and masks compare equal in structure, and "/"-joined paths lose
  the trailing ``value`` entry. Other trees are returned unchanged.

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from jaxprune._tree import unwrap_variables
    >>> unwrap_variables({"w": nnx.Param(jnp.ones(2))})["w"]
    Array([1., 1.], dtype=float32)
  """
  variable = _variable_type()
  if variable is None:
    return tree
  is_var = lambda x: isinstance(x, variable)
  return jax.tree.map(lambda x: x.get_value() if is_var(x) else x, tree, is_leaf=is_var)
