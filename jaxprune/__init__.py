"""jaxprune: functional pruning and sparse training for JAX, Flax and optax.

Example:
  >>> import jax.numpy as jnp, optax, jaxprune
  >>> tx = jaxprune.masked(optax.adam(1e-3), sparsity=0.9)
  >>> state = tx.init({"w": jnp.ones((10, 10))})
"""

# `bayes` registers the "log_alpha" and "l0_gate" criteria on import.
from jaxprune import (
  bayes,
  criteria,
  distributions,
  dynamic,
  groups,
  masks,
  oneshot,
  penalties,
  schedules,
  structures,
  surgery,
)
from jaxprune.batchnorm import nnx_recalibrate_batch_stats, recalibrate_batch_stats
from jaxprune.check import check_sparse
from jaxprune.errors import (
  JaxpruneError,
  MaskMismatchError,
  MissingExtraError,
  SparsityError,
)
from jaxprune.masked import MaskedState, masked, masks_of
from jaxprune.nnx_utils import nnx_loss_fn
from jaxprune.prune import apply_masks, prune
from jaxprune.summary import SparsitySummary, sparsity_summary

__version__ = "0.1.0"

__all__ = [
  "JaxpruneError",
  "MaskMismatchError",
  "MaskedState",
  "MissingExtraError",
  "SparsityError",
  "SparsitySummary",
  "apply_masks",
  "bayes",
  "check_sparse",
  "criteria",
  "distributions",
  "dynamic",
  "groups",
  "masked",
  "masks",
  "masks_of",
  "nnx_loss_fn",
  "oneshot",
  "nnx_recalibrate_batch_stats",
  "penalties",
  "prune",
  "recalibrate_batch_stats",
  "schedules",
  "sparsity_summary",
  "structures",
  "surgery",
]
