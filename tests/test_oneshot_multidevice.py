"""One-shot pruning with FSDP-sharded params and a data-parallel calibration batch over 8
simulated devices gives the masks of 1 device and the same weights within float tolerance.

XLA's device count is fixed when JAX starts, so the 8-device runs (both cases) happen in one
subprocess; the 1-device runs happen here, on a mesh of one device.
"""

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
from jax.sharding import Mesh
from oneshot_models import sharded_run

CASES = [("sparsegpt", "layer", False), ("wanda", "2:4", True)]

SCRIPT = textwrap.dedent(
  """
  import json, sys
  sys.path.insert(0, {tests!r})
  import jax, numpy as np
  from jax.sharding import Mesh
  from oneshot_models import sharded_run

  mesh = Mesh(np.array(jax.devices()), ("data",))
  print(json.dumps([sharded_run(mesh, *case) for case in {cases!r}]))
  """
)


def eight_devices() -> list[dict]:
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
  env["PYTHONPATH"] = os.pathsep.join([os.getcwd(), env.get("PYTHONPATH", "")])
  script = SCRIPT.format(tests=os.path.dirname(__file__), cases=CASES)
  out = subprocess.run(
    [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=False
  )
  assert out.returncode == 0, out.stderr[-3000:]
  return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow(seconds=60)
def test_eight_devices_match_one():
  mesh = Mesh(np.array(jax.devices()[:1]), ("data",))
  for case, eight in zip(CASES, eight_devices(), strict=True):
    one = sharded_run(mesh, *case)
    assert (one["devices"], eight["devices"]) == (1, 8), case
    assert eight["kept_sharding"] and eight["sharded_leaves"] > 10, case
    assert eight["all_reduce"] and not one["all_reduce"], case
    for a, b in zip(one["masks"], eight["masks"], strict=True):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=str(case))
    for a, b in zip(one["params"], eight["params"], strict=True):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)
