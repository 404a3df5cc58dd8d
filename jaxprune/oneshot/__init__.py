"""Calibrated one-shot pruning of whole models, block by block (SparseGPT, Wanda, magnitude).

Example:
  >>> from jaxprune import oneshot
  >>> oneshot.LayerSpec("sparsegpt", structure="2:4").resolved().sparsity
  0.5
"""

from jaxprune.oneshot.blockwise import Blockwise, blockwise_from_decoder_lm
from jaxprune.oneshot.capture import CaptureError, Linear, Linears, call_with_grams, find_linears
from jaxprune.oneshot.layout import KernelView
from jaxprune.oneshot.linear import (
  METHODS,
  LayerSpec,
  prune_linear,
  reconstruction_error,
  wanda_scores,
)
from jaxprune.oneshot.report import LayerReport, OneShotResult, StageReport
from jaxprune.oneshot.sequential import prune_sequential
from jaxprune.oneshot.settings import Settings, calibration_windows
from jaxprune.oneshot.targets import resolve_targets

__all__ = [
  "METHODS",
  "Blockwise",
  "CaptureError",
  "KernelView",
  "LayerReport",
  "LayerSpec",
  "Linear",
  "Linears",
  "OneShotResult",
  "Settings",
  "StageReport",
  "blockwise_from_decoder_lm",
  "calibration_windows",
  "call_with_grams",
  "find_linears",
  "prune_linear",
  "prune_sequential",
  "reconstruction_error",
  "resolve_targets",
  "wanda_scores",
]
