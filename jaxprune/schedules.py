"""Sparsity schedules: when masks are updated and to which sparsity.

A schedule is a function ``schedule(step, target) -> (update_now, sparsity)`` evaluated
inside `jax.jit` on the wrapper's counter; both outputs are arrays, so neither a mask
update nor a change of sparsity retraces.

Step convention: ``step`` counts the ``tx.update`` calls made before this one, so the
first call sees ``step = 0``. A mask update at step ``t`` takes effect in the updates
returned by that same call (the params after that step's `optax.apply_updates` are pruned).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

Schedule = Callable[[jax.Array, jax.Array | float], tuple[jax.Array, jax.Array]]


@dataclasses.dataclass(frozen=True)
class OneShot:
  """Prune once, at ``step``, straight to the target; masks stay fixed afterwards."""

  step: int = 0

  def __call__(self, step, target):
    step = jnp.asarray(step)
    on = step >= self.step
    return step == self.step, jnp.where(on, jnp.asarray(target, jnp.float32), 0.0)


@dataclasses.dataclass(frozen=True)
class Periodic:
  """Re-select masks at the target sparsity every ``every`` steps in ``[begin, end]``."""

  every: int
  begin: int = 0
  end: int | None = None

  def __call__(self, step, target):
    step = jnp.asarray(step)
    end = jnp.iinfo(jnp.int32).max if self.end is None else self.end
    active = (step >= self.begin) & (step <= end)
    update = active & ((step - self.begin) % self.every == 0)
    return update, jnp.where(step >= self.begin, jnp.asarray(target, jnp.float32), 0.0)


@dataclasses.dataclass(frozen=True)
class Polynomial:
  """Gradual pruning of Zhu & Gupta (2017): s_t = s_f + (s_i − s_f)(1 − p)^power."""

  begin: int
  end: int
  every: int
  power: float = 3.0
  initial: float = 0.0

  def __call__(self, step, target):
    step = jnp.asarray(step)
    p = jnp.clip((step - self.begin) / max(self.end - self.begin, 1), 0.0, 1.0)
    target = jnp.asarray(target, jnp.float32)
    s = target + (self.initial - target) * (1.0 - p) ** self.power
    on_grid = (step - self.begin) % self.every == 0
    update = (step >= self.begin) & (step <= self.end) & (on_grid | (step == self.end))
    return update, jnp.where(step >= self.begin, s, 0.0).astype(jnp.float32)


def _is_int(v: object) -> bool:
  return isinstance(v, int | jnp.integer) and not isinstance(v, bool)


def _check_steps(name: str, example: str, **steps: int | None) -> None:
  for k, v in steps.items():
    if v is not None and (not _is_int(v) or v < 0):
      raise ValueError(f"{name}: {k} must be a non-negative int; got {v!r}. Example: {example}.")


def _check_every(name: str, every: object, example: str) -> None:
  if not _is_int(every) or every < 1:
    raise ValueError(
      f"{name}: every must be a positive int (steps between mask updates); got {every!r}. "
      f"Example: {example}."
    )


def one_shot(step: int = 0) -> OneShot:
  """Prune to the target at ``step`` (default: the first update) and keep masks fixed.

  Example:
    >>> import jaxprune
    >>> upd, s = jaxprune.schedules.one_shot(2)(2, 0.9)
    >>> bool(upd), round(float(s), 6)  # the float32 target
    (True, 0.9)
  """
  _check_steps("one_shot", "one_shot(step=1000)", step=step)
  return OneShot(step)


def periodic(every: int, begin: int = 0, end: int | None = None) -> Periodic:
  """Re-select masks at the full target every ``every`` steps from ``begin`` to ``end``.

  Updates happen at steps ``begin, begin + every, ...`` while ``step <= end``; before
  ``begin`` the sparsity is 0 (dense). ``end`` before ``begin`` (no update could happen)
  is refused.

  Example:
    >>> import jaxprune
    >>> sched = jaxprune.schedules.periodic(every=10, begin=5)
    >>> [bool(sched(t, 0.5)[0]) for t in (4, 5, 10, 15)]
    [False, True, False, True]
  """
  example = "periodic(every=100, begin=1000, end=10000)"
  _check_steps("periodic", example, begin=begin, end=end)
  _check_every("periodic", every, example)
  if end is not None and end < begin:
    raise ValueError(
      f"periodic: begin={begin} is after end={end}, so the schedule would never update "
      f"the masks. Pass end >= begin (or end=None for no end), e.g. {example}."
    )
  return Periodic(every, begin, end)


def polynomial(
  begin: int, end: int, every: int, power: float = 3.0, initial: float = 0.0
) -> Polynomial:
  """Gradual pruning (Zhu & Gupta 2017): sparsity rises from ``initial`` to the target.

  .. math:: s_t = s_f + (s_i - s_f)\\left(1 - \\frac{t - t_0}{t_1 - t_0}\\right)^{power}

  with t clipped to [t_0, t_1] = [begin, end]. Masks are updated at steps ``begin,
  begin + every, ...`` up to ``end`` and always at ``end`` itself, so the step ``begin``
  prunes to ``initial`` (nothing, by default) and step ``end`` reaches the target exactly.
  Steps before ``begin`` are dense; after ``end`` masks stay fixed at the target.

  The sparsity is that of the whole leaf. Under `jaxprune.masked` with ``initial_masks``
  masks only shrink, so the masks stay as given while the curve is below their sparsity;
  to ramp from them at ``begin``, pass ``initial=`` their sparsity (e.g. 0.5 for a ticket
  at 50%).

  Example:
    >>> import jaxprune
    >>> sched = jaxprune.schedules.polynomial(begin=0, end=100, every=10)
    >>> [round(float(sched(t, 0.9)[1]), 4) for t in (0, 50, 100, 200)]
    [0.0, 0.7875, 0.9, 0.9]
  """
  example = "polynomial(begin=1000, end=10000, every=100)"
  _check_steps("polynomial", example, begin=begin, end=end)
  if end <= begin or not _is_int(every) or every < 1:
    raise ValueError(
      f"polynomial needs begin < end and every >= 1; got begin={begin}, end={end}, "
      f"every={every}. Example: {example}."
    )
  if not float(power) > 0.0 or not math.isfinite(float(power)):
    raise ValueError(
      f"polynomial: power must be a positive finite number (at power <= 0 the sparsity "
      f"never leaves initial); got {power!r}. Zhu & Gupta use power=3: {example[:-1]}, "
      "power=3.0)."
    )
  if not 0.0 <= initial < 1.0:
    raise ValueError(
      f"polynomial: initial must be in [0, 1) (the sparsity at begin); got {initial}. "
      f"Example: {example[:-1]}, initial=0.5)."
    )
  return Polynomial(begin, end, every, float(power), float(initial))


def cosine_fraction(initial: float, end: int) -> Callable[[jax.Array], jax.Array]:
  """Cosine-decayed fraction for drop-and-grow updates (Evci et al. 2020, RigL).

  Example:
    >>> import jaxprune
    >>> f = jaxprune.schedules.cosine_fraction(0.3, end=100)
    >>> round(float(f(0)), 3), round(float(f(50)), 3), float(f(200))
    (0.3, 0.15, 0.0)
  """

  if not 0.0 <= float(initial) <= 1.0:
    raise ValueError(
      f"cosine_fraction: initial (the fraction at step 0) must be in [0, 1]; got "
      f"{initial!r}. Example: cosine_fraction(0.3, end=7500)."
    )
  if not _is_int(end) or end < 1:
    raise ValueError(
      f"cosine_fraction: end (the step where the fraction reaches 0) must be a positive int; "
      f"got {end!r}. Example: cosine_fraction(0.3, end=7500)."
    )

  def fraction(step):
    p = jnp.clip(jnp.asarray(step, jnp.float32) / end, 0.0, 1.0)
    return initial * 0.5 * (1.0 + jnp.cos(jnp.pi * p))

  return fraction


def get(schedule: Schedule | None) -> Schedule:
  """Resolves ``None`` to `one_shot(0)`; checks that anything else is callable."""
  if schedule is None:
    return OneShot(0)
  if not callable(schedule):
    raise TypeError(
      f"schedule must be callable (step, target) -> (update_now, sparsity); got "
      f"{type(schedule).__name__}. Example: schedule=jaxprune.schedules.polynomial(0, 1000, 100)."
    )
  return schedule
