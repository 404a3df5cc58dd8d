"""`Groups`: coupled channels as a sparsity structure, scored and masked a whole channel at once.

A `Group` is ``n`` channels that share one set of parameter axes (its members): removing
channel ``i`` removes index ``index[m][i]`` (one or more positions) along the axis of every
member ``m``: the producing kernel's output column, its bias and BatchNorm entries, the rows
of every consumer, and the same for residual partners. `Groups` is what
`jaxprune.groups.trace` returns; passed as ``structure=`` to `jaxprune.prune` or
`jaxprune.masked`, every group keeps ``n - round(s·n)`` channels at sparsity ``s`` and the
masks cover every member of a removed channel.

How a channel is scored: the per-weight scores of the criterion (``|w|`` for
``"magnitude"``) over all its entries, reduced by ``reduce``:
``"sum"`` (with magnitude: the group L1 norm), ``"l2"`` (the group L2 norm, √Σs²),
``"mean"``, ``"max"``, or ``"square_sum"`` ((Σs)², the group Taylor importance of
Molchanov et al. 2019 with the signed ``"signed_taylor"`` criterion). ``only`` restricts
the scored entries to members whose path matches a regex, e.g. BatchNorm scales (network
slimming, Liu et al. 2017). `Groups.by` sets both for the named methods.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxprune.masks import num_to_keep_many
from jaxprune.segments import topk_masks

_REDUCE = ("sum", "l2", "mean", "max", "square_sum")
_METHODS = {
  "l1": ("sum", None),
  "l2": ("l2", None),
  "bn_scale": ("sum", r"(.*/)?scale(/value)?"),
  "taylor": ("square_sum", None),
}


@dataclasses.dataclass(frozen=True, eq=False)
class Group:
  """``size`` coupled channels; channel ``i`` is ``index[m][i]`` along ``members[m]``.

  Attributes:
    name: the member that names the group (the producing kernel's output axis, if any),
      as ``"path:axis"``.
    members: ``(path, axis)`` of every parameter axis the channels live on.
    index: per member, an int array ``(size, k)``: the ``k`` positions of each channel
      along that axis (``k > 1`` for a dense layer after a flatten).
  """

  name: str
  members: tuple[tuple[str, int], ...]
  index: tuple[np.ndarray, ...]

  @property
  def size(self) -> int:
    return int(self.index[0].shape[0])

  def __repr__(self) -> str:
    parts = ", ".join(f"{p}:{a}" for p, a in self.members)
    return f"Group({self.name!r}, size={self.size}, members=[{parts}])"


def _strip(path: str, prefixes: Sequence[str]) -> str:
  for p in prefixes:
    if path.startswith(p + "/"):
      return path[len(p) + 1 :]
  return path


@dataclasses.dataclass(frozen=True, eq=False)
class Groups:
  """The prunable channel groups of a model, usable as ``structure=`` (see the module doc).

  Attributes:
    groups: the groups, in the order of their first member among the leaves.
    leaves: ``(path, shape)`` of every leaf of the traced tree.
    kept: ``{(path, axis): reason}`` for parameter axes with channels that cannot be
      pruned (e.g. ``"it reaches the model's output"``).
    reduce: how a channel's per-weight scores combine (see the module doc).
    only: a regex; only members whose path matches it are scored.
  """

  groups: tuple[Group, ...]
  leaves: tuple[tuple[str, tuple[int, ...]], ...]
  kept: Mapping[tuple[str, int], str]
  reduce: str = "sum"
  only: str | None = None

  def __post_init__(self):
    if self.reduce not in _REDUCE:
      raise ValueError(f"Groups.reduce must be one of {_REDUCE}; got {self.reduce!r}.")

  def __len__(self) -> int:
    return len(self.groups)

  def __iter__(self):
    return iter(self.groups)

  def __getitem__(self, name: str) -> Group:
    for g in self.groups:
      if g.name == name or any(f"{p}:{a}" == name for p, a in g.members):
        return g
    raise KeyError(f"No group named {name!r}; groups: {[g.name for g in self.groups]}.")

  def __repr__(self) -> str:
    return f"Groups({len(self.groups)} groups, {sum(g.size for g in self.groups)} channels)"

  def by(self, method: str) -> Groups:
    """The same groups scored by ``"l1"``, ``"l2"``, ``"bn_scale"`` or ``"taylor"``.

    Use ``criterion="magnitude"`` for the first three and ``criterion="signed_taylor"``
    (``w·g``) for ``"taylor"``, which scores a channel by ``(Σ w·g)²`` over its entries.
    """
    if method not in _METHODS:
      raise ValueError(
        f"Unknown group scoring {method!r}; expected one of {sorted(_METHODS)}, e.g. "
        "groups.by('l2'). For other criteria pass criterion=... and keep reduce='sum'."
      )
    reduce, only = _METHODS[method]
    return dataclasses.replace(self, reduce=reduce, only=only)

  # The per-leaf structure protocol (so `jaxprune.structures.get` accepts a Groups).
  def validate(self, shape: tuple[int, ...], path: str = "") -> None:
    del shape, path

  def make(self, scores: jax.Array, sparsity: Any) -> jax.Array:
    raise TypeError(
      "Groups masks whole channels across several leaves; pass it as structure= to "
      "jaxprune.prune or jaxprune.masked, which call Groups.bind(...).select(...)."
    )

  def bind(self, paths: Sequence[str], shapes: Sequence[tuple[int, ...]]) -> BoundGroups:
    """Resolves member paths against a params tree's leaves (``params/`` prefixes stripped).

    Members outside the tree (e.g. BatchNorm statistics when masking ``params``) are not
    masked or scored. Raises if a member's shape differs or no member of a group is found.
    """
    where = {p: i for i, p in enumerate(paths)}
    traced = {p: s for p, s in self.leaves}
    pattern = re.compile(self.only) if self.only else None
    bound = []
    for g in self.groups:
      members, scored = [], []
      for (path, axis), idx in zip(g.members, g.index, strict=True):
        key = path if path in where else _strip(path, ("params",))
        if key not in where:
          continue
        li = where[key]
        if tuple(shapes[li]) != tuple(traced[path]):
          raise ValueError(
            f"Groups were traced with {path} of shape {traced[path]}, but the tree has "
            f"{key} of shape {tuple(shapes[li])}. Trace the groups on the same model: "
            "jaxprune.groups.trace(apply_fn, variables, x)."
          )
        members.append((li, axis, idx))
        scored.append(pattern is None or bool(pattern.fullmatch(key)))
      if not members:
        raise ValueError(
          f"No member of {g!r} is a leaf of the tree being pruned (leaves: {list(paths)[:6]}"
          "...). Pass the params the groups were traced with (or variables['params'])."
        )
      if not any(scored):
        raise ValueError(
          f"{g!r} has no member matching only={self.only!r}, so it cannot be scored. Use "
          "groups.by('l1') for models without BatchNorm, or a regex matching a member."
        )
      bound.append((g, tuple(members), tuple(scored)))
    return BoundGroups(self, tuple(bound), len(paths))


@dataclasses.dataclass(frozen=True, eq=False)
class BoundGroups:
  """`Groups` resolved against one tree's leaf order (made once by `jaxprune.selection.Plan`)."""

  groups: Groups
  bound: tuple[tuple[Group, tuple[tuple[int, int, np.ndarray], ...], tuple[bool, ...]], ...]
  num_leaves: int

  @property
  def prunable(self) -> tuple[bool, ...]:
    on = [False] * self.num_leaves
    for _, members, _ in self.bound:
      for li, _, _ in members:
        on[li] = True
    return tuple(on)

  def channel_scores(self, score_leaves: Sequence[Any]) -> list[jax.Array]:
    """One float32 score per channel of each group (NaN for channels already pruned)."""
    reduce = self.groups.reduce
    out = []
    for g, members, scored in self.bound:
      # A channel this group pruned is masked in every member; a NaN row in one member
      # alone (its input axis pruned by another group) leaves the channel alive.
      total, count, pruned = 0.0, 0, None
      peak = jnp.full(g.size, -jnp.inf)
      for (li, axis, idx), on in zip(members, scored, strict=True):
        s = score_leaves[li]
        if s is None:
          continue
        s = jnp.take(jnp.asarray(s, jnp.float32), jnp.asarray(idx.reshape(-1)), axis=axis)
        s = jnp.moveaxis(s, axis, 0).reshape(g.size, -1)
        gone = jnp.all(jnp.isnan(s), axis=1)  # NaN: pruned at an earlier update
        pruned = gone if pruned is None else pruned & gone
        if not on:
          continue
        s = jnp.where(jnp.isnan(s), 0.0, s)
        total = total + jnp.sum(jnp.square(s) if reduce == "l2" else s, axis=1)
        peak = jnp.maximum(peak, jnp.max(s, axis=1))
        count += s.shape[1]
      if reduce == "l2":
        score = jnp.sqrt(total)
      elif reduce == "mean":
        score = total / max(count, 1)
      elif reduce == "max":
        score = peak
      elif reduce == "square_sum":
        score = jnp.square(total)
      else:
        score = total
      score = jnp.broadcast_to(score, (g.size,))
      out.append(score if pruned is None else jnp.where(pruned, jnp.nan, score))
    return out

  def masks_from_keep(
    self, leaves: Sequence[Any], keeps: Sequence[jax.Array]
  ) -> list[jax.Array | None]:
    """Bool masks per leaf (``None`` for leaves in no group) from per-channel keep flags."""
    masks: list[Any] = [None] * len(leaves)
    for (_, members, _), keep in zip(self.bound, keeps, strict=True):
      for li, axis, idx in members:
        shape = tuple(jnp.shape(leaves[li]))
        along = (
          jnp.ones(shape[axis], bool)
          .at[jnp.asarray(idx.reshape(-1))]
          .set(jnp.repeat(keep, idx.shape[1]))
        )
        full = jnp.broadcast_to(
          jnp.expand_dims(along, [d for d in range(len(shape)) if d != axis]), shape
        )
        masks[li] = full if masks[li] is None else masks[li] & full
    return masks

  def select(
    self, leaves: Sequence[Any], score_leaves: Sequence[Any], sparsity: Any
  ) -> list[jax.Array | None]:
    """Keeps ``n - round(sparsity·n)`` best-scored channels of every group."""
    scores = self.channel_scores(score_leaves)
    sizes = [g.size for g, _, _ in self.bound]
    keeps = topk_masks(scores, num_to_keep_many(sizes, [sparsity] * len(sizes)))
    return self.masks_from_keep(leaves, keeps)
