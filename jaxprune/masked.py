"""`masked`: an optax wrapper that keeps params exactly sparse and updates masks on schedule.

Per call of ``update(grads, state, params, **extras)``:

1. the schedule reads the state's counter: update masks now? at which sparsity?
2. under `jax.lax.cond`, the criterion scores the params (with ``grads`` and the extras)
   and the plan turns scores into exact masks;
3. the inner optimizer sees the gradient with pruned entries zeroed;
4. pruned entries get the update ``-param``, so `optax.apply_updates` leaves them at
   exactly 0.0; kept entries get exactly the inner optimizer's update.
"""

from __future__ import annotations

import numbers
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxprune import criteria, schedules
from jaxprune.errors import MaskMismatchError
from jaxprune.masks import pack, unpack
from jaxprune.selection import Plan

PyTree = Any


@struct.dataclass
class PackedMask:
  """A mask stored as 1 bit per weight; ``shape`` is static metadata."""

  bits: jax.Array  # uint8[ceil(size / 8)]
  shape: tuple[int, ...] = struct.field(pytree_node=False)

  def unpack(self) -> jax.Array:
    return unpack(self.bits, self.shape)


@struct.dataclass
class DenseMask:
  """Placeholder for a leaf that is never pruned; it holds no array."""

  shape: tuple[int, ...] = struct.field(pytree_node=False)


def _is_mask_node(x: Any) -> bool:
  return isinstance(x, PackedMask | DenseMask)


class MaskedState(NamedTuple):
  """State of `masked`.

  Attributes:
    count: int32[] number of ``update`` calls so far (the schedule's step).
    masks: pytree mirroring params: bool[shape] per pruned leaf (`PackedMask` when
      packed), `DenseMask` (no array) for leaves that stay dense.
    key: uint32[2] raw base PRNG key data; a mask update at step t without a ``key=``
      extra gives the criterion ``fold_in(key, t)``.
    inner_state: the wrapped optimizer's state.
  """

  count: jax.Array
  masks: PyTree
  key: jax.Array
  inner_state: optax.OptState


def _check_sparsity(sparsity: Any) -> None:
  if isinstance(sparsity, numbers.Number) and not isinstance(sparsity, bool):
    if not 0.0 <= float(sparsity) < 1.0:
      raise ValueError(
        f"sparsity must be a fraction in [0, 1) (the share of weights removed); got "
        f"{sparsity!r}. For 90% sparsity: jaxprune.masked(optax.adam(1e-3), sparsity=0.9)."
      )
  elif not hasattr(sparsity, "dtype"):
    raise TypeError(
      f"sparsity must be a number in [0, 1); got {type(sparsity).__name__}: {sparsity!r}. "
      "Example: jaxprune.masked(optax.adam(1e-3), sparsity=0.9)."
    )


