"""The criterion registry: names to pure scoring functions over pytrees.

A criterion maps ``params`` (and keyword extras) to a ``scores`` pytree with the params'
structure; higher scores are kept. A leaf the criterion does not score is ``None`` and
stays dense. Criteria that learn their sparsity (variational dropout's log α, L0 gates)
set ``threshold``: the mask is then ``scores >= threshold`` and the requested sparsity is
not used. One-shot solvers that also rewrite the kept weights (layer-wise OBS) set
``prune_fn``, which `jaxprune.prune` calls instead of the generic score-then-mask path.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from jaxprune.errors import MissingExtraError

PyTree = Any
ScoreFn = Callable[..., PyTree]

_REGISTRY: dict[str, Criterion] = {}

# How to supply each well-known extra, for error messages.
_HOW_TO_SUPPLY = {
  "grads": "the gradient is the first argument of tx.update(grads, state, params)",
  "loss_fn": "loss_fn=lambda params, batch: ... (a scalar loss)",
  "batch": "batch=batch (what loss_fn takes as its second argument)",
  "batches": "batches=[batch0, batch1, ...] (several batches to accumulate over)",
  "key": "key=jax.random.key(0)",
  "activations": "activations={'Dense_0/kernel': inputs_to_that_layer, ...}",
  "masks": "supplied by jaxprune.masked (the current masks); to jaxprune.prune pass masks=...",
  "step": "supplied by jaxprune.masked (its update count); to jaxprune.prune pass step=...",
}


@dataclasses.dataclass(frozen=True)
class Criterion:
  """A named scoring function and the keyword extras it needs.

  Attributes:
    name: registry name.
    fn: ``fn(params, **extras) -> scores`` (same structure as params, ``None`` = unscored).
    needs: extras that must be supplied (``"grads"``, ``"loss_fn"``, ``"batch"``, ...).
    threshold: when set, masks are ``scores >= threshold`` and sparsity is an outcome.
    prune_fn: optional one-shot solver ``prune_fn(params, targets, structure, **extras) ->
      (params, masks)`` used by `jaxprune.prune` (for methods that update kept weights).
    doc: one-line description, shown by `describe`.
    regrow: whether the criterion may revive pruned entries (drop-and-grow methods). When
      False, `jaxprune.masked` ranks currently pruned entries below every other entry, so
      under a schedule masks only shrink.
    check_plan: optional ``check_plan(structure, distribution)``, called by
      `jaxprune.masked` with its resolved structure and distribution; raises if the scores
      were built for another layout (e.g. drop-and-grow built for single weights, used with
      ``channels()``).
  """

  name: str
  fn: ScoreFn
  needs: tuple[str, ...] = ()
  threshold: float | None = None
  prune_fn: Callable[..., tuple[PyTree, PyTree]] | None = None
  doc: str = ""
  regrow: bool = False
  check_plan: Callable[[Any, Any], None] | None = None

  def check_extras(self, extras: Mapping[str, Any], where: str = "tx.update") -> None:
    """Raises `MissingExtraError` naming each needed extra that is absent or None."""
    missing = [n for n in self.needs if extras.get(n) is None]
    if not missing:
      return
    shown = list(missing)
    no_data = extras.get("batch") is None and extras.get("batches") is None
    if "loss_fn" in shown and "batch" not in shown and no_data:
      shown.append("batch")  # loss_fn is called on data: the corrected call passes both
    how = "\n".join(f"  {n}: {_HOW_TO_SUPPLY.get(n, f'{n}=...')}" for n in shown)
    if where == "tx.update":
      kw = ", ".join(f"{n}={n}" for n in shown if n != "grads")
      call = f"updates, state = tx.update(grads, state, params{', ' + kw if kw else ''})"
    else:
      kw = ", ".join(f"{n}={n}" for n in shown)
      call = f"jaxprune.prune(params, sparsity, criterion={self.name!r}, {kw})"
    raise MissingExtraError(
      f"Criterion {self.name!r} needs {', '.join(map(repr, missing))}, which "
      f"{'was' if len(missing) == 1 else 'were'} not passed.\n{how}\nCorrected call:\n  {call}"
    )

  def __call__(self, params: PyTree, **extras: Any) -> PyTree:
    self.check_extras(extras)
    return self.fn(params, **extras)


def register(
  name: str,
  *,
  needs: tuple[str, ...] = (),
  threshold: float | None = None,
  prune_fn: Callable[..., tuple[PyTree, PyTree]] | None = None,
  regrow: bool = False,
  overwrite: bool = False,
  check_plan: Callable[[Any, Any], None] | None = None,
) -> Callable[[ScoreFn], ScoreFn]:
  """Decorator registering a scoring function under ``name``.

  Args:
    name: the name users pass as ``criterion=``.
    needs: keyword extras that must be present (others are passed but may be ignored).
      ``"masks"`` (the current bool masks, ``None`` for dense leaves) and ``"step"`` (the
      update count) are supplied by `jaxprune.masked` itself.
    threshold: for criteria whose masks are ``scores >= threshold`` (sparsity is learned).
    prune_fn: optional one-shot solver used by `jaxprune.prune`.
    regrow: the criterion may revive pruned entries (drop-and-grow); otherwise masks nest.
    overwrite: allow replacing an existing registration.
    check_plan: ``check_plan(structure, distribution)``, see `Criterion`.

  Returns:
    The decorator; it returns the function unchanged.

  Example:
    >>> import jax, jax.numpy as jnp, jaxprune
    >>> @jaxprune.criteria.register("squared_magnitude", overwrite=True)
    ... def squared_magnitude(params, **extras):
    ...   del extras
    ...   return jax.tree.map(jnp.square, params)
    >>> "squared_magnitude" in jaxprune.criteria.names()
    True
  """

  def deco(fn: ScoreFn) -> ScoreFn:
    if name in _REGISTRY and not overwrite:
      raise ValueError(
        f"A criterion named {name!r} is already registered. Pick another name or pass "
        f"overwrite=True: jaxprune.criteria.register({name!r}, overwrite=True)."
      )
    doc = (inspect.getdoc(fn) or "").split("\n", 1)[0]
    _REGISTRY[name] = Criterion(
      name, fn, tuple(needs), threshold, prune_fn, doc, regrow, check_plan
    )
    return fn

  return deco


def names() -> list[str]:
  """Returns the registered criterion names, sorted."""
  return sorted(_REGISTRY)


def get(criterion: str | Criterion | ScoreFn) -> Criterion:
  """Resolves a name, a `Criterion` or a plain function into a `Criterion`.

  Raises:
    ValueError: for an unknown name (the message lists the valid ones).
    TypeError: for anything that is neither a string nor callable.
  """
  if isinstance(criterion, Criterion):
    return criterion
  if isinstance(criterion, str):
    if criterion not in _REGISTRY:
      raise ValueError(
        f"Unknown criterion {criterion!r}. Registered criteria: {', '.join(names())}. "
        "Register your own with @jaxprune.criteria.register('name') or pass a function "
        "criterion=lambda params, **extras: scores."
      )
    return _REGISTRY[criterion]
  if callable(criterion):
    return Criterion(getattr(criterion, "__name__", "custom"), criterion)
  raise TypeError(
    f"criterion must be a registered name or a function params -> scores; got "
    f"{type(criterion).__name__}: {criterion!r}. Example: criterion='magnitude'."
  )
