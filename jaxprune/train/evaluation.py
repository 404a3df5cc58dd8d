"""Test-set evaluation and the end-of-run numbers: accuracy, sparsity, compression, FLOPs.

The summary follows the usual pruning metrics: test error, per-layer and total sparsity,
remaining parameters and compression ratio (total / remaining), and the dense versus
remaining multiply-accumulates of one forward pass with the theoretical speedup they
imply (`jaxprune.train.sweep` adds the accuracy drop against a dense baseline).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
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


def classification_metrics(sums: Mapping[str, Any]) -> dict[str, float]:
  """Loss, accuracy and error from the summed `jaxprune.train.steps.eval_step` outputs.

  Example:
    >>> classification_metrics({"loss_sum": 3.0, "correct": 9.0, "count": 10.0})
    {'loss': 0.3, 'accuracy': 0.9, 'error': 0.09999999999999998}
  """
  count = float(sums["count"])
  accuracy = float(sums["correct"]) / count
  return {"loss": float(sums["loss_sum"]) / count, "accuracy": accuracy, "error": 1.0 - accuracy}


def evaluate(
  eval_fn: Callable[[TrainState, dict], dict],
  state: TrainState,
  dataset: Any,
  batch_size: int,
  put: Callable[[dict], dict] = lambda b: b,
  metrics: Callable[[Mapping[str, Any]], dict[str, float]] = classification_metrics,
  batches: Callable[[Any, int], Iterable[dict]] = eval_batches,
) -> dict[str, float]:
  """The metrics of ``state`` over every example of ``dataset``.

  Args:
    eval_fn: the jitted `jaxprune.train.steps.eval_step` (or a task's eval step).
    state: the train state.
    dataset: a `jaxprune.data.Dataset` (usually the test split).
    batch_size: evaluation batch size (the last batch is padded and masked).
    put: places a numpy batch on devices (e.g. sharded); identity by default.
    metrics: the metrics from the summed ``eval_fn`` outputs (the task's).
    batches: ``(dataset, batch_size) -> batches`` covering the split (the task's).

  Returns:
    ``metrics`` of the sums: ``{"loss", "accuracy", "error"}`` as Python floats for
    classification (a task may add more).
  """
  sums = None
  for batch in batches(dataset, batch_size):
    out = eval_fn(state, put(batch))
    sums = out if sums is None else jax.tree.map(jnp.add, sums, out)
  return metrics(jax.device_get(sums))


def logged(split: str, result: Mapping[str, Any]) -> dict[str, Any]:
  """The metrics of an evaluation as logged: ``<split>_<name>`` for all but ``error``.

  Example:
    >>> logged("test", {"loss": 0.3, "accuracy": 0.9, "error": 0.1})
    {'test_loss': 0.3, 'test_accuracy': 0.9}
  """
  return {f"{split}_{k}": v for k, v in result.items() if k != "error"}


class Evaluator:
  """The evaluations of a run: on validation during training, on test once at the end.

  With no validation split the test split is evaluated at every evaluation instead. Each
  evaluation first checks that pruned entries are exactly 0.0 and finite
  (`jaxprune.check_sparse`, a `jaxprune.SparsityError` otherwise).

  Args:
    eval_step: the task's evaluation step (jitted here).
    metrics: the task's metrics from the summed step outputs.
    splits: the run's `jaxprune.train.input_pipeline.Splits`.
    batch_size: evaluation batch size.
    put: places a host batch on the devices.
    check_sparse: whether the run prunes (and so has masks to check).
    batches: the task's ``(split, batch_size) -> batches``.
  """

  def __init__(
    self,
    eval_step: Callable[[TrainState, dict], dict],
    metrics: Callable[[Mapping[str, Any]], dict[str, float]],
    splits: Any,
    batch_size: int,
    put: Callable[[dict], dict],
    *,
    check_sparse: bool,
    batches: Callable[[Any, int], Iterable[dict]] = eval_batches,
  ):
    self._step = jax.jit(eval_step)
    self._batches = batches
    self._metrics = metrics
    self._batch_size, self._put, self._check = batch_size, put, check_sparse
    self.validation, self.test = splits.validation, splits.test
    self.name = "validation" if self.validation is not None else "test"
    self.last_validation: dict[str, float] | None = None
    self.last_test: dict[str, float] | None = None

  def __call__(self, state: TrainState, dataset: Any) -> dict[str, float]:
    """The metrics of ``state`` on ``dataset``."""
    return evaluate(
      self._step, state, dataset, self._batch_size, self._put, self._metrics, self._batches
    )

  def during_training(self, state: TrainState, record: dict[str, Any], *, last: bool) -> None:
    """Evaluates ``state`` and adds ``<split>_loss``, ``_accuracy`` (and the task's other
    metrics, `logged`) to ``record``.

    The test split is evaluated too at the ``last`` step when validation is the split
    evaluated during training.
    """
    if self._check:
      jaxprune.check_sparse(state.params, state.opt_state)
    result = self(state, self.validation if self.validation is not None else self.test)
    record.update(logged(self.name, result))
    if self.validation is None:
      self.last_test = result
      return
    self.last_validation = result
    if last:
      self.last_test = self(state, self.test)
      record.update(logged("test", self.last_test))

  def final(self, state: TrainState) -> tuple[dict[str, float] | None, dict[str, float]]:
    """``(validation, test)`` metrics of the final state (evaluated again after a resume)."""
    if self.last_test is None:  # resumed a finished run: nothing trained, evaluate once more
      self.last_test = self(state, self.test)
      self.last_validation = None if self.validation is None else self(state, self.validation)
    return self.last_validation, self.last_test


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
