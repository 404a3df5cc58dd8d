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
* Drop ties are broken at random, as the reference does: it adds N(0, σ²) noise with
  σ = 1e-5 (``noise_std``) to the drop scores ``|w|`` (``generic_mask_update``), drawn
  statelessly from a seed and the global step. Here the noise comes from the criterion's
  ``key`` (which `jaxprune.masked` derives from its ``seed`` and the step), so jit, eager
  and any number of devices draw the same numbers; leaf ``i`` uses
  ``noise_std · tie_noise(drop_keys(key, n)[i], shape)``: the same standard deviation,
  uniformly distributed and hashed from the flat index (a normal draw cost a dense step
  on the CPU for the 10M-parameter MLP). Without a key (or with ``noise_std=0``) the drop is exactly
  "lowest magnitude first", ties to the lowest flat index. Unlike the reference, only
  active entries can survive the drop (the reference ranks inactive entries at
  ``|0| + noise`` too, so one could outrank an active weight below ~1e-5).
* Grow ties go to the lowest flat index, as ``tf.nn.top_k`` does; the reference adds no
  noise to the grow scores (|gradient| for RigL, uniform draws for SET).
* On a mask-update step the reference applies no gradient step (the update replaces it);
  `jaxprune.masked` applies the inner optimizer's update to the surviving weights in the
  same call.

Counts stay exact per leaf in every layout. With ``distribution="global"`` the mask
maker's top-k runs across leaves, so the criterion decides each leaf's new mask itself
(drop ``d`` and grow ``d`` within the leaf) and scores it 1.0/0.0; the total is unchanged,
so the top-k across leaves keeps exactly those entries. With ``channels()`` or
``block(...)`` the same drop and grow runs over whole units (`jaxprune.dynamic.units`):
a unit's drop score is its mean ``|w|``, its RigL grow score the L2 norm of its gradient.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxprune import schedules
from jaxprune.criteria.registry import Criterion, register
from jaxprune.distributions import Global
from jaxprune.distributions import get as get_distribution
from jaxprune.dynamic.static import random_masks
from jaxprune.dynamic.units import UnitView, check_structure, unit_view
from jaxprune.masked import masked
from jaxprune.segments import topk_masks

PyTree = Any
Fraction = float | Callable[[jax.Array], jax.Array]