def masked(
  inner: optax.GradientTransformation,
  sparsity: float | jax.Array,
  *,
  criterion: str | Any = "magnitude",
  schedule: schedules.Schedule | None = None,
  distribution: Any = "uniform",
  structure: Any = None,
  packed: bool = False,
  seed: int = 0,
) -> optax.GradientTransformationExtraArgs:
  """Wraps ``inner`` so params stay exactly sparse, with masks updated on ``schedule``.

  Args:
    inner: any optax transformation (adam, chain(...), inject_hyperparams(...), ...).
    sparsity: target fraction of weights removed, in [0, 1) (may be traced).
    criterion: registered name (``jaxprune.criteria.names()``) or ``fn(params, **extras)``.
    schedule: ``(step, target) -> (update_now, sparsity)``; default: prune to the target at
      the first update (`jaxprune.schedules.one_shot(0)`).
    distribution: ``"uniform"``, ``"erk"``, ``"er"``, ``"global"``, a path mapping or callable.
    structure: a `jaxprune.structures` object (default unstructured).
    packed: store masks as 1 bit per weight instead of 1 byte.
    seed: seeds the PRNG key used by stochastic criteria (e.g. ``"random"``).

  Returns:
    An `optax.GradientTransformationExtraArgs`; its ``update(grads, state, params,
    **extras)`` forwards extras (``loss_fn=``, ``batch=``, ``key=``...) to the criterion and
    to ``inner``. Place it last in an `optax.chain`: a transformation after it would
    rescale the ``-param`` updates that zero pruned weights.

    ``update(..., masks_frozen=True)`` (a static Python bool, not forwarded) compiles the
    update without the mask-update branch: the caller promises that the schedule keeps the
    masks at this step (``schedule(state.count, sparsity)[0]`` is False), e.g. because it
    evaluated the schedule on the host. The result is then identical and the step cheaper
    on CPU, where even an untaken `jax.lax.cond` branch costs a few percent of a small step.
    A step where the schedule does update must not pass it: the masks would go stale.

  Example:
    >>> import jax, jax.numpy as jnp, optax, jaxprune
    >>> params = {"w": jnp.arange(1.0, 11.0).reshape(2, 5), "b": jnp.ones(5)}
    >>> tx = jaxprune.masked(optax.sgd(0.1), sparsity=0.5)
    >>> state = tx.init(params)
    >>> grads = jax.tree.map(jnp.ones_like, params)
    >>> updates, state = tx.update(grads, state, params)
    >>> params = optax.apply_updates(params, updates)
    >>> params["w"][0].tolist()  # the smaller half is pruned, exactly
    [0.0, 0.0, 0.0, 0.0, 0.0]
    >>> bool((params["w"][1] != 0).all())
    True
  """
  _check_sparsity(sparsity)
  crit = criteria.get(criterion)
  sched = schedules.get(schedule)
  if crit.prune_fn is not None:
    raise ValueError(
      f"Criterion {crit.name!r} is a one-shot solver that also rewrites the kept weights, so "
      f"it cannot run inside an optimizer. Use jaxprune.prune(params, sparsity, "
      f"criterion={crit.name!r}, ...) after training."
    )
  inner = optax.with_extra_args_support(inner)
  plans: dict[Any, Plan] = {}

  def plan_for(params: PyTree) -> Plan:
    treedef = jax.tree.structure(params)
    shapes = tuple(tuple(getattr(x, "shape", ())) for x in jax.tree.leaves(params))
    key = (treedef, shapes)
    if key not in plans:
      plans[key] = Plan.make(params, distribution, structure)
    return plans[key]

  def init_fn(params: PyTree) -> MaskedState:
    plan = plan_for(params)
    masks = []
    for shape, on in zip(plan.shapes, plan.prunable, strict=True):
      if not on:
        masks.append(DenseMask(shape))
      elif packed:
        masks.append(PackedMask(pack(jnp.ones(shape, bool)), shape))
      else:
        masks.append(jnp.ones(shape, bool))
    return MaskedState(
      count=jnp.zeros([], jnp.int32),
      masks=jax.tree.unflatten(plan.treedef, masks),
      key=jax.random.key_data(jax.random.key(seed)),
      inner_state=inner.init(params),
    )

  def update_fn(updates, state, params=None, masks_frozen: bool = False, **extras):
    if not isinstance(masks_frozen, bool):
      raise TypeError(
        f"masks_frozen must be a Python bool (it selects what is compiled); got "
        f"{type(masks_frozen).__name__}. Pass masks_frozen=True only on steps where the "
        "schedule keeps the masks, e.g. tx.update(grads, state, params, masks_frozen=True)."
      )
    if params is None:
      raise ValueError(
        "jaxprune.masked needs the current params to zero pruned weights. Call "
        "tx.update(grads, opt_state, params) instead of tx.update(grads, opt_state)."
      )
    plan = plan_for(params)
    p_leaves = plan.check_tree(params, "params")
    g_leaves = plan.check_tree(updates, "gradient")
    if not masks_frozen:  # the criterion runs only where masks may change
      crit.check_extras({"grads": updates, "key": True, **extras})
    if jax.tree.structure(state.masks, is_leaf=_is_mask_node) != plan.treedef:
      raise MaskMismatchError(
        "The params passed to tx.update do not match the tree the masks were made for by "
        f"tx.init.\n  masks:  {jax.tree.structure(state.masks, is_leaf=_is_mask_node)}\n"
        f"  params: {plan.treedef}\nInitialise with the same params: state = tx.init(params)."
      )
    stored = plan.treedef.flatten_up_to(state.masks)

    update_now, current = sched(state.count, sparsity)

    def recompute(stored_masks):
      # The criterion's key: the caller's ``key=`` extra, else derived from the state's base
      # key and the step (so no random numbers are drawn on steps that keep the masks).
      own = jax.random.fold_in(jax.random.wrap_key_data(state.key), state.count)
      crit_extras = {**extras, "key": extras.get("key", own)}
      scores = crit.fn(params, grads=updates, **crit_extras)
      fresh = plan.select(p_leaves, scores, current, sparsity, crit)
      out = []
      for old, new in zip(stored_masks, fresh, strict=True):
        if new is None or isinstance(old, DenseMask):
          out.append(old)
        elif isinstance(old, PackedMask):
          out.append(PackedMask(pack(new), old.shape))
        else:
          out.append(new)
      return out

    if not masks_frozen:
      stored = jax.lax.cond(update_now, recompute, lambda m: list(m), stored)
    bools = [m.unpack() if isinstance(m, PackedMask) else m for m in stored]

    masked_grads = [
      g if isinstance(m, DenseMask) else jnp.where(m, g, jnp.zeros_like(g))
      for g, m in zip(g_leaves, bools, strict=True)
    ]
    inner_updates, inner_state = inner.update(
      jax.tree.unflatten(plan.treedef, masked_grads), state.inner_state, params, **extras
    )
    u_leaves = plan.check_tree(inner_updates, "inner update")
    out = [
      u if isinstance(m, DenseMask) else jnp.where(m, u, -p.astype(u.dtype))
      for u, p, m in zip(u_leaves, p_leaves, bools, strict=True)
    ]
    new_state = MaskedState(
      count=_after(optax.safe_increment(state.count), out),
      masks=jax.tree.unflatten(plan.treedef, stored),
      key=state.key,
      inner_state=inner_state,
    )
    return jax.tree.unflatten(plan.treedef, out), new_state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _after(count: jax.Array, leaves: list[jax.Array]) -> jax.Array:
  """``count`` unchanged, but computed from the first update leaf, so it runs after it.

  ``max(c, min(c, x)) == c`` for every x, and XLA does not fold it away. On XLA:CPU an
  independent scalar op is scheduled early and costs ~2% of a small training step
  (benchmarks/RESULTS.md, Trainer); this dependency moves it to the end.
  """
  leaf = next((x for x in leaves if x.size), None)
  if leaf is None:
    return count
  first = jnp.ravel(leaf)[0].astype(jnp.float32)
  bits = jax.lax.bitcast_convert_type(first, jnp.int32)
  return jnp.maximum(count, jnp.minimum(count, bits))


