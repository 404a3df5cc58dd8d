"""8 simulated CPU devices agree with 1: same masks, near-identical params.

XLA's device count is fixed when JAX starts, so the 8-device run is a subprocess.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np

SCRIPT = textwrap.dedent(
  """
  import json, sys
  import jax, jax.numpy as jnp, numpy as np, optax, jaxprune
  from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

  def loss(params, batch):
    h = jnp.tanh(batch["x"] @ params["w1"])
    return jnp.mean((h @ params["w2"] - batch["y"]) ** 2)

  k1, k2 = jax.random.split(jax.random.key(0))
  params = {"w1": jax.random.normal(k1, (16, 64)), "w2": jax.random.normal(k2, (64, 8))}
  tx = jaxprune.masked(optax.adam(1e-2), 0.8, criterion=sys.argv[1],
                       schedule=jaxprune.schedules.polynomial(0, 6, 2))
  mesh = Mesh(np.array(jax.devices()), ("data",))
  replicated, sharded = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
  params = jax.device_put(params, replicated)
  state = jax.device_put(tx.init(params), replicated)

  @jax.jit
  def step(params, state, batch):
    grads = jax.grad(loss)(params, batch)
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  rng = np.random.default_rng(0)
  for i in range(8):
    batch = {"x": rng.normal(size=(64, 16)).astype(np.float32),
             "y": rng.normal(size=(64, 8)).astype(np.float32)}
    params, state = step(params, state, jax.device_put(batch, sharded))
  masks = jaxprune.masks_of(state)
  print(json.dumps({"devices": len(jax.devices()),
                    "masks": {k: np.asarray(v).tolist() for k, v in masks.items()},
                    "params": {k: np.asarray(v).tolist() for k, v in params.items()}}))
  """
)


def _run(devices: int, criterion: str) -> dict:
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  out = subprocess.run(
    [sys.executable, "-c", SCRIPT, criterion], env=env, capture_output=True, text=True, check=True
  )
  return json.loads(out.stdout.strip().splitlines()[-1])


def test_eight_devices_match_one():
  for criterion in ("magnitude", "saliency"):
    one, eight = _run(1, criterion), _run(8, criterion)
    assert (one["devices"], eight["devices"]) == (1, 8)
    for name in ("w1", "w2"):
      np.testing.assert_array_equal(one["masks"][name], eight["masks"][name])
      np.testing.assert_allclose(one["params"][name], eight["params"][name], rtol=1e-4, atol=1e-5)
      m = np.asarray(eight["masks"][name])
      assert (np.asarray(eight["params"][name])[~m] == 0).all() and (~m).sum() > 0


COLLECTIVES_SCRIPT = textwrap.dedent(
  """
  import collections, json, re
  import jax, jax.numpy as jnp, numpy as np, optax, jaxprune
  from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

  mesh = Mesh(np.array(jax.devices()), ("fsdp",))
  shard = {"w1": NamedSharding(mesh, P(None, "fsdp")), "w2": NamedSharding(mesh, P("fsdp", None))}
  params = {"w1": jnp.ones((16, 64)), "w2": jnp.ones((64, 8))}
  params = jax.device_put(params, shard)
  batch = {"x": jnp.ones((32, 16)), "y": jnp.ones((32, 8))}

  def loss(params, batch):
    return jnp.mean((jnp.tanh(batch["x"] @ params["w1"]) @ params["w2"] - batch["y"]) ** 2)

  def collectives(tx, **kw):
    state = tx.init(params)
    def step(params, state, batch):
      updates, state = tx.update(jax.grad(loss)(params, batch), state, params, **kw)
      return optax.apply_updates(params, updates), state
    hlo = jax.jit(step).lower(params, state, batch).compile().as_text()
    ops = re.findall(r"(all-reduce|all-gather|reduce-scatter|collective-permute|all-to-all)", hlo)
    return dict(collections.Counter(ops))

  plain = collectives(optax.adam(1e-2))
  frozen = collectives(jaxprune.masked(optax.adam(1e-2), 0.8), masks_frozen=True)
  print(json.dumps({"plain": plain, "frozen": frozen}))
  """
)


def test_a_sharded_masked_step_adds_no_collective():
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=8")
  out = subprocess.run(
    [sys.executable, "-c", COLLECTIVES_SCRIPT], env=env, capture_output=True, text=True, check=True
  )
  got = json.loads(out.stdout.strip().splitlines()[-1])
  assert got["frozen"] == got["plain"], got
