"""What a one-shot run returns: pruned params, masks, and per-layer and per-stage reports."""

from __future__ import annotations

import dataclasses
from typing import Any

PyTree = Any


@dataclasses.dataclass(frozen=True)
class LayerReport:
  """One pruned kernel.

  Attributes:
    path: the kernel's "/"-joined path in the params.
    stage: where it was pruned: a block path, ``"head"`` or ``"start"`` (data-free leaves).
    spec: its method, sparsity and structure (resolved `LayerSpec`).
    shape: ``(in, out)`` of its matrix product (the leaf's own shape for data-free leaves).
    sparsity: the fraction of its weights that are 0 in the mask.
    error: ‖XW − XŴ‖² / ‖XW‖² on the calibration inputs (NaN for data-free leaves).
    seconds: wall time of its pruning (the first of each shape includes compilation).
  """

  path: str
  stage: str
  spec: Any
  shape: tuple[int, ...]
  sparsity: float
  error: float
  seconds: float


@dataclasses.dataclass(frozen=True)
class StageReport:
  """One block (or the head): where the time went.

  Attributes:
    name: the block path, or ``"head"``.
    hessian_seconds: accumulating XᵀX over the calibration batches (all its passes).
    prune_seconds: pruning its kernels.
    forward_seconds: recomputing the calibration activations through the pruned block.
  """

  name: str
  hessian_seconds: float
  prune_seconds: float
  forward_seconds: float


@dataclasses.dataclass(frozen=True)
class OneShotResult:
  """The pruned model and what happened.

  Attributes:
    params: the pruned params (same structure, shapes, dtypes and shardings).
    masks: bool masks mirroring params (all True for leaves left dense).
    layers: one `LayerReport` per pruned kernel, in pruning order.
    stages: one `StageReport` per block (and the head if it was pruned).
    seconds: wall time of the whole run, calibration forward passes included.
  """

  params: PyTree
  masks: PyTree
  layers: tuple[LayerReport, ...]
  stages: tuple[StageReport, ...]
  seconds: float

  def table(self) -> str:
    """The per-layer report as a fixed-width text table."""
    rows = [("layer", "method", "in x out", "sparsity", "rel. error", "seconds")]
    for r in self.layers:
      rows.append(
        (
          r.path,
          r.spec.describe(),
          " x ".join(map(str, r.shape)),
          f"{r.sparsity:.4f}",
          f"{r.error:.3e}",
          f"{r.seconds:.3f}",
        )
      )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(line.rstrip() for line in lines)
