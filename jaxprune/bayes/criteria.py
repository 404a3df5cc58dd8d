"""Criteria for learned sparsity: variational dropout's log α and L0 gates.

Both are threshold criteria: the mask is ``scores >= threshold`` and the ``sparsity`` passed
to `jaxprune.masked` / `jaxprune.prune` is not used, so sparsity is an outcome of training.

Only kernels with a sibling ``log_sigma2`` (``"log_alpha"``) or ``gate_log_alpha``
(``"l0_gate"``) are scored. Every other leaf, including ordinary ``Dense`` kernels in the same
model, gets ``None`` and stays dense: they have no learned drop rate, and mixing in a
magnitude rule would put two incomparable scales under one threshold. To sparsify them too,
make those layers variational, or prune them separately afterwards, e.g.
``jaxprune.prune(params, 0.9, distribution={"Dense_2/kernel": 0.9})``.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from jaxprune.bayes import _paths, l0, variational
from jaxprune.criteria.registry import Criterion, register

PyTree = Any


def _strictly_above(x: float) -> float:
  """The smallest float32 greater than ``x``: ``s >= _strictly_above(x)`` iff ``s > x``."""
  return float(np.nextafter(np.float32(x), np.float32(np.inf)))


def log_alpha_scores(params: PyTree, **extras: Any) -> PyTree:
  """Scores −log α at every variational kernel (``kernel`` with a ``log_sigma2`` sibling).

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxprune.bayes.criteria import log_alpha_scores
    >>> params = {"kernel": jnp.array([1.0, 1e-3]), "log_sigma2": jnp.array([-2.0, 0.0])}
    >>> s = log_alpha_scores(params)
    >>> s["kernel"].round(2), s["log_sigma2"]
    (Array([ 2., -8.], dtype=float32), None)
  """
  del extras
  return _paths.map_kernels(
    params, variational.LOG_SIGMA2, lambda k, s: -variational.log_alpha(k, s)
  )


def log_alpha_criterion(threshold: float = 3.0) -> Criterion:
  """A criterion keeping variational weights with log α < ``threshold``.

  Scores are −log α and the mask is −log α > −threshold, i.e. the same cut as the layers'
  evaluation mask `keep_mask`. Pass the result as ``criterion=``.

  Args:
    threshold: log α at or above which a weight is removed (3: dropout rate α/(1+α) > 95%).

  Returns:
    A `jaxprune.criteria.Criterion` named ``"log_alpha"``.

  Example:
    >>> import jax.numpy as jnp, jaxprune
    >>> from jaxprune.bayes import log_alpha_criterion
    >>> params = {"kernel": jnp.array([[1.0, 0.1]]), "log_sigma2": jnp.zeros((1, 2))}
    >>> pruned, masks = jaxprune.prune(params, None, criterion=log_alpha_criterion(3.0))
    >>> pruned["kernel"].tolist(), masks["log_sigma2"].tolist()  # log α = 0 and 4.6
    ([[1.0, 0.0]], [[True, True]])

  References:
    Molchanov, Ashukha, Vetrov. Variational Dropout Sparsifies Deep Neural Networks.
    ICML 2017.
  """
  return Criterion(
    "log_alpha",
    log_alpha_scores,
    threshold=_strictly_above(-float(threshold)),
    doc=f"Variational dropout: keep weights with log α < {threshold}.",
  )


def l0_gate_scores(params: PyTree, **extras: Any) -> PyTree:
  """Scores every gated kernel with its gate logit (per-input gates broadcast along rows).

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxprune.bayes.criteria import l0_gate_scores
    >>> params = {"kernel": jnp.ones((2, 3)), "gate_log_alpha": jnp.array([-4.0, 1.0])}
    >>> l0_gate_scores(params)["kernel"].tolist()
    [[-4.0, -4.0, -4.0], [1.0, 1.0, 1.0]]
  """
  del extras

  def score(kernel, logits):
    la = jnp.asarray(logits, jnp.float32)
    return jnp.broadcast_to(l0.kernel_gates(kernel.shape, la), kernel.shape)

  return _paths.map_kernels(params, l0.GATE, score)


def l0_gate_criterion(gamma: float = l0.GAMMA, zeta: float = l0.ZETA) -> Criterion:
  """A criterion keeping weights whose test-time hard-concrete gate is nonzero.

  The gate clip(σ(log α)(ζ − γ) + γ, 0, 1) is nonzero iff log α > log(−γ/ζ); the mask is
  that comparison on the logits (the layers' `deterministic_gates` use the same cut).

  Args:
    gamma: lower stretch limit the layers were built with.
    zeta: upper stretch limit the layers were built with.

  Returns:
    A `jaxprune.criteria.Criterion` named ``"l0_gate"``.

  Example:
    >>> import jax.numpy as jnp, jaxprune
    >>> from jaxprune.bayes import l0_gate_criterion
    >>> params = {"kernel": jnp.ones((2, 2)), "gate_log_alpha": jnp.array([-3.0, 0.0])}
    >>> pruned, _ = jaxprune.prune(params, None, criterion=l0_gate_criterion())
    >>> pruned["kernel"].tolist()
    [[0.0, 0.0], [1.0, 1.0]]

  References:
    Louizos, Welling, Kingma. Learning Sparse Neural Networks through L0 Regularization.
    ICLR 2018.
  """
  return Criterion(
    "l0_gate",
    l0_gate_scores,
    threshold=_strictly_above(l0.open_cut(gamma, zeta)),
    doc="L0 hard-concrete gates: keep weights whose test-time gate is nonzero.",
  )


register("log_alpha", threshold=log_alpha_criterion().threshold)(log_alpha_scores)
register("l0_gate", threshold=l0_gate_criterion().threshold)(l0_gate_scores)
