"""`shrink`: physically remove pruned channel groups, for a smaller model with the same outputs.

With `jaxprune.groups.Groups` masks, a removed channel is zero in every member: its kernel
column, bias and BatchNorm entries, and the rows of every consumer. Whatever value the
channel carries in the masked model, every place that reads it is then a contraction
with zeroed rows (the tracing keeps channels read any other way), so deleting the
channel from all members, BatchNorm running statistics included, leaves every other
output unchanged: no constant needs folding, SAME padding and residual additions
included. `apply_resized` runs the same Flax Linen module at the new widths and head counts.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxprune._tree import leaves_with_paths

PyTree = Any


_PARAMS = "params/"


def _correct_calls() -> str:
  return (
    "Pass the tree the groups were traced on, with the pruned params in it:\n"
    "  groups = jaxprune.groups.trace(model.apply, variables, x)\n"
    "  small, widths = jaxprune.surgery.shrink({**variables, 'params': pruned}, groups, masks)\n"
    "or, for groups traced on the params alone "
    "(jaxprune.groups.trace(lambda p, x: model.apply({'params': p}, x), params, x)),\n"
    "  small, widths = jaxprune.surgery.shrink({'params': pruned}, groups, masks)"
  )


def _traced_paths(variables: PyTree, groups: Any) -> dict[str, str]:
  """Maps the path of every leaf of ``variables`` to its path in the tree ``groups`` traced.

  The tree may be the traced one, the traced one under a ``"params"`` collection (groups
  traced on ``variables['params']``) or its ``"params"`` collection alone (groups traced on
  all variables). Every leaf must be a traced leaf of the same shape, else a channel axis
  could keep its full width while its partners shrink.
  """
  tree = {p: tuple(np.shape(x)) for p, x in leaves_with_paths(variables)}
  traced = {p: tuple(s) for p, s in groups.leaves}
  members = {p for g in groups for p, _ in g.members}
  readings = (
    lambda t: t,  # the traced tree itself
    lambda t: t[len(_PARAMS) :] if t.startswith(_PARAMS) else None,  # traced on params
    lambda t: _PARAMS + t,  # the params collection of the traced tree
  )
  for read in readings:
    where = {t: read(t) for t in tree}
    if all(p in traced for p in where.values()) and members & set(where.values()):
      break
  else:
    untraced = [t for t in tree if t not in traced][:4]
    raise ValueError(
      f"shrink received a tree whose leaves are not the ones the groups were traced on: "
      f"e.g. {untraced} (of {len(tree)} leaves); expected the traced leaves, e.g. "
      f"{list(traced)[:4]} (of {len(traced)}), or the same under or without a 'params' "
      "collection. Leaves the groups were not traced with would keep their full widths "
      f"(BatchNorm statistics, for one).\n{_correct_calls()}"
    )
  for t, p in where.items():
    if tree[t] != traced[p]:
      raise ValueError(
        f"shrink received {t} of shape {tree[t]}, but the groups were traced with {p} of "
        f"shape {traced[p]}: expected the unshrunk tree the groups were traced on (shrink a "
        f"tree once; trace again to prune a shrunk model further).\n{_correct_calls()}"
      )
  return where


def _masks_by_traced_path(masks: PyTree, traced: set[str], where: dict[str, str]) -> dict:
  """Mask leaves keyed by traced path; ``masks`` may cover the tree or its ``params`` only."""
  out = {}
  for path, m in leaves_with_paths(masks):
    for p in (where.get(path), path, _PARAMS + path, path.removeprefix(_PARAMS)):
      if p in traced:
        out[p] = m
        break
  return out


def removed_channels(variables: PyTree, groups: Any, masks: PyTree | None = None) -> list[Any]:
  """Per group, a bool array: True for channels whose every masked entry is False.

  Without ``masks``, a channel is removed when all its parameter entries are exactly 0
  (entries outside the ``params`` collection, like BatchNorm statistics, are not read).
  ``variables`` and ``masks`` are read as in `shrink`.

  Raises:
    ValueError: if ``variables`` is not the tree the groups were traced on (see `shrink`),
      or ``masks`` cover none of the groups' members.
  """
  return _removed(variables, groups, masks, _traced_paths(variables, groups))


def _removed(variables: PyTree, groups: Any, masks: PyTree | None, where: dict) -> list[Any]:
  traced = dict(groups.leaves)
  if masks is None:
    values = {where[t]: x for t, x in leaves_with_paths(variables)}
    has_params = any(p.startswith(_PARAMS) for p in values)
    lookup = {
      p: np.asarray(x) != 0 for p, x in values.items() if not has_params or p.startswith(_PARAMS)
    }
  else:
    lookup = _masks_by_traced_path(masks, set(traced), where)
    if not any(p in lookup for g in groups for p, _ in g.members):
      raise ValueError(
        f"shrink received masks whose leaves match no member of the groups (mask leaves: "
        f"{[p for p, _ in leaves_with_paths(masks)][:4]}...; members: "
        f"{[p for p, _ in groups.groups[0].members][:4]}...): expected masks over the "
        "tree or its params, as from jaxprune.prune(variables['params'], s, structure=groups)."
      )
  out = []
  for g in groups:
    alive = np.zeros(g.size, bool)
    seen = False
    for (path, axis), idx in zip(g.members, g.index, strict=True):
      if lookup.get(path) is None:
        continue
      seen = True
      m = np.broadcast_to(np.asarray(lookup[path]), traced[path])
      m = np.moveaxis(np.take(m, idx.reshape(-1), axis=axis), axis, 0).reshape(g.size, -1)
      alive |= m.any(axis=1)
    out.append(~alive if seen else np.zeros(g.size, bool))
  return out


def shrink(
  variables: PyTree, groups: Any, masks: PyTree | None = None
) -> tuple[PyTree, dict[str, int]]:
  """Deletes the removed channels of every group from every member.

  Args:
    variables: the tree the groups were traced on (all Linen variables, or an
      ``nnx.State``), usually the masked (pruned) one. For groups traced on
      ``variables['params']`` alone, pass ``{'params': pruned}`` or ``pruned``; for groups
      traced on all variables, ``variables['params']`` alone is accepted too (only the
      params are returned then).
    groups: `jaxprune.groups.Groups` from `jaxprune.groups.trace`.
    masks: bool masks over ``variables``, over ``variables['params']`` or over the traced
      tree (as from `jaxprune.masks_of` or `jaxprune.prune`); ``None`` removes channels
      that are all 0.

  Returns:
    ``(smaller_variables, widths)``: the same tree with smaller leaves, and the number of
    channels kept per group name. Run the smaller model with `apply_resized` (Linen) or
    ``nnx.merge(graphdef, smaller_state)`` (NNX modules that read their shapes from
    their arrays).

  Raises:
    ValueError: if a leaf of ``variables`` is not a leaf the groups were traced with (with
      the same shape), so that it could not be shrunk with its partners (e.g. BatchNorm
      statistics next to groups traced on the params alone), or ``masks`` match no member.

  Example:
    >>> import jax, jax.numpy as jnp, flax.linen as nn, jaxprune
    >>> model = nn.Sequential([nn.Dense(6), nn.relu, nn.Dense(2)])
    >>> x = jnp.ones((1, 3))
    >>> variables = model.init(jax.random.key(0), x)
    >>> groups = jaxprune.groups.trace(model.apply, variables, x)
    >>> pruned, masks = jaxprune.prune(variables["params"], 0.5, structure=groups)
    >>> small, widths = jaxprune.surgery.shrink({"params": pruned}, groups, masks)
    >>> widths, small["params"]["layers_2"]["kernel"].shape
    ({'params/layers_0/kernel:1': 3}, (3, 2))

    Groups traced on the params alone read the same call:

    >>> apply = lambda p, x: model.apply({"params": p}, x)
    >>> groups = jaxprune.groups.trace(apply, variables["params"], x)
    >>> pruned, masks = jaxprune.prune(variables["params"], 0.5, structure=groups)
    >>> small, widths = jaxprune.surgery.shrink({"params": pruned}, groups, masks)
    >>> widths, small["params"]["layers_2"]["kernel"].shape
    ({'layers_0/kernel:1': 3}, (3, 2))
  """
  where = _traced_paths(variables, groups)
  gone = _removed(variables, groups, masks, where)
  drop: dict[tuple[str, int], set[int]] = {}
  for g, removed in zip(groups, gone, strict=True):
    for (path, axis), idx in zip(g.members, g.index, strict=True):
      drop.setdefault((path, axis), set()).update(idx[removed].reshape(-1).tolist())
  flat, treedef = jax.tree_util.tree_flatten_with_path(variables)
  paths = [p for p, _ in leaves_with_paths(variables)]
  out = []
  for path, (_, leaf) in zip(paths, flat, strict=True):
    x = leaf
    for axis in range(np.ndim(leaf)):
      gone_idx = sorted(drop.get((where[path], axis), ()))
      if gone_idx:
        x = jnp.delete(jnp.asarray(x), jnp.asarray(gone_idx), axis=axis, assume_unique_indices=True)
    out.append(x)
  widths = {g.name: int(g.size - r.sum()) for g, r in zip(groups, gone, strict=True)}
  return jax.tree.unflatten(treedef, out), widths


def _lookup(tree: Any, path: tuple[str, ...]) -> Any:
  for key in path:
    if not isinstance(tree, Mapping) or key not in tree:
      return None
    tree = tree[key]
  return tree


def _conv_groups(module: nn.Conv, kernel: tuple[int, ...], inputs: Any) -> int:
  """``feature_group_count`` of a grouped ``nn.Conv`` at the widths of its kernel and input."""
  in_features, groups = int(jnp.shape(inputs)[-1]), int(module.feature_group_count)
  if kernel[-2] == 1 and kernel[-1] == in_features:
    return in_features  # depthwise, one output per input channel: one group per channel
  if kernel[-2] * groups == in_features and kernel[-1] % groups == 0:
    return groups  # the grouping the module was built with still fits
  raise ValueError(
    f"apply_resized cannot size the grouped convolution {'/'.join(module.path)!r} "
    f"(feature_group_count={groups}): its kernel has shape {kernel} and its input "
    f"{in_features} channels, which no grouping fits. Only depthwise convolutions with one "
    "output per input channel (feature_group_count == features, the grouped convolutions "
    "jaxprune.groups.trace groups) are resized. Keep this layer's channels, e.g. trace with "
    "jaxprune.groups.trace(model.apply, variables, x, on_unsupported='keep'), or build the "
    "module with feature_group_count set for its new widths and call model.apply."
  )


def apply_resized(model: nn.Module, variables: PyTree, *args: Any, **kwargs: Any) -> Any:
  """``model.apply(variables, ...)`` with every layer sized by its (smaller) kernel.

  ``nn.Dense``, ``nn.Conv`` and ``nn.DenseGeneral`` take their ``features`` from their
  kernel's output axes, ``nn.Embed`` its ``features`` from its embedding's columns (a
  pruned residual width) and ``nn.MultiHeadDotProductAttention`` its ``num_heads`` (and
  ``qkv_features``) from its query kernel, so the module built with its original widths
  runs the params from `shrink`. A depthwise ``nn.Conv`` (one output per input channel)
  takes its ``feature_group_count`` from its input's channels; another grouped
  convolution whose grouping no longer fits its kernel raises a ValueError. Modules that
  compute shapes from their own attributes (rather than from their inputs) need those
  attributes set to the new widths.

  Example:
    >>> import jax, jax.numpy as jnp, flax.linen as nn
    >>> model = nn.Sequential([nn.Dense(6), nn.relu, nn.Dense(2)])
    >>> small = {"params": {"layers_0": {"kernel": jnp.ones((3, 4)), "bias": jnp.zeros(4)},
    ...                     "layers_2": {"kernel": jnp.ones((4, 2)), "bias": jnp.zeros(2)}}}
    >>> apply_resized(model, small, jnp.ones((1, 3))).tolist()
    [[12.0, 12.0]]
  """
  params = variables["params"]

  def interceptor(next_fun, call_args, call_kwargs, context):
    module = context.module
    if context.method_name == "setup" and isinstance(module, nn.Embed):
      own = _lookup(params, tuple(module.path))
      if own and "embedding" in own:
        rows, features = own["embedding"].shape
        object.__setattr__(module, "num_embeddings", int(rows))
        object.__setattr__(module, "features", int(features))
    if context.method_name == "__call__":
      own = _lookup(params, tuple(module.path))
      if isinstance(module, nn.MultiHeadDotProductAttention) and own and "query" in own:
        heads, head_dim = own["query"]["kernel"].shape[-2:]
        object.__setattr__(module, "num_heads", int(heads))
        object.__setattr__(module, "qkv_features", int(heads * head_dim))
      elif isinstance(module, nn.Dense | nn.Conv) and own and "kernel" in own:
        object.__setattr__(module, "features", int(own["kernel"].shape[-1]))
        if isinstance(module, nn.Conv) and module.feature_group_count != 1 and call_args:
          groups = _conv_groups(module, tuple(own["kernel"].shape), call_args[0])
          object.__setattr__(module, "feature_group_count", groups)
      elif isinstance(module, nn.DenseGeneral) and own and "kernel" in own:
        n = len(module.features) if isinstance(module.features, tuple) else 1
        shape = tuple(int(d) for d in own["kernel"].shape[-n:])
        object.__setattr__(module, "features", shape if n > 1 else shape[0])
    return next_fun(*call_args, **call_kwargs)

  with nn.intercept_methods(interceptor):
    return model.apply(variables, *args, **kwargs)


def save_checkpoint(directory: str | os.PathLike, tree: PyTree) -> int:
  """Saves ``tree`` as an orbax checkpoint in ``directory`` and returns its bytes on disk.

  Example:
    >>> import tempfile, jax
    >>> w = jax.random.normal(jax.random.key(0), (256, 256))  # 256 KiB of float32
    >>> 200 * 1024 < save_checkpoint(tempfile.mkdtemp() + "/small", {"w": w}) < 300 * 1024
    True
  """
  import orbax.checkpoint as ocp  # heavy (half a second); only this function writes one

  path = os.path.abspath(os.fspath(directory))
  with ocp.StandardCheckpointer() as ckpt:
    ckpt.save(path, tree)
  return sum(
    os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files
  )
