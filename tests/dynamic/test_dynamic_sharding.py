"""RigL and SET give the same masks jitted, eager, and over 8 simulated data-parallel devices.

XLA's device count is fixed when JAX starts, so the 8-device run is a subprocess; the
one-device runs (jitted and eager) execute the same model, data and optimizer code here.
"""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprune import masks_of

STEPS = 5  # mask updates at steps 0, 2 and 4 (every=2, end=6)

COMMON = textwrap.dedent(
  """
  import jax, jax.numpy as jnp, numpy as np, optax
  from jaxprune import dynamic, masks_of, structures

  # (method, optimizer or layout): whole channels move with sgd, and "global" keeps the
  # per-leaf counts of its first mask, with adam.
  RUNS = [(m, o) for m in ("rigl", "set") for o in ("sgd", "adam")]
  RUNS += [("rigl", "channels"), ("set", "global")]

  def loss(params, batch):
    h = jnp.tanh(batch["x"] @ params["w1"] + params["b1"])
    return jnp.mean((h @ params["w2"] - batch["y"]) ** 2)

  def make(method, opt):
    build = dynamic.rigl if method == "rigl" else dynamic.set_
    # adam's first steps move every grown weight by about lr, so the magnitudes the next
    # drop ranks tie to the last bits; the drop's seeded tie-break noise (1e-5) decides
    # them, not the rounding of each way of running.
    inner = optax.adam(0.05) if opt in ("adam", "global") else optax.sgd(0.05)
    layout = {}
    if opt == "channels":
      layout = {"structure": structures.channels(prune_outputs=True)}
    elif opt == "global":
      layout = {"distribution": "global"}
    return build(inner, 0.8, every=2, end=6, alpha=0.4, seed=3, **layout)

  def init():
    k1, k2 = jax.random.split(jax.random.key(0))
    return {"w1": jax.random.normal(k1, (16, 64)), "b1": jnp.zeros(64),
            "w2": jax.random.normal(k2, (64, 8))}

  def batches(steps):
    rng = np.random.default_rng(0)
    return [{"x": rng.normal(size=(64, 16)).astype(np.float32),
             "y": rng.normal(size=(64, 8)).astype(np.float32)} for _ in range(steps)]

  def step_fn(tx):
    def step(params, state, batch):
      grads = jax.grad(loss)(params, batch)
      updates, state = tx.update(grads, state, params)
      return optax.apply_updates(params, updates), state
    return step
  """
)

SHARDED = COMMON + textwrap.dedent(
  """
  import json, sys
  from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

  mesh = Mesh(np.array(jax.devices()), ("data",))
  replicated, sharded = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
  out = {"devices": len(jax.devices())}
  for method, opt in RUNS:
    tx = make(method, opt)
    params = jax.device_put(init(), replicated)
    state = jax.device_put(tx.init(params), replicated)
    step = jax.jit(step_fn(tx))
    history = []
    for batch in batches(int(sys.argv[1])):
      params, state = step(params, state, jax.device_put(batch, sharded))
      assert params["w1"].sharding.is_fully_replicated
      history.append({k: np.asarray(v).tolist() for k, v in masks_of(state).items()})
    out[f"{method}/{opt}"] = {"masks": history,
                   "params": {k: np.asarray(v).tolist() for k, v in params.items()}}
  print(json.dumps(out))
  """
)


def _eight_devices() -> dict:
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
  out = subprocess.run(
    [sys.executable, "-c", SHARDED, str(STEPS)], env=env, capture_output=True, text=True
  )
  assert out.returncode == 0, out.stderr[-3000:]
  return json.loads(out.stdout.strip().splitlines()[-1])


RUNS = [(m, o) for m in ("rigl", "set") for o in ("sgd", "adam")]
RUNS += [("rigl", "channels"), ("set", "global")]


def _train(method: str, opt: str, jit: bool) -> tuple[dict, list[dict]]:
  """This process (one device): the script's model, data and optimizer, jitted or eager."""
  ns: dict = {}
  exec(COMMON, ns)
  tx = ns["make"](method, opt)
  step = ns["step_fn"](tx)
  params = ns["init"]()
  state = tx.init(params)
  history = []
  with jax.disable_jit(not jit):
    run_step = jax.jit(step) if jit else step
    for batch in ns["batches"](STEPS):
      params, state = run_step(params, state, jax.tree.map(jnp.asarray, batch))
      history.append({k: np.asarray(v) for k, v in masks_of(state).items()})
  return {k: np.asarray(v) for k, v in params.items()}, history


# The tests of `one_device` run in one worker, one after another, so it is trained once.
ONE_DEVICE = pytest.mark.xdist_group("one_device_rigl_set")


@pytest.fixture(scope="module")
def one_device():
  return {f"{m}/{o}": _train(m, o, jit=True) for m, o in RUNS}


@ONE_DEVICE
def test_eight_data_parallel_devices_match_one(one_device):
  eight = _eight_devices()
  assert (len(jax.devices()), eight["devices"]) == (1, 8)
  for method in one_device:
    params, history = one_device[method]
    got = eight[method]
    # Bit-identical masks after every step (drop-and-grow moved them at steps 0, 2, 4).
    assert len(got["masks"]) == len(history) == STEPS
    for mine, theirs in zip(history, got["masks"], strict=True):
      for name, m in mine.items():
        np.testing.assert_array_equal(m, np.asarray(theirs[name]), err_msg=f"{method} {name}")
    assert (history[0]["w1"] != history[-1]["w1"]).any(), method
    assert history[0]["w1"].sum() == history[-1]["w1"].sum(), method
    for name in ("w1", "b1", "w2"):
      np.testing.assert_allclose(params[name], got["params"][name], rtol=1e-5, atol=1e-6)
    for name in ("w1", "w2"):
      m = history[-1][name]
      assert (np.asarray(got["params"][name])[~m] == 0).all() and (~m).sum() > 0


@ONE_DEVICE
@pytest.mark.parametrize("method,opt", RUNS)
def test_jit_and_eager_give_the_same_masks(one_device, method, opt):
  jitted, jit_history = one_device[f"{method}/{opt}"]
  eager, eager_history = _train(method, opt, jit=False)
  for mj, me in zip(jit_history, eager_history, strict=True):
    for name in mj:
      np.testing.assert_array_equal(mj[name], me[name], err_msg=f"{method} {name}")
  for name in jitted:
    np.testing.assert_allclose(jitted[name], eager[name], rtol=1e-5, atol=1e-6)
