"""Small models and data shared by the criterion tests (imported by name from test modules)."""

import jax
import jax.numpy as jnp


def mlp_apply(params, x):
  h = jnp.tanh(x @ params["Dense_0"]["kernel"] + params["Dense_0"]["bias"])
  return h @ params["Dense_1"]["kernel"] + params["Dense_1"]["bias"]


def mlp_params(key, sizes=(6, 5, 3)):
  k = jax.random.split(key, 4)
  return {
    "Dense_0": {
      "kernel": jax.random.normal(k[0], sizes[:2]) / jnp.sqrt(sizes[0]),
      "bias": 0.1 * jax.random.normal(k[1], sizes[1:2]),
    },
    "Dense_1": {
      "kernel": jax.random.normal(k[2], sizes[1:]) / jnp.sqrt(sizes[1]),
      "bias": 0.1 * jax.random.normal(k[3], sizes[2:]),
    },
  }


def mlp_batch(key, n=16, sizes=(6, 5, 3)):
  kx, ky = jax.random.split(key)
  return {
    "image": jax.random.normal(kx, (n, sizes[0])),
    "label": jax.random.randint(ky, (n,), 0, sizes[-1]),
  }


def jit_score(criterion, **static):
  """``criterion`` jitted, with ``static`` (loss_fn, sizes...) closed over; arrays as kwargs."""
  return jax.jit(lambda params, **arrays: criterion(params, **static, **arrays))
