"""Calibrated one-shot pruning of whole models, block by block (SparseGPT, Wanda, magnitude).

Language models in and out (`lm_io`: checkpoints, held-out perplexity, pruned outputs) are
imported on first use, as is the ``jaxprune-oneshot`` command (`cli`).

Example:
  >>> from jaxprune import oneshot
  >>> oneshot.LayerSpec("sparsegpt", structure="2:4").resolved().sparsity
  0.5
"""

import importlib
from typing import Any

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

_LAZY = {  # name -> module, imported on first use (they read text data and checkpoints)
  "LoadedLM": "lm_io",
  "checkpoint_kind": "lm_io",
  "evaluate_lm": "lm_io",
  "load_lm": "lm_io",
  "save_pruned": "lm_io",
}

__all__ = [
  "METHODS",
  "Blockwise",
  "CaptureError",
  "KernelView",
  "LayerReport",
  "LayerSpec",
  "Linear",
  "Linears",
  "LoadedLM",
  "OneShotResult",
  "Settings",
  "StageReport",
  "blockwise_from_decoder_lm",
  "calibration_windows",
  "call_with_grams",
  "checkpoint_kind",
  "evaluate_lm",
  "find_linears",
  "load_lm",
  "prune_linear",
  "prune_sequential",
  "reconstruction_error",
  "resolve_targets",
  "save_pruned",
  "wanda_scores",
]


def __getattr__(name: str) -> Any:
  if name in _LAZY:
    value = getattr(importlib.import_module(f"jaxprune.oneshot.{_LAZY[name]}"), name)
    globals()[name] = value
    return value
  raise AttributeError(f"module 'jaxprune.oneshot' has no attribute {name!r}")
