"""Layer-wise OBS (SparseGPT-style) against a NumPy reference; reconstruction error; errors."""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxprune
from jaxprune import criteria, structures

obs_module = importlib.import_module("jaxprune.criteria.obs")


def sparsegpt_reference(w, x, sparsity, mode, n=2, m=4, block=16, damp=0.01):
  """SparseGPT's algorithm in float64 NumPy, on W = kernelᵀ (rows = outputs), as published.

  Unstructured blocks prune round(s·out·i2) − round(s·out·i1) entries (exact totals);
  "within" does the same per output row.
  """
  W = np.asarray(w, np.float64).T.copy()
  X = np.asarray(x, np.float64).reshape(-1, W.shape[1])
  H = X.T @ X
  dead = np.diag(H) == 0
  H[dead, dead] = 1
  W[:, dead] = 0
  H += damp * np.mean(np.diag(H)) * np.eye(len(H))
  U = np.linalg.cholesky(np.linalg.inv(H)).T
  rows, cols = W.shape
  keep = np.ones_like(W, bool)
  for i1 in range(0, cols, block):
    i2 = min(i1 + block, cols)
    W1, U1 = W[:, i1:i2].copy(), U[i1:i2, i1:i2]
    d = np.diag(U1)
    err, k1 = np.zeros_like(W1), np.ones_like(W1, bool)
    sal = W1**2 / d[None] ** 2
    if mode == "global":
      p = round(sparsity * rows * i2) - round(sparsity * rows * i1)
      order = np.argsort(sal.ravel(), kind="stable")
      k1.ravel()[order[:p]] = False
    elif mode == "within":
      p = round(sparsity * i2) - round(sparsity * i1)
      for r in range(rows):
        k1[r, np.argsort(sal[r], kind="stable")[:p]] = False
    for i in range(i2 - i1):
      if mode == "nm" and i % m == 0:
        t = W1[:, i : i + m] ** 2 / d[None, i : i + m] ** 2
        for r in range(rows):
          k1[r, i : i + m] = False
          k1[r, i + np.argsort(-t[r], kind="stable")[:n]] = True
      q = np.where(k1[:, i], W1[:, i], 0.0)
      e = (W1[:, i] - q) / d[i]
      W1[:, i:] -= np.outer(e, U1[i, i:])
      err[:, i] = e
    W[:, i1:i2] = np.where(k1, W1, 0.0)
    W[:, i2:] -= err @ U[i1:i2, i2:]
    keep[:, i1:i2] = k1
  return W.T, keep.T


def layer(seed, d_in=48, d_out=20, n=256):
  rng = np.random.default_rng(seed)
  mix = rng.normal(size=(d_in, d_in)) / np.sqrt(d_in)
  x = rng.normal(size=(n, d_in)) @ mix + rng.normal(size=d_in)  # correlated inputs
  x[:, 3] = 0.0  # one input never active
  w = rng.normal(size=(d_in, d_out))
  return w.astype(np.float32), x.astype(np.float32)


CASES = [
  ("global", None, 0.5),
  ("global", None, 0.7),
  ("within", structures.unstructured(within=-1), 0.6),
  ("nm", structures.n_of_m(2, 4), 0.5),
  ("nm", structures.n_of_m(1, 4), 0.75),
]


@pytest.mark.parametrize(("mode", "structure", "sparsity"), CASES)
def test_obs_matches_numpy_reference(mode, structure, sparsity):
  w, x = layer(0)
  n, m = (structure.n, structure.m) if mode == "nm" else (2, 4)
  want_w, want_keep = sparsegpt_reference(w, x, sparsity, mode, n=n, m=m, block=16)
  params = {"Dense_0": {"kernel": jnp.asarray(w), "bias": jnp.ones(20)}}
  crit = criteria.obs_criterion(block_size=16)
  pruned, masks = jaxprune.prune(
    params, sparsity, criterion=crit, structure=structure, activations={"Dense_0/kernel": x}
  )
  keep = np.asarray(masks["Dense_0"]["kernel"])
  np.testing.assert_array_equal(keep, want_keep)
  np.testing.assert_allclose(pruned["Dense_0"]["kernel"], want_w, rtol=2e-4, atol=2e-4)
  assert (np.asarray(pruned["Dense_0"]["kernel"])[~keep] == 0).all()
  if mode == "within":
    assert (keep.sum(0) == w.shape[0] - round(sparsity * w.shape[0])).all()
  else:
    assert keep.sum() == w.size - round(sparsity * w.size)
  assert masks["Dense_0"]["bias"].all() and (pruned["Dense_0"]["bias"] == 1).all()


def _error(w, x, w_hat):
  return float(np.linalg.norm(x @ w - x @ np.asarray(w_hat)))


@pytest.mark.parametrize(
  ("structure", "sparsity"), [(None, 0.5), (None, 0.8), (structures.n_of_m(2, 4), 0.5)]
)
def test_obs_reconstructs_better_than_magnitude_and_wanda(structure, sparsity):
  w, x = layer(1, d_in=64, d_out=32, n=512)
  params = {"fc": {"kernel": jnp.asarray(w)}}
  acts = {"fc/kernel": x}
  errors = {}
  for name in ("obs", "wanda", "magnitude"):
    pruned, _ = jaxprune.prune(
      params, sparsity, criterion=name, activations=acts, structure=structure
    )
    errors[name] = _error(w, x, pruned["fc"]["kernel"])
  assert errors["obs"] < 0.9 * min(errors["wanda"], errors["magnitude"]), errors


