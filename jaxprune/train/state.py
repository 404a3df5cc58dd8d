"""`TrainState`: params, model state, optimizer state (masks included), step and RNG.

Everything a run needs to continue exactly where it stopped is an array in this one
pytree, so a checkpoint of it (plus the data iterator's position) is a complete resume
point: the masks live in ``opt_state`` (a `jaxprune.MaskedState`), the schedule's counter
too, and per-step random keys are derived from ``rng`` and ``step`` rather than carried
forward.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

PyTree = Any


class TrainState(train_state.TrainState):
  """Flax's `TrainState` plus BatchNorm statistics and a base PRNG key.

  Unlike the base class, `apply_gradients` forwards keyword extras to ``tx.update``,
  which is how data-driven criteria of `jaxprune.masked` get their loss and batch.

  Attributes:
    step: int32[] number of `apply_gradients` calls so far.
    apply_fn: the model's ``apply`` (static).
    params: the ``"params"`` collection.
    tx: the optimizer (static).
    opt_state: the optimizer state; with `jaxprune.masked` it holds the masks.
    batch_stats: the ``"batch_stats"`` collection (``{}`` for models without BatchNorm).
    rng: uint32[2] raw key data; the key of step t is ``fold_in(rng, t)`` (see `step_key`).
  """

  batch_stats: PyTree
  rng: jax.Array

  def apply_gradients(self, grads: PyTree, **extras: Any) -> TrainState:
    """One optimizer step: ``tx.update(grads, opt_state, params, **extras)``, then apply.

    Args:
      grads: gradient of the loss with respect to ``params``.
      **extras: keyword extras for ``tx.update`` (``loss_fn=``, ``batch=``, ``key=``),
        which `jaxprune.masked` hands to its criterion and its inner optimizer.

    Returns:
      The state with new params and optimizer state, and ``step + 1``.
    """
    updates, opt_state = self.tx.update(grads, self.opt_state, self.params, **extras)
    params = optax.apply_updates(self.params, updates)
    return self.replace(step=self.step + 1, params=params, opt_state=opt_state)

  def step_key(self) -> jax.Array:
    """The PRNG key of the current step: ``fold_in(key(rng), step)``.

    It depends only on the seed and the step number, so a resumed run draws the same
    keys (dropout, stochastic criteria) as an uninterrupted one.
    """
    return jax.random.fold_in(jax.random.wrap_key_data(self.rng), self.step)


def create_train_state(
  model: nn.Module,
  tx: optax.GradientTransformation,
  input_shape: Sequence[int],
  seed: int,
  params: PyTree | None = None,
  step: int = 0,
) -> TrainState:
  """Initialises the model on a dummy batch and the optimizer on its params.

  The same function builds the restore target of a checkpoint (under `jax.eval_shape`),
  so saved and restored states always have the same structure.

  Args:
    model: a Flax Linen module called as ``model.apply(variables, x, train=...)``.
    tx: the optimizer, e.g. ``jaxprune.masked(optax.adam(1e-3), 0.9)``.
    input_shape: one example's shape without the batch axis, e.g. ``(28, 28, 1)``.
    seed: seeds the initialisation and the run's PRNG key.
    params: params replacing the initialisation (same structure and shapes), e.g. a
      lottery ticket's rewind point; the optimizer starts fresh on them.
    step: the step the state starts at (a run rewound to step k starts at k).

  Returns:
    A `TrainState` at ``step``.

  Example:
    >>> import optax, jaxprune
    >>> from jaxprune.train import models
    >>> model = models.get_model("lenet300100", num_classes=10)
    >>> state = create_train_state(model, jaxprune.masked(optax.adam(1e-3), 0.9), (8, 8, 1), 0)
    >>> int(state.step), state.params["Dense_0"]["kernel"].shape
    (0, (64, 300))
  """

  def init(given: PyTree | None) -> tuple[PyTree, PyTree, PyTree, jax.Array]:
    init_key, run_key = jax.random.split(jax.random.key(seed))
    params_key, dropout_key = jax.random.split(init_key)
    dummy = jnp.zeros((1, *input_shape), getattr(model, "input_dtype", jnp.float32))  # LM: int32
    variables = model.init({"params": params_key, "dropout": dropout_key}, dummy, train=False)
    params = variables["params"] if given is None else given
    batch_stats = variables.get("batch_stats", {})
    return params, batch_stats, tx.init(params), jax.random.key_data(run_key)

  given = None
  if params is not None:
    expected = jax.eval_shape(init, None)[0]
    given = jax.tree.map(jnp.asarray, params)
    if jax.tree.structure(given) != jax.tree.structure(expected) or any(
      (a.shape, a.dtype) != (b.shape, b.dtype)
      for a, b in zip(jax.tree.leaves(given), jax.tree.leaves(expected), strict=True)
    ):
      raise ValueError(
        "create_train_state(params=...): the given params do not match the model's: got "
        f"{jax.tree.map(lambda x: (x.shape, str(x.dtype)), given)}, expected "
        f"{jax.tree.map(lambda x: (x.shape, str(x.dtype)), expected)}. Pass params of the "
        "same model, e.g. the params of a run with the same config.model."
      )

  # One compiled program instead of one per initialiser op (much faster on CPU).
  params, batch_stats, opt_state, rng = jax.jit(init)(given)
  return TrainState(
    step=jnp.full([], step, jnp.int32),
    apply_fn=model.apply,
    params=params,
    tx=tx,
    opt_state=opt_state,
    batch_stats=batch_stats,
    rng=rng,
  )
