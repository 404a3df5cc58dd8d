"""One-shot pruning with FSDP-sharded params and a data-parallel calibration batch over 8
simulated devices gives the masks of 1 device and the same weights within float tolerance.

XLA's device count is fixed when JAX starts, so each device count runs in a subprocess.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

SCRIPT = textwrap.dedent(
  """
  import json, sys
  sys.path.insert(0, {tests!r})
  import jax, numpy as np
  from jax.sharding import Mesh, NamedSharding
  from oneshot_models import DecoderLM, init, tokens
  from jaxprune import oneshot
  from jaxprune.train.sharding import fsdp_spec

  mesh = Mesh(np.array(jax.devices()), ("data",))
  model = DecoderLM(general={general})
  params = init(model)
  params = jax.tree.map(
    lambda x: jax.device_put(x, NamedSharding(mesh, fsdp_spec(x.shape, mesh.size, min_size=1))),
    params,
  )
  bw = oneshot.blockwise_from_decoder_lm(model)
  out = oneshot.prune_sequential(
    bw, params, tokens(16, 8), method={method!r}, structure={structure!r}, mesh=mesh,
    settings=oneshot.Settings(batch_size=8, block_size=16),
  )
  kept = all(
    new.sharding.is_equivalent_to(old.sharding, new.ndim)
    for new, old in zip(jax.tree.leaves(out.params), jax.tree.leaves(params))
  )
  sharded = sum(len(x.sharding.device_set) > 1 and not x.sharding.is_fully_replicated
                for x in jax.tree.leaves(out.params))
  # The Gram pass over a batch split on "data" sums XᵀX across devices: an all-reduce.
  from jax.sharding import PartitionSpec as P
  hidden = jax.device_put(np.zeros((2, 8, 8, 32), np.float32), NamedSharding(mesh, P(None, "data")))
  found = oneshot.find_linears(bw.block, params["block_0"], hidden[0])
  collect = frozenset(lin.index for lin in found.linears)
  grams = oneshot.sequential._programs(bw)["block_grams"]
  hlo = grams.lower(params["block_0"], hidden, collect=collect).compile().as_text()
  print(json.dumps({{
    "devices": len(jax.devices()), "kept_sharding": kept, "sharded_leaves": sharded,
    "all_reduce": "all-reduce" in hlo,
    "masks": [np.asarray(m).tolist() for m in jax.tree.leaves(out.masks)],
    "params": [np.asarray(p).tolist() for p in jax.tree.leaves(out.params)],
  }}))
  """
)


def _run(devices: int, **kwargs) -> dict:
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  env["PYTHONPATH"] = os.pathsep.join([os.getcwd(), env.get("PYTHONPATH", "")])
  script = SCRIPT.format(tests=os.path.dirname(__file__), **kwargs)
  out = subprocess.run(
    [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=False
  )
  assert out.returncode == 0, out.stderr[-3000:]
  return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow(seconds=120)
@pytest.mark.parametrize(
  ("method", "structure", "general"), [("sparsegpt", "layer", False), ("wanda", "2:4", True)]
)
def test_eight_devices_match_one(method, structure, general):
  kwargs = {"method": method, "structure": structure, "general": general}
  one, eight = _run(1, **kwargs), _run(8, **kwargs)
  assert (one["devices"], eight["devices"]) == (1, 8)
  assert eight["kept_sharding"] and eight["sharded_leaves"] > 10
  assert eight["all_reduce"] and not one["all_reduce"]
  for a, b in zip(one["masks"], eight["masks"], strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  for a, b in zip(one["params"], eight["params"], strict=True):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)
