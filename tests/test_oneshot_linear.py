"""One linear layer: SparseGPT against a float64 NumPy reference, Wanda's scores, reconstruction
order, exact counts, kernel layouts, and the errors of specs and settings."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprune import structures
from jaxprune.oneshot import (
  KernelView,
  LayerSpec,
  Settings,
  calibration_windows,
  prune_linear,
  reconstruction_error,
  wanda_scores,
)


def sparsegpt_numpy(w, x, sparsity, mode, n=2, m=4, block=16, damp=0.01):
  """SparseGPT (Frantar & Alistarh 2023, Algorithm 1 with lazy batches) in float64 NumPy.

  Written on the PyTorch layout ``W = kernelᵀ`` [out, in] like the reference code. Masks are
  chosen when a block starts (unstructured: the smallest w²/[U]_ii², with exact totals
  round(s·out·i2) − round(s·out·i1) per block, or per output row for "row"); N:M groups are
  chosen when each group of m columns is reached.
  """
  W = np.asarray(w, np.float64).T.copy()
  X = np.asarray(x, np.float64).reshape(-1, W.shape[1])
  H = X.T @ X
  dead = np.diag(H) == 0
  H[dead, dead] = 1.0
  W[:, dead] = 0.0
  H = H + damp * np.mean(np.diag(H)) * np.eye(len(H))
  Hinv = np.linalg.inv(H)
  U = np.linalg.cholesky(Hinv).T  # upper: Hinv = UᵀU
  rows, cols = W.shape
  mask = np.zeros_like(W, bool)  # True = pruned
  for i1 in range(0, cols, block):
    i2 = min(i1 + block, cols)
    W1 = W[:, i1:i2].copy()
    U1 = U[i1:i2, i1:i2]
    err = np.zeros_like(W1)
    m1 = np.zeros_like(W1, bool)
    d = np.diag(U1)
    if mode == "layer":
      tmp = W1**2 / d[None] ** 2
      k = round(sparsity * rows * i2) - round(sparsity * rows * i1)
      m1.ravel()[np.argsort(tmp.ravel(), kind="stable")[:k]] = True
    elif mode == "row":
      tmp = W1**2 / d[None] ** 2
      k = round(sparsity * i2) - round(sparsity * i1)
      for r in range(rows):
        m1[r, np.argsort(tmp[r], kind="stable")[:k]] = True
    for i in range(i2 - i1):
      if mode == "nm" and i % m == 0:
        tmp = W1[:, i : i + m] ** 2 / d[None, i : i + m] ** 2
        for r in range(rows):
          m1[r, i + np.argsort(tmp[r], kind="stable")[: m - n]] = True
      q = W1[:, i].copy()
      q[m1[:, i]] = 0.0
      e = (W1[:, i] - q) / d[i]
      W1[:, i:] -= np.outer(e, U1[i, i:])
      err[:, i] = e
    W1[m1] = 0.0
    W[:, i1:i2] = W1
    W[:, i2:] -= err @ U[i1:i2, i2:]
    mask[:, i1:i2] = m1
  return W.T, ~mask.T


def layer(seed, d_in=64, d_out=24, n=512, dead=(5,)):
  """A layer with correlated inputs of very different scales (as in LLMs), one input dead."""
  rng = np.random.default_rng(seed)
  mix = rng.normal(size=(d_in, d_in)) / np.sqrt(d_in)
  scales = np.exp(rng.normal(size=d_in))
  x = (rng.normal(size=(n, d_in)) @ mix + 0.3 * rng.normal(size=d_in)) * scales
  x[:, list(dead)] = 0.0
  w = rng.normal(size=(d_in, d_out))
  return w.astype(np.float32), x.astype(np.float32)


def gram(x):
  x = jnp.asarray(x, jnp.float32)
  return jnp.matmul(x.T, x, precision=jax.lax.Precision.HIGHEST)


CASES = [
  ("layer", "layer", 0.5),
  ("layer", "layer", 0.7),
  ("row", "output", 0.6),
  ("nm", "2:4", None),
  ("nm", "4:8", None),
  ("nm", "1:4", None),
]


@pytest.mark.parametrize(("mode", "structure", "sparsity"), CASES)
def test_sparsegpt_matches_float64_numpy_reference(mode, structure, sparsity):
  w, x = layer(0)
  spec = LayerSpec("sparsegpt", sparsity, structure).resolved()
  st = spec.structure
  n, m = (st.n, st.m) if mode == "nm" else (2, 4)
  want_w, want_keep = sparsegpt_numpy(w, x, spec.sparsity, mode, n=n, m=m, block=16)
  got_w, keep, err = jax.jit(prune_linear, static_argnames=("spec", "block_size"))(
    w, gram(x), spec, block_size=16
  )
  np.testing.assert_array_equal(np.asarray(keep), want_keep)
  np.testing.assert_allclose(np.asarray(got_w), want_w, rtol=1e-4, atol=1e-4)
  assert (np.asarray(got_w)[~want_keep] == 0).all()
  xd = x.astype(np.float64)
  want_err = np.sum((xd @ w - xd @ want_w) ** 2) / np.sum((xd @ w) ** 2)
  np.testing.assert_allclose(float(err), want_err, rtol=1e-3)


@pytest.mark.parametrize("structure", ["layer", "output", "2:4", "4:8"])
def test_reconstruction_error_sparsegpt_below_wanda_below_magnitude(structure):
  w, x = layer(1, d_in=128, d_out=48, n=1024)
  errors = {}
  for method in ("sparsegpt", "wanda", "magnitude"):
    w_hat, _, err = prune_linear(w, gram(x), LayerSpec(method, None, structure))
    xd = x.astype(np.float64)
    errors[method] = np.sum((xd @ w - xd @ np.asarray(w_hat, np.float64)) ** 2)
    np.testing.assert_allclose(float(err), errors[method] / np.sum((xd @ w) ** 2), rtol=1e-3)
  assert errors["sparsegpt"] < errors["wanda"] < errors["magnitude"], errors


def test_wanda_scores_and_mask_by_hand():
  w, x = layer(2, d_in=32, d_out=6, n=200)
  norms = np.sqrt((x.astype(np.float64) ** 2).sum(axis=0))
  want = np.abs(w) * norms[:, None]
  np.testing.assert_allclose(np.asarray(wanda_scores(w, gram(x))), want, rtol=1e-5)
  _, keep, _ = prune_linear(w, gram(x), LayerSpec("wanda", 0.5))  # per output by default
  for j in range(w.shape[1]):  # per output: the 16 largest scores of column j
    want_keep = np.zeros(w.shape[0], bool)
    want_keep[np.argsort(-want[:, j])[:16]] = True
    np.testing.assert_array_equal(np.asarray(keep)[:, j], want_keep)


@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt"])
@pytest.mark.parametrize(
  ("structure", "sparsity"),
  [("layer", 0.5), ("layer", 0.3), ("output", 0.5), ("2:4", None)]
  + [("4:8", None), ("output", 0.35)],
)
def test_exact_counts(method, structure, sparsity):
  w, x = layer(3, d_in=40, d_out=7, n=128)  # 280 weights, 40 inputs: 0.3 and 0.35 round
  w_hat, keep, _ = prune_linear(w, gram(x), LayerSpec(method, sparsity, structure))
  keep = np.asarray(keep)
  assert (np.asarray(w_hat)[~keep] == 0).all()
  if structure == "layer":
    assert keep.sum() == w.size - round(sparsity * w.size)
  elif structure == "output":
    assert (keep.sum(axis=0) == 40 - round(sparsity * 40)).all()
  else:
    n, m = map(int, structure.split(":"))
    assert (keep.reshape(40 // m, m, 7).sum(axis=1) == n).all()


def test_reconstruction_error_from_gram_equals_direct():
  w, x = layer(4, d_in=16, d_out=5, n=64)
  w_hat = np.where(np.abs(w) > 0.5, w, 0.0)
  want = np.sum((x @ w - x @ w_hat) ** 2) / np.sum((x @ w) ** 2)
  np.testing.assert_allclose(float(reconstruction_error(w, w_hat, gram(x))), want, rtol=1e-4)


def test_kernel_view_round_trips_a_chain_of_views():
  view = KernelView.of((2, 3, 4)).transpose((2, 0, 1)).reshape((4, 6)).matrix(contracting=(1,))
  assert (view.in_features, view.out_features) == (6, 4)
  k = jnp.arange(24.0).reshape(2, 3, 4)
  want = jnp.transpose(k, (2, 0, 1)).reshape(4, 6).T
  np.testing.assert_array_equal(view.to_2d(k), want)
  np.testing.assert_array_equal(view.from_2d(view.to_2d(k)), k)


def test_spec_errors():
  with pytest.raises(ValueError, match="Unknown one-shot method 'obs'"):
    LayerSpec("obs").resolved()
  with pytest.raises(TypeError, match="sparsity must be a number"):
    LayerSpec("wanda", "0.5").resolved()
  with pytest.raises(ValueError, match=r"sparsity must be in \[0, 1\)"):
    LayerSpec("wanda", 1.0).resolved()
  with pytest.raises(ValueError, match="contradicts the structure 2:4"):
    LayerSpec("wanda", 0.7, "2:4").resolved()
  with pytest.raises(ValueError, match="Unsupported structure"):
    LayerSpec("wanda", 0.5, structures.channels()).resolved()
  with pytest.raises(ValueError, match="Unsupported structure"):
    LayerSpec("wanda", 0.5, structures.unstructured(within=0)).resolved()
  with pytest.raises(ValueError, match="N:M needs 0 < N <= M"):
    LayerSpec("wanda", None, "5:4").resolved()
  w, x = layer(5, d_in=10, d_out=4, n=32)
  with pytest.raises(ValueError, match="10 is not divisible by 4"):
    prune_linear(w, gram(x), LayerSpec("sparsegpt", None, "2:4"))
  assert LayerSpec("sparsegpt", 0.5, structures.n_of_m(2, 4)).resolved().sparsity == 0.5
  assert LayerSpec("wanda").resolved().structure == structures.unstructured(within=-1)


def test_settings_errors():
  with pytest.raises(ValueError, match="num_samples must be a positive int"):
    Settings(num_samples=0)
  with pytest.raises(TypeError, match="batch_size must be a positive int"):
    Settings(batch_size="8")
  with pytest.raises(ValueError, match="block_size must be a positive int"):
    Settings(block_size=2.5)
  with pytest.raises(ValueError, match="damp must be finite and >= 0"):
    Settings(damp=-0.1)
  with pytest.raises(TypeError, match="damp must be a float"):
    Settings(damp=None)
  with pytest.raises(TypeError, match="seed must be an int"):
    Settings(seed=1.5)
  with pytest.raises(TypeError, match="sequential must be a bool"):
    Settings(sequential="yes")
  windows = np.zeros((16, 8), np.int32)
  with pytest.raises(ValueError, match="seed=3 would be ignored"):
    Settings(seed=3).windows(windows)
  with pytest.raises(ValueError, match="num_samples=32 but the calibration windows"):
    Settings(num_samples=32).windows(windows)
  with pytest.raises(ValueError, match="do not split into batches of Settings.batch_size=6"):
    Settings(batch_size=6).windows(windows)
  with pytest.raises(TypeError, match="must be integers"):
    Settings().windows(windows.astype(np.float32))
  with pytest.raises(ValueError, match=r"Pass Settings\(seq_len=...\)"):
    Settings().windows(np.arange(1000))
  got = Settings(seq_len=8, seed=0).windows(np.arange(1000))
  np.testing.assert_array_equal(got, calibration_windows(np.arange(1000), 128, 8, seed=0))
  assert got.shape == (128, 8) and (np.diff(got, axis=1) == 1).all()
