"""Wanda against NumPy, input capture from Linen and NNX models, activation errors."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxprune
from jaxprune import criteria, structures


def wanda_reference(w, x, sparsity):
  """NumPy Wanda (the paper's per-output comparison) for a Flax (in, out) kernel."""
  w, x = np.asarray(w, np.float64), np.asarray(x, np.float64).reshape(-1, w.shape[0])
  score = np.abs(w) * np.sqrt((x**2).sum(0))[:, None]
  keep = np.ones_like(w, bool)
  n_prune = round(sparsity * w.shape[0])
  for j in range(w.shape[1]):
    keep[np.argsort(score[:, j], kind="stable")[:n_prune], j] = False
  return score, keep


def test_wanda_matches_numpy():
  rng = np.random.default_rng(0)
  w = rng.normal(size=(32, 12)).astype(np.float32)
  x = (rng.normal(size=(4, 25, 32)) * rng.uniform(0.1, 3.0, size=32)).astype(np.float32)
  params = {"Dense_0": {"kernel": jnp.asarray(w), "bias": jnp.zeros(12)}}
  acts = {"Dense_0/kernel": x}
  score, keep = wanda_reference(w, x, 0.5)
  got = criteria.wanda(params, activations=acts)
  np.testing.assert_allclose(got["Dense_0"]["kernel"], score, rtol=1e-5)
  assert got["Dense_0"]["bias"] is None
  per_output = structures.unstructured(within=-1)
  pruned, masks = jaxprune.prune(
    params, 0.5, criterion="wanda", activations=acts, structure=per_output
  )
  np.testing.assert_array_equal(masks["Dense_0"]["kernel"], keep)
  assert (np.asarray(pruned["Dense_0"]["kernel"])[~keep] == 0).all()
  assert (np.asarray(masks["Dense_0"]["kernel"]).sum(0) == 16).all()


def test_wanda_n_of_m():
  rng = np.random.default_rng(1)
  w = rng.normal(size=(16, 6)).astype(np.float32)
  x = rng.normal(size=(40, 16)).astype(np.float32)
  score, _ = wanda_reference(w, x, 0.5)
  _, masks = jaxprune.prune(
    {"k": {"kernel": jnp.asarray(w)}},
    0.5,
    criterion="wanda",
    activations={"k/kernel": x},
    structure=structures.n_of_m(2, 4),
  )
  m = np.asarray(masks["k"]["kernel"])
  groups = score.reshape(4, 4, 6)  # (group, position in group, output)
  want = groups >= np.sort(groups, axis=1)[:, 2:3, :]  # top 2 of each 4 inputs per output
  np.testing.assert_array_equal(m, want.reshape(16, 6))


class _MLP(nn.Module):
  @nn.compact
  def __call__(self, x, train=False):
    del train
    x = nn.relu(nn.Dense(8)(x))
    shared = nn.Dense(8, name="shared")
    x = shared(nn.relu(shared(x)))
    return nn.Dense(3, name="head")(x)


def test_capture_inputs_linen_matches_manual_forward():
  model = _MLP()
  x = jax.random.normal(jax.random.key(0), (5, 4))
  variables = model.init(jax.random.key(1), x)
  acts = jax.jit(lambda v, x: criteria.capture_inputs(model.apply, v, x, train=False))(variables, x)
  p = variables["params"]
  h0 = nn.relu(x @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"])
  h1 = h0 @ p["shared"]["kernel"] + p["shared"]["bias"]
  h2 = nn.relu(h1) @ p["shared"]["kernel"] + p["shared"]["bias"]
  assert sorted(acts) == ["Dense_0/kernel", "head/kernel", "shared/kernel"]
  np.testing.assert_allclose(acts["Dense_0/kernel"], x)
  np.testing.assert_allclose(acts["shared/kernel"], jnp.concatenate([h0, nn.relu(h1)]), rtol=1e-5)
  np.testing.assert_allclose(acts["head/kernel"], h2, rtol=1e-5)
  # The captured mapping plugs straight into the criterion, for params or whole variables.
  _, masks = jaxprune.prune(p, 0.5, criterion="wanda", activations=acts)
  assert int(masks["head"]["kernel"].sum()) == 12
  _, masks = jaxprune.prune(variables, 0.5, criterion="wanda", activations=acts)
  assert int(masks["params"]["head"]["kernel"].sum()) == 12


def test_capture_inputs_nnx():
  class MyLinear(nnx.Linear):  # inherits __call__
    pass

  class Model(nnx.Module):
    def __init__(self, rngs):
      self.l1 = nnx.Linear(4, 6, rngs=rngs)
      self.l2 = MyLinear(6, 2, rngs=rngs)

    def __call__(self, x):
      return self.l2(nnx.relu(self.l1(x)))

  model = Model(nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(0), (7, 4))
  acts = criteria.capture_inputs_nnx(model, x)
  np.testing.assert_allclose(acts["l1/kernel"], x)
  np.testing.assert_allclose(acts["l2/kernel"], nnx.relu(model.l1(x)), rtol=1e-6)
  assert nnx.Linear.__call__.__name__ == "__call__"  # restored
  assert "__call__" not in vars(MyLinear)
  params = nnx.state(model, nnx.Param)
  _, masks = jaxprune.prune(params, 0.5, criterion="wanda", activations=acts)
  assert int(jax.tree.leaves(masks)[1].sum()) == 12  # l1 kernel: 24 weights


def test_wanda_activation_errors():
  params = {"a": {"kernel": jnp.ones((4, 3))}, "b": {"kernel": jnp.ones((3, 2))}}
  with pytest.raises(ValueError, match="no activations for the Dense kernel"):
    criteria.wanda(params, activations={"a/kernel": jnp.ones((5, 4))})
  with pytest.raises(ValueError, match="matches no parameter"):
    criteria.wanda(params, activations={"c/kernel": jnp.ones((5, 4))})
  with pytest.raises(ValueError, match=r"has shape \(5, 3\)"):
    criteria.wanda(params, activations={"a/kernel": jnp.ones((5, 3)), "b": None})
  x = jnp.ones((5, 4)) * jnp.array([1.0, 2.0, 0.0, 3.0])  # input norms sqrt(5) * (1, 2, 0, 3)
  s = criteria.wanda(params, activations={"a": x, "b": None})
  assert s["b"]["kernel"] is None  # no activations: the leaf stays dense
  want = np.sqrt(5.0) * np.array([1.0, 2.0, 0.0, 3.0])[:, None] * np.ones((4, 3))  # |W| = 1
  np.testing.assert_allclose(s["a"]["kernel"], want, rtol=1e-6)
  with pytest.raises(jaxprune.MissingExtraError, match="activations"):
    jaxprune.prune(params, 0.5, criterion="wanda")
