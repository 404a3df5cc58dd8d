"""Argument checks shared by the public entry points, each naming its own corrected call."""

from __future__ import annotations

import numbers
from typing import Any

import jax
import jax.numpy as jnp

from jaxprune._tree import leaves_with_paths, unwrap_variables
from jaxprune.errors import MaskMismatchError

PyTree = Any


def check_sparsity(sparsity: Any, example: str) -> None:
  """Raises unless ``sparsity`` is None, a number in [0, 1) or an array (maybe traced).

  Args:
    sparsity: the value received.
    example: the caller's corrected call at 90% sparsity, shown in the message, e.g.
      ``"jaxprune.prune(params, 0.9)"``.

  Example:
    >>> check_sparsity(0.9, "jaxprune.prune(params, 0.9)")
    >>> check_sparsity(90, "jaxprune.prune(params, 0.9)")
    Traceback (most recent call last):
    ...
    ValueError: sparsity must be a fraction in [0, 1) ... jaxprune.prune(params, 0.9).
  """
  if sparsity is None:
    return
  if isinstance(sparsity, numbers.Number) and not isinstance(sparsity, bool):
    if not 0.0 <= float(sparsity) < 1.0:
      raise ValueError(
        f"sparsity must be a fraction in [0, 1) (the share of weights removed); got "
        f"{sparsity!r}. For 90% sparsity: {example}."
      )
  elif not hasattr(sparsity, "dtype"):
    raise TypeError(
      f"sparsity must be a number in [0, 1); got {type(sparsity).__name__}: {sparsity!r}. "
      f"Example: {example}."
    )


def concrete_value(x: Any) -> float | None:
  """``x`` as a Python float when it is known outside tracing, else None."""
  if isinstance(x, jax.core.Tracer):
    return None
  try:
    return float(x)
  except (TypeError, ValueError):
    return None


def check_concrete_sparsity(sparsity: Any, example: str) -> None:
  """Raises if ``sparsity`` is a concrete value outside [0, 1] or NaN (traced: no check).

  `check_sparsity` lets arrays through (they may be traced); where an array turns out
  concrete, e.g. the initial value `optax.inject_hyperparams` passes at ``init``, this
  checks it. 1 is allowed (every prunable weight removed), as for the clamped traced value.

  Args:
    sparsity: the value received.
    example: the caller's corrected call at 90% sparsity, shown in the message.

  Example:
    >>> import jax.numpy as jnp
    >>> check_concrete_sparsity(jnp.asarray(0.5), "masked(inner, 0.9)")
    >>> check_concrete_sparsity(jnp.asarray(1.2), "masked(inner, 0.9)")
    Traceback (most recent call last):
    ...
    ValueError: sparsity must be a fraction in [0, 1] ... masked(inner, 0.9).
  """
  value = concrete_value(sparsity)
  if value is not None and not 0.0 <= value <= 1.0:  # NaN fails both comparisons
    raise ValueError(
      f"sparsity must be a fraction in [0, 1] (the share of weights removed); got {value!r} "
      f"(a concrete {type(sparsity).__name__}, e.g. the initial value given to "
      f"optax.inject_hyperparams). For 90% sparsity: {example}."
    )


