"""Pruning one linear layer ``W [in, out]`` given the Gram matrix ``XᵀX`` of its inputs.

Three methods, each with the comparison group of its reference implementation by default:

* ``"magnitude"``: keep the largest |W_ij|; per layer.
* ``"wanda"``: keep the largest |W_ij| · ‖X_i‖₂ (Sun et al. 2024), ‖X_i‖₂ = √(XᵀX)_ii;
  compared within each output unit (a row of the PyTorch weight, a column of ``W``).
* ``"sparsegpt"``: SparseGPT's OBS with weight updates (Frantar & Alistarh 2023), damping
  λ = ``damp`` · mean(diag XᵀX), lazy blocks of ``block_size`` inputs; per layer
  (`jaxprune.criteria.sparsegpt_update`).

Structures, on the ``[in, out]`` matrix: ``"layer"`` (exact count over the layer),
``"output"`` (exact count per output unit), ``"N:M"`` such as ``"2:4"`` (n of every m
consecutive inputs per output, the pattern of NVIDIA's sparse tensor cores); or the objects
`structures.unstructured()`, ``unstructured(within=-1)``, `structures.n_of_m(n, m)`.
"""

from __future__ import annotations

import dataclasses
import functools
import numbers
import re
from typing import Any

import jax
import jax.numpy as jnp

from jaxprune import structures
from jaxprune.criteria.obs import sparsegpt_update

METHODS = ("magnitude", "wanda", "sparsegpt")
_DEFAULT_STRUCTURE = {"magnitude": "layer", "wanda": "output", "sparsegpt": "layer"}
_EXAMPLE = "Example: LayerSpec('sparsegpt', 0.5, 'layer') or LayerSpec('wanda', structure='2:4')."


def _structure(structure: Any, method: str) -> structures.Unstructured | structures.NOfM:
  if structure is None:
    structure = _DEFAULT_STRUCTURE[method]
  if isinstance(structure, str):
    name = structure.strip().lower()
    if name in ("layer", "unstructured"):
      return structures.unstructured()
    if name in ("output", "row"):
      return structures.unstructured(within=-1)
    if match := re.fullmatch(r"(\d+)\s*:\s*(\d+)", name):
      n, m = int(match[1]), int(match[2])
      if not 0 < n <= m:
        raise ValueError(f"structure {structure!r}: N:M needs 0 < N <= M, e.g. '2:4'.")
      return structures.n_of_m(n, m)
  elif isinstance(structure, structures.Unstructured) and structure.within in (None, -1, 1):
    return structures.unstructured(None if structure.within is None else -1)
  elif isinstance(structure, structures.NOfM) and structure.axis in (None, 0, -2):
    if not 0 < structure.n <= structure.m:
      raise ValueError(f"structure {structure!r}: N:M needs 0 < n <= m, e.g. n_of_m(2, 4).")
    return structures.n_of_m(structure.n, structure.m)
  raise ValueError(
    f"Unsupported structure {structure!r} for one-shot pruning of linear layers. Expected "
    "'layer', 'output', 'N:M' (e.g. '2:4', '4:8'), jaxprune.structures.unstructured(), "
    "unstructured(within=-1) (per output) or n_of_m(n, m) (along the input axis). " + _EXAMPLE
  )


@dataclasses.dataclass(frozen=True)
class LayerSpec:
  """How a linear layer is pruned: method, sparsity and structure.

  ``sparsity=None`` means 0.5 for unstructured and 1 − N/M for N:M (a different value with
  N:M is an error); ``structure=None`` means the method's reference comparison group
  (``"output"`` for Wanda, ``"layer"`` otherwise). `resolved` fills both in.

  Example:
    >>> LayerSpec("wanda", structure="2:4").resolved()
    LayerSpec(method='wanda', sparsity=0.5, structure=NOfM(n=2, m=4, axis=None))
  """

  method: str = "sparsegpt"
  sparsity: float | None = None
  structure: Any = None

  def resolved(self) -> LayerSpec:
    """This spec validated, with the default sparsity and structure filled in."""
    if self.method not in METHODS:
      raise ValueError(
        f"Unknown one-shot method {self.method!r}; expected one of {', '.join(METHODS)}. "
        + _EXAMPLE
      )
    structure = _structure(self.structure, self.method)
    s = self.sparsity
    if s is not None and (isinstance(s, bool) or not isinstance(s, numbers.Real)):
      raise TypeError(
        f"sparsity must be a number in [0, 1) or None; got {type(s).__name__} {s!r}. " + _EXAMPLE
      )
    if isinstance(structure, structures.NOfM):
      implied = 1.0 - structure.n / structure.m
      if s is not None and abs(float(s) - implied) > 1e-9:
        raise ValueError(
          f"sparsity={s!r} contradicts the structure {structure.n}:{structure.m}, whose "
          f"sparsity is {implied:g}; pass sparsity=None (or {implied:g}) with N:M."
        )
      s = implied
    elif s is None:
      s = 0.5
    if not 0.0 <= float(s) < 1.0:
      raise ValueError(f"sparsity must be in [0, 1); got {s!r}. " + _EXAMPLE)
    return LayerSpec(self.method, float(s), structure)

  def check(self, in_features: int, path: str) -> None:
    """Raises unless an N:M structure's groups tile ``in_features`` inputs (of kernel ``path``)."""
    st = self.structure
    if isinstance(st, structures.NOfM) and in_features % st.m:
      raise ValueError(
        f"{st.n}:{st.m} groups the {in_features} inputs of {path!r} in runs of {st.m}, but "
        f"{in_features} is not divisible by {st.m}. Leave it dense or give it another "
        f"structure: targets={{'.*{path}': None, ...}}."
      )

  def describe(self) -> str:
    """A short label, e.g. ``"sparsegpt 50% layer"`` or ``"wanda 2:4"``."""
    st = self.structure
    if isinstance(st, structures.NOfM):
      return f"{self.method} {st.n}:{st.m}"
    where = "layer" if st is None or st.within is None else "output"
    return f"{self.method} {self.sparsity:.0%} {where}"


