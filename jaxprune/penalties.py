"""Sparsity-inducing penalties to add to a loss: L1, a smooth count of nonzeros, group lasso.

Each takes a params pytree and returns a float32 scalar whose gradient is finite everywhere:
at w = 0 (L1, smooth L0) and at an all-zero group (group lasso) it is the zero subgradient.
Which leaves are penalized is set by ``filter``: by default floating leaves with ndim > 1
(kernels), like the default prunable leaves of `jaxprune.masked`; a regex is matched against
"/"-joined paths; a callable gets ``(path, leaf)``. A typical use trains with the penalty
and prunes by magnitude at the end:

  loss = cross_entropy + 1e-4 * jaxprune.penalties.l1(params)
  ...
  params, masks = jaxprune.prune(params, 0.9)
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxprune._tree import is_float_array, leaves_with_paths
from jaxprune.groups.structure import Groups

PyTree = Any
Filter = str | Callable[[str, Any], bool] | None
_GROUPS = ("output", "input")


def _abs(x: jax.Array) -> jax.Array:
  """|x| as x·sign(x): its gradient is sign(x), the zero subgradient at x = 0."""
  x = x.astype(jnp.float32)
  return x * jax.lax.stop_gradient(jnp.sign(x))


def _selected(params: PyTree, filter: Filter) -> list[tuple[str, jax.Array]]:
  pairs = leaves_with_paths(params)
  if filter is None:
    return [(p, x) for p, x in pairs if is_float_array(x) and jnp.ndim(x) > 1]
  if isinstance(filter, str):
    pattern = re.compile(filter)
    return [(p, x) for p, x in pairs if is_float_array(x) and pattern.fullmatch(p)]
  if callable(filter):
    return [(p, x) for p, x in pairs if is_float_array(x) and filter(p, x)]
  raise TypeError(
    f"filter must be None, a regex over '/'-joined paths or a function (path, leaf) -> bool; "
    f"got {type(filter).__name__}: {filter!r}. Example: l1(params, filter=r'.*/kernel')."
  )


def l1(params: PyTree, filter: Filter = None) -> jax.Array:
  """L1 norm Σ|w| of the selected leaves (gradient sign(w), 0 at w = 0).

  Args:
    params: params pytree.
    filter: which leaves (default: floating leaves with ndim > 1).

  Returns:
    float32 scalar.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxprune import penalties
    >>> params = {"kernel": jnp.array([[1.0, -2.0]]), "bias": jnp.array([5.0])}
    >>> float(penalties.l1(params)), float(penalties.l1(params, filter=".*"))
    (3.0, 8.0)

  References:
    Tibshirani. Regression Shrinkage and Selection via the Lasso. JRSS-B 1996.
  """
  total = jnp.zeros([], jnp.float32)
  for _, x in _selected(params, filter):
    total = total + jnp.sum(_abs(x))
  return total


def smooth_l0(params: PyTree, beta: float = 0.01, filter: Filter = None) -> jax.Array:
  """Sigmoid relaxation of the number of nonzeros: Σ (2σ(|w|/β) − 1) = Σ tanh(|w|/(2β)).

  Each term is 0 at w = 0 and tends to 1 for |w| ≫ β, so the sum approaches ‖w‖₀ as
  β → 0; β sets the magnitude below which a weight counts as (almost) zero.

  Args:
    params: params pytree.
    beta: temperature (> 0), in the units of the weights.
    filter: which leaves (default: floating leaves with ndim > 1).

  Returns:
    float32 scalar in [0, number of selected weights].

  Example:
    >>> import math, jax.numpy as jnp
    >>> from jaxprune import penalties
    >>> w = {"kernel": jnp.array([[0.0, math.log(3.0), 100.0]])}
    >>> round(float(penalties.smooth_l0(w, beta=1.0)), 4)  # 0 + 0.5 + 1
    1.5

  References:
    Louizos, Welling, Kingma. Learning Sparse Neural Networks through L0 Regularization.
    ICLR 2018 (section 2, smooth surrogates of the L0 norm).
  """
  if not beta > 0:
    raise ValueError(f"smooth_l0: beta must be > 0; got {beta!r}. E.g. smooth_l0(params, 0.01).")
  total = jnp.zeros([], jnp.float32)
  for _, x in _selected(params, filter):
    total = total + jnp.sum(jnp.tanh(_abs(x) / (2.0 * beta)))
  return total


def _safe_norm(sq: jax.Array) -> jax.Array:
  """sqrt with gradient 0 (not NaN) where the argument is 0."""
  nz = sq > 0
  return jnp.where(nz, jnp.sqrt(jnp.where(nz, sq, 1.0)), 0.0)


def group_norms(x: jax.Array, group: str = "output") -> jax.Array:
  """L2 norm of each output neuron/channel (last axis) or input one (axis −2) of a kernel.

  Args:
    x: a kernel with ndim >= 2, ``(..., n_in, n_out)``.
    group: ``"output"`` or ``"input"``.

  Returns:
    float32 norms, shape ``(n_out,)`` or ``(n_in,)`` (gradient 0 at an all-zero group).

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxprune.penalties import group_norms
    >>> group_norms(jnp.array([[3.0, 0.0], [4.0, 1.0]])).tolist()
    [5.0, 1.0]
  """
  if group not in _GROUPS:
    raise ValueError(
      f"group must be one of {_GROUPS}; got {group!r}. Output neurons/channels: "
      "group_lasso(params, group='output'); input ones: group='input'."
    )
  if x.ndim < 2:
    raise ValueError(
      f"group norms need a kernel with ndim >= 2; got shape {tuple(x.shape)}. Select kernels "
      "only, e.g. group_lasso(params, filter=r'.*kernel')."
    )
  axis = x.ndim - 1 if group == "output" else x.ndim - 2
  other = tuple(a for a in range(x.ndim) if a != axis)
  return _safe_norm(jnp.sum(jnp.square(x.astype(jnp.float32)), axis=other))


def group_lasso(
  params: PyTree, group: Any = "output", filter: Filter = None, scale_by_size: bool = True
) -> jax.Array:
  """Group lasso Σ_g √|g|·‖w_g‖₂ over neurons (Dense) or channels (Conv) of each kernel.

  Groups are slices along the last axis (``"output"``: each output neuron or filter) or
  axis −2 (``"input"``: each input neuron or input channel); whole groups are driven to
  zero, which structured pruning then removes. With ``group=`` traced `jaxprune.groups.Groups`,
  each group is one coupled channel: all its entries in every member (kernel column, bias,
  BatchNorm scale and shift, consumers' rows), the same channels ``structure=groups`` prunes.

  Args:
    params: params pytree.
    group: ``"output"``, ``"input"``, or traced `jaxprune.groups.Groups` (then ``filter``
      must be None: the groups say which entries are penalised).
    filter: which leaves (default: floating leaves with ndim > 1).
    scale_by_size: multiply each group's norm by √(group size) (Yuan & Lin).

  Returns:
    float32 scalar.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxprune import penalties
    >>> w = {"kernel": jnp.array([[3.0, 0.0], [4.0, 0.0]])}  # columns: norms 5 and 0
    >>> float(penalties.group_lasso(w, scale_by_size=False))
    5.0

  References:
    Yuan, Lin. Model Selection and Estimation in Regression with Grouped Variables.
    JRSS-B 2006. Wen et al. Learning Structured Sparsity in Deep Neural Networks.
    NeurIPS 2016.
  """
  if isinstance(group, Groups):
    if filter is not None:
      raise ValueError(
        "group_lasso(params, group=groups) penalises exactly the traced groups' entries; "
        f"got filter={filter!r} too. Drop it: group_lasso(params, group=groups)."
      )
    return _traced_group_lasso(params, group, scale_by_size)
  total = jnp.zeros([], jnp.float32)
  for _, x in _selected(params, filter):
    norms = group_norms(x, group)
    size = x.size // norms.size
    total = total + (size**0.5 if scale_by_size else 1.0) * jnp.sum(norms)
  return total


def _traced_group_lasso(params: PyTree, groups: Any, scale_by_size: bool) -> jax.Array:
  pairs = leaves_with_paths(params)
  leaves = [x for _, x in pairs]
  bound = groups.bind([p for p, _ in pairs], [tuple(jnp.shape(x)) for x in leaves])
  total = jnp.zeros([], jnp.float32)
  for g, members, _ in bound.bound:
    sq, count = jnp.zeros(g.size, jnp.float32), 0
    for li, axis, idx in members:
      x = jnp.take(leaves[li].astype(jnp.float32), jnp.asarray(idx.reshape(-1)), axis=axis)
      x = jnp.moveaxis(x, axis, 0).reshape(g.size, -1)
      sq, count = sq + jnp.sum(jnp.square(x), axis=1), count + x.shape[1]
    total = total + (count**0.5 if scale_by_size else 1.0) * jnp.sum(_safe_norm(sq))
  return total