def _find_states(opt_state: Any) -> list[MaskedState]:
  found = []

  def visit(x):
    if isinstance(x, MaskedState):
      found.append(x)
    return x

  jax.tree.map(visit, opt_state, is_leaf=lambda x: isinstance(x, MaskedState))
  return found


def masks_of(opt_state: Any) -> PyTree:
  """Returns the bool masks (mirroring params) from an optimizer state at any nesting.

  Dense leaves come back as all-True masks; packed masks are unpacked.

  Example:
    >>> import jax.numpy as jnp, optax, jaxprune
    >>> params = {"w": jnp.ones((4, 4))}
    >>> tx = optax.chain(optax.clip(1.0), jaxprune.masked(optax.adam(1e-3), 0.75))
    >>> jaxprune.masks_of(tx.init(params))["w"].dtype
    dtype('bool')
  """
  found = _find_states(opt_state)
  if not found:
    raise ValueError(
      f"No jaxprune.masked state found in the given {type(opt_state).__name__}. Pass the "
      "optimizer state returned by tx.init/tx.update of a transformation that includes "
      "jaxprune.masked(...), e.g. masks = jaxprune.masks_of(opt_state)."
    )
  if len(found) > 1:
    raise ValueError(
      f"Found {len(found)} jaxprune.masked states in this optimizer state; masks_of expects "
      "one. Pass the sub-state of the one you want."
    )

  def expand(m):
    if isinstance(m, DenseMask):
      return jnp.ones(m.shape, bool)
    if isinstance(m, PackedMask):
      return m.unpack()
    return m

  return jax.tree.map(expand, found[0].masks, is_leaf=_is_mask_node)
