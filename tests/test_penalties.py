"""Penalties: values on hand examples, filters, gradients (finite at zero), errors."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprune import penalties


def _params():
  return {
    "dense": {"kernel": jnp.array([[3.0, 0.0], [-4.0, 0.0]]), "bias": jnp.array([10.0, -10.0])},
    "conv": {"kernel": jnp.ones((2, 2, 3, 4)), "bias": jnp.ones(4)},
    "step": jnp.array(7, jnp.int32),
  }


def test_l1_hand_values_and_filters():
  p = _params()
  assert float(penalties.l1(p)) == 7.0 + 48.0  # kernels only by default
  assert float(penalties.l1(p, filter=r"dense/.*")) == 7.0 + 20.0
  assert float(penalties.l1(p, filter=lambda path, x: x.ndim == 1)) == 20.0 + 4.0
  del p["step"]
  g = jax.grad(penalties.l1)(p)
  np.testing.assert_array_equal(g["dense"]["kernel"], [[1.0, 0.0], [-1.0, 0.0]])
  np.testing.assert_array_equal(g["dense"]["bias"], 0.0)


def test_l1_rejects_a_bad_filter():
  with pytest.raises(TypeError, match="filter=r'.\\*/kernel'"):
    penalties.l1(_params(), filter=3)


def test_smooth_l0_hand_values_and_limit():
  w = {"kernel": jnp.array([[0.0, math.log(3.0)], [-math.log(3.0), 1e6]])}
  # 2σ(|w|/β) − 1 with β = 1: 0, 0.5, 0.5, 1
  np.testing.assert_allclose(penalties.smooth_l0(w, beta=1.0), 2.0, rtol=1e-6)
  # As β → 0 it counts nonzeros.
  np.testing.assert_allclose(penalties.smooth_l0(w, beta=1e-6), 3.0, rtol=1e-6)
  # Large β shrinks every term toward 0.
  assert float(penalties.smooth_l0(w, beta=1e9)) < 0.51
  g = jax.grad(lambda q: penalties.smooth_l0(q, beta=1.0))(w)["kernel"]
  np.testing.assert_allclose(g[0, 1], 2 * 0.75 * 0.25, rtol=1e-5)  # d/dw 2σ(w) = 2σ(1−σ)
  assert bool(jnp.all(jnp.isfinite(g)))
  with pytest.raises(ValueError, match="beta must be > 0"):
    penalties.smooth_l0(w, beta=0.0)


def test_group_lasso_output_and_input_groups():
  p = _params()
  # dense kernel columns: norms 5 and 0 (size 2); conv output channels: norm √12 (size 12)
  out_unscaled = 5.0 + 4 * math.sqrt(12.0)
  got = penalties.group_lasso(p, "output", scale_by_size=False)
  np.testing.assert_allclose(got, out_unscaled, rtol=1e-6)
  out_scaled = math.sqrt(2) * 5.0 + 4 * math.sqrt(12.0) * math.sqrt(12.0)
  np.testing.assert_allclose(penalties.group_lasso(p, "output"), out_scaled, rtol=1e-6)
  # rows: norms 3 and 4; conv input channels: norm 4 each (size 16), 3 channels
  inp = penalties.group_lasso(p, "input", scale_by_size=False)
  np.testing.assert_allclose(inp, 3.0 + 4.0 + 3 * 4.0, rtol=1e-6)


def test_group_lasso_gradient_is_finite_and_zero_on_an_all_zero_group():
  p = {"kernel": jnp.array([[3.0, 0.0], [4.0, 0.0]])}
  g = jax.grad(lambda q: penalties.group_lasso(q, scale_by_size=False))(p)["kernel"]
  assert bool(jnp.all(jnp.isfinite(g)))
  np.testing.assert_allclose(g[:, 0], [0.6, 0.8], rtol=1e-6)  # w / ‖w‖
  np.testing.assert_array_equal(g[:, 1], 0.0)


def test_group_lasso_errors_name_the_fix():
  with pytest.raises(ValueError, match="group='output'"):
    penalties.group_lasso(_params(), group="rows")
  with pytest.raises(ValueError, match="ndim >= 2"):
    penalties.group_lasso({"b": jnp.ones(3)}, filter=".*")


def test_penalties_run_under_jit():
  p = _params()
  f = jax.jit(lambda q: (penalties.l1(q), penalties.smooth_l0(q, 0.5), penalties.group_lasso(q)))
  eager = (penalties.l1(p), penalties.smooth_l0(p, 0.5), penalties.group_lasso(p))
  for a, b in zip(f(p), eager, strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-6)