def wanda_scores(w: jax.Array, gram: jax.Array) -> jax.Array:
  """Wanda's scores |W_ij| · ‖X_i‖₂ for ``w [in, out]``, with ‖X_i‖₂² = (XᵀX)_ii.

  Example:
    >>> import jax.numpy as jnp
    >>> x = jnp.array([[3.0, 0.0], [4.0, 1.0]])  # input norms 5 and 1
    >>> wanda_scores(jnp.array([[1.0, -2.0], [3.0, 1.0]]), x.T @ x)
    Array([[ 5., 10.],
           [ 3.,  1.]], dtype=float32)
  """
  norms = jnp.sqrt(jnp.maximum(jnp.diag(jnp.asarray(gram, jnp.float32)), 0.0))
  return jnp.abs(jnp.asarray(w, jnp.float32)) * norms[:, None]


def reconstruction_error(w: jax.Array, w_hat: jax.Array, gram: jax.Array) -> jax.Array:
  """‖XW − XŴ‖² / ‖XW‖², from XᵀX: tr(ΔᵀXᵀXΔ) / tr(WᵀXᵀXW) (0 when XW = 0).

  Example:
    >>> import jax.numpy as jnp
    >>> reconstruction_error(jnp.ones((2, 1)), jnp.array([[1.0], [0.0]]), jnp.eye(2))
    Array(0.5, dtype=float32)
  """
  w, w_hat, gram = (jnp.asarray(a, jnp.float32) for a in (w, w_hat, gram))
  hp = jax.lax.Precision.HIGHEST
  delta = w - w_hat
  num = jnp.sum(delta * jnp.matmul(gram, delta, precision=hp))
  den = jnp.sum(w * jnp.matmul(gram, w, precision=hp))
  return jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), 0.0)


@functools.partial(jax.jit, static_argnames=("method", "structure", "block_size"))
def _prune(w, gram, sparsity, damp, *, method, structure, block_size):
  w = w.astype(jnp.float32)
  if method == "sparsegpt":
    new, keep = sparsegpt_update(w, gram, sparsity, structure, damp=damp, block_size=block_size)
  else:
    scores = jnp.abs(w) if method == "magnitude" else wanda_scores(w, gram)
    keep = structure.make(scores, sparsity)
    new = jnp.where(keep, w, 0.0)
  return new, keep, reconstruction_error(w, new, gram)


def prune_linear(
  w: jax.Array,
  gram: jax.Array,
  spec: LayerSpec,
  *,
  damp: float = 0.01,
  block_size: int = 128,
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Prunes one linear layer ``w [in, out]`` given its inputs' Gram matrix ``XᵀX [in, in]``.

  Exact counts: ``in·out − round(s·in·out)`` weights kept per layer, ``in − round(s·in)``
  per output, or N of every M inputs per output. Works under `jax.jit`.

  Args:
    w: the kernel as the matrix of its product (``y = x @ w``).
    gram: XᵀX of the calibration inputs, float32 (undamped).
    spec: method, sparsity and structure (`LayerSpec`; resolved here if it is not).
    damp: SparseGPT's damping as a fraction of the mean diagonal of XᵀX.
    block_size: SparseGPT's lazy-update block, in inputs.

  Returns:
    ``(w_hat, keep, error)``: the pruned float32 kernel (pruned entries exactly 0), the bool
    mask and the relative reconstruction error ‖XW − XŴ‖² / ‖XW‖².

  Example:
    >>> import jax, jax.numpy as jnp
    >>> x = jax.random.normal(jax.random.key(0), (64, 8))
    >>> w = jax.random.normal(jax.random.key(1), (8, 4))
    >>> w_hat, keep, err = prune_linear(w, x.T @ x, LayerSpec("wanda", 0.5))
    >>> keep.sum(axis=0).tolist()  # Wanda compares within each output
    [4, 4, 4, 4]
  """
  spec = spec.resolved()
  spec.check(int(jnp.shape(w)[0]), "kernel")
  return _prune(
    w,
    jnp.asarray(gram, jnp.float32),
    jnp.float32(spec.sparsity),
    jnp.float32(damp),
    method=spec.method,
    structure=spec.structure,
    block_size=int(block_size) if spec.method == "sparsegpt" else 0,  # one program for others
  )
