"""Reset an optimizer's state at chosen entries, for any optax optimizer.

When a drop-and-grow method revives a pruned weight, the weight restarts at 0 and its
optimizer state (moments, accumulators, momentum) should restart too, as if the weight were
new. No state type is special-cased: `optax.tree_utils.tree_map_params` finds every part of
the state that mirrors the params, and each such leaf whose shape equals its param's shape
takes, at the chosen entries, the value a fresh ``inner.init(params)`` gives it. Leaves of
other shapes (Adafactor's factored row and column statistics) and the rest of the state
(counters, hyperparameters) are left as they are.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

PyTree = Any


class _Pair:
  """Old and fresh value of one state leaf; not a pytree node, so it travels as a leaf."""

  __slots__ = ("old", "fresh")

  def __init__(self, old: Any, fresh: Any):
    self.old, self.fresh = old, fresh


def reset_entries(
  inner: optax.GradientTransformation, state: optax.OptState, params: PyTree, where: PyTree
) -> optax.OptState:
  """Returns ``state`` with every params-shaped leaf reset to its initial value at ``where``.

  Args:
    inner: the transformation whose state this is (its ``init`` is used).
    state: the state to reset.
    params: the current params (defines the params-like parts of the state).
    where: bool pytree mirroring params (``None`` leaves: nothing to reset in that leaf).

  Returns:
    The state, with entries where ``where`` is True set to ``inner.init(params)``'s values.

  Example:
    >>> import jax.numpy as jnp, optax
    >>> params = {"w": jnp.ones(3)}
    >>> tx = optax.adam(0.1)
    >>> _, state = tx.update({"w": jnp.ones(3)}, tx.init(params), params)
    >>> where = {"w": jnp.array([True, False, False])}
    >>> reset_entries(tx, state, params, where)[0].mu["w"].tolist()
    [0.0, 0.10000000149011612, 0.10000000149011612]
  """
  fresh = inner.init(params)
  paired = jax.tree.map(_Pair, state, fresh)

  def reset(pair: _Pair, mask: Any, param: Any) -> Any:
    old = pair.old
    if mask is None or jnp.shape(old) != jnp.shape(param):
      return old
    return jnp.where(mask, jnp.asarray(pair.fresh, old.dtype), old)

  def keep(value: Any) -> Any:
    return jax.tree.map(lambda p: p.old, value, is_leaf=lambda x: isinstance(x, _Pair))

  return optax.tree_utils.tree_map_params(
    inner,
    reset,
    paired,
    where,
    params,
    transform_non_params=keep,
    is_leaf=lambda x: isinstance(x, _Pair) or x is None,
  )
