"""Training on 8 simulated CPU devices (data parallel, and FSDP) agrees with 1 device.

XLA fixes the device count when JAX starts, so the 8-device runs happen in a subprocess;
the 1-device run is trained in the test process.

The runs use SGD with momentum, whose update is linear in the gradient: the devices sum
their gradients in another order than one device does, and that rounding (~1e-7
relative) must stay at that size for the params to be compared tightly. Adam divides
by the gradient's running RMS, so an entry whose gradient is ~1e-9 moves by a sizeable
fraction of the learning rate in a direction that the rounding decides (with adam, one
bias of 300 differed by 8.6e-5 after 60 steps while every mask was identical).
"""

import json
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P
from trainer_helpers import REFERENCE, REPO, train_command

import jaxprune
from jaxprune.train import sharding
from jaxprune.train.config import load_config
from jaxprune.train.experiment import load_state
from jaxprune.train.loop import train_and_evaluate

OVERRIDES = {
  **REFERENCE,
  "optimizer.name": "momentum",
  "optimizer.learning_rate": 0.05,
  "report.plots": False,
  "report.progress": False,
}
SCRIPT = textwrap.dedent(
  """
  import json, sys
  import jax
  from jaxprune.train.config import load_config
  from jaxprune.train.loop import train_and_evaluate

  overrides, out = json.loads(sys.argv[1]), sys.argv[2]
  for name, fsdp in (("replicated", False), ("fsdp", True)):
    config = load_config(
      "default", {**overrides, "sharding.fsdp": fsdp, "sharding.fsdp_min_size": 1000}
    )
    summary = train_and_evaluate(config, f"{out}/{name}", verbose=False)
    assert summary["devices"] == len(jax.devices()) == 8, summary["devices"]
  """
)


def test_eight_devices_give_the_same_masks_and_nearly_the_same_params(tmp_path, env):
  env = dict(env, XLA_FLAGS="--xla_force_host_platform_device_count=8")
  proc = subprocess.Popen(
    [sys.executable, "-c", SCRIPT, json.dumps(OVERRIDES), str(tmp_path)],
    env=env,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
  )
  config = load_config("default", OVERRIDES)
  one = train_and_evaluate(config, tmp_path / "one", verbose=False)
  _, err = proc.communicate()
  assert proc.returncode == 0, err[-4000:]
  assert one["devices"] == 1

  state_one = load_state(config, tmp_path / "one")
  ref_masks = jaxprune.masks_of(state_one.opt_state)
  for name in ("replicated", "fsdp"):
    state = load_state(config, tmp_path / name)
    assert int(state.step) == 60
    masks = jaxprune.masks_of(state.opt_state)
    for a, b in zip(jax.tree.leaves(ref_masks), jax.tree.leaves(masks), strict=True):
      np.testing.assert_array_equal(a, b)
    for a, b in zip(jax.tree.leaves(state_one.params), jax.tree.leaves(state.params), strict=True):
      np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    summary = json.loads((tmp_path / name / "summary.json").read_text())
    assert summary["sparsity"] == one["sparsity"] == pytest.approx(0.9)
    assert summary["test_accuracy"] == pytest.approx(one["test_accuracy"], abs=1 / 360)


def test_fsdp_shards_large_leaves_along_a_divisible_axis():
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("data",))
  state = {
    "k": jax.ShapeDtypeStruct((784, 300), np.float32),
    "b": jax.ShapeDtypeStruct((300,), np.float32),
  }
  replicated = sharding.state_shardings(state, mesh)
  assert replicated["k"].spec == P() and replicated["b"].spec == P()
  assert sharding.fsdp_spec((784, 300), 8) == P("data", None)  # 784 = 8 * 98
  assert sharding.fsdp_spec((300, 100), 8) == P()  # neither axis divides by 8
  assert sharding.fsdp_spec((300, 100), 4) == P("data", None)
  assert sharding.fsdp_spec((3, 3, 64, 128), 8) == P(None, None, None, "data")
  assert sharding.fsdp_spec((128,), 8) == P()  # small leaves stay replicated


def test_batch_size_must_split_over_devices():
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:1] * 1), ("data",))
  sharding.check_batch_size(7, mesh)
  fake = type("Mesh", (), {"size": 8})()
  with pytest.raises(ValueError, match="multiple of 8, e.g. --config.train.batch_size=96"):
    sharding.check_batch_size(100, fake)


@pytest.mark.slow(seconds=25)
def test_eight_devices_train_real_mnist_past_the_first_hundred_steps(tmp_path, env):
  # On real MNIST (unlike digits) queued steps used to deadlock XLA:CPU's collectives
  # within ~50 steps ("only 7 of 8 threads arrived at the rendezvous", then SIGABRT).
  env = dict(env, XLA_FLAGS="--xla_force_host_platform_device_count=8")
  source = REPO.parent / "shared" / "data" / "mnist"
  overrides = {
    "data.source_dir": str(source),
    "data.fallback": "",
    "train.num_steps": 200,
    "train.eval_every_epochs": 1000.0,
    "checkpoint.enabled": False,
    "report.plots": False,
    "report.progress": False,
  }
  proc = subprocess.run(
    train_command(tmp_path, overrides), env=env, capture_output=True, text=True, timeout=600
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  summary = json.loads((tmp_path / "summary.json").read_text())
  assert summary["devices"] == 8 and summary["dataset"] == "mnist" and summary["steps"] == 200
  assert summary["test_accuracy"] > 0.85
