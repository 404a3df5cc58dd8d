"""Which kernels a one-shot run prunes, and with what.

By default every kernel inside the blocks gets the run's `LayerSpec` and everything else
(token embedding, LM head, norms) stays dense. ``targets`` changes that:

* a mapping ``{regex: value}`` overrides the default for the kernels whose "/"-joined path
  the regex fully matches (the first match wins); a value is ``None`` (dense), a sparsity
  (the run's method and structure at that sparsity) or a `LayerSpec`. E.g.
  ``{".*down_proj/kernel": None, "lm_head/kernel": LayerSpec("sparsegpt", 0.5)}``;
* a callable ``(path, leaf) -> None | sparsity | LayerSpec`` decides for every kernel (the
  default is not applied).

Kernels are the floating leaves with two or more dimensions; other leaves (norm scales,
biases) always stay dense, and a pattern must match at least one kernel.
"""

from __future__ import annotations

import dataclasses
import numbers
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax.numpy as jnp

from jaxprune._tree import is_float_array, leaves_with_paths
from jaxprune.oneshot.linear import LayerSpec

PyTree = Any
Targets = Mapping[str, Any] | Callable[[str, Any], Any] | None


def _is_kernel(leaf: Any) -> bool:
  return is_float_array(leaf) and jnp.ndim(leaf) >= 2


def _spec(value: Any, default: LayerSpec, where: str) -> LayerSpec | None:
  if value is None:
    return None
  if isinstance(value, LayerSpec):
    return value.resolved()
  if isinstance(value, numbers.Real) and not isinstance(value, bool):
    return dataclasses.replace(default, sparsity=float(value)).resolved()
  raise TypeError(
    f"targets{where} must be None, a sparsity or a LayerSpec; got {type(value).__name__} "
    f"{value!r}. Example: targets={{'.*down_proj/kernel': None, 'lm_head/kernel': "
    "jaxprune.oneshot.LayerSpec('sparsegpt', 0.5)}."
  )


def resolve_targets(
  params: PyTree, block_paths: Sequence[str], default: LayerSpec, targets: Targets = None
) -> dict[str, LayerSpec]:
  """``{kernel path: LayerSpec}`` for every kernel to prune (see the module docstring).

  Example:
    >>> import jax.numpy as jnp
    >>> p = {"emb": jnp.ones((4, 2)), "block_0": {"w": jnp.ones((2, 2)), "s": jnp.ones(2)}}
    >>> spec = LayerSpec("magnitude", 0.5)
    >>> sorted(resolve_targets(p, ["block_0"], spec))
    ['block_0/w']
    >>> sorted(resolve_targets(p, ["block_0"], spec, {"emb": 0.25}).items())[1][1].sparsity
    0.25
  """
  kernels = [(p, x) for p, x in leaves_with_paths(params) if _is_kernel(x)]
  prefixes = tuple(p.rstrip("/") + "/" for p in block_paths)
  if targets is not None and not (isinstance(targets, Mapping) or callable(targets)):
    raise TypeError(
      f"targets must be None, a mapping {{regex: spec}} or a callable (path, leaf) -> spec; "
      f"got {type(targets).__name__}."
    )
  if isinstance(targets, Mapping):
    for pattern in targets:
      if not isinstance(pattern, str) or not any(re.fullmatch(pattern, p) for p, _ in kernels):
        raise ValueError(
          f"targets pattern {pattern!r} matches no kernel path. Patterns are full regex "
          f"matches over '/'-joined paths; the kernels are: {', '.join(p for p, _ in kernels)}."
        )
  out: dict[str, LayerSpec] = {}
  for path, leaf in kernels:
    if callable(targets) and not isinstance(targets, Mapping):
      value = targets(path, leaf)
      spec = _spec(value, default, f"({path!r}, leaf) returned {value!r}, but it")
    else:
      spec = default if path.startswith(prefixes) else None
      for pattern, value in (targets or {}).items():
        if re.fullmatch(pattern, path):
          spec = _spec(value, default, f"[{pattern!r}]")
          break
    if spec is not None:
      out[path] = spec
  return out