_LOW = float(jnp.finfo(jnp.float32).min)
_HIGH = float(jnp.finfo(jnp.float32).max)
NOISE_STD = 1e-5  # google-research/rigl's drop-score noise (generic_mask_update's noise_std)
_DROP_STREAM = 1  # fold_in tag separating the drop noise from SET's grow draws


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
  weight: jax.Array,
  mask: jax.Array,
  grow: jax.Array,
  fraction: jax.Array | float,
  noise: jax.Array | None = None,
) -> jax.Array:
  """Scores of one leaf whose exact top-k (k = active count) is the drop-and-grow mask.

  .. math:: d = \\lfloor f \\cdot a \\rfloor,\\quad
     S = \\text{top}_{a-d}\\{|w_i| + \\epsilon_i : m_i\\},\\quad
     \\text{score}_i = +\\infty \\text{ if } i \\in S \\text{ else } \\text{grow}_i

  Args:
    weight: the leaf's current values.
    mask: its current bool mask (``a`` True entries).
    grow: grow scores of the same shape (clipped to finite float32; NaN ranks lowest).
    fraction: the drop fraction ``f`` in [0, 1] (may be traced).
    noise: ``ε``, added to the active magnitudes to break drop ties (same shape; ``None``:
      none, ties to the lowest flat index).

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
  magnitude = jnp.abs(weight).astype(jnp.float32)
  if noise is not None:
    magnitude = magnitude + jnp.asarray(noise, jnp.float32)
  return _scores_after_drop([magnitude], [mask], [grow], fraction)[0]


def _scores_after_drop(magnitudes: list, masks: list, grows: list, fraction: Any) -> list:
  """`drop_grow_scores` of many leaves (or unit views), the drop as one batched selection."""
  masks = [jnp.asarray(m, bool) for m in masks]
  active = [jnp.sum(m, dtype=jnp.int32) for m in masks]
  keep = [a - num_to_drop(a, fraction) for a in active]
  ranked = [jnp.where(m, x, -jnp.inf) for x, m in zip(magnitudes, masks, strict=True)]
  survivors = topk_masks(ranked, keep)
  return [
    jnp.where(s & m, jnp.inf, _finite(g)) for s, m, g in zip(survivors, masks, grows, strict=True)
  ]


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


def drop_keys(key: jax.Array, n: int) -> jax.Array:
  """The per-leaf keys of the drop tie-break noise: ``leaf_keys(fold_in(key, 1), n)``.

  Example:
    >>> drop_keys(jax.random.key(0), 3).shape
    (3,)
  """
  return leaf_keys(jax.random.fold_in(key, _DROP_STREAM), n)


def tie_noise(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """Reproducible noise of mean 0 and standard deviation 1, uniform on [-√3, √3).

  Entry ``i`` (flat index) is a hash of ``i`` and 32 bits drawn from ``key`` (the murmur3
  finaliser), so the noise costs a few integer operations per entry inside the drop's
  fusion rather than a counter-based PRNG pass over the leaf (drawing ``jax.random.normal``
  for the 10M-parameter MLP made a CPU RigL update cost one more dense step). The same key
  gives the same noise under jit, eagerly and on any number of devices.

  Example:
    >>> e = tie_noise(jax.random.key(0), (1000,))
    >>> bool(abs(float(e.mean())) < 0.2 and abs(float(e.std()) - 1) < 0.1)
    True
  """
  return _hashed_noise(jax.random.bits(key, (), jnp.uint32), shape)


def _hashed_noise(seed: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """`tie_noise` from its 32-bit draw ``seed``."""
  h = jax.lax.iota(jnp.uint32, math.prod(shape)) * jnp.uint32(0x9E3779B1)
  h = h + seed
  h = (h ^ (h >> 16)) * jnp.uint32(0x85EBCA6B)
  h = (h ^ (h >> 13)) * jnp.uint32(0xC2B2AE35)
  h = h ^ (h >> 16)
  u = (h >> 8).astype(jnp.float32) * jnp.float32(2.0**-24)  # [0, 1), 24 bits
  return ((u - 0.5) * jnp.float32(math.sqrt(12.0))).reshape(shape)


def _check_noise_std(noise_std: float) -> None:
  if not noise_std >= 0:
    raise ValueError(f"noise_std must be >= 0; got {noise_std!r}, e.g. 1e-5 (or 0 for none).")


def _noise_keys(key: jax.Array | None, n: int, noise_std: float) -> list[Any]:
  """The 32-bit draws of `tie_noise` from the `drop_keys` of ``n`` leaves, drawn together
  (one PRNG program, not one per leaf), or ``None`` per leaf without a key or a noise std."""
  _check_noise_std(noise_std)
  if key is None or not noise_std:
    return [None] * n
  seeds = jax.vmap(lambda k: jax.random.bits(k, (), jnp.uint32))(drop_keys(key, n))
  return [seeds[i] for i in range(n)]


def _uniform_by_shape(keys: jax.Array, shapes: list) -> list:
  """``[jax.random.uniform(keys[i], shapes[i]) ...]`` (``None`` where a shape is ``None``),
  drawn by one vmapped PRNG program per distinct shape instead of one per leaf."""
  by_shape: dict[tuple[int, ...], list[int]] = {}
  for i, shape in enumerate(shapes):
    if shape is not None:
      by_shape.setdefault(tuple(shape), []).append(i)
  out: list[Any] = [None] * len(shapes)
  for shape, members in by_shape.items():
    draws = jax.vmap(lambda k, shape=shape: jax.random.uniform(k, shape))(keys[np.asarray(members)])
    for row, i in enumerate(members):
      out[i] = draws[row]
  return out


def _all_scores(
  weights: list,
  masks: list,
  grows: list,
  fraction: jax.Array,
  noise_keys: list,
  noise_std: float,
  view: UnitView | None,
  per_leaf: bool,
) -> list:
  """The drop-and-grow scores of every leaf with a mask (``None`` elsewhere); ``grows`` are
  per entry, or per unit with a ``view``. Each selection runs once over all leaves.

  Single weights (no ``view``): `drop_grow_scores`, or with ``per_leaf`` its top-k at the
  active count as 1.0 (kept) / 0.0. Whole units: the same drop and grow over units, the
  drop ranking a unit's mean ``|w|``; the chosen units score 1.0 on every entry, the rest
  0.0. 1.0/0.0 scores are kept exactly by any top-k at the leaf's count or, across leaves,
  at the total, and survive a positive rescaling (``"global_normalized"``).
  """
  live = [i for i, m in enumerate(masks) if m is not None]
  magnitudes, actives = [], []
  for i in live:
    magnitude = jnp.abs(weights[i]).astype(jnp.float32)
    active = jnp.asarray(masks[i], bool)
    if view is not None:
      magnitude = jnp.mean(view.tiles(magnitude), axis=-1)
      active = jnp.any(view.tiles(active), axis=-1)
    if noise_keys[i] is not None:
      magnitude = magnitude + noise_std * _hashed_noise(noise_keys[i], magnitude.shape)
    magnitudes.append(magnitude)
    actives.append(active)
  scores = _scores_after_drop(magnitudes, actives, [grows[i] for i in live], fraction)
  if view is not None or per_leaf:
    counts = [jnp.sum(a, dtype=jnp.int32) for a in actives]
    keeps = topk_masks(scores, counts)
    scores = [
      (k if view is None else view.expand(k, jnp.shape(weights[i]))).astype(jnp.float32)
      for k, i in zip(keeps, live, strict=True)
    ]
  out: list[Any] = [None] * len(weights)
  for i, score in zip(live, scores, strict=True):
    out[i] = score
  return out


def _unit_shape(view: UnitView | None, shape: tuple[int, ...]) -> tuple[int, ...]:
  """The shape of one score per unit (the leaf's shape for single weights)."""
  if view is None:
    return tuple(shape)
  return tuple(jax.eval_shape(view.tiles, jax.ShapeDtypeStruct(shape, jnp.float32)).shape[:-1])


def rigl_scores(
  params: PyTree,
  *,
  grads: PyTree,
  masks: PyTree,
  step: jax.Array,
  fraction: Fraction = 0.3,
  key: jax.Array | None = None,
  noise_std: float = NOISE_STD,
  structure: Any = None,
  per_leaf: bool = False,
) -> PyTree:
  """RigL (Evci et al. 2020): drop the smallest active weights, grow where |grad| is largest.

  With ``structure=channels()`` or ``block(...)`` whole units move: the units of lowest
  mean ``|w|`` are dropped and those of largest gradient L2 norm grown (see
  `jaxprune.dynamic.units`).

  Args:
    params: current params.
    grads: the dense gradient (pruned entries included).
    masks: current bool masks mirroring params (``None`` for dense leaves, left unscored).
    step: the update count (``step`` extra of `jaxprune.masked`).
    fraction: drop fraction, a number or ``step -> f`` (e.g. `cosine`).
    key: PRNG key of this update for the drop tie-break: leaf ``i`` adds
      ``noise_std · tie_noise(drop_keys(key, n)[i], shape)`` to its magnitudes (``None``:
      no noise).
    noise_std: standard deviation of that noise (the reference's 1e-5; 0 for none).
    structure: the mask structure: single weights for ``None``, ``unstructured`` and
      ``n_of_m``; whole units for ``channels`` and ``block``.
    per_leaf: decide each leaf's new mask here and score it 1.0 (kept) / 0.0, so that a
      selection across leaves (``distribution="global"``) keeps every leaf's count.

  Returns:
    Scores mirroring params (``None`` for dense leaves): those of `drop_grow_scores` for
    single weights, else 1.0 on the new mask and 0.0 elsewhere.

  Example:
    >>> p = {"w": jnp.array([0.5, -2.0, 0.1, 0.0])}
    >>> m = {"w": jnp.array([True, True, True, False])}
    >>> g = {"w": jnp.array([0.0, 0.0, 0.0, -4.0])}
    >>> rigl_scores(p, grads=g, masks=m, step=0, fraction=0.4)["w"].tolist()
    [inf, inf, 0.0, 4.0]
  """
  f = _fraction_fn(fraction)(step)
  view = unit_view(structure)
  treedef, (ps, ms, gs) = _leaves(params, masks, grads)
  noise_keys = _noise_keys(key, len(ps), noise_std)
  grows = [
    None
    if m is None
    else jnp.abs(g)
    if view is None
    else jnp.sqrt(jnp.sum(jnp.square(view.tiles(jnp.asarray(g, jnp.float32))), axis=-1))
    for m, g in zip(ms, gs, strict=True)
  ]
  out = _all_scores(ps, ms, grows, f, noise_keys, noise_std, view, per_leaf)
  return jax.tree.unflatten(treedef, out)


def leaf_keys(key: jax.Array, n: int) -> jax.Array:
  """The per-leaf keys SET draws its grow scores from: ``jax.random.split(key, n)``."""
  return jax.random.split(key, max(n, 1))


def set_scores(
  params: PyTree,
  *,
  masks: PyTree,
  step: jax.Array,
  key: jax.Array,
  fraction: Fraction = 0.3,
  noise_std: float = NOISE_STD,
  structure: Any = None,
  per_leaf: bool = False,
) -> PyTree:
  """SET (Mocanu et al. 2018): drop the smallest active weights, grow uniformly at random.

  Leaf ``i`` (in `jax.tree.leaves` order of params) draws its grow scores as
  ``jax.random.uniform(leaf_keys(key, n)[i], shape)`` and its drop tie-break as
  ``noise_std · tie_noise(drop_keys(key, n)[i], shape)``, where ``shape`` is the leaf's, or
  one score per unit with ``structure=channels()`` or ``block(...)`` (whole units move).

  Args:
    params: current params.
    masks: current bool masks mirroring params (``None`` for dense leaves).
    step: the update count.
    key: PRNG key of this update.
    fraction: drop fraction, a number or ``step -> f``.
    noise_std: standard deviation of the drop tie-break noise (0 for none).
    structure: the mask structure, as for `rigl_scores`.
    per_leaf: decide each leaf's new mask here (1.0/0.0 scores), as for `rigl_scores`.

  Returns:
    Scores mirroring params (``None`` for dense leaves), as for `rigl_scores`.

  Example:
    >>> import jax
    >>> p = {"w": jnp.array([0.5, -2.0, 0.1, 0.0])}
    >>> m = {"w": jnp.array([True, True, True, False])}
    >>> s = set_scores(p, masks=m, step=0, key=jax.random.key(0), fraction=0.4)["w"]
    >>> s[:2].tolist(), bool(s[2] < 1.0)
    ([inf, inf], True)
  """
  f = _fraction_fn(fraction)(step)
  view = unit_view(structure)
  treedef, (ps, ms) = _leaves(params, masks)
  keys = leaf_keys(key, len(ps))
  noise_keys = _noise_keys(key, len(ps), noise_std)
  shapes = [
    None if m is None else _unit_shape(view, jnp.shape(p)) for p, m in zip(ps, ms, strict=True)
  ]
  grows = _uniform_by_shape(keys, shapes)
  out = _all_scores(ps, ms, grows, f, noise_keys, noise_std, view, per_leaf)
  return jax.tree.unflatten(treedef, out)


def _layout(structure: Any, distribution: Any, call: str) -> dict[str, Any]:
  """The ``structure`` / ``per_leaf`` arguments of the score functions, after checking."""
  check_structure(structure, distribution, call)
  per_leaf = isinstance(get_distribution(distribution), Global)
  return {"structure": structure, "per_leaf": per_leaf}


def _plan_check(name: str, structure: Any, distribution: Any):
  """``check_plan`` of a drop-and-grow criterion built for ``structure``/``distribution``."""
  view, per_leaf = unit_view(structure), isinstance(get_distribution(distribution), Global)

  def check(plan_structure: Any, plan_distribution: Any) -> None:
    check_structure(plan_structure, plan_distribution, f"criterion={name!r}")
    got_view = unit_view(plan_structure)
    got_per_leaf = isinstance(get_distribution(plan_distribution), Global)
    if got_view == view and got_per_leaf == per_leaf:
      return
    raise ValueError(
      f"criterion {name!r} was built for structure={structure!r}, distribution="
      f"{distribution!r}, but jaxprune.masked uses structure={plan_structure!r}, "
      f"distribution={plan_distribution!r}: whole units would never move, or per-layer "
      "counts would drift under 'global'. Build the criterion for the same layout, e.g. "
      f"criterion=jaxprune.dynamic.{name}_criterion(structure=..., distribution=...), or "
      f"use jaxprune.dynamic.{'set_' if name == 'set' else name}(inner, sparsity, end=..., "
      "structure=..., distribution=...)."
    )

  return check


def rigl_criterion(
  alpha: float = 0.3,
  end: int | None = None,
  noise_std: float = NOISE_STD,
  *,
  structure: Any = None,
  distribution: Any = "uniform",
) -> Criterion:
  """The RigL criterion with drop fraction `cosine` (α, ``end``), for `jaxprune.masked`.

  The ``key`` extra (which `jaxprune.masked` derives from its seed and the step) seeds the
  drop tie-break noise of standard deviation ``noise_std``. Pass the ``structure`` and
  ``distribution`` given to `jaxprune.masked`: with ``channels()`` or ``block(...)`` whole
  units move, and with ``"global"`` each leaf drops and grows within itself, so its count
  stays the one the first mask set.

  Example:
    >>> c = rigl_criterion(0.3, end=7500)
    >>> c.name, c.needs, c.regrow
    ('rigl', ('grads', 'masks', 'step', 'key'), True)
  """
  _check_noise_std(noise_std)
  fraction = cosine(alpha, end)
  layout = _layout(structure, distribution, "jaxprune.dynamic.rigl")

  def fn(params, *, grads, masks, step, key, **extras):
    del extras
    return rigl_scores(
      params,
      grads=grads,
      masks=masks,
      step=step,
      fraction=fraction,
      key=key,
      noise_std=noise_std,
      **layout,
    )

  needs = ("grads", "masks", "step", "key")
  check = _plan_check("rigl", structure, distribution)
  return Criterion("rigl", fn, needs, regrow=True, doc=_doc(rigl_scores), check_plan=check)


def set_criterion(
  alpha: float = 0.3,
  end: int | None = None,
  noise_std: float = NOISE_STD,
  *,
  structure: Any = None,
  distribution: Any = "uniform",
) -> Criterion:
  """The SET criterion with drop fraction `cosine` (α, ``end``), for `jaxprune.masked`.

  ``structure`` and ``distribution`` are those given to `jaxprune.masked`, as for
  `rigl_criterion`.

  Example:
    >>> set_criterion(0.3, end=7500).needs
    ('masks', 'step', 'key')
  """
  _check_noise_std(noise_std)
  fraction = cosine(alpha, end)
  layout = _layout(structure, distribution, "jaxprune.dynamic.set_")

  def fn(params, *, masks, step, key, **extras):
    del extras
    return set_scores(
      params, masks=masks, step=step, key=key, fraction=fraction, noise_std=noise_std, **layout
    )

  return Criterion(
    "set",
    fn,
    ("masks", "step", "key"),
    regrow=True,
    doc=_doc(set_scores),
    check_plan=_plan_check("set", structure, distribution),
  )


def _doc(fn: Callable[..., Any]) -> str:
  return (fn.__doc__ or "").strip().split("\n", 1)[0]


# The registered names use a constant drop fraction of 0.3 (no decay): the run length is not
# known at registration. `rigl` / `set_` below (and the factories above) add the cosine decay.
for _built in (rigl_criterion(0.3), set_criterion(0.3)):
  register(_built.name, needs=_built.needs, regrow=True, check_plan=_built.check_plan)(_built.fn)


def _check_update_steps(name: str, begin: int, end: int) -> None:
  """Refuses ``begin >= end``: no update would move a connection (the fraction is 0 at end)."""
  if isinstance(begin, int) and isinstance(end, int) and begin >= end:
    raise ValueError(
      f"{name}: begin={begin} is not before end={end}. Connections move at steps begin, "
      "begin + every, ... up to end, where the drop fraction has decayed to 0, so no update "
      f"would move one. Pass begin < end, e.g. jaxprune.dynamic.{name}(inner, 0.9, begin=0, "
      "end=7500, every=100)."
    )


def _drop_and_grow(
  criterion: Criterion,
  inner: optax.GradientTransformation,
  sparsity: float,
  *,
  every: int,
  end: int,
  begin: int,
  distribution: Any,
  structure: Any,
  packed: bool,
  seed: int,
) -> optax.GradientTransformationExtraArgs:
  _check_update_steps("set_" if criterion.name == "set" else "rigl", begin, end)
  mask_key = jax.random.fold_in(jax.random.key(seed), 1)
  return masked(
    inner,
    sparsity,
    criterion=criterion,
    schedule=schedules.periodic(every, begin, end),
    distribution=distribution,
    structure=structure,
    packed=packed,
    seed=seed,
    initial_masks=lambda params: random_masks(
      params, sparsity, key=mask_key, distribution=distribution, structure=structure
    ),
  )


def rigl(
  inner: optax.GradientTransformation,
  sparsity: float,
  *,
  end: int,
  every: int = 100,
  alpha: float = 0.3,
  begin: int = 0,
  distribution: Any = "erk",
  structure: Any = None,
  packed: bool = False,
  seed: int = 0,
  noise_std: float = NOISE_STD,
) -> optax.GradientTransformationExtraArgs:
  """RigL (Evci et al. 2020): sparse from step 0, connections moved every ``every`` steps.

  Random initial masks at ``sparsity`` with ``distribution`` (ERK by default); at steps
  ``begin, begin + every, ...`` up to ``end`` each pruned leaf drops ``floor(f·a)`` of its
  ``a`` active weights (lowest magnitude) and grows as many where the dense gradient is
  largest, with ``f`` decaying from ``alpha`` to 0 at ``end`` (cosine). Grown weights start
  at exactly 0.0 with reset optimizer state. The reference's defaults: ``alpha=0.3``,
  ``every=100``, ``end`` = 75% of training.

  Args:
    inner: any optax transformation.
    sparsity: overall target in [0, 1).
    end: last mask update, where the drop fraction reaches 0 (e.g. 0.75 · total steps).
    every: steps between mask updates (ΔT).
    alpha: initial drop fraction.
    begin: first mask update.
    distribution: per-leaf densities (``"erk"``, ``"uniform"``, a mapping...). With
      ``"global"`` the first (random) mask sets each leaf's count, and every update drops
      and grows within each leaf, so those counts stay exact.
    structure: ``None`` (unstructured), ``unstructured(within=axis)`` or ``n_of_m``
      (single weights move, within each slice or group of ``m``); ``channels()`` or
      ``block(shape)`` (whole units move: dropped by mean ``|w|``, grown by the L2 norm of
      their gradient, the count of kept units constant). Traced `jaxprune.groups.Groups`
      are refused: a channel masked in all of its coupled leaves has a zero gradient, so
      it could be neither ranked for growing nor trained once grown.
    packed: store masks as 1 bit per weight.
    seed: seeds the initial masks and, with the step, the drop tie-break noise.
    noise_std: standard deviation of that noise (the reference's 1e-5; 0: ties to the
      lowest index).

  Returns:
    A `jaxprune.masked` transformation.

  Example:
    >>> import jax, jax.numpy as jnp, optax, jaxprune
    >>> params = {"w": jax.random.normal(jax.random.key(0), (20, 10))}
    >>> tx = jaxprune.dynamic.rigl(optax.adam(1e-2), 0.8, every=2, end=10)
    >>> state = tx.init(params)
    >>> grads = {"w": jax.random.normal(jax.random.key(1), (20, 10))}
    >>> updates, state = tx.update(grads, state, params)
    >>> int(jaxprune.masks_of(state)["w"].sum())  # 20% of 200, after every update
    40
  """
  return _drop_and_grow(
    rigl_criterion(alpha, end, noise_std, structure=structure, distribution=distribution),
    inner,
    sparsity,
    every=every,
    end=end,
    begin=begin,
    distribution=distribution,
    structure=structure,
    packed=packed,
    seed=seed,
  )


def set_(
  inner: optax.GradientTransformation,
  sparsity: float,
  *,
  end: int,
  every: int = 100,
  alpha: float = 0.3,
  begin: int = 0,
  distribution: Any = "erk",
  structure: Any = None,
  packed: bool = False,
  seed: int = 0,
  noise_std: float = NOISE_STD,
) -> optax.GradientTransformationExtraArgs:
  """SET (Mocanu et al. 2018): as `rigl`, but connections grow uniformly at random.

  The arguments are those of `rigl`; the grow scores come from the criterion key that
  `jaxprune.masked` derives from ``seed`` and the step (or a ``key=`` extra). With
  ``channels()`` or ``block(shape)`` whole units are grown at random.

  Example:
    >>> import jax, jax.numpy as jnp, optax, jaxprune
    >>> params = {"w": jax.random.normal(jax.random.key(0), (20, 10))}
    >>> tx = jaxprune.dynamic.set_(optax.sgd(0.1), 0.9, every=1, end=10)
    >>> state = tx.init(params)
    >>> updates, state = tx.update(params, state, params)
    >>> int(jaxprune.masks_of(state)["w"].sum())
    20
  """
  return _drop_and_grow(
    set_criterion(alpha, end, noise_std, structure=structure, distribution=distribution),
    inner,
    sparsity,
    every=every,
    end=end,
    begin=begin,
    distribution=distribution,
    structure=structure,
    packed=packed,
    seed=seed,
  )
