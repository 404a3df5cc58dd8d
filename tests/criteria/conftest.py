"""Fixtures of the criterion tests."""

import jax
import pytest
from criteria_models import mlp_apply, mlp_batch, mlp_params


@pytest.fixture
def mlp():
  """(params, loss_fn, batch) of a 6-5-3 tanh MLP with a cross-entropy loss."""
  from jaxprune.criteria import classification_loss

  params = mlp_params(jax.random.key(0))
  return params, classification_loss(mlp_apply), mlp_batch(jax.random.key(1))
