"""Data-driven criteria pick the same masks with the batch sharded over 8 devices as on 1.

XLA's device count is fixed when JAX starts, so each device count runs in a subprocess.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np

SCRIPT = textwrap.dedent(
  """
  import json
  import jax, jax.numpy as jnp, numpy as np, optax, jaxprune
  from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

  def apply_fn(params, x):
    h = jnp.tanh(x @ params["Dense_0"]["kernel"] + params["Dense_0"]["bias"])
    return h @ params["Dense_1"]["kernel"] + params["Dense_1"]["bias"]

  loss_fn = jaxprune.criteria.classification_loss(apply_fn, temperature=2.0)
  k = jax.random.split(jax.random.key(0), 4)
  params = {"Dense_0": {"kernel": jax.random.normal(k[0], (16, 32)) / 4, "bias": jnp.zeros(32)},
            "Dense_1": {"kernel": jax.random.normal(k[1], (32, 8)) / 6, "bias": jnp.zeros(8)}}
  rng = np.random.default_rng(0)
  batch = {"image": rng.normal(size=(64, 16)).astype(np.float32),
           "label": rng.integers(0, 8, size=64).astype(np.int32)}
  mesh = Mesh(np.array(jax.devices()), ("data",))
  replicated, sharded = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
  params = jax.device_put(params, replicated)
  batch = jax.device_put(batch, sharded)

  def acts(params, batch):
    x = batch["image"]
    return {"Dense_0/kernel": x,
            "Dense_1/kernel": jnp.tanh(x @ params["Dense_0"]["kernel"] + params["Dense_0"]["bias"])}

  out = {"devices": len(jax.devices()), "masks": {}}
  names = ["snip", "taylor", "grasp", "obd", "fisher", "wanda", "random", "obs"]
  for name in names:
    dist = "uniform" if name == "obs" else "global"
    prune = jax.jit(lambda p, b: jaxprune.prune(p, 0.9, criterion=name, distribution=dist,
                                                loss_fn=loss_fn, batch=b, hutchinson_samples=4,
                                                activations=acts(p, b))[1])
    out["masks"][name] = [np.asarray(m).tolist() for m in jax.tree.leaves(prune(params, batch))]

  # Pruning at initialisation inside the optimizer, with the batch sharded.
  tx = jaxprune.masked(optax.adam(1e-3), 0.9, criterion="grasp", distribution="global",
                       schedule=jaxprune.schedules.one_shot(0))
  state = jax.device_put(tx.init(params), replicated)

  @jax.jit
  def step(params, state, batch):
    grads = jax.grad(loss_fn)(params, batch)
    return tx.update(grads, state, params, loss_fn=loss_fn, batch=batch)[1]

  masks = jaxprune.masks_of(step(params, state, batch))
  out["masks"]["masked_grasp"] = [np.asarray(m).tolist() for m in jax.tree.leaves(masks)]
  print(json.dumps(out))
  """
)


def _run(devices: int) -> dict:
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  out = subprocess.run(
    [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=False
  )
  assert out.returncode == 0, out.stderr[-3000:]
  return json.loads(out.stdout.strip().splitlines()[-1])


def test_eight_devices_match_one():
  one, eight = _run(1), _run(8)
  assert (one["devices"], eight["devices"]) == (1, 8)
  names = {"snip", "taylor", "grasp", "obd", "fisher", "wanda", "random", "obs", "masked_grasp"}
  assert set(one["masks"]) == names
  assert one["masks"]["masked_grasp"] == one["masks"]["grasp"]
  for name, masks in one["masks"].items():
    for a, b in zip(masks, eight["masks"][name], strict=True):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=name)
    kernels = [np.asarray(m) for m in masks if np.ndim(m) == 2]
    assert 0 < sum(m.sum() for m in kernels) < sum(m.size for m in kernels), name
