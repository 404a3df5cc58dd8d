"""Flax NNX helpers: a criterion's ``loss_fn(params, batch)`` from an ``nnx.Module``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
from flax import nnx

from jaxprune._tree import unwrap_variables

PyTree = Any


def nnx_loss_fn(
  model: nnx.Module,
  loss: Callable[[nnx.Module, Any], jax.Array],
  *,
  wrt: Any = nnx.Param,
) -> Callable[[PyTree, Any], jax.Array]:
  """Turns ``loss(model, batch)`` into the ``loss_fn(params, batch)`` that data criteria take.

  Criteria such as ``"snip"``, ``"grasp"`` or ``"obd"`` differentiate ``loss_fn`` with
  respect to the params, inside the optimizer's (jitted) update. Writing it with
  ``nnx.update(model, params)`` fails there with ``flax.errors.TraceContextError: Cannot
  mutate Param from a different trace level``; ``nnx.merge(graphdef, params)`` alone fails
  with ``Incorrect number of leaves`` when the model has other state (RNG counters, batch
  statistics), and merging a ``rest`` split off earlier fails again with a
  ``TraceContextError`` once a layer such as ``nnx.Dropout`` advances its RNG counter.

  The returned function reads the model's current non-``wrt`` state at every call and
  builds a fresh copy of the model from it and ``params``; ``model`` itself is never
  changed (RNG counters or batch statistics updated inside ``loss`` are discarded).

  Args:
    model: the NNX module whose params the criterion scores.
    loss: ``loss(model, batch) -> scalar``.
    wrt: the filter of the scored params; the one given to ``nnx.Optimizer(..., wrt=)``.

  Returns:
    ``loss_fn(params, batch) -> scalar`` for ``params`` shaped like
    ``nnx.state(model, wrt)`` (with ``Param`` leaves or pure arrays).

  Example:
    >>> import jax, jax.numpy as jnp, jaxprune
    >>> from flax import nnx
    >>> model = nnx.Linear(2, 1, use_bias=False, rngs=nnx.Rngs(0))
    >>> loss_fn = jaxprune.nnx_loss_fn(model, lambda m, x: jnp.sum(m(x)))
    >>> grads = jax.jit(jax.grad(loss_fn))(nnx.state(model, nnx.Param), jnp.array([[3.0, 4.0]]))
    >>> grads["kernel"][...].ravel().tolist()  # d/dW sum(x @ W) = x
    [3.0, 4.0]
  """

  def loss_fn(params: PyTree, batch: Any) -> jax.Array:
    graphdef, current, rest = nnx.split(model, wrt, ...)
    expected = jax.tree.structure(unwrap_variables(current))
    if jax.tree.structure(unwrap_variables(params)) != expected:
      raise ValueError(
        "nnx_loss_fn: the params given to loss_fn do not match nnx.state(model, wrt).\n"
        f"  expected: {expected}\n  received: {jax.tree.structure(unwrap_variables(params))}\n"
        "Pass the filter the optimizer uses, e.g. "
        "jaxprune.nnx_loss_fn(model, loss, wrt=nnx.Param) with "
        "nnx.Optimizer(model, tx, wrt=nnx.Param)."
      )
    return loss(nnx.merge(graphdef, params, nnx.as_pure(rest)), batch)

  return loss_fn
