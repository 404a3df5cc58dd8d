"""`check_sparse`: verify that the params really are zero wherever the masks prune.

`jaxprune.masked` makes pruned entries exactly 0.0 after `optax.apply_updates`, as long as
nothing rescales its updates afterwards (``optax.chain(masked(...), optax.scale(-0.1))``
keeps only a tenth of the ``-param`` that zeroes them) and the params are finite (a NaN or
inf weight cannot be zeroed by adding an update: ``nan + (-nan)`` is NaN). The wrapper
cannot see transformations placed after it, so this check is the way to find out; the
trainer runs it at every evaluation.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxprune._checks import check_mask_tree
from jaxprune._tree import leaves_with_paths
from jaxprune.errors import SparsityError
from jaxprune.masked import MaskedState, _find_states, masks_of

PyTree = Any


@jax.jit
def _pruned_counts(params: list, masks: list) -> list:
  """Per leaf: (pruned, pruned and nonzero, of those non-finite, largest finite |w| of those).

  One compiled function for the whole tree, read back in one transfer (per-leaf eager ops
  compiled one small function per op and leaf shape: ~15 s for 100 leaves on the CPU).
  """
  out = []
  for p, m in zip(params, masks, strict=True):
    pruned = ~jnp.asarray(m, bool)
    n_pruned = jnp.sum(pruned, dtype=jnp.int32)
    if not jnp.issubdtype(p.dtype, jnp.inexact):  # integer leaves cannot hold a stray update
      out.append((n_pruned, jnp.int32(0), jnp.int32(0), jnp.float32(0)))
      continue
    bad = pruned & (p != 0)
    finite = jnp.isfinite(p)
    worst = jnp.max(jnp.where(bad & finite, jnp.abs(p), 0), initial=0).astype(jnp.float32)
    out.append(
      (n_pruned, jnp.sum(bad, dtype=jnp.int32), jnp.sum(bad & ~finite, dtype=jnp.int32), worst)
    )
  return out


def check_sparse(params: PyTree, masks_or_state: Any) -> int:
  """Raises `SparsityError` unless every entry the masks prune is exactly 0.0 in ``params``.

  Args:
    params: the params after `optax.apply_updates`.
    masks_or_state: an optimizer state containing a `jaxprune.masked` state (at any
      nesting), or a bool mask pytree mirroring params.

  Returns:
    The number of pruned entries checked.

  Raises:
    SparsityError: naming each leaf with nonzero or non-finite pruned entries, how many,
      and the likely cause.

  Example:
    >>> import jax.numpy as jnp, optax, jaxprune
    >>> params = {"w": jnp.arange(1.0, 5.0).reshape(2, 2)}
    >>> tx = optax.chain(jaxprune.masked(optax.sgd(0.1), 0.5), optax.scale(0.5))
    >>> state = tx.init(params)
    >>> updates, state = tx.update({"w": jnp.ones((2, 2))}, state, params)
    >>> jaxprune.check_sparse(optax.apply_updates(params, updates), state)
    Traceback (most recent call last):
    ...
    jaxprune.errors.SparsityError: 1 leaf has pruned entries that are not 0.0: ...
  """
  if _find_states(masks_or_state) or isinstance(masks_or_state, MaskedState):
    masks = masks_of(masks_or_state)
  else:
    masks = masks_or_state
  check_mask_tree(params, masks, "check_sparse")
  paths = [path for path, _ in leaves_with_paths(params)]
  counts = jax.device_get(_pruned_counts(jax.tree.leaves(params), jax.tree.leaves(masks)))
  nonzero, nonfinite, checked = [], [], 0
  for path, (n_pruned, n_bad, n_inf, worst) in zip(paths, counts, strict=True):
    checked += int(n_pruned)
    if n_bad:
      nonzero.append(
        f"  {path}: {n_bad} of {n_pruned} pruned entries nonzero (largest |w| "
        f"{worst:.3g}, {n_inf} NaN/inf)"
      )
      if n_inf:
        nonfinite.append(path)
  if nonzero:
    causes = []
    if len(nonfinite) < len(nonzero):
      causes.append(
        "A transformation after jaxprune.masked rescales its updates. Put masked last: "
        "optax.chain(optax.clip(1.0), jaxprune.masked(optax.adam(1e-3), 0.9)), and give the "
        "learning rate to the inner optimizer."
      )
    if nonfinite:
      causes.append(
        "The params hold NaN or inf, which no update can zero (nan + (-nan) is NaN): the "
        "run diverged; lower the learning rate or clip gradients."
      )
    leaves = "leaf has" if len(nonzero) == 1 else "leaves have"
    raise SparsityError(
      f"{len(nonzero)} {leaves} pruned entries that are not 0.0:\n"
      + "\n".join(nonzero)
      + "\n"
      + "\n".join(causes)
    )
  return checked
