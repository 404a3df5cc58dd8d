"""Gradient criteria: saliency |w·g|, SNIP's connection sensitivity, first-order Taylor.

All three score a weight by how much the loss changes, to first order, when it is removed:
L(w with w_q = 0) − L(w) ≈ −g_q·w_q. They differ in where g comes from and how batches are
combined:

* ``"saliency"``: |w·g| with ``g`` the gradient passed to this update.
* ``"snip"``: |w ⊙ ḡ| with ḡ the gradient of the mean loss over ``batch`` / ``batches``
  (or ``grads``), normalised to sum 1 over all scored leaves (Lee et al. 2019).
* ``"taylor"``: the mean over batches of |w ⊙ g_b| (Molchanov et al. 2017/2019).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jaxprune._tree import float_map
from jaxprune.criteria.registry import register
from jaxprune.criteria.scoring import LossFn, data_batches, mean_loss

PyTree = Any


def _abs_product(params: PyTree, grads: PyTree) -> PyTree:
  return float_map(lambda w, g: jnp.abs(w * g).astype(jnp.float32), params, grads)


@register("saliency", needs=("grads",))
def saliency(params: PyTree, *, grads: PyTree, **extras: Any) -> PyTree:
  """First-order saliency |w · g| with ``g`` the gradient passed to this update.

  The loss change from removing weight w is ≈ −g·w to first order (Mozer & Smolensky 1989;
  Molchanov et al. 2017), so weights with the smallest |w·g| are removed.

  Example:
    >>> import jax.numpy as jnp, jaxprune
    >>> p, g = {"w": jnp.array([2.0, 1.0])}, {"w": jnp.array([0.1, -3.0])}
    >>> jaxprune.criteria.saliency(p, grads=g)["w"]
    Array([0.2, 3. ], dtype=float32)
  """
  del extras
  return _abs_product(params, grads)


@register("snip")
def snip(
  params: PyTree,
  *,
  loss_fn: LossFn | None = None,
  batch: Any = None,
  batches: Sequence[Any] | None = None,
  grads: PyTree | None = None,
  **extras: Any,
) -> PyTree:
  """SNIP connection sensitivity |∂L/∂c| at c = 1, normalised to sum 1 over all leaves.

  With a multiplicative mask c on the weights, ∂L(c ⊙ w)/∂c at c = 1 is g ⊙ w, so

    s_q = |g_q · w_q| / Σ_r |g_r · w_r|,   g = ∇ mean_b L(w; batch_b).

  The gradient is that of ``loss_fn`` over ``batch`` (or the mean loss over ``batches``,
  the same as one larger batch); without ``loss_fn`` it is ``grads`` (inside
  `jaxprune.masked`, the gradient of the step that prunes). Used at initialisation with
  ``schedule=jaxprune.schedules.one_shot(0)`` and usually ``distribution="global"``.

  Args:
    params: the params pytree.
    loss_fn: ``loss_fn(params, batch) -> scalar``; optional when ``grads`` is given.
    batch: one batch for ``loss_fn``.
    batches: a list of batches; the gradient of their mean loss is used.
    grads: the gradient, used when ``loss_fn`` is not given.
    **extras: other extras, ignored.

  Returns:
    Scores with the params' structure (float32, summing to 1; ``None`` for non-float leaves).

  Example:
    >>> import jax.numpy as jnp, jaxprune
    >>> p, g = {"w": jnp.array([2.0, 1.0, -1.0])}, {"w": jnp.array([0.5, -1.0, 0.0])}
    >>> jaxprune.criteria.snip(p, grads=g)["w"]
    Array([0.5, 0.5, 0. ], dtype=float32)

  References:
    Lee, Ajanthan, Torr. SNIP: Single-shot Network Pruning based on Connection
    Sensitivity. ICLR 2019.
  """
  del extras
  data = data_batches("snip", loss_fn, batch, batches, grads=grads, grads_ok=True)
  if data is not None:
    grads = jax.grad(mean_loss(loss_fn, data))(params)
  scores = _abs_product(params, grads)
  total = sum(jnp.sum(s) for s in jax.tree.leaves(scores))
  total = jnp.maximum(total, jnp.finfo(jnp.float32).tiny)
  return jax.tree.map(lambda s: s / total, scores)


@register("taylor")
def taylor(
  params: PyTree,
  *,
  loss_fn: LossFn | None = None,
  batch: Any = None,
  batches: Sequence[Any] | None = None,
  grads: PyTree | None = None,
  **extras: Any,
) -> PyTree:
  """First-order Taylor importance |w · g| averaged over batches.

    s_q = (1/B) Σ_b |w_q · ∂L(w; batch_b)/∂w_q|

  Unlike `snip`, the absolute value is taken per batch before averaging, so weights whose
  gradient changes sign between batches still count as important. Without ``loss_fn``
  this is `saliency` on ``grads``.

  Args:
    params: the params pytree.
    loss_fn: ``loss_fn(params, batch) -> scalar``; optional when ``grads`` is given.
    batch: one batch for ``loss_fn``.
    batches: a list of batches to average over.
    grads: the gradient, used when ``loss_fn`` is not given.
    **extras: other extras, ignored.

  Returns:
    Scores with the params' structure (float32; ``None`` for non-float leaves).

  Example:
    >>> import jax.numpy as jnp, jaxprune
    >>> loss_fn = lambda p, b: jnp.sum(p["w"] * b)  # gradient = b
    >>> batches = [jnp.array([1.0, -1.0]), jnp.array([-1.0, -1.0])]
    >>> p = {"w": jnp.array([2.0, 3.0])}
    >>> jaxprune.criteria.taylor(p, loss_fn=loss_fn, batches=batches)["w"]
    Array([2., 3.], dtype=float32)

  References:
    Molchanov, Mallya, Tyree, Frosio, Kautz. Importance Estimation for Neural Network
    Pruning. CVPR 2019.
  """
  del extras
  data = data_batches("taylor", loss_fn, batch, batches, grads=grads, grads_ok=True)
  if data is None:
    return _abs_product(params, grads)
  grad_fn = jax.grad(loss_fn)
  per_batch = [_abs_product(params, grad_fn(params, b)) for b in data]
  return jax.tree.map(lambda *s: sum(s) / len(s), *per_batch)
