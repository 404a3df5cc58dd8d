"""Sparsity structures: which groups of weights are kept or removed together.

A structure turns one leaf's scores and a sparsity into a bool mask with an exact count:

* `unstructured()`: any entries; ``within=axis`` makes the count exact in every slice
  along that axis (e.g. per output neuron, as Wanda compares weights).
* `n_of_m(n, m)`: keep ``n`` of every ``m`` consecutive weights along the reduction axis
  (the pattern sparse tensor cores accelerate).
* `block(shape)`: whole tiles of ``shape`` are kept or removed, scored by their mean.
* `channels()`: whole output neurons / conv filters (last kernel axis), scored by mean; the
  model's output layer stays dense unless ``prune_outputs=True``.

Flax kernels are ``(in, out)`` for Dense and ``(h, w, in, out)`` for Conv, so the reduction
(input) axis is ``-2`` and the output axis is ``-1``.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jaxprune.distributions import default_prunable
from jaxprune.masks import num_to_keep, sortable_keys, topk_mask


def _check_ndim(shape: tuple[int, ...], need: int, what: str, path: str) -> None:
  if len(shape) < need:
    raise ValueError(
      f"{what} needs leaves with at least {need} dimensions, but {path or 'a leaf'} has shape "
      f"{shape}. Leave it dense with a distribution mapping, e.g. "
      f"distribution={{'.*bias': None, '.*kernel': 0.9}}."
    )


@dataclasses.dataclass(frozen=True)
class Unstructured:
  """Any entries; with ``within`` set, the same exact count in every slice along that axis."""

  within: int | None = None

  def validate(self, shape: tuple[int, ...], path: str = "") -> None:
    if self.within is not None:
      _check_ndim(shape, 1, "unstructured(within=...)", path)
      if not -len(shape) <= self.within < len(shape):
        raise ValueError(
          f"unstructured(within={self.within}) is out of range for {path or 'a leaf'} of "
          f"shape {shape}; use an axis in [{-len(shape)}, {len(shape) - 1}], e.g. within=-1."
        )

  @property
  def batched(self) -> bool:
    """Whether `Plan.select` may rank this structure's `units` of all leaves together."""
    return self.within is None

  def units(self, scores: jax.Array) -> jax.Array:
    return scores

  def expand(self, keep: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    return keep.reshape(shape)

  def make(self, scores: jax.Array, sparsity: jax.Array | float) -> jax.Array:
    if self.within is None:
      return topk_mask(scores, num_to_keep(scores.size, sparsity))
    moved = jnp.moveaxis(scores, self.within, -1)
    rows = moved.reshape(-1, moved.shape[-1]).T  # one row per slice along `within`
    k = num_to_keep(rows.shape[1], sparsity)
    mask = jax.vmap(lambda r: topk_mask(r, k))(rows)
    return jnp.moveaxis(mask.T.reshape(moved.shape), -1, self.within)


@dataclasses.dataclass(frozen=True)
class NOfM:
  """Keep ``n`` of every ``m`` consecutive entries along ``axis`` (default: input axis −2).

  The leaf's sparsity is ``1 - n/m`` whenever pruning is active (target > 0); a target of 0
  keeps the leaf dense, so schedules still decide *when* the pattern is applied.
  """

  n: int
  m: int
  axis: int | None = None

  def _axis(self, ndim: int) -> int:
    return (self.axis if self.axis is not None else (-2 if ndim >= 2 else -1)) % ndim

  def validate(self, shape: tuple[int, ...], path: str = "") -> None:
    if not 0 < self.n <= self.m:
      raise ValueError(f"n_of_m needs 0 < n <= m; got n={self.n}, m={self.m}. E.g. n_of_m(2, 4).")
    _check_ndim(shape, 1, f"n_of_m({self.n}, {self.m})", path)
    axis = self._axis(len(shape))
    if shape[axis] % self.m:
      raise ValueError(
        f"n_of_m({self.n}, {self.m}) groups axis {axis} of {path or 'a leaf'} (shape {shape}) "
        f"in runs of {self.m}, but its length {shape[axis]} is not divisible by {self.m}. "
        f"Pick m dividing {shape[axis]}, another axis (n_of_m({self.n}, {self.m}, axis=...)), "
        "or leave this leaf dense with a distribution mapping."
      )

  @property
  def sparsity(self) -> float:
    return 1.0 - self.n / self.m

  def make(self, scores: jax.Array, sparsity: jax.Array | float) -> jax.Array:
    axis = self._axis(scores.ndim)
    moved = jnp.moveaxis(scores, axis, -1)
    groups = sortable_keys(moved).reshape(*moved.shape[:-1], -1, self.m)
    # Rank inside each group: entries with a larger key, or an equal key and lower index.
    a, b = groups[..., :, None], groups[..., None, :]
    idx = jnp.arange(self.m)
    before = (b > a) | ((b == a) & (idx[None, :] < idx[:, None]))
    rank = jnp.sum(before, axis=-1)
    keep = (rank < self.n).reshape(moved.shape)
    keep = jnp.moveaxis(keep, -1, axis)
    return jnp.where(jnp.asarray(sparsity) > 0, keep, True)


@dataclasses.dataclass(frozen=True)
class Block:
  """Whole tiles of ``shape`` over the trailing axes, kept or removed by mean score."""

  shape: tuple[int, ...]

  def validate(self, shape: tuple[int, ...], path: str = "") -> None:
    _check_ndim(shape, len(self.shape), f"block({self.shape})", path)
    tail = shape[len(shape) - len(self.shape) :]
    if any(d % b for d, b in zip(tail, self.shape, strict=True)):
      raise ValueError(
        f"block({self.shape}) must tile the last {len(self.shape)} axes of {path or 'a leaf'} "
        f"(shape {shape}), but {tail} is not divisible by {self.shape}. Use a block shape "
        "dividing those axes or leave this leaf dense with a distribution mapping."
      )

  batched = True

  def units(self, scores: jax.Array) -> jax.Array:
    """The mean score of every tile."""
    lead = scores.shape[: scores.ndim - len(self.shape)]
    tail = scores.shape[len(lead) :]
    split = []
    for d, b in zip(tail, self.shape, strict=True):
      split += [d // b, b]
    tiles = scores.astype(jnp.float32).reshape(*lead, *split)
    return jnp.mean(tiles, axis=tuple(len(lead) + 2 * i + 1 for i in range(len(self.shape))))

  def expand(self, keep: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    lead = len(shape) - len(self.shape)
    for i, b in enumerate(self.shape):
      keep = jnp.repeat(keep, b, axis=lead + i)
    return keep

  def make(self, scores: jax.Array, sparsity: jax.Array | float) -> jax.Array:
    tile_scores = self.units(scores)
    keep = topk_mask(tile_scores, num_to_keep(math.prod(tile_scores.shape), sparsity))
    return self.expand(keep, scores.shape)


HEAD_NAMES = ("head", "lm_head", "classifier", "logits", "output", "out")


def _natural_key(path: str) -> list[Any]:
  """Sort key comparing digit runs as numbers ("Dense_2" before "Dense_10")."""
  return [(0, int(t), "") if t.isdigit() else (1, 0, t.lower()) for t in re.split(r"(\d+)", path)]


def _layer_of(path: str) -> str:
  """A leaf's layer path: ``"Dense_2/kernel"`` -> ``"Dense_2"`` (a trailing NNX ``value`` too)."""
  parts = path.split("/")
  if len(parts) > 1 and parts[-1] == "value":
    parts = parts[:-1]
  return "/".join(parts[:-1])


def _top_name(path: str) -> str:
  parts = path.split("/")
  return parts[1] if parts[0] == "params" and len(parts) > 1 else parts[0]


@dataclasses.dataclass(frozen=True)
class Channels:
  """Whole output channels (neurons or conv filters) along ``axis``, kept by mean score.

  The model's output layer stays dense unless ``prune_outputs`` is set (see `channels`).
  """

  axis: int = -1
  output: str | None = None
  prune_outputs: bool = False

  def validate(self, shape: tuple[int, ...], path: str = "") -> None:
    _check_ndim(shape, 2, "channels()", path)

  def output_paths(self, paths: Sequence[str], leaves: Sequence[Any]) -> list[str]:
    """The paths of the output layer's kernels (the leaves `restrict` keeps dense)."""
    kernels = [p for p, x in zip(paths, leaves, strict=True) if default_prunable(p, x)]
    shown = ", ".join(kernels[:12]) + (", ..." if len(kernels) > 12 else "")
    if self.output is not None:
      found = [
        p
        for p in kernels
        if re.fullmatch(self.output, p) or re.fullmatch(self.output, _layer_of(p))
      ]
      if not found:
        raise ValueError(
          f"channels(output={self.output!r}) matches no kernel. It is a full regex match over "
          f"a kernel's '/'-joined path or its layer's path; the kernels are: {shown}. "
          "Example: channels(output='head') or channels(output='Dense_2/kernel')."
        )
      return found
    heads = sorted({_layer_of(p) for p in kernels if _top_name(p).lower() in HEAD_NAMES})
    if len(heads) > 1:
      raise ValueError(
        f"channels() cannot tell the output layer apart: several top-level layers have an "
        f"output-layer name ({', '.join(heads)}). Name it, e.g. "
        f"channels(output={heads[0]!r}), or prune its units too with "
        "channels(prune_outputs=True)."
      )
    if heads:
      layer = heads[0]
    elif kernels:
      layer = _layer_of(max(kernels, key=_natural_key))
    else:
      return []
    return [p for p in kernels if _layer_of(p) == layer]

  def restrict(
    self, paths: Sequence[str], leaves: Sequence[Any], prunable: Sequence[bool]
  ) -> list[bool]:
    """``prunable`` with the output layer's leaves turned off (unless ``prune_outputs``)."""
    if self.prune_outputs:
      return list(prunable)
    outputs = set(self.output_paths(paths, leaves))
    kept = [on and p not in outputs for p, on in zip(paths, prunable, strict=True)]
    if any(prunable) and not any(kept):
      raise ValueError(
        f"channels() keeps the model's output layer dense ({', '.join(sorted(outputs))}): "
        "removing its units would remove model outputs (e.g. classes). No other leaf is "
        "pruned, so nothing would be. To prune output units too, pass "
        "structure=jaxprune.structures.channels(prune_outputs=True); if another layer is "
        "the output, name it: channels(output='head')."
      )
    return kept

  batched = True

  def units(self, scores: jax.Array) -> jax.Array:
    """The mean score of every channel."""
    axis = self.axis % scores.ndim
    reduce = tuple(i for i in range(scores.ndim) if i != axis)
    return jnp.mean(scores.astype(jnp.float32), axis=reduce)

  def expand(self, keep: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    axis = self.axis % len(shape)
    reduce = tuple(i for i in range(len(shape)) if i != axis)
    return jnp.broadcast_to(jnp.expand_dims(keep, reduce), shape)

  def make(self, scores: jax.Array, sparsity: jax.Array | float) -> jax.Array:
    per_channel = self.units(scores)
    keep = topk_mask(per_channel, num_to_keep(per_channel.size, sparsity))
    return self.expand(keep, scores.shape)


Structure = Unstructured | NOfM | Block | Channels


def unstructured(within: int | None = None) -> Unstructured:
  """Unstructured sparsity; ``within=axis`` gives an exact count per slice along ``axis``.

  Example:
    >>> import jax.numpy as jnp, jaxprune
    >>> m = jaxprune.structures.unstructured(within=-1).make(jnp.arange(8.0).reshape(4, 2), 0.5)
    >>> m.sum(axis=0).tolist()
    [2, 2]
  """
  return Unstructured(within)


def n_of_m(n: int, m: int, axis: int | None = None) -> NOfM:
  """Keep ``n`` of every ``m`` consecutive weights along ``axis`` (default: the input axis).

  Example:
    >>> import jax.numpy as jnp, jaxprune
    >>> m = jaxprune.structures.n_of_m(2, 4).make(jnp.arange(8.0).reshape(8, 1), 0.5)
    >>> m[:, 0].tolist()
    [False, False, True, True, False, False, True, True]
  """
  return NOfM(int(n), int(m), axis)


def block(shape: tuple[int, ...] | int) -> Block:
  """Remove whole tiles of ``shape`` (over the trailing axes) by their mean score.

  Example:
    >>> import jax.numpy as jnp, jaxprune
    >>> jaxprune.structures.block((2, 2)).make(jnp.arange(16.0).reshape(4, 4), 0.5).sum()
    Array(8, dtype=int32)
  """
  return Block((shape,) if isinstance(shape, int) else tuple(shape))


def channels(axis: int = -1, *, output: str | None = None, prune_outputs: bool = False) -> Channels:
  """Remove whole output channels (Dense neurons, Conv filters: the last kernel axis).

  The model's output layer is never pruned by default: removing its units would remove
  outputs (classes, logits). Without tracing the model, the output layer is decided from
  the floating leaves with ndim > 1 ("kernels") and their "/"-joined paths, in this order:

  1. ``output``: a regex fully matching the kernel's path or its layer's path
     (``"head"``, ``"Dense_2/kernel"``); an error if it matches no kernel.
  2. the one top-level layer named ``head``, ``lm_head``, ``classifier``, ``logits``,
     ``output`` or ``out`` (a leading ``params`` entry is skipped); an error if there are
     several.
  3. else the layer of the last kernel in natural path order (digit runs compare as
     numbers: ``Dense_10`` after ``Dense_2``, ``layers/10`` after ``layers/2``).

  All kernels of that layer stay dense. If that leaves no leaf to prune, it is an error
  (e.g. a lone matrix: pass ``prune_outputs=True``). `Channels.output_paths` shows the
  choice for a params tree.

  Args:
    axis: the channel axis (default ``-1``, Flax's output axis).
    output: regex naming the output layer (see above).
    prune_outputs: also prune the output layer's units.

  Returns:
    A `Channels` structure.

  Example:
    >>> import jax.numpy as jnp, jaxprune
    >>> m = jaxprune.structures.channels().make(jnp.arange(6.0).reshape(2, 3), 1 / 3)
    >>> m[0].tolist()
    [False, True, True]
    >>> paths = ["Dense_0/kernel", "Dense_10/kernel", "Dense_2/kernel"]
    >>> jaxprune.structures.channels().output_paths(paths, [jnp.ones((4, 4))] * 3)
    ['Dense_10/kernel']
  """
  return Channels(axis, output, bool(prune_outputs))


_NAMES = {"unstructured": unstructured, "channels": channels}


def get(structure: Any) -> Structure:
  """Resolves ``None``/a name/a structure object; unknown values list the valid choices."""
  if structure is None:
    return Unstructured()
  if isinstance(structure, Unstructured | NOfM | Block | Channels):
    return structure
  if isinstance(structure, str) and structure in _NAMES:
    return _NAMES[structure]()
  if hasattr(structure, "make") and hasattr(structure, "validate"):
    return structure  # a user-defined structure following the same protocol
  raise ValueError(
    f"Unknown structure {structure!r}. Expected one of: jaxprune.structures.unstructured(), "
    "n_of_m(n, m), block(shape), channels(), or the names 'unstructured' / 'channels'. "
    "Example: structure=jaxprune.structures.n_of_m(2, 4)."
  )
