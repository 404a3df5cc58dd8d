"""Finding a layer's extra parameters next to its kernel, in any params pytree.

Variational and L0 layers store, beside their ``kernel``, a sibling leaf (``log_sigma2`` or
``gate_log_alpha``). The helpers here pair each kernel with its sibling by replacing the
last ``kernel`` entry of the kernel's path, so they work for Flax Linen dicts, plain dicts
and `nnx.State` alike (a trailing ``value`` entry is carried along).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

from jaxprune._tree import key_str

PyTree = Any
KERNEL = "kernel"


def _strs(path: tuple[Any, ...]) -> tuple[str, ...]:
  return tuple(key_str(e) for e in path)


def _sibling_path(names: tuple[str, ...], anchor: str, sibling: str) -> tuple[str, ...] | None:
  """``names`` with its last ``anchor`` entry replaced by ``sibling`` (None if absent)."""
  for i in range(len(names) - 1, -1, -1):
    if names[i] == anchor:
      return names[:i] + (sibling,) + names[i + 1 :]
  return None


def pairs(params: PyTree, sibling: str) -> list[tuple[str, jax.Array, jax.Array]]:
  """Returns ``[(kernel_path, kernel, sibling_leaf), ...]`` for kernels that have ``sibling``.

  Args:
    params: any params pytree.
    sibling: name of the sibling leaf (``"log_sigma2"`` or ``"gate_log_alpha"``).

  Returns:
    One tuple per paired kernel, in `jax.tree.leaves` order; the path is "/"-joined.
  """
  flat, _ = jax.tree_util.tree_flatten_with_path(params)
  by_names = {_strs(p): x for p, x in flat}
  out = []
  for names, x in by_names.items():
    other = _sibling_path(names, KERNEL, sibling)
    if other is not None and other in by_names:
      out.append(("/".join(names), x, by_names[other]))
  return out


def map_kernels(
  params: PyTree, sibling: str, fn: Callable[[jax.Array, jax.Array], jax.Array]
) -> PyTree:
  """Maps ``fn(kernel, sibling_leaf)`` over paired kernels; every other leaf becomes None.

  Args:
    params: any params pytree.
    sibling: name of the sibling leaf.
    fn: called once per paired kernel.

  Returns:
    A pytree with the structure of ``params``: ``fn``'s output at paired kernels, ``None``
    elsewhere (the criterion convention for leaves that stay dense).
  """
  flat, treedef = jax.tree_util.tree_flatten_with_path(params)
  by_names = {_strs(p): x for p, x in flat}
  out = []
  for path, x in flat:
    other = _sibling_path(_strs(path), KERNEL, sibling)
    out.append(fn(x, by_names[other]) if other is not None and other in by_names else None)
  return jax.tree.unflatten(treedef, out)
