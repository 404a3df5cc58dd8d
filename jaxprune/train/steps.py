"""Pure training and evaluation steps for image classification.

`train_step(state, batch) -> (state, metrics)` computes the cross-entropy gradient and
calls ``state.apply_gradients(grads, loss_fn=..., batch=..., key=...)``: the extras reach
``tx.update``, so any `jaxprune.masked` criterion (SNIP, GraSP, Taylor...) can score on
the current batch at the steps its schedule picks, with no change to the loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxprune.criteria.activation import capture_inputs
from jaxprune.criteria.scoring import classification_loss
from jaxprune.train.state import TrainState

Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]


def _variables(state: TrainState, params: Any) -> dict[str, Any]:
  if state.batch_stats:
    return {"params": params, "batch_stats": state.batch_stats}
  return {"params": params}


def scoring_loss(state: TrainState, temperature: float = 1.0):
  """The loss criteria score with: ``loss_fn(params, batch)``, the model in eval mode.

  It uses the state's BatchNorm statistics (not updated) and divides the logits by
  ``temperature`` (GraSP's reference uses 200).

  Args:
    state: the current `TrainState` (its ``apply_fn`` and ``batch_stats`` are used).
    temperature: logit temperature T > 0.

  Returns:
    ``loss_fn(params, batch) -> scalar`` mean cross-entropy of ``batch["image"]`` against
    ``batch["label"]``.
  """
  apply = lambda params, x: state.apply_fn(_variables(state, params), x, train=False)
  return classification_loss(apply, temperature=temperature)


def train_step(
  state: TrainState,
  batch: Batch,
  *,
  scoring_temperature: float = 1.0,
  label_smoothing: float = 0.0,
  capture_activations: bool = False,
  masks_frozen: bool = False,
  penalty: Callable[[Any, jax.Array], jax.Array] | None = None,
) -> tuple[TrainState, Metrics]:
  """One optimizer step on the mean softmax cross-entropy of ``batch``.

  The model runs in training mode (BatchNorm batch statistics, dropout with the key of
  this step). The step's key, the scoring loss and the batch are passed to the optimizer
  as ``key=``, ``loss_fn=`` and ``batch=``.

  Args:
    state: the `TrainState`.
    batch: ``{"image": float32 [B, H, W, C], "label": int32 [B]}``.
    scoring_temperature: logit temperature of the loss handed to criteria (static).
    label_smoothing: label smoothing of the training loss (static), 0 for none.
    capture_activations: also pass ``activations=`` (the inputs of every Dense layer on
      this batch, eval mode), for activation-aware criteria such as ``"wanda"`` (static;
      it costs one more forward pass per step).
    masks_frozen: compile without the mask-update branch of `jaxprune.masked` (static; only
      for steps where the pruning schedule keeps the masks, see
      `jaxprune.train.optim.mask_update_steps`).
    penalty: ``penalty(params, step)`` added to the loss that is differentiated, e.g.
      variational dropout's weighted KL (static; see `jaxprune.train.penalty`). The
      reported ``loss`` stays the cross-entropy.

  Returns:
    The new state and ``{"loss": mean loss, "accuracy": fraction correct}`` (device
    scalars, not synchronised).

  Example:
    >>> import functools, jax, jax.numpy as jnp, optax, jaxprune
    >>> from jaxprune.train import models
    >>> from jaxprune.train.state import create_train_state
    >>> model = models.get_model("lenet300100", num_classes=10)
    >>> tx = jaxprune.masked(optax.adam(1e-3), 0.5, criterion="snip")
    >>> state = create_train_state(model, tx, (8, 8, 1), seed=0)
    >>> batch = {"image": jnp.ones((4, 8, 8, 1)), "label": jnp.arange(4)}
    >>> state, metrics = jax.jit(train_step)(state, batch)
    >>> int(state.step), sorted(metrics)
    (1, ['accuracy', 'loss'])
  """
  key = state.step_key()
  dropout_key, criterion_key = jax.random.split(key)

  def loss_fn(params):
    logits, updates = state.apply_fn(
      _variables(state, params),
      batch["image"],
      train=True,
      mutable=["batch_stats"],
      rngs={"dropout": dropout_key},
    )
    labels = batch["label"]
    if label_smoothing:
      targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), label_smoothing)
      loss = optax.softmax_cross_entropy(logits, targets).mean()
    else:
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    objective = loss if penalty is None else loss + penalty(params, state.step)
    return objective, (loss, logits, updates)

  (_, (loss, logits, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  extras = {"masks_frozen": True} if masks_frozen else {}
  if capture_activations and not masks_frozen:  # only criteria read them
    extras["activations"] = capture_inputs(
      state.apply_fn, _variables(state, state.params), batch["image"], train=False
    )
  new_state = state.apply_gradients(
    grads,
    loss_fn=scoring_loss(state, scoring_temperature),
    batch={"image": batch["image"], "label": batch["label"]},
    key=criterion_key,
    **extras,
  )
  if state.batch_stats:
    new_state = new_state.replace(batch_stats=updates["batch_stats"])
  accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["label"])
  return new_state, {"loss": loss, "accuracy": accuracy}


def eval_step(state: TrainState, batch: Batch) -> Metrics:
  """Sums of loss and correct predictions over the real rows of an evaluation batch.

  Args:
    state: the `TrainState`.
    batch: ``{"image", "label", "mask"}`` as from `jaxprune.data.eval_batches`; rows whose
      ``mask`` is False (padding) are not counted. Without ``"mask"`` every row counts.

  Returns:
    ``{"loss_sum", "correct", "count"}`` float32 scalars: divide the sums by ``count``.
  """
  logits = state.apply_fn(_variables(state, state.params), batch["image"], train=False)
  labels = batch["label"]
  weight = batch.get("mask", jnp.ones(labels.shape, bool)).astype(jnp.float32)
  losses = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)
  correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
  return {
    "loss_sum": jnp.sum(losses * weight),
    "correct": jnp.sum(correct * weight),
    "count": jnp.sum(weight),
  }