def test_obs_score_is_single_weight_obs_saliency():
  w, x = layer(2, d_in=8, d_out=3, n=64)
  h = x.T.astype(np.float64) @ x
  h[3, 3] = 1.0
  h += 0.01 * np.mean(np.diag(h)) * np.eye(8)
  want = 0.5 * w.astype(np.float64) ** 2 / np.diag(np.linalg.inv(h))[:, None]
  got = criteria.obs({"fc": {"kernel": jnp.asarray(w)}}, activations={"fc": x})
  np.testing.assert_allclose(got["fc"]["kernel"], want, rtol=1e-4)


def test_obs_in_masked_is_refused():
  with pytest.raises(ValueError, match=r"one-shot.*jaxprune.prune"):
    jaxprune.masked(optax.adam(1e-3), 0.5, criterion="obs")
  with pytest.raises(ValueError, match=r"one-shot.*jaxprune.prune"):
    jaxprune.masked(optax.adam(1e-3), 0.5, criterion=criteria.obs_criterion(damp=0.1))


def test_obs_errors():
  w, x = layer(3, d_in=8, d_out=4, n=32)
  params = {"a": {"kernel": jnp.asarray(w)}, "conv": {"kernel": jnp.ones((3, 3, 2, 4))}}
  acts = {"a/kernel": x}
  with pytest.raises(ValueError, match=r"\['conv'\]\['kernel'\].*no activations"):
    jaxprune.prune(params, 0.5, criterion="obs", activations=acts)
  dense_conv = {".*a/kernel": 0.5}
  pruned, masks = jaxprune.prune(
    params, 0.5, criterion="obs", activations=acts, distribution=dense_conv
  )
  assert masks["conv"]["kernel"].all() and int(masks["a"]["kernel"].sum()) == 16
  with pytest.raises(ValueError, match="supports structure"):
    jaxprune.prune(
      params,
      0.5,
      criterion="obs",
      activations=acts,
      distribution=dense_conv,
      structure=structures.channels(),
    )
  with pytest.raises(jaxprune.MissingExtraError, match="activations"):
    jaxprune.prune(params, 0.5, criterion="obs")


def test_obs_zero_sparsity_leaf_is_untouched():
  w, x = layer(4, d_in=8, d_out=4, n=32)
  params = {"a": {"kernel": jnp.asarray(w)}, "b": {"kernel": jnp.asarray(w)}}
  pruned, masks = jaxprune.prune(
    params,
    0.5,
    criterion="obs",
    distribution={".*a/kernel": 0.0, ".*b/kernel": 0.5},
    activations={"a": x, "b": x},
  )
  np.testing.assert_array_equal(pruned["a"]["kernel"], w)
  assert masks["a"]["kernel"].all() and not masks["b"]["kernel"].all()
  assert jax.tree.structure(masks) == jax.tree.structure(params)


def _compiled_instructions(rows, structure):
  mode, n, m = obs_module._mode(structure, "kernel")
  w, h = jnp.ones((rows, 8)), jnp.eye(rows)
  low = obs_module._sparsegpt.lower(w, h, jnp.float32(0.5), mode=mode, n=n, m=m, block_size=128)
  return sum(" = " in line for line in low.compile().as_text().splitlines())


@pytest.mark.parametrize("structure", [None, structures.n_of_m(2, 4)])
def test_solver_program_does_not_grow_with_the_number_of_blocks(structure):
  # 4 and 16 lazy-update blocks of 128 inputs: one loop body serves every full block.
  small, large = (_compiled_instructions(rows, structure) for rows in (512, 2048))
  assert large <= small + 16, (small, large)


def test_upper_inverse_factor_is_the_cholesky_factor_of_the_inverse():
  _, x = layer(5, d_in=24, d_out=4, n=96)
  h = x.T.astype(np.float64) @ x + np.eye(24)
  want = np.linalg.cholesky(np.linalg.inv(h)).T  # upper, positive diagonal, H⁻¹ = UᵀU
  got = np.asarray(obs_module._upper_inverse_factor(jnp.asarray(h, jnp.float32)))
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
  assert (np.tril(got, -1) == 0).all()


@pytest.mark.parametrize(
  ("mode", "structure", "sparsity"),
  [("global", None, 0.5), ("within", structures.unstructured(within=-1), 0.3)]
  + [("nm", structures.n_of_m(4, 8), 0.5)],
)
def test_obs_matches_numpy_reference_with_a_partial_last_block(mode, structure, sparsity):
  w, x = layer(6, d_in=40)  # blocks of 16: two full blocks in the loop, then 8 rows
  n, m = (structure.n, structure.m) if mode == "nm" else (2, 4)
  want_w, want_keep = sparsegpt_reference(w, x, sparsity, mode, n=n, m=m, block=16)
  got_w, keep = criteria.sparsegpt_update(w, x.T @ x, sparsity, structure, block_size=16)
  np.testing.assert_array_equal(np.asarray(keep), want_keep)
  np.testing.assert_allclose(got_w, want_w, rtol=2e-4, atol=2e-4)
