"""Distributions: how an overall sparsity target is split into per-leaf targets.

A distribution decides, once from the params' paths and shapes, which leaves are pruned
(``prunable``), and at each mask update turns the current overall sparsity into one
sparsity per prunable leaf (``targets``). Targets are jnp scalars and may be traced, so
ERK's re-solve also runs under jit and `optax.inject_hyperparams`.

* ``"uniform"``: every floating leaf with ndim > 1 gets the target; biases and norm scales
  (ndim ≤ 1) stay dense.
* ``"erk"`` / ``"er"``: Erdős–Rényi(-Kernel) of Evci et al. (2020): density ∝ (Σ dims) /
  (Π dims) (ER uses only the last two axes), scaled so the prunable total meets the target;
  layers pushed past density 1 become dense and the rest are re-solved.
* ``"global"``: one threshold across all prunable leaves (`Global(normalize=True)` first
  divides each leaf's scores by their mean, so layers with small scores are not emptied).
* a mapping ``{regex: sparsity or None}`` over "/"-joined paths (first full match wins;
  unmatched leaves stay dense), or a callable ``(path, leaf) -> sparsity or None``. Values
  are final sparsities; during a schedule each is scaled by ``current / target``. Giving a
  non-floating leaf (integer, bool) a sparsity is an error.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxprune._tree import is_float_array

Leaf = Any


def default_prunable(path: str, leaf: Leaf) -> bool:
  """Floating leaves with more than one dimension (kernels, embeddings)."""
  del path
  return is_float_array(leaf) and len(leaf.shape) > 1


@dataclasses.dataclass(frozen=True)
class Uniform:
  """The same sparsity on every prunable leaf."""

  def prunable(self, paths: Sequence[str], leaves: Sequence[Leaf]) -> list[bool]:
    return [default_prunable(p, x) for p, x in zip(paths, leaves, strict=True)]

  def targets(self, paths, leaves, prunable, sparsity, target):
    del paths, leaves, target
    s = jnp.asarray(sparsity, jnp.float32)
    return [s if on else None for on in prunable]


@dataclasses.dataclass(frozen=True)
class ERK(Uniform):
  """Erdős–Rényi(-Kernel) layer densities, re-solved when layers saturate at density 1."""

  kernel: bool = True
  power: float = 1.0

  def raw(self, shape: tuple[int, ...]) -> float:
    dims = shape if self.kernel else shape[-2:]
    return (float(np.sum(dims)) / float(np.prod(dims))) ** self.power

  def targets(self, paths, leaves, prunable, sparsity, target):
    del paths, target
    idx = [i for i, on in enumerate(prunable) if on]
    out: list[Any] = [None] * len(prunable)
    if not idx:
      return out
    sizes = jnp.array([float(np.prod(leaves[i].shape)) for i in idx], jnp.float32)
    raw = jnp.array([self.raw(tuple(leaves[i].shape)) for i in idx], jnp.float32)
    keep_total = (1.0 - jnp.asarray(sparsity, jnp.float32)) * jnp.sum(sizes)

    def solve(dense):
      budget = keep_total - jnp.sum(jnp.where(dense, sizes, 0.0))
      return budget / jnp.maximum(jnp.sum(jnp.where(dense, 0.0, raw * sizes)), 1e-30)

    def round_(_, carry):  # at most one new dense layer is needed per round
      dense, _ = carry
      eps = solve(dense)
      return dense | (eps * raw > 1.0), eps

    # One compiled round, looped (unrolled, the rounds grew the program with the leaf count).
    dense, eps = jax.lax.fori_loop(
      0, len(idx), round_, (jnp.zeros(len(idx), bool), jnp.float32(0.0))
    )
    density = jnp.where(dense, 1.0, jnp.clip(eps * raw, 0.0, 1.0))
    for j, i in enumerate(idx):
      out[i] = 1.0 - density[j]
    return out


@dataclasses.dataclass(frozen=True)
class Global(Uniform):
  """One threshold over all prunable leaves; ``normalize`` divides scores by leaf means."""

  normalize: bool = False


@dataclasses.dataclass(frozen=True)
class ByPath:
  """Per-leaf sparsities from a regex mapping or a callable ``(path, leaf) -> s | None``."""

  rule: Mapping[str, float | None] | Callable[[str, Leaf], float | None]

  def _lookup(self, path: str, leaf: Leaf) -> float | None:
    if callable(self.rule):
      return self.rule(path, leaf)
    for pattern, value in self.rule.items():
      if re.fullmatch(pattern, path):
        return value
    return None

  def check(self, paths: Sequence[str]) -> None:
    """Raises if a pattern matches no parameter path, or a value is not a sparsity."""
    if callable(self.rule):
      return
    for pattern, value in self.rule.items():
      if value is not None and not 0.0 <= float(value) < 1.0:
        raise ValueError(
          f"distribution[{pattern!r}] = {value!r}: a sparsity must be in [0, 1) or None."
        )
      if not any(re.fullmatch(pattern, p) for p in paths):
        shown = ", ".join(paths[:12]) + (", ..." if len(paths) > 12 else "")
        raise ValueError(
          f"distribution pattern {pattern!r} matches no parameter path. Patterns are full "
          f"regex matches over '/'-joined paths; the paths are: {shown}. "
          f"Example: {{'.*Dense_0/kernel': 0.9}} or {{'.*kernel': 0.8}}."
        )

  def prunable(self, paths, leaves) -> list[bool]:
    out = []
    for p, x in zip(paths, leaves, strict=True):
      value = self._lookup(p, x)
      if value is not None and not is_float_array(x):
        raise ValueError(self._not_float(p, x, value))
      out.append(value is not None)
    return out

  def _not_float(self, path: str, leaf: Leaf, value: Any) -> str:
    dtype = getattr(leaf, "dtype", type(leaf).__name__)
    if callable(self.rule):
      fix = (
        "Return None for it from the rule, e.g. "
        "lambda path, leaf: 0.9 if jnp.issubdtype(leaf.dtype, jnp.floating) else None."
      )
    else:
      pattern = next(k for k in self.rule if re.fullmatch(k, path))
      fix = (
        f"Put {{{path!r}: None}} before {pattern!r} in the mapping (the first full match "
        "wins), or narrow the pattern, e.g. '.*kernel'."
      )
    return (
      f"The distribution gives leaf {path!r} (dtype {dtype}) the sparsity {value!r}, but "
      f"only floating leaves can be pruned; an integer or bool leaf would stay dense. {fix}"
    )

  def targets(self, paths, leaves, prunable, sparsity, target):
    s = jnp.asarray(sparsity, jnp.float32)
    t = jnp.asarray(target, jnp.float32)
    scale = jnp.where(t > 0, s / jnp.where(t > 0, t, 1.0), 0.0)
    return [
      jnp.clip(float(self._lookup(p, x)) * scale, 0.0, 1.0) if on else None
      for p, x, on in zip(paths, leaves, prunable, strict=True)
    ]


Distribution = Uniform | ERK | Global | ByPath

_NAMES: dict[str, Callable[[], Distribution]] = {
  "uniform": Uniform,
  "erk": ERK,
  "er": lambda: ERK(kernel=False),
  "global": Global,
  "global_normalized": lambda: Global(normalize=True),
}


def get(distribution: Any) -> Distribution:
  """Resolves a name, mapping, callable or distribution object.

  Example:
    >>> import jaxprune
    >>> jaxprune.distributions.get("erk")
    ERK(kernel=True, power=1.0)
  """
  if isinstance(distribution, Uniform | ByPath):
    return distribution
  if isinstance(distribution, str):
    if distribution not in _NAMES:
      raise ValueError(
        f"Unknown distribution {distribution!r}. Valid names: {', '.join(_NAMES)}; or pass a "
        "mapping {regex over param path: sparsity or None}, e.g. "
        "distribution={'.*kernel': 0.9, '.*Dense_2/kernel': None}."
      )
    return _NAMES[distribution]()
  if isinstance(distribution, Mapping) or callable(distribution):
    return ByPath(distribution)
  raise TypeError(
    f"distribution must be a name ({', '.join(_NAMES)}), a mapping or a callable; got "
    f"{type(distribution).__name__}: {distribution!r}."
  )


def erk_densities(
  shapes: Sequence[tuple[int, ...]], sparsity: float, kernel: bool = True
) -> list[float]:
  """ERK (or ER) densities for ``shapes`` at overall ``sparsity`` (a convenience for reports).

  Example:
    >>> [round(d, 3) for d in erk_densities([(100, 100), (100, 10)], 0.9)]
    [0.071, 0.39]
  """
  leaves = [jax.ShapeDtypeStruct(s, jnp.float32) for s in shapes]
  dist = ERK(kernel=kernel)
  out = dist.targets([""] * len(shapes), leaves, [True] * len(shapes), sparsity, sparsity)
  return [1.0 - float(s) for s in out]
