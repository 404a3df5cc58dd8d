"""The loss penalty of learned-sparsity methods, built from ``settings.train.penalty``.

``"kl"`` is variational dropout's KL term (`jaxprune.bayes.kl_penalty`) and ``"l0"`` the
expected L0 norm of hard-concrete gates (`jaxprune.bayes.l0_penalty`). Either is weighted
per example like the ELBO: ``penalty_weight · w(t) · term(params)`` with ``w(t)`` from
`jaxprune.bayes.kl_weight` (0 during the warm-up, then a linear ramp to 1/N).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

from jaxprune import bayes
from jaxprune.train.settings import Train

Penalty = Callable[[Any, jax.Array], jax.Array]
TERMS = {"kl": bayes.kl_penalty, "l0": bayes.l0_penalty}


def make_penalty(train: Train, num_examples: int, steps_per_epoch: int) -> Penalty | None:
  """``penalty(params, step) -> scalar`` for ``settings.train``, or None without a penalty.

  Args:
    train: ``settings.train`` (``penalty``, ``penalty_weight``, ``penalty_warmup_epochs``,
      ``penalty_ramp_epochs``); `jaxprune.train.settings.check` refused unknown names.
    num_examples: N, the size of the training split.
    steps_per_epoch: steps in one epoch (the warm-up and ramp are given in epochs).

  Example:
    >>> import dataclasses
    >>> from jaxprune.train.config import load_config
    >>> from jaxprune.train.settings import resolve
    >>> train = dataclasses.replace(resolve(load_config("default")).train, penalty="kl",
    ...                             penalty_warmup_epochs=1.0)
    >>> penalty = make_penalty(train, num_examples=100, steps_per_epoch=10)
    >>> float(penalty({}, 0)), float(penalty({}, 10))  # no variational layer: 0
    (0.0, 0.0)
  """
  if not train.penalty:
    return None
  term, weight = TERMS[train.penalty], train.penalty_weight
  warmup = int(round(train.penalty_warmup_epochs * steps_per_epoch))
  ramp = int(round(train.penalty_ramp_epochs * steps_per_epoch))

  def penalty(params: Any, step: jax.Array) -> jax.Array:
    scale = bayes.kl_weight(step, num_examples=num_examples, warmup_steps=warmup, ramp_steps=ramp)
    return weight * scale * term(params)

  return penalty
