"""L0 hard-concrete gates: distribution, closed forms, penalty, eval, and the l0_gate masks."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxprune
from jaxprune import bayes
from jaxprune.bayes import l0

BETA, GAMMA, ZETA = l0.BETA, l0.GAMMA, l0.ZETA
LOGITS = jnp.array([-4.0, -2.0, -0.5, 0.0, 1.0, 3.0])


def _sigmoid(x):
  return 1.0 / (1.0 + math.exp(-x))


def test_gate_samples_lie_in_unit_interval_with_atoms_at_both_ends():
  z = bayes.sample_gates(jax.random.key(0), LOGITS, shape=(50_000, LOGITS.size))
  assert float(z.min()) == 0.0 and float(z.max()) == 1.0
  assert bool(jnp.all((z >= 0.0) & (z <= 1.0)))
  inside = (z > 0.0) & (z < 1.0)
  assert float(inside.mean()) > 0.1  # a continuous part between the atoms


def test_probability_of_exact_zero_and_one_match_the_closed_form():
  # z = 0 iff s ≤ −γ/(ζ−γ) iff L ≤ β·log(−γ/ζ) − log α, L standard logistic:
  #   P(z = 0) = σ(β·log(−γ/ζ) − log α).
  # z = 1 iff s ≥ (1−γ)/(ζ−γ) iff L ≥ β·log((1−γ)/(ζ−1)) − log α:
  #   P(z = 1) = σ(log α − β·log((1−γ)/(ζ−1))).
  n = 200_000
  z = bayes.sample_gates(jax.random.key(1), LOGITS, shape=(n, LOGITS.size))
  p0_emp = np.asarray((z == 0.0).mean(0))
  p1_emp = np.asarray((z == 1.0).mean(0))
  for i, la in enumerate(LOGITS.tolist()):
    p0 = _sigmoid(BETA * math.log(-GAMMA / ZETA) - la)
    p1 = _sigmoid(la - BETA * math.log((1.0 - GAMMA) / (ZETA - 1.0)))
    tol0 = 5.0 * math.sqrt(p0 * (1 - p0) / n) + 1e-4
    tol1 = 5.0 * math.sqrt(p1 * (1 - p1) / n) + 1e-4
    assert abs(p0_emp[i] - p0) < tol0, (la, p0_emp[i], p0)
    assert abs(p1_emp[i] - p1) < tol1, (la, p1_emp[i], p1)
    np.testing.assert_allclose(bayes.prob_nonzero(jnp.float32(la)), 1.0 - p0, rtol=1e-5)


def test_deterministic_gates_and_gate_open_share_one_cut():
  cut = math.log(-GAMMA / ZETA)
  la = jnp.array([cut - 1.0, cut - 1e-3, cut + 1e-3, 0.0, 10.0], jnp.float32)
  g = bayes.deterministic_gates(la)
  assert g.tolist()[:2] == [0.0, 0.0]
  assert all(v > 0 for v in g.tolist()[2:])
  np.testing.assert_allclose(g[3], 0.5, rtol=1e-6)
  assert float(g[4]) == 1.0
  np.testing.assert_array_equal(bayes.gate_open(la), g > 0)


def test_l0_penalty_value_and_finite_gradient():
  params = {
    "a": {"kernel": jnp.ones((3, 4)), "gate_log_alpha": jnp.array([-30.0, 0.0, 30.0])},
    "b": {"kernel": jnp.ones((2, 2)), "gate_log_alpha": jnp.zeros((2, 2))},
    "c": {"kernel": jnp.ones((2, 2))},
  }
  p = float(bayes.prob_nonzero(jnp.float32(0.0)))
  expected_gates = (0.0 + p + 1.0) + 4 * p
  np.testing.assert_allclose(bayes.l0_penalty(params, weighted=False), expected_gates, rtol=1e-5)
  expected_weights = 4 * (0.0 + p + 1.0) + 4 * p  # per-input gates switch rows of 4
  np.testing.assert_allclose(bayes.l0_penalty(params), expected_weights, rtol=1e-5)
  g = jax.grad(lambda q: bayes.l0_penalty(q))(params)
  for leaf in jax.tree.leaves(g):
    assert bool(jnp.all(jnp.isfinite(leaf)))
  assert float(g["a"]["gate_log_alpha"][1]) > 0.0
  np.testing.assert_array_equal(g["a"]["kernel"], 0.0)


def test_gradient_through_sampled_gates_is_finite_at_extreme_logits():
  la = jnp.array([-50.0, -5.0, 0.0, 5.0, 50.0])
  f = lambda a: jnp.sum(bayes.sample_gates(jax.random.key(0), a, shape=(64, 5)) ** 2)
  g = jax.jit(jax.grad(f))(la)
  assert bool(jnp.all(jnp.isfinite(g)))
  assert float(g[2]) > 0.0


@pytest.mark.parametrize("gate", ["weight", "input"])
@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_eval_is_deterministic_and_training_is_not(gate, kind):
  if kind == "dense":
    layer, x = bayes.L0Dense(4, gate=gate), jax.random.normal(jax.random.key(0), (3, 5))
  else:
    layer = bayes.L0Conv(4, (3, 3), gate=gate)
    x = jax.random.normal(jax.random.key(0), (2, 6, 6, 5))
  variables = layer.init(jax.random.key(1), x, deterministic=True)
  run = jax.jit(
    lambda k, det: layer.apply(variables, x, deterministic=det, rngs={"dropout": k}),
    static_argnums=1,
  )
  np.testing.assert_array_equal(run(jax.random.key(2), True), run(jax.random.key(3), True))
  assert not np.allclose(run(jax.random.key(2), False), run(jax.random.key(3), False))


def test_dense_eval_equals_gated_matmul():
  layer = bayes.L0Dense(3, gate="input")
  x = jax.random.normal(jax.random.key(0), (4, 5))
  variables = layer.init(jax.random.key(1), x, deterministic=True)
  p = {**variables["params"], "gate_log_alpha": jnp.array([-5.0, -1.0, 0.0, 2.0, 9.0])}
  out = layer.apply({"params": p}, x, deterministic=True)
  g = bayes.deterministic_gates(p["gate_log_alpha"])
  np.testing.assert_allclose(out, (x * g) @ p["kernel"] + p["bias"], rtol=1e-5, atol=1e-6)
  assert float(g[0]) == 0.0 and 0.0 < float(g[2]) < 1.0


def test_bad_gate_kind_is_rejected_with_the_fix():
  with pytest.raises(ValueError, match="gate='input'"):
    bayes.L0Dense(3, gate="neuron").init(jax.random.key(0), jnp.ones((1, 2)), deterministic=True)


@pytest.mark.parametrize(
  "layer,x",
  [
    (bayes.L0Dense(6, gate="input"), jnp.ones((2, 8))),
    (bayes.L0Dense(6, gate="weight"), jnp.ones((2, 8))),
    (bayes.L0Conv(6, (3, 3), gate="input"), jnp.ones((2, 5, 5, 8))),
  ],
)
def test_l0_gate_masks_zero_exactly_the_closed_gates(layer, x):
  variables = layer.init(jax.random.key(0), x, deterministic=True)
  p = dict(variables["params"])
  shape = p["gate_log_alpha"].shape
  p["gate_log_alpha"] = jnp.linspace(-5.0, 2.0, math.prod(shape)).reshape(shape)
  open_ = l0.kernel_gates(p["kernel"].shape, bayes.gate_open(p["gate_log_alpha"]))
  expected = jnp.broadcast_to(open_, p["kernel"].shape)
  assert 0 < int(expected.sum()) < expected.size
  tx = jaxprune.masked(optax.sgd(0.1), None, criterion="l0_gate")
  state = tx.init(p)
  grads = jax.tree.map(jnp.ones_like, p)
  updates, state = jax.jit(tx.update)(grads, state, p)
  new = optax.apply_updates(p, updates)
  k = new["kernel"]
  assert bool(jnp.all(jnp.where(expected, k != 0, k == 0)))
  # Evaluating with the pruned kernel changes nothing: the closed gates already zeroed it.
  before = layer.apply({"params": p}, x, deterministic=True)
  after = layer.apply(
    {"params": {**p, "kernel": jnp.where(expected, p["kernel"], 0.0)}}, x, deterministic=True
  )
  np.testing.assert_allclose(before, after, rtol=1e-6, atol=1e-6)