def check_overrides(sparsity: Any, crit: Any, structure: Any, example: str) -> None:
  """Rejects a sparsity that the criterion or the structure would override.

  A threshold criterion learns the sparsity, so it takes ``None``; a structure with a fixed
  ratio (``n_of_m``) takes ``None`` or that ratio. A traced value cannot be compared and is
  rejected where the ratio is fixed.

  Args:
    sparsity: the value received (``None`` = decided elsewhere).
    crit: the resolved `jaxprune.criteria.Criterion`.
    structure: the resolved structure.
    example: the caller's corrected call with ``None``, shown in the message.
  """
  if crit.threshold is not None and sparsity is not None:
    raise ValueError(
      f"Criterion {crit.name!r} keeps the weights whose score clears a fixed threshold (the "
      f"sparsity is learned, not chosen), so sparsity={sparsity!r} would be ignored. Pass "
      f"sparsity=None: {example.replace('...', f'criterion={crit.name!r}, ...')}."
    )
  fixed = getattr(structure, "sparsity", None)
  if not isinstance(fixed, float) or sparsity is None:
    return
  value = concrete_value(sparsity)
  if value is None or abs(value - fixed) > 1e-6:
    raise ValueError(
      f"structure={structure!r} fixes the sparsity at {fixed:g}; got sparsity="
      f"{sparsity!r}, which it would override. Pass sparsity=None (or {fixed:g}): "
      f"{example.replace('...', f'structure={structure!r}, ...')}."
    )


def resolve_sparsity(
  sparsity: Any,
  crit: Any,
  structure: Any,
  example: str,
  *,
  decided_elsewhere: bool = False,
) -> Any:
  """Checks ``sparsity`` against what overrides it and returns the sparsity to use.

  That is the given value, else the structure's fixed ratio (``n_of_m``), else 0.0 where a
  threshold criterion learns it or ``decided_elsewhere`` (fixed initial masks).

  Args:
    sparsity: the value received (``None`` = decided elsewhere).
    crit: the resolved `jaxprune.criteria.Criterion`.
    structure: the resolved structure.
    example: the caller's call with a sparsity of 0.9, e.g. ``"jaxprune.prune(params, 0.9)"``;
      the messages show it, and it with ``None`` for the overridden case.
    decided_elsewhere: the caller fixes the masks itself (no override check, None allowed).

  Example:
    >>> import jaxprune
    >>> crit = jaxprune.criteria.get("magnitude")
    >>> two_of_four = jaxprune.structures.n_of_m(2, 4)
    >>> resolve_sparsity(None, crit, two_of_four, "jaxprune.prune(params, 0.9)")
    0.5
  """
  if not decided_elsewhere:
    check_overrides(sparsity, crit, structure, example.replace("0.9", "None, ..."))
  if sparsity is not None:
    return sparsity
  fixed = getattr(structure, "sparsity", None)
  if fixed is not None:
    return fixed
  if crit.threshold is not None or decided_elsewhere:
    return 0.0
  raise ValueError(
    "sparsity=None needs something else to decide it: a threshold criterion, a structure "
    f"with a fixed sparsity (n_of_m) or fixed initial masks. Pass a sparsity: {example}."
  )


def check_mask_tree(params: PyTree, masks: PyTree, caller: str) -> None:
  """Raises `MaskMismatchError` unless ``masks`` has the structure and shapes of ``params``.

  NNX ``Variable`` nodes (``Param`` in params, ``OptVariable`` in an `nnx.Optimizer`'s
  state) are compared by their values, so masks from either fit either.
  """
  p_tree, m_tree = unwrap_variables(params), unwrap_variables(masks)
  if jax.tree.structure(p_tree) != jax.tree.structure(m_tree):
    raise MaskMismatchError(
      f"{caller}: the mask tree does not match the params tree.\n"
      f"  params: {jax.tree.structure(p_tree)}\n  masks:  {jax.tree.structure(m_tree)}\n"
      "Pass the masks made for these params: jaxprune.masks_of(opt_state) for the state "
      "of the optimizer that trains them, or the masks of jaxprune.prune(params, ...)."
    )
  for (path, p), m in zip(leaves_with_paths(p_tree), jax.tree.leaves(m_tree), strict=True):
    if jnp.shape(p) != jnp.shape(m):
      raise MaskMismatchError(
        f"{caller}: the mask of {path!r} has shape {jnp.shape(m)}, but the leaf has shape "
        f"{jnp.shape(p)}; a mask must have its leaf's shape (no broadcasting). Pass the "
        "masks made for these params, e.g. jaxprune.masks_of(opt_state)."
      )
