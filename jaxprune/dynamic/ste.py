"""Straight-through sparse training (STE) and SR-STE, as an optax wrapper.

The dense weights live in the optimizer state; the params the model sees are their masked
view, exactly 0.0 at pruned entries after every `optax.apply_updates`. So the training loop
does not change: the gradient it computes at the params *is* the straight-through gradient
(taken at the sparse weights), and `ste` applies it to the dense weights, then re-chooses
the masks from them. Per ``update(grads, state, params)`` call:

1. dense weights ``W`` (the params on kept entries, the stored values elsewhere);
2. SR-STE: ``g ← g + λ_W · (¬m ⊙ W)`` (Zhou et al. 2021, eq. 6: decay on pruned weights);
3. ``W' = W + inner.update(g, ..., W)``;
4. when the schedule says so, the masks are re-chosen from ``W'`` at the current sparsity
   (default: every call, at the target) with the criterion (default magnitude) and
   structure, through the same `jaxprune.selection.Plan` as `jaxprune.masked`;
5. the returned updates make the params exactly ``where(m', W', 0)``.

The state is a `jaxprune.MaskedState` (so `jaxprune.masks_of` and the trainer read its
masks) whose ``inner_state`` is an `STEState` holding the dense weights and the inner
optimizer's state. `dense_params` returns the dense weights.

References: Zhu & Gupta 2017 / Bengio et al. 2013 (straight-through estimator); Zhou et al.
2021, "Learning N:M fine-grained structured sparse neural networks from scratch" (SR-STE).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxprune import criteria, schedules, structures
from jaxprune._checks import check_sparsity, resolve_sparsity
from jaxprune.masked import DenseMask, MaskedState
from jaxprune.selection import plan_cache

PyTree = Any


class STEState(NamedTuple):
  """The ``inner_state`` of `ste`'s `jaxprune.MaskedState`.

  Attributes:
    dense: the dense weights mirroring params (a `jaxprune.masked.DenseMask` placeholder,
      no array, for leaves that are never pruned: their params are the weights).
    inner: the wrapped optimizer's state.
  """

  dense: PyTree
  inner: optax.OptState


def _every_call(step, target):
  """The default schedule: re-choose the masks at every update, at the target."""
  del step
  return jnp.asarray(True), jnp.asarray(target, jnp.float32)


def ste(
  inner: optax.GradientTransformation,
  sparsity: float | jax.Array | None,
  *,
  structure: Any = None,
  schedule: schedules.Schedule | None = None,
  decay: float = 0.0,
  distribution: Any = "uniform",
  criterion: Any = "magnitude",
  seed: int = 0,
) -> optax.GradientTransformationExtraArgs:
  """Sparse training with a straight-through estimator; ``decay > 0`` gives SR-STE.

  The first call's forward pass sees the params as given (dense); from then on the params
  are exactly sparse and the masks follow the dense weights kept in the state.

  Args:
    inner: any optax transformation; it updates the dense weights.
    sparsity: target fraction of weights removed; ``None`` (or 1 − N/M) with an N:M
      structure, which fixes it. Any other value with N:M is an error.
    structure: a `jaxprune.structures` object, e.g. ``n_of_m(2, 4)`` (default
      unstructured).
    schedule: ``(step, target) -> (update_now, sparsity)`` deciding when masks are
      re-chosen and at which sparsity (default: every call, at the target).
    decay: λ_W of SR-STE, added as ``λ_W · w`` to the gradient of pruned weights (0 = STE).
    distribution: per-leaf targets, as in `jaxprune.masked`.
    criterion: a data-free criterion (needs at most ``grads`` and ``key``) scoring the dense
      weights; default magnitude.
    seed: base PRNG key for stochastic criteria.

  Returns:
    An `optax.GradientTransformationExtraArgs` whose state is a `jaxprune.MaskedState`.
    ``update(..., masks_frozen=True)`` skips the mask choice (only for steps where the
    schedule keeps the masks), as in `jaxprune.masked`.

  Example:
    >>> import jax.numpy as jnp, optax, jaxprune
    >>> params = {"w": jnp.array([[1.0, -4.0, 3.0, 2.0]]).T}
    >>> tx = jaxprune.dynamic.ste(optax.sgd(1.0), 0.5,
    ...                           structure=jaxprune.structures.n_of_m(2, 4), decay=0.5)
    >>> state = tx.init(params)
    >>> grads = {"w": jnp.array([[0.0, 0.0, 0.0, 2.5]]).T}
    >>> updates, state = tx.update(grads, state, params)
    >>> params = optax.apply_updates(params, updates)
    >>> params["w"][:, 0].tolist()  # 2.0 - 2.5 = -0.5 is now the smallest: pruned
    [0.0, -4.0, 3.0, 0.0]
    >>> jaxprune.dynamic.dense_params(params, state)["w"][:, 0].tolist()
    [1.0, -4.0, 3.0, -0.5]
  """
  check_sparsity(sparsity, "jaxprune.dynamic.ste(optax.adam(1e-3), 0.5)")
  decay = float(decay)
  if decay < 0:
    raise ValueError(f"decay (SR-STE's lambda_W) must be >= 0; got {decay}. E.g. decay=2e-4.")
  crit = criteria.get(criterion)
  if set(crit.needs) - {"grads", "key"} or crit.threshold is not None or crit.prune_fn:
    raise ValueError(
      f"ste re-chooses masks from the dense weights at every update, so it takes a data-free "
      f"criterion (one needing at most grads and key); got {crit.name!r} (needs "
      f"{crit.needs}). Use criterion='magnitude' (the default)."
    )
  structure = structures.get(structure)
  sparsity = resolve_sparsity(sparsity, crit, structure, "jaxprune.dynamic.ste(inner, 0.9)")
  sched = _every_call if schedule is None else schedules.get(schedule)
  inner = optax.with_extra_args_support(inner)
  plan_for = plan_cache(distribution, structure)

  def init_fn(params: PyTree) -> MaskedState:
    plan = plan_for(params)
    leaves = jax.tree.leaves(params)
    masks = [
      jnp.ones(s, bool) if on else DenseMask(s)
      for s, on in zip(plan.shapes, plan.prunable, strict=True)
    ]
    dense = [  # copies: a step that donates params and state must not get one buffer twice
      jnp.array(x, copy=True) if on else DenseMask(s)
      for x, s, on in zip(leaves, plan.shapes, plan.prunable, strict=True)
    ]
    return MaskedState(
      count=jnp.zeros([], jnp.int32),
      masks=jax.tree.unflatten(plan.treedef, masks),
      key=jax.random.key_data(jax.random.key(seed)),
      inner_state=STEState(jax.tree.unflatten(plan.treedef, dense), inner.init(params)),
    )

  def update_fn(updates, state, params=None, masks_frozen: bool = False, **extras):
    if params is None:
      raise ValueError(
        "jaxprune.dynamic.ste needs the current params. Call tx.update(grads, opt_state, "
        "params) instead of tx.update(grads, opt_state)."
      )
    if not isinstance(masks_frozen, bool):
      raise TypeError(f"masks_frozen must be a Python bool; got {type(masks_frozen).__name__}.")
    plan = plan_for(params)
    p_leaves = plan.check_tree(params, "params")
    g_leaves = plan.check_tree(updates, "gradient")
    is_node = lambda x: isinstance(x, DenseMask)  # noqa: E731
    masks = plan.treedef.flatten_up_to(state.masks)
    stored = plan.treedef.flatten_up_to(state.inner_state.dense)
    pruned = [not is_node(m) for m in masks]

    weights = [
      jnp.where(m, p, d) if on else p
      for p, m, d, on in zip(p_leaves, masks, stored, pruned, strict=True)
    ]
    grads = [
      g + jnp.asarray(decay, g.dtype) * jnp.where(m, jnp.zeros_like(w), w).astype(g.dtype)
      if on and decay
      else g
      for g, w, m, on in zip(g_leaves, weights, masks, pruned, strict=True)
    ]
    w_tree = jax.tree.unflatten(plan.treedef, weights)
    inner_updates, inner_state = inner.update(
      jax.tree.unflatten(plan.treedef, grads), state.inner_state.inner, w_tree, **extras
    )
    u_leaves = plan.check_tree(inner_updates, "inner update")
    new_w = plan.treedef.flatten_up_to(optax.apply_updates(w_tree, inner_updates))

    def recompute(old):
      key = jax.random.fold_in(jax.random.wrap_key_data(state.key), state.count)
      crit_extras = {**extras, "key": extras.get("key", key)}
      scores = crit.fn(jax.tree.unflatten(plan.treedef, new_w), grads=updates, **crit_extras)
      fresh = plan.select(new_w, scores, current, sparsity, crit)
      return [m if f is None or is_node(m) else f for m, f in zip(old, fresh, strict=True)]

    new_masks = masks
    if not masks_frozen:
      crit.check_extras({"grads": updates, "key": True, **extras})
      update_now, current = sched(state.count, sparsity)
      new_masks = jax.lax.cond(update_now, recompute, lambda m: list(m), masks)

    out = [
      jnp.where(m1, jnp.where(m0, u, (w1 - p).astype(u.dtype)), -p.astype(u.dtype)) if on else u
      for u, p, w1, m0, m1, on in zip(
        u_leaves, p_leaves, new_w, masks, new_masks, pruned, strict=True
      )
    ]
    dense = [w if on else d for w, d, on in zip(new_w, stored, pruned, strict=True)]
    new_state = MaskedState(
      count=optax.safe_increment(state.count),
      masks=jax.tree.unflatten(plan.treedef, new_masks),
      key=state.key,
      inner_state=STEState(jax.tree.unflatten(plan.treedef, dense), inner_state),
    )
    return jax.tree.unflatten(plan.treedef, out), new_state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _find_ste_state(opt_state: Any):
  found = []

  def visit(x):
    if isinstance(x, MaskedState) and isinstance(x.inner_state, STEState):
      found.append(x)
    return x

  jax.tree.map(visit, opt_state, is_leaf=lambda x: isinstance(x, MaskedState))
  if len(found) != 1:
    raise ValueError(
      f"Expected exactly one jaxprune.dynamic.ste state in the optimizer state; found "
      f"{len(found)}. Pass the opt_state of a transformation built with "
      "jaxprune.dynamic.ste(...), e.g. dense_params(params, opt_state)."
    )
  return found[0]


def dense_params(params: PyTree, opt_state: Any) -> PyTree:
  """The dense weights `ste` trains: ``params`` on kept entries, the stored values elsewhere.

  Example:
    >>> import jax.numpy as jnp, optax, jaxprune
    >>> params = {"w": jnp.ones((2, 2))}
    >>> state = jaxprune.dynamic.ste(optax.sgd(0.1), 0.5).init(params)
    >>> jaxprune.dynamic.dense_params(params, state)["w"].tolist()
    [[1.0, 1.0], [1.0, 1.0]]
  """
  found = _find_ste_state(opt_state)
  treedef = jax.tree.structure(params)
  masks = treedef.flatten_up_to(found.masks)
  stored = treedef.flatten_up_to(found.inner_state.dense)
  out = [
    p if isinstance(m, DenseMask) else jnp.where(m, p, d)
    for p, m, d in zip(jax.tree.leaves(params), masks, stored, strict=True)
  ]
  return jax.tree.unflatten(treedef, out)
