"""Test-set evaluation and the end-of-run numbers: accuracy, sparsity, compression, FLOPs.

The summary follows the usual pruning metrics: test error, per-layer and total sparsity,
remaining parameters and compression ratio (total / remaining), and the dense versus
remaining multiply-accumulates of one forward pass with the theoretical speedup they
imply (`jaxprune.train.sweep` adds the accuracy drop against a dense baseline).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.experimental import multihost_utils

import jaxprune
from jaxprune.bayes import _paths
from jaxprune.bayes.l0 import GATE, deterministic_gates, gate_open, kernel_gates
from jaxprune.bayes.variational import LOG_SIGMA2
from jaxprune.data import eval_batches
from jaxprune.masked import DenseMask, MaskedState, PackedMask
from jaxprune.train import models
from jaxprune.train.state import TrainState

PyTree = Any


def evaluate(
  eval_fn: Callable[[TrainState, dict], dict],
  state: TrainState,
  dataset: Any,
  batch_size: int,
  put: Callable[[dict], dict] = lambda b: b,
) -> dict[str, float]:
  """Loss, accuracy and error over every example of ``dataset``.

  Args:
    eval_fn: the jitted `jaxprune.train.steps.eval_step`.
    state: the train state.
    dataset: a `jaxprune.data.Dataset` (usually the test split).
    batch_size: evaluation batch size (the last batch is padded and masked).
    put: places a numpy batch on devices (e.g. sharded); identity by default.

  Returns:
    ``{"loss", "accuracy", "error"}`` as Python floats.
  """
  sums = None
  for batch in eval_batches(dataset, batch_size):
    out = eval_fn(state, put(batch))
    sums = out if sums is None else jax.tree.map(jnp.add, sums, out)
  sums = jax.device_get(sums)
  count = float(sums["count"])
  accuracy = float(sums["correct"]) / count
  return {"loss": float(sums["loss_sum"]) / count, "accuracy": accuracy, "error": 1.0 - accuracy}


def _is_mask_node(x: Any) -> bool:
  return isinstance(x, DenseMask | PackedMask)


def _masked_state(opt_state: Any) -> MaskedState | None:
  found = []
  jax.tree.map(
    lambda x: found.append(x) if isinstance(x, MaskedState) else None,
    opt_state,
    is_leaf=lambda x: isinstance(x, MaskedState),
  )
  return found[0] if len(found) == 1 else None


def _mask_leaves(opt_state: Any) -> list[Any]:
  masked = _masked_state(opt_state)
  if masked is None:
    return []
  leaves = jax.tree.leaves(masked.masks, is_leaf=_is_mask_node)
  return [m for m in leaves if not isinstance(m, DenseMask)]


def num_pruned_weights(opt_state: Any) -> int:
  """Number of weights in the pruned leaves (those with a mask); works on abstract states."""
  return sum(math.prod(m.shape) for m in _mask_leaves(opt_state))


def pruned_counts(opt_state: Any) -> tuple[jax.Array, int]:
  """``(removed, total)``: weights removed and weights in the pruned leaves (with a mask).

  Jittable (``total`` is a static Python int); reads the masks in the optimizer state,
  so leaves that stay dense are not counted. ``(0, 0)`` when there are no masks. The
  sparsity is ``removed / total``, best divided on the host in float64.
  """
  removed = jnp.zeros([], jnp.int32)
  for m in _mask_leaves(opt_state):
    m = m.unpack() if isinstance(m, PackedMask) else m
    removed = removed + jnp.sum(~m, dtype=jnp.int32)
  return removed, num_pruned_weights(opt_state)


def pruned_fraction(opt_state: Any) -> float:
  """Fraction of weights removed from the pruned leaves (0.0 without masks), on the host."""
  removed, total = pruned_counts(opt_state)
  return int(removed) / total if total else 0.0


def masks_or_none(opt_state: Any) -> PyTree | None:
  """``jaxprune.masks_of(opt_state)``, or None when the optimizer has no masks (dense run)."""
  return jaxprune.masks_of(opt_state) if _masked_state(opt_state) is not None else None


def to_host(tree: PyTree) -> PyTree:
  """Numpy copies of every array, also of arrays sharded over several hosts."""
  if jax.process_count() == 1:
    return jax.device_get(tree)
  return multihost_utils.process_allgather(tree, tiled=True)


def _deployed(params: Any) -> Any:
  """``params`` as deployed: without the log σ² of variational layers (their network is the
  masked kernels), and with each L0 layer's test-time gates folded into its kernel (gated
  inputs times the kernel = inputs times the gated kernel), its gate log α dropped."""
  if isinstance(params, Mapping):
    out = {k: _deployed(v) for k, v in params.items() if k not in (LOG_SIGMA2, GATE)}
    if GATE in params and "kernel" in out:
      kernel = out["kernel"]
      z = kernel_gates(kernel.shape, deterministic_gates(params[GATE]))
      out["kernel"] = (kernel * z).astype(kernel.dtype)
    return out
  return params


def neurons(params: PyTree) -> dict[str, dict[str, int]]:
  """Input neurons (or input channels) left by each L0 layer with per-input gates.

  A neuron is left when its test-time gate clip(σ(log α)(ζ − γ) + γ, 0, 1) is nonzero
  (`jaxprune.bayes.gate_open`); a closed gate feeds an exact zero to the layer. Layers with
  per-weight gates, and every other layer, are not listed.

  Args:
    params: params pytree (host or device arrays).

  Returns:
    ``{layer path: {"total": n_in, "remaining": open gates}}`` in parameter order.

  Example:
    >>> import numpy as np
    >>> params = {"Dense_0": {"kernel": np.ones((3, 2)),
    ...                       "gate_log_alpha": np.array([-5.0, 0.0, 2.0])}}
    >>> neurons(params)
    {'Dense_0': {'total': 3, 'remaining': 2}}
  """
  out = {}
  for path, kernel, la in _paths.pairs(params, GATE):
    if la.ndim != 1 or tuple(la.shape) == tuple(kernel.shape):
      continue  # per-weight gates
    left = int(jnp.sum(gate_open(la)))
    out[path.rsplit("/", 1)[0]] = {"total": int(la.shape[0]), "remaining": left}
  return out


def architecture(counts: dict[str, dict[str, int]]) -> str:
  """``"219-214-100"``: the neurons left per gated layer, in order (``""`` without gates).

  Example:
    >>> architecture({"Dense_0": {"total": 784, "remaining": 219},
    ...               "Dense_1": {"total": 300, "remaining": 214}})
    '219-214'
  """
  return "-".join(str(c["remaining"]) for c in counts.values())


def summarize(
  state: TrainState,
  model: nn.Module,
  input_shape: tuple[int, ...],
  test: dict[str, float],
) -> dict[str, Any]:
  """The end-of-run numbers (JSON-ready).

  Args:
    state: the final train state.
    model: the model (for the FLOPs count).
    input_shape: one example's shape, e.g. ``(28, 28, 1)``.
    test: the final `evaluate` result.

  Returns:
    A dict with ``test_loss``, ``test_accuracy``, ``test_error``; ``sparsity`` (weights
    removed from the pruned layers), ``total_sparsity`` (zeros over all parameters),
    ``layers`` (per-leaf shape, size, nonzero, sparsity); ``params_total``,
    ``params_remaining``, ``compression`` (the training-only log σ² and gate leaves of
    `jaxprune.bayes` layers are left out of these); ``flops_dense``, ``flops_remaining``,
    ``speedup`` (multiply-accumulates per example, see `models.flops_per_example`),
    ``flops_layers``; ``neurons`` (`neurons`: input neurons left per L0 layer with
    per-input gates, ``{}`` without) and ``architecture`` (e.g. ``"219-214-100"``). L0
    layers count their kernels with the test-time gates folded in.
  """
  host = to_host({"params": state.params, "stats": state.batch_stats, "opt": state.opt_state})
  table = jaxprune.sparsity_summary(_deployed(host["params"]))
  masks = masks_or_none(host["opt"])
  variables = {"params": host["params"]}
  if host["stats"]:
    variables["batch_stats"] = host["stats"]
  masks = None if masks is None else jax.device_get(masks)
  flops = models.flops_per_example(model, variables, input_shape, masks=masks)
  left = neurons(host["params"])
  return {
    "test_loss": test["loss"],
    "test_accuracy": test["accuracy"],
    "test_error": test["error"],
    "sparsity": pruned_fraction(host["opt"]),
    "total_sparsity": table.sparsity,
    "layers": table.as_dict()["leaves"],
    "params_total": table.size,
    "params_remaining": table.nonzero,
    "compression": table.compression,
    "flops_dense": flops["dense"],
    "flops_remaining": flops["remaining"],
    "speedup": flops["speedup"],
    "flops_layers": {k: dict(v) for k, v in flops["layers"].items()},
    "neurons": left,
    "architecture": architecture(left),
  }


def layer_sparsities(summary: dict[str, Any]) -> dict[str, float]:
  """``{path: sparsity}`` of the multi-dimensional leaves (kernels) of a summary.

  Example:
    >>> layer_sparsities({"layers": {"w": {"shape": [2, 2], "sparsity": 0.5},
    ...                              "b": {"shape": [2], "sparsity": 0.0}}})
    {'w': 0.5}
  """
  return {
    path: float(row["sparsity"]) for path, row in summary["layers"].items() if len(row["shape"]) > 1
  }


def num_kernel_weights(params: PyTree) -> int:
  """Number of entries of leaves with ndim > 1 (kernels); works on abstract params."""
  return sum(math.prod(x.shape) for x in jax.tree.leaves(params) if len(x.shape) > 1)


def kernel_zeros(params: PyTree) -> tuple[jax.Array, int]:
  """``(zeros, total)`` over the entries of leaves with ndim > 1 (jittable, total static)."""
  leaves = [x for x in jax.tree.leaves(params) if len(x.shape) > 1]
  zeros = sum((jnp.sum(x == 0, dtype=jnp.int32) for x in leaves), jnp.zeros([], jnp.int32))
  return zeros, num_kernel_weights(params)
