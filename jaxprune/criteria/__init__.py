"""Pruning criteria: pure functions ``params, **extras -> scores`` (higher = keep).

Each family module registers its criteria on import; `get` resolves names.
"""

from jaxprune.criteria.gradient import saliency
from jaxprune.criteria.magnitude import magnitude, random
from jaxprune.criteria.registry import Criterion, get, names, register

__all__ = ["Criterion", "get", "magnitude", "names", "random", "register", "saliency"]

# Gradient, second-order and activation-aware criteria (each module registers on import).
from jaxprune.criteria.activation import capture_inputs, capture_inputs_nnx, wanda  # noqa: E402
from jaxprune.criteria.curvature import (  # noqa: E402
  fisher,
  fisher_criterion,
  grasp,
  hutchinson_diagonal,
  hvp,
  obd,
  obd_criterion,
)
from jaxprune.criteria.gradient import snip, taylor  # noqa: E402
from jaxprune.criteria.obs import obs, obs_criterion, obs_prune, sparsegpt_update  # noqa: E402
from jaxprune.criteria.scoring import classification_loss  # noqa: E402

__all__ += [
  "capture_inputs",
  "capture_inputs_nnx",
  "classification_loss",
  "fisher",
  "fisher_criterion",
  "grasp",
  "hutchinson_diagonal",
  "hvp",
  "obd",
  "obd_criterion",
  "obs",
  "obs_criterion",
  "obs_prune",
  "sparsegpt_update",
  "snip",
  "taylor",
  "wanda",
]
