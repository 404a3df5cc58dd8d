"""Scoring losses and the data plumbing shared by data-driven criteria.

Criteria that look at data see only ``loss_fn(params, batch) -> scalar`` and one ``batch``
or a list of ``batches``. `classification_loss` builds such a loss from a model's apply
function, with the logit temperature some criteria call for (GraSP's reference uses T=200).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxprune.errors import MissingExtraError

PyTree = Any
LossFn = Callable[[PyTree, Any], jax.Array]


def classification_loss(
  apply_fn: Callable[[PyTree, jax.Array], jax.Array],
  *,
  temperature: float = 1.0,
  image_key: str = "image",
  label_key: str = "label",
) -> LossFn:
  """Softmax cross-entropy of tempered logits, as a ``loss_fn(params, batch)`` for criteria.

  L(θ) = mean_i CE(softmax(f(θ, x_i) / T), y_i)

  A temperature T > 1 flattens the softmax so that gradients and Hessian-vector products
  stay informative at initialisation (Wang et al. 2020 use T = 200 for GraSP).

  Args:
    apply_fn: ``apply_fn(params, images) -> logits [B, C]``; for a Flax Linen model,
      ``lambda p, x: model.apply({"params": p}, x)``.
    temperature: T, the logits are divided by it.
    image_key: key of the inputs in ``batch``.
    label_key: key of the integer labels in ``batch``.

  Returns:
    ``loss_fn(params, batch) -> scalar`` (the batch mean).

  Example:
    >>> import jax.numpy as jnp, jaxprune
    >>> loss_fn = jaxprune.criteria.classification_loss(lambda p, x: x @ p["w"], temperature=2.0)
    >>> batch = {"image": jnp.ones((4, 3)), "label": jnp.zeros(4, jnp.int32)}
    >>> round(float(loss_fn({"w": jnp.zeros((3, 5))}, batch)), 6)  # uniform softmax: log 5
    1.609438

  References:
    Wang, Zhang, Grosse. Picking Winning Tickets Before Training by Preserving Gradient
    Flow. ICLR 2020.
  """
  if not temperature > 0:
    raise ValueError(
      f"temperature must be positive; got {temperature!r}. "
      "Example: classification_loss(apply_fn, temperature=200.0)."
    )

  def loss_fn(params: PyTree, batch: Any) -> jax.Array:
    logits = apply_fn(params, batch[image_key]).astype(jnp.float32) / temperature
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch[label_key]).mean()

  return loss_fn


# ------------------------------------------------------------------ shared by criteria


def _supply_hint(name: str, what: str) -> str:
  return (
    f"Corrected calls:\n"
    f"  updates, state = tx.update(grads, state, params, {what})\n"
    f"  jaxprune.prune(params, sparsity, criterion={name!r}, {what})"
  )


def data_batches(
  name: str,
  loss_fn: LossFn | None,
  batch: Any,
  batches: Sequence[Any] | None,
  *,
  grads: PyTree | None = None,
  grads_ok: bool = False,
) -> list[Any] | None:
  """Returns the batches a criterion scores on, or ``None`` to score from ``grads``.

  Raises:
    MissingExtraError: when neither (``loss_fn`` and a batch) nor, if allowed, ``grads``
      was passed.
    ValueError: when both ``batch`` and ``batches`` were passed.
  """
  if loss_fn is None:
    if grads_ok and grads is not None:
      return None
    alt = " (or the gradient 'grads')" if grads_ok else ""
    raise MissingExtraError(
      f"Criterion {name!r} needs 'loss_fn' and 'batch' (or 'batches'){alt}; no loss_fn was "
      f"passed.\n{_supply_hint(name, 'loss_fn=loss_fn, batch=batch')}\nwith loss_fn(params, "
      "batch) -> scalar, e.g. jaxprune.criteria.classification_loss(apply_fn)."
    )
  if batch is not None and batches is not None:
    raise ValueError(
      f"Criterion {name!r} got both batch= and batches=; pass one: batch=batch for one "
      "batch, or batches=[batch0, batch1, ...] to average over several."
    )
  if batch is None and batches is None:
    raise MissingExtraError(
      f"Criterion {name!r} got loss_fn but no data: pass 'batch' (or 'batches').\n"
      f"{_supply_hint(name, 'loss_fn=loss_fn, batch=batch')}"
    )
  if batches is not None:
    if isinstance(batches, dict) or not isinstance(batches, Sequence) or not batches:
      raise ValueError(
        f"Criterion {name!r}: batches must be a non-empty list of batches; got "
        f"{type(batches).__name__}. Example: batches=[batch0, batch1], or batch=batch."
      )
    return list(batches)
  return [batch]


def mean_loss(loss_fn: LossFn, batches: Sequence[Any]) -> Callable[[PyTree], jax.Array]:
  """``params -> mean_b loss_fn(params, batches[b])`` (the list is unrolled)."""

  def f(params: PyTree) -> jax.Array:
    return sum(loss_fn(params, b) for b in batches) / len(batches)

  return f
