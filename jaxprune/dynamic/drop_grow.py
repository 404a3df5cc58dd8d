"""Drop-and-grow criteria at a constant per-leaf count: SET and RigL.

At each mask update a leaf with ``a`` active weights drops the ``d = floor(f · a)`` active
weights of lowest magnitude and grows ``d`` connections elsewhere: uniformly at random
(SET, Mocanu et al. 2018) or where the dense gradient is largest in magnitude (RigL, Evci
et al. 2020). The fraction ``f`` follows RigL's cosine decay, α at step 0 to 0 at ``end``.

The choice is expressed as scores, so the mask maker does the growing: survivors (active,
not dropped) score +inf, every other entry its (finite) grow score, and the exact top-k at
the leaf's constant target keeps all survivors plus the ``d`` best candidates. One
selection runs here (the drop), one in the mask maker (the grow).

Details follow the reference implementation, google-research/rigl,
``rigl/sparse_optimizers_base.py`` (``SparseSETOptimizerBase._get_update_op``):

* ``d`` is ``int(float32(a) * f)``, a truncation (here ``floor`` in float32).
* Grow candidates are all entries that do not survive the drop, *including the entries
  just dropped*: a weight can be dropped and regrown in the same update.
* Such a weight is not a new connection there (``reinit_when_same=False`` for SET and
  RigL: ``new_connections = mask2 & ~old_mask``): it keeps its value and its optimizer
  state. Here it stays active (old and new mask both True), so `jaxprune.masked` leaves it
  alone; only entries with ``new & ~old`` are grown at exactly 0 with reset state.
* Ties are broken by lowest flat index, as ``tf.nn.top_k`` does for the grow step. The
  reference also adds N(0, 1e-5) noise to the drop scores; this module does not, so the
  drop is exactly "lowest magnitude first" and deterministic.
* On a mask-update step the reference applies no gradient step (the update replaces it);
  `jaxprune.masked` applies the inner optimizer's update to the surviving weights in the
  same call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxprune import schedules
from jaxprune.masks import topk_mask

PyTree = Any
Fraction = float | Callable[[jax.Array], jax.Array]

_LOW = float(jnp.finfo(jnp.float32).min)
_HIGH = float(jnp.finfo(jnp.float32).max)


def num_to_drop(active: jax.Array, fraction: jax.Array | float) -> jax.Array:
  """``floor(float32(active) · fraction)`` as int32: how many active weights are dropped.

  Example:
    >>> int(num_to_drop(jnp.int32(10), 0.29))
    2
  """
  prod = jnp.asarray(active, jnp.float32) * jnp.asarray(fraction, jnp.float32)
  return jnp.floor(prod).astype(jnp.int32)


def _finite(score: jax.Array) -> jax.Array:
  """float32 scores clipped to finite values (NaN lowest), so none ties with +inf."""
  s = jnp.asarray(score, jnp.float32)
  return jnp.clip(jnp.where(jnp.isnan(s), _LOW, s), _LOW, _HIGH)


def drop_grow_scores(
  weight: jax.Array, mask: jax.Array, grow: jax.Array, fraction: jax.Array | float
) -> jax.Array:
  """Scores of one leaf whose exact top-k (k = active count) is the drop-and-grow mask.

  .. math:: d = \\lfloor f \\cdot a \\rfloor,\\quad
     S = \\text{top}_{a-d}\\{|w_i| : m_i\\},\\quad
     \\text{score}_i = +\\infty \\text{ if } i \\in S \\text{ else } \\text{grow}_i

  Args:
    weight: the leaf's current values.
    mask: its current bool mask (``a`` True entries).
    grow: grow scores of the same shape (clipped to finite float32; NaN ranks lowest).
    fraction: the drop fraction ``f`` in [0, 1] (may be traced).

  Returns:
    float32 scores of ``weight.shape``.

  Example:
    >>> w = jnp.array([0.5, -2.0, 0.1, 0.0, 3.0])
    >>> m = jnp.array([True, True, True, False, True])
    >>> g = jnp.array([0.0, 0.0, 0.0, 7.0, 0.0])
    >>> s = drop_grow_scores(w, m, g, 0.25)  # drop 1 of 4: the 0.1; grow the 7.0
    >>> from jaxprune.masks import topk_mask
    >>> topk_mask(s, 4).tolist()
    [True, True, False, True, True]
  """
  mask = jnp.asarray(mask, bool)
  active = jnp.sum(mask, dtype=jnp.int32)
  keep = active - num_to_drop(active, fraction)
  magnitude = jnp.where(mask, jnp.abs(weight).astype(jnp.float32), -jnp.inf)
  survivors = topk_mask(magnitude, keep) & mask
  return jnp.where(survivors, jnp.inf, _finite(grow))


def cosine(alpha: float = 0.3, end: int | None = None) -> Callable[[jax.Array], jax.Array]:
  """RigL's drop fraction: α·(1 + cos(π·t/end))/2 for t ≤ end, then 0; constant α if no end.

  Example:
    >>> f = cosine(0.3, end=100)
    >>> [round(float(f(t)), 3) for t in (0, 50, 100)]
    [0.3, 0.15, 0.0]
  """
  if not 0.0 <= float(alpha) <= 1.0:
    raise ValueError(f"The drop fraction alpha must be in [0, 1]; got {alpha!r}, e.g. 0.3.")
  if end is None:
    return lambda step: jnp.asarray(alpha, jnp.float32)
  if not isinstance(end, int) or end < 1:
    raise ValueError(
      f"end must be a positive int (the step where the drop fraction reaches 0); got {end!r}. "
      "RigL uses 75% of training, e.g. end=int(0.75 * total_steps)."
    )
  return schedules.cosine_fraction(float(alpha), end)


def _fraction_fn(fraction: Fraction) -> Callable[[jax.Array], jax.Array]:
  if callable(fraction):
    return fraction
  return lambda step: jnp.asarray(fraction, jnp.float32)


def _leaves(params: PyTree, masks: PyTree, *others: PyTree):
  treedef = jax.tree.structure(params)
  return treedef, [treedef.flatten_up_to(t) for t in (params, masks, *others)]


def rigl_scores(
  params: PyTree, *, grads: PyTree, masks: PyTree, step: jax.Array, fraction: Fraction = 0.3
) -> PyTree:
  """RigL (Evci et al. 2020): drop the smallest active weights, grow where |grad| is largest.

  Args:
    params: current params.
    grads: the dense gradient (pruned entries included).
    masks: current bool masks mirroring params (``None`` for dense leaves, left unscored).
    step: the update count (``step`` extra of `jaxprune.masked`).
    fraction: drop fraction, a number or ``step -> f`` (e.g. `cosine`).

  Returns:
    Scores mirroring params (``None`` for dense leaves), see `drop_grow_scores`.

  Example:
    >>> p = {"w": jnp.array([0.5, -2.0, 0.1, 0.0])}
    >>> m = {"w": jnp.array([True, True, True, False])}
    >>> g = {"w": jnp.array([0.0, 0.0, 0.0, -4.0])}
    >>> rigl_scores(p, grads=g, masks=m, step=0, fraction=0.4)["w"].tolist()
    [inf, inf, 0.0, 4.0]
  """
  f = _fraction_fn(fraction)(step)
  treedef, (ps, ms, gs) = _leaves(params, masks, grads)
  out = [
    None if m is None else drop_grow_scores(p, m, jnp.abs(g), f)
    for p, m, g in zip(ps, ms, gs, strict=True)
  ]
  return jax.tree.unflatten(treedef, out)


def leaf_keys(key: jax.Array, n: int) -> jax.Array:
  """The per-leaf keys SET draws its grow scores from: ``jax.random.split(key, n)``."""
  return jax.random.split(key, max(n, 1))


def set_scores(
  params: PyTree, *, masks: PyTree, step: jax.Array, key: jax.Array, fraction: Fraction = 0.3
) -> PyTree:
  """SET (Mocanu et al. 2018): drop the smallest active weights, grow uniformly at random.

  Leaf ``i`` (in `jax.tree.leaves` order of params) draws its grow scores as
  ``jax.random.uniform(leaf_keys(key, n)[i], shape)``.

  Args:
    params: current params.
    masks: current bool masks mirroring params (``None`` for dense leaves).
    step: the update count.
    key: PRNG key of this update.
    fraction: drop fraction, a number or ``step -> f``.

  Returns:
    Scores mirroring params (``None`` for dense leaves), see `drop_grow_scores`.

  Example:
    >>> import jax
    >>> p = {"w": jnp.array([0.5, -2.0, 0.1, 0.0])}
    >>> m = {"w": jnp.array([True, True, True, False])}
    >>> s = set_scores(p, masks=m, step=0, key=jax.random.key(0), fraction=0.4)["w"]
    >>> s[:2].tolist(), bool(s[2] < 1.0)
    ([inf, inf], True)
  """
  f = _fraction_fn(fraction)(step)
  treedef, (ps, ms) = _leaves(params, masks)
  keys = leaf_keys(key, len(ps))
  out = [
    None if m is None else drop_grow_scores(p, m, jax.random.uniform(k, p.shape), f)
    for p, m, k in zip(ps, ms, keys, strict=False)
  ]
  return jax.tree.unflatten(treedef, out)
