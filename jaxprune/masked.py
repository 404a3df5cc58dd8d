"""`masked`: an optax wrapper that keeps params exactly sparse and updates masks on schedule.

Per call of ``update(grads, state, params, **extras)``, a pipeline of small steps:

1. plan: the params' leaves with their targets and structure (`jaxprune.selection.Plan`);
2. schedule (`_on_schedule`): the state's counter says whether the masks update now and at
   which sparsity; if so, under `jax.lax.cond`, `_remask` runs
   criterion (`_score`: the params scored with ``grads`` and the extras), nest (`_nest`:
   entries pruned so far rank last), select (`Plan.select`: exact masks) and, unless the
   criterion regrows, keeps only entries kept so far (`_within`);
3. grow (`_live`): entries a drop-and-grow update revives sit this step out;
4. enforce, inner update (`_zero_pruned`): the inner optimizer sees the gradient with
   pruned entries zeroed;
5. reset (`reset_entries`): the inner state of revived entries restarts from its init;
6. enforce (`_enforce`): pruned entries get the update ``-param``, so
   `optax.apply_updates` leaves them at exactly 0.0; kept entries get exactly the inner
   optimizer's update.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxprune import criteria, schedules, structures
from jaxprune._checks import (
  check_concrete_sparsity,
  check_sparsity,
  concrete_value,
  resolve_sparsity,
)
from jaxprune._reset import reset_entries
from jaxprune._tree import unwrap_variables
from jaxprune.errors import MaskMismatchError
from jaxprune.masks import pack, unpack
from jaxprune.selection import Plan, plan_cache

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


def masked(
  inner: optax.GradientTransformation,
  sparsity: float | jax.Array | None,
  *,
  criterion: str | Any = "magnitude",
  schedule: schedules.Schedule | None = None,
  distribution: Any = "uniform",
  structure: Any = None,
  packed: bool = False,
  seed: int = 0,
  initial_masks: PyTree | Callable[[PyTree], PyTree] | None = None,
) -> optax.GradientTransformationExtraArgs:
  """Wraps ``inner`` so params stay exactly sparse, with masks updated on ``schedule``.

  Args:
    inner: any optax transformation (adam, chain(...), inject_hyperparams(...), ...).
    sparsity: target fraction of weights removed, in [0, 1) (may be traced). ``None`` where
      something else decides it: a threshold criterion (``"log_alpha"``, ``"l0_gate"``), a
      structure with a fixed sparsity (``n_of_m(2, 4)`` is 50%), or fixed
      ``initial_masks``. A sparsity that would be overridden is an error unless it agrees
      (fixed ``initial_masks``: their sparsity over the pruned leaves, up to per-leaf
      rounding). An array is checked at ``init`` where it is concrete (e.g. the initial
      value of `optax.inject_hyperparams`): outside [0, 1] or NaN raises. A traced sparsity
      cannot be checked; it is clamped into [0, 1] (NaN counts as 0): at 1 every prunable
      weight is removed.
    criterion: registered name (``jaxprune.criteria.names()``) or ``fn(params, **extras)``.
      Unless it is registered with ``regrow=True``, masks only shrink: at a mask update the
      entries pruned so far rank below every other entry, and none is revived (see
      Returns). Drop-and-grow criteria (``regrow=True`` and moving the current ``masks``:
      ``"rigl"``, ``"set"``) keep the count of a sparse start, so they need
      ``initial_masks`` (or use `jaxprune.dynamic.rigl`, which draws them).
    schedule: ``(step, target) -> (update_now, sparsity)``; default: prune to the target at
      the first update (`jaxprune.schedules.one_shot(0)`), or never update when
      ``initial_masks`` is given.
    distribution: ``"uniform"``, ``"erk"``, ``"er"``, ``"global"``, a path mapping or callable.
    structure: a `jaxprune.structures` object (default unstructured).
    packed: store masks as 1 bit per weight instead of 1 byte.
    seed: seeds the PRNG key used by stochastic criteria (e.g. ``"random"``).
    initial_masks: bool pytree mirroring params (or ``fn(params) -> masks``) to start from,
      e.g. from `jaxprune.prune`, SNIP at initialisation or a lottery ticket; the first
      update already zeroes the pruned entries, so no step trains dense. Leaves the
      distribution keeps dense must be all True. With a schedule, the run prunes further
      from them: masks only shrink, so every entry kept at any step was kept by
      ``initial_masks``, and ``sparsity`` must be at least their sparsity over the pruned
      leaves. The schedule's sparsity stays the fraction of the whole leaf (not of the
      entries ``initial_masks`` kept): a schedule below the masks' sparsity keeps them as
      they are, so `jaxprune.schedules.polynomial`'s default ``initial=0`` leaves them
      unchanged until its curve passes their sparsity; pass ``initial=`` their sparsity to
      start the ramp from them at ``begin``.

  Returns:
    An `optax.GradientTransformationExtraArgs`; its ``update(grads, state, params,
    **extras)`` forwards extras (``loss_fn=``, ``batch=``, ``key=``...) to the criterion and
    to ``inner``; criteria that declare ``"masks"`` or ``"step"`` get the current masks
    (``None`` for dense leaves) and the update count. Place it last in an `optax.chain`: a
    transformation after it would rescale the ``-param`` updates that zero pruned weights
    (`jaxprune.check_sparse` finds that). With `optax.MultiSteps`, ``MultiSteps(masked(...),
    k)`` counts optimizer steps in the schedule, while ``masked(MultiSteps(...))`` counts
    micro-batches.

    ``update(..., masks_frozen=True)`` (a static Python bool, not forwarded) compiles the
    update without the mask-update branch: the caller promises that the schedule keeps the
    masks at this step (``schedule(state.count, sparsity)[0]`` is False), e.g. because it
    evaluated the schedule on the host. The result is then identical and the step cheaper
    on CPU, where even an untaken `jax.lax.cond` branch costs a few percent of a small step.
    A step where the schedule does update must not pass it: the masks would go stale.

    Mask updates are exact: a pruned leaf of n entries at the schedule's sparsity s (the
    leaf's target from ``distribution``) keeps exactly n − round(s·n) entries (unstructured;
    a structure counts its own units), chosen among those kept so far. Where s is below the
    leaf's current sparsity (e.g. the first steps of a ramp from 0 applied to 50%
    ``initial_masks``), the leaf keeps its current mask: without ``regrow=True`` no update
    ever revives an entry.

    Criteria registered with ``regrow=True`` (drop-and-grow) may revive entries. At the
    update that revives them, they stay at exactly 0.0, their gradient is withheld from
    ``inner``, and every part of ``inner``'s state shaped like their param restarts from
    ``inner.init``'s value (`jaxprune.dynamic.reset_entries`), for any optax optimizer.

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
    >>> params["w"][1].tolist()  # the kept half took the sgd step
    [5.900000095367432, 6.900000095367432, 7.900000095367432, 8.899999618530273, 9.899999618530273]
  """
  check_sparsity(sparsity, "jaxprune.masked(optax.adam(1e-3), sparsity=0.9)")
  crit = criteria.get(criterion)
  fixed = initial_masks is not None and schedule is None  # static sparse training
  sched = schedules.get(schedule)
  _check_criterion(crit, sparsity, initial_masks)
  struct = structures.get(structure)
  requested = sparsity
  sparsity = resolve_sparsity(
    sparsity, crit, struct, "jaxprune.masked(inner, 0.9)", decided_elsewhere=fixed
  )
  inner = optax.with_extra_args_support(inner)
  plan_for = plan_cache(distribution, struct)

  def init_fn(params: PyTree) -> MaskedState:
    check_concrete_sparsity(sparsity, "optax.inject_hyperparams(jaxprune.masked)(inner, 0.9)")
    plan = plan_for(params)
    if crit.check_plan is not None:
      crit.check_plan(plan.structure, plan.distribution)
    given = _initial(plan, params, initial_masks)
    if initial_masks is not None and requested is not None:
      _check_initial_sparsity(plan, given, requested, crit, fixed)
    masks = _mask_tree(plan, given, packed)
    return MaskedState(
      count=jnp.zeros([], jnp.int32),
      masks=masks,
      key=jax.random.key_data(jax.random.key(seed)),
      inner_state=inner.init(params),
    )

  def update_fn(updates, state, params=None, masks_frozen: bool = False, **extras):
    _check_update_call(masks_frozen, params)
    plan = plan_for(params)  # plan
    p_leaves = plan.check_tree(params, "params")
    g_leaves = plan.check_tree(updates, "gradient")
    moving = not (masks_frozen or fixed)  # may the masks change at this step?
    if moving:  # the criterion runs only where masks may change
      crit.check_extras({"grads": updates, "key": True, "masks": True, "step": True, **extras})
    previous = _stored_masks(plan, state.masks)
    stored = previous
    if moving:  # criterion, nest, select where the schedule says so
      remask = functools.partial(
        _remask,
        crit=crit,
        plan=plan,
        target=sparsity,
        params=params,
        grads=updates,
        p_leaves=p_leaves,
        state=state,
        extras=extras,
      )
      stored = _on_schedule(sched, sparsity, state.count, previous, remask)
    live, grown = _live(stored, previous, grow=crit.regrow and moving)  # grow
    inner_grads = jax.tree.unflatten(plan.treedef, _zero_pruned(g_leaves, live))  # enforce
    inner_updates, inner_state = inner.update(inner_grads, state.inner_state, params, **extras)
    if grown is not None:  # reset
      grown = jax.tree.unflatten(plan.treedef, grown)
      inner_state = reset_entries(inner, inner_state, params, grown)
    out = _enforce(plan.check_tree(inner_updates, "inner update"), p_leaves, live)
    new_state = MaskedState(
      count=optax.safe_increment(state.count),
      masks=jax.tree.unflatten(plan.treedef, stored),
      key=state.key,
      inner_state=inner_state,
    )
    return jax.tree.unflatten(plan.treedef, out), new_state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


# Construction and init: checks of the arguments, the starting masks.


def _check_criterion(crit: criteria.Criterion, sparsity: Any, initial_masks: Any) -> None:
  """Raises where ``crit`` cannot run inside `masked` as configured."""
  if crit.prune_fn is not None:
    raise ValueError(
      f"Criterion {crit.name!r} is a one-shot solver that also rewrites the kept weights, so "
      f"it cannot run inside an optimizer. Use jaxprune.prune(params, sparsity, "
      f"criterion={crit.name!r}, ...) after training."
    )
  if crit.regrow and "masks" in crit.needs and initial_masks is None:  # drop and grow
    raise ValueError(_dense_start_message(crit.name, sparsity))


def _initial(plan: Plan, params: PyTree, initial_masks: Any) -> list[jax.Array]:
  """The starting bool mask of every leaf: all True, or the given ``initial_masks``."""
  ones = [jnp.ones(shape, bool) for shape in plan.shapes]
  if initial_masks is None:
    return ones
  given = initial_masks(params) if callable(initial_masks) else initial_masks
  leaves = plan.check_tree(given, "initial_masks")
  out = []
  for path, on, m, one in zip(plan.paths, plan.prunable, leaves, ones, strict=True):
    if m is None:
      out.append(one)
      continue
    m = jnp.asarray(m)
    if m.dtype != jnp.bool_:
      raise TypeError(
        f"initial_masks leaf {path!r} has dtype {m.dtype}; masks are bool arrays (True = "
        "kept). Use the masks of jaxprune.prune(...) or jaxprune.masks_of(opt_state), or "
        "convert: jax.tree.map(lambda m: m != 0, masks)."
      )
    if not on and not isinstance(m, jax.core.Tracer) and not bool(m.all()):
      raise ValueError(
        f"initial_masks prunes {int(m.size - m.sum())} entries of {path!r}, a leaf that "
        f"distribution={plan.distribution!r} keeps dense, so they would be ignored. Make "
        f"it prunable, e.g. distribution={{'{path}': 0.9, ...}}, or give it an all-True mask."
      )
    out.append(m)
  return out


def _dense_start_message(name: str, sparsity: Any, start: str = "no initial_masks") -> str:
  """Why a drop-and-grow criterion cannot start from dense params, and the calls that work."""
  factory = "set_" if name == "set" else "rigl"
  s = sparsity if isinstance(sparsity, float | int) else 0.9
  return (
    f"criterion={name!r} drops and grows connections at a constant count per leaf, so it "
    f"needs a sparse starting mask. From dense params ({start}) every weight "
    "survives the drop, all rank equal, and the mask update keeps the first ones by flat "
    "index, not the best. Start from sparse masks: "
    f"jaxprune.dynamic.{factory}(inner, {s}, end=7500, every=100) (random ERK masks at the "
    f"target sparsity), or pass them: jaxprune.masked(inner, {s}, criterion={name!r}, "
    "schedule=jaxprune.schedules.periodic(100, end=7500), initial_masks=lambda p: "
    f"jaxprune.dynamic.random_masks(p, {s}, key=jax.random.key(0)))."
  )


def _check_initial_sparsity(
  plan: Plan, given: list[jax.Array], sparsity: Any, crit: Any, fixed: bool
) -> None:
  """Raises where ``sparsity`` would be ignored given concrete ``initial_masks``.

  Fixed masks (no schedule) decide the sparsity, so it must agree with theirs; under a
  schedule masks only shrink, so it must not be below theirs. Both up to the rounding of
  one entry per pruned leaf. Drop and grow needs them sparse. Traced values or masks are
  not checked.
  """
  value = concrete_value(sparsity)
  masks = [m for m, on in zip(given, plan.prunable, strict=True) if on]
  if value is None or not masks or any(isinstance(m, jax.core.Tracer) for m in masks):
    return
  total = sum(int(m.size) for m in masks)
  pruned = total - sum(int(m.sum()) for m in masks)
  if crit.regrow and not fixed:  # drop and grow moves connections; it may change the count
    if "masks" in crit.needs and pruned == 0 and value > 0:
      raise ValueError(_dense_start_message(crit.name, value, "all-True initial_masks"))
    return
  slack = 0.5 * len(masks) + 1e-6 * total  # each leaf rounds its count to whole entries
  actual = pruned / max(total, 1)
  if fixed and abs(pruned - value * total) > slack:
    raise ValueError(
      f"jaxprune.masked(inner, sparsity={value:g}, initial_masks=masks) has no schedule, so "
      f"it trains the fixed initial masks, which are {actual:.1%} sparse over the pruned "
      f"leaves; sparsity={value:g} would be ignored. Pass sparsity=None to train the masks "
      "as they are: jaxprune.masked(inner, None, initial_masks=masks)"
      + (
        f"; or prune further from them on a schedule: jaxprune.masked(inner, {value:g}, "
        "initial_masks=masks, schedule=jaxprune.schedules.polynomial(begin=0, end=1000, "
        f"every=100, initial={actual:.4g}))."
        if value > actual
        else "."
      )
    )
  if not fixed and pruned - value * total > slack:
    raise ValueError(
      f"sparsity={value:g} is below the {actual:.1%} sparse initial_masks: masks only "
      "shrink from initial_masks (pruned entries are never revived), so the schedule would "
      "never change them. Pass a target above their sparsity to prune further, e.g. "
      f"jaxprune.masked(inner, 0.9, initial_masks=masks, schedule=...), or train them "
      "fixed: jaxprune.masked(inner, None, initial_masks=masks)."
    )


def _mask_tree(plan: Plan, given: list[jax.Array], packed: bool) -> PyTree:
  """The masks as `MaskedState` stores them: bool, `PackedMask` or `DenseMask` leaves."""
  masks = []
  for shape, on, m in zip(plan.shapes, plan.prunable, given, strict=True):
    if not on:
      masks.append(DenseMask(shape))
    elif packed:
      masks.append(PackedMask(pack(m), shape))
    else:
      masks.append(m)
  return jax.tree.unflatten(plan.treedef, masks)


# The steps of an update, in the order it runs them. Each works on the flat leaves of the
# plan (one entry per params leaf, `DenseMask` where a leaf stays dense).


def _check_update_call(masks_frozen: Any, params: PyTree | None) -> None:
  """Raises for an ``update`` call that `masked` cannot serve."""
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


def _stored_masks(plan: Plan, masks: PyTree) -> list[Any]:
  """The state's mask leaves, checked against the params' structure and shapes."""
  if jax.tree.structure(masks, is_leaf=_is_mask_node) != plan.treedef:
    raise MaskMismatchError(
      "The params passed to tx.update do not match the tree the masks were made for by "
      f"tx.init.\n  masks:  {jax.tree.structure(masks, is_leaf=_is_mask_node)}\n"
      f"  params: {plan.treedef}\nInitialise with the same params: state = tx.init(params)."
    )
  stored = plan.treedef.flatten_up_to(masks)
  for path, shape, on, m in zip(plan.paths, plan.shapes, plan.prunable, stored, strict=True):
    have = tuple(m.shape)
    if have != shape or isinstance(m, DenseMask) == on:
      raise MaskMismatchError(
        f"params leaf {path!r} has shape {shape}, but the mask made for it by tx.init has "
        f"shape {have}{' (a dense placeholder)' if isinstance(m, DenseMask) else ''}. The "
        "params changed shape since tx.init; re-initialise: state = tx.init(params)."
      )
  return stored


def _on_schedule(
  sched: schedules.Schedule,
  target: Any,
  count: jax.Array,
  previous: list[Any],
  remask: Callable[[list[Any], jax.Array], list[Any]],
) -> list[Any]:
  """Step 'schedule': ``remask(previous, sparsity)`` where the schedule updates the masks
  at ``count``, else ``previous``; decided by `jax.lax.cond`, so it never retraces."""
  update_now, current = sched(count, target)
  current = _clamp(current)
  return jax.lax.cond(update_now, lambda m: remask(m, current), lambda m: list(m), previous)


def _remask(
  stored: list[Any],
  current: jax.Array,
  *,
  crit: criteria.Criterion,
  plan: Plan,
  target: Any,
  params: PyTree,
  grads: PyTree,
  p_leaves: list[jax.Array],
  state: MaskedState,
  extras: dict[str, Any],
) -> list[Any]:
  """One mask update at sparsity ``current``: criterion, nest, select, stored as before."""
  # The criterion's key: the caller's ``key=`` extra, else derived from the state's base
  # key and the step (so no random numbers are drawn on steps that keep the masks).
  own = jax.random.fold_in(jax.random.wrap_key_data(state.key), state.count)
  masks = [None if isinstance(m, DenseMask) else m for m in _unpacked(stored)]
  scores = _score(crit, plan, params, grads, masks, key=own, step=state.count, extras=extras)
  if not crit.regrow:
    scores = _nest(plan, scores, masks)
  fresh = plan.select(p_leaves, scores, current, _clamp(target), crit)
  if not crit.regrow:  # masks only shrink, also where ``current`` is below their sparsity
    fresh = _within(fresh, masks)
  return _restored(stored, fresh)


def _score(
  crit: criteria.Criterion,
  plan: Plan,
  params: PyTree,
  grads: PyTree,
  masks: list[jax.Array | None],
  *,
  key: jax.Array,
  step: jax.Array,
  extras: dict[str, Any],
) -> PyTree:
  """Step 'criterion': the scores of ``params``, given the caller's extras and those
  `masked` supplies (``key`` unless the caller passed one, the current ``masks`` with
  None for dense leaves, the ``step``)."""
  crit_extras = {
    **extras,
    "key": extras.get("key", key),
    "masks": jax.tree.unflatten(plan.treedef, masks),
    "step": step,
  }
  return crit.fn(params, grads=grads, **crit_extras)


def _nest(plan: Plan, scores: PyTree, masks: list[jax.Array | None]) -> PyTree:
  """Scores with every currently pruned entry ranked below every kept one (NaN; real NaN
  scores become −inf), so a mask update never revives a pruned entry."""
  leaves = plan.treedef.flatten_up_to(scores)
  out = []
  for s, m in zip(leaves, masks, strict=True):
    if s is None or m is None:
      out.append(s)
      continue
    s = jnp.asarray(s)
    s = jnp.where(jnp.isnan(s), -jnp.inf, s)
    out.append(jnp.where(m.reshape(s.shape), s, jnp.nan))
  return jax.tree.unflatten(plan.treedef, out)


def _within(fresh: list[Any], masks: list[jax.Array | None]) -> list[Any]:
  """Step 'nest', after selection: the new masks restricted to the entries kept so far."""
  return [new if new is None or m is None else new & m for new, m in zip(fresh, masks, strict=True)]


def _restored(stored: list[Any], fresh: list[Any]) -> list[Any]:
  """The new masks stored like the old ones (packed where they were); dense leaves and
  leaves the plan did not select (None) keep their stored mask."""
  out = []
  for prev, new in zip(stored, fresh, strict=True):
    if new is None or isinstance(prev, DenseMask):
      out.append(prev)
    elif isinstance(prev, PackedMask):
      out.append(PackedMask(pack(new), prev.shape))
    else:
      out.append(new)
  return out


def _live(stored: list[Any], previous: list[Any], grow: bool) -> tuple[list[Any], list | None]:
  """Step 'grow': the masks this step trains with, and the entries revived at this update.

  Entries a drop-and-grow update revives (``grow``) stay at 0 for this step, like pruned
  ones, and their optimizer state restarts (`reset_entries`); ``grown`` is None otherwise.
  """
  bools = _unpacked(stored)
  if not grow:
    return bools, None
  grown = [
    None if isinstance(m, DenseMask) else new & ~prev
    for m, new, prev in zip(stored, bools, _unpacked(previous), strict=True)
  ]
  live = [m if g is None else m & ~g for m, g in zip(bools, grown, strict=True)]
  return live, grown


def _zero_pruned(g_leaves: list[jax.Array], live: list[Any]) -> list[jax.Array]:
  """Step 'enforce', before the inner update: the gradient with pruned entries zeroed."""
  return [
    g if isinstance(m, DenseMask) else jnp.where(m, g, jnp.zeros_like(g))
    for g, m in zip(g_leaves, live, strict=True)
  ]


def _enforce(u_leaves: list[jax.Array], p_leaves: list[jax.Array], live: list[Any]) -> list:
  """Step 'enforce': kept entries take the inner update, pruned ones ``-param``, so that
  `optax.apply_updates` leaves them at exactly 0.0."""
  return [
    u if isinstance(m, DenseMask) else jnp.where(m, u, -p.astype(u.dtype))
    for u, p, m in zip(u_leaves, p_leaves, live, strict=True)
  ]


def _unpacked(masks: list[Any]) -> list[Any]:
  """Mask leaves with packed masks unpacked to bool arrays (others as they are)."""
  return [m.unpack() if isinstance(m, PackedMask) else m for m in masks]


def _clamp(sparsity: Any) -> jax.Array:
  """The documented rule for a traced sparsity: clamped into [0, 1], NaN counts as 0."""
  s = jnp.asarray(sparsity, jnp.float32)
  return jnp.where(jnp.isnan(s), 0.0, jnp.clip(s, 0.0, 1.0))


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

  masks = unwrap_variables(found[0].masks)  # an nnx.Optimizer wraps its state's arrays
  return jax.tree.map(expand, masks, is_leaf=_is_mask_node)
