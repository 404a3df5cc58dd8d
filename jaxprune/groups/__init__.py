"""Dependency groups: the parameter axes a model must prune together, traced from its jaxpr.

* `trace(apply_fn, variables, x)`: the prunable channel `Groups` of a model (Flax Linen,
  NNX through ``nnx.split``/``nnx.merge``, or any pure function of a params pytree).
* `Groups`: pass as ``structure=`` to `jaxprune.prune` / `jaxprune.masked`; ``groups.by``
  picks the group score (``"l1"``, ``"l2"``, ``"bn_scale"``, ``"taylor"``).
* `jaxprune.penalties.group_lasso(params, groups=...)` penalises the same groups, and
  `jaxprune.surgery.shrink` removes pruned channels for a smaller model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from jaxprune.groups.criteria import signed_taylor
from jaxprune.groups.structure import BoundGroups, Group, Groups
from jaxprune.groups.trace import GroupTraceError, walk

__all__ = ["BoundGroups", "Group", "GroupTraceError", "Groups", "signed_taylor", "trace"]


def _name(members: list[tuple[str, int]], shapes: dict[str, tuple[int, ...]]) -> str:
  """The producer's output axis (a kernel's last axis) names a group, else its first member."""
  for last in (True, False):
    for path, axis in members:
      shape = shapes[path]
      producer = len(shape) >= 2 and "kernel" in path.split("/")[-2:] and axis >= 1
      if producer and (axis == len(shape) - 1 or not last):
        return f"{path}:{axis}"
  path, axis = members[0]
  return f"{path}:{axis}"


def trace(
  apply_fn: Callable[..., Any],
  variables: Any,
  example_input: Any,
  *,
  on_unsupported: str = "raise",
  normalized: str = "keep",
  **apply_kwargs: Any,
) -> Groups:
  """Traces ``apply_fn(variables, example_input, **apply_kwargs)`` into its channel groups.

  Each group is a set of channels that must be removed together (see
  `jaxprune.groups.trace` module notes): a kernel's output channel with its bias, its
  BatchNorm scale, shift and running statistics, the input rows of every consumer (a
  channels-last flatten maps channel ``c`` to rows ``c, c + C, ...``), every tensor added
  to it (residual connections), concatenation offsets, attention heads (the query, key and
  value columns of a head and the output projection's rows, for flax's attention and for
  hand-written attention that reshapes a projection into heads x head_dim; under
  grouped-query attention a key/value head with its query heads) and MLP hidden units.
  Channels reaching the model's output, an embedding's vocabulary, normalised axes and
  other channels that cannot be removed are left out (``Groups.kept`` says why). Trace
  in inference mode (``train=False``), so BatchNorm reads its running statistics.

  Args:
    apply_fn: ``apply_fn(variables, x, **apply_kwargs)``, e.g. ``model.apply``; for NNX,
      ``graphdef, state = nnx.split(model)`` and ``lambda s, x: nnx.merge(graphdef, s)(x)``.
    variables: the pytree of arrays to group (all Linen variables, so ``batch_stats``
      are grouped too, or an ``nnx.State``).
    example_input: an input of the right shape and dtype (values do not matter).
    on_unsupported: ``"raise"`` (default) raises `GroupTraceError` on an operation whose
      effect on channels cannot be followed; ``"keep"`` leaves those channels unpruned.
    normalized: ``"keep"`` (default) leaves out channels that a sum runs over (the
      statistics of LayerNorm and RMSNorm: a transformer's residual width), so removing
      any group leaves the outputs unchanged. ``"group"`` groups them too: a residual
      width becomes one group spanning the embedding, every block's input and output
      projections and norms, and the head. Removing such channels changes the
      statistics (their mean divides by the new width), so the smaller model then only
      approximates the masked one; fine-tune after.
    **apply_kwargs: more keyword arguments for ``apply_fn`` (e.g. ``train=False``).

  Returns:
    `Groups`, with one `Group` per set of coupled channels.

  Example:
    >>> import jax, jax.numpy as jnp, flax.linen as nn, jaxprune
    >>> class MLP(nn.Module):
    ...   @nn.compact
    ...   def __call__(self, x):
    ...     return nn.Dense(3, name="out")(nn.relu(nn.Dense(8, name="hidden")(x)))
    >>> model = MLP()
    >>> variables = model.init(jax.random.key(0), jnp.ones((1, 4)))
    >>> groups = jaxprune.groups.trace(model.apply, variables, jnp.ones((1, 4)))
    >>> [(g.name, g.size) for g in groups]
    [('params/hidden/kernel:1', 8)]
    >>> sorted(groups.groups[0].members)
    [('params/hidden/bias', 0), ('params/hidden/kernel', 1), ('params/out/kernel', 0)]
  """
  leaves, classes, kept = walk(
    apply_fn, variables, example_input, on_unsupported, normalized, **apply_kwargs
  )
  paths = [p for p, _ in leaves]
  shapes = dict(leaves)
  families: dict[tuple, list[dict[tuple[int, int], list[int]]]] = {}
  for cls in classes:
    by_axis: dict[tuple[int, int], list[int]] = {}
    for li, axis, i in cls:
      by_axis.setdefault((li, axis), []).append(i)
    signature = tuple(sorted((k, len(v)) for k, v in by_axis.items()))
    families.setdefault(signature, []).append(by_axis)
  groups = []
  for signature, members in families.items():
    keys = [k for k, _ in signature]
    first = keys[0]
    members.sort(key=lambda m: min(m[first]))
    index = tuple(np.array([sorted(m[k]) for m in members], np.int32) for k in keys)
    named = [(paths[li], axis) for li, axis in keys]
    groups.append(Group(_name(named, shapes), tuple(named), index))
  groups.sort(key=lambda g: min(paths.index(p) for p, _ in g.members))
  return Groups(tuple(groups), tuple(leaves), dict(kept))
