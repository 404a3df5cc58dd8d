"""Two processes on localhost (`jax.distributed`, gloo collectives) train like one.

Each process sees 2 simulated CPU devices, so the 2-process mesh has the 4 devices of
the single-process reference run, and both train on the same global batches (each
process feeding the rows its own devices hold). The 2-process run is interrupted after
10 steps and resumed from the checkpoint both processes wrote, up to 20 steps; the
reference trains its 20 steps in one go.
"""

import json
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from trainer_helpers import SMALL

from jaxprune.train.metrics_log import read_metrics
from jaxprune.train.tensorboard_log import read_events

OVERRIDES = {
  **SMALL,
  "train.log_every_steps": 5,
  "train.eval_batch_size": 200,
  "pruning.schedule.begin": 2.0,
  "pruning.schedule.end": 14.0,
  "pruning.schedule.every": 2.0,
  "checkpoint.every_steps": 5,
  "checkpoint.async_save": False,
}
# Timings differ between runs; everything else in a summary must not.
TIMINGS = ("steps_per_second", "input_wait_fraction", "cpu_seconds_per_step", "_time_s")

SCRIPT = textwrap.dedent(
  """
  import json, sys
  from pathlib import Path
  pid, count, port, workdir, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], *sys.argv[4:6]
  overrides, lengths = json.loads(sys.argv[6]), json.loads(sys.argv[7])
  from jaxprune.train.main import initialize_distributed
  if count > 1:
    initialize_distributed(f"localhost:{port}", count, pid)
  import jax, numpy as np
  import jaxprune
  from jaxprune.train import checkpoint, evaluation, experiment, sharding
  from jaxprune.train.config import load_config
  from jaxprune.train.loop import train_and_evaluate
  from jaxprune.train.steps import eval_step

  for steps in lengths:  # several lengths: each run resumes from the previous checkpoint
    config = load_config("default", {**overrides, "train.num_steps": steps})
    summary = train_and_evaluate(config, workdir, verbose=False)

  # Restore the last checkpoint as a resumed run does: global arrays over all processes.
  exp = experiment.build(config, verbose=False)
  mesh = sharding.make_mesh()
  abstract = jax.eval_shape(exp.create_state)
  target = checkpoint.abstract_like(abstract, sharding.state_shardings(abstract, mesh))
  ckpt = checkpoint.Checkpointer(
    Path(workdir) / "checkpoints", every_steps=1, async_save=False, cleanup_tmp=False)
  state, position = ckpt.restore(target)
  ckpt.close()
  put = lambda batch: sharding.global_batch(batch, sharding.batch_sharding(mesh))
  again = evaluation.evaluate(
    jax.jit(eval_step), state, exp.splits.test, int(config.train.eval_batch_size), put)
  host = evaluation.to_host({"params": state.params, "opt_state": state.opt_state})
  host = {"params": host["params"], "masks": jaxprune.masks_of(host["opt_state"])}
  flat = {jax.tree_util.keystr(k): np.asarray(v)
          for k, v in jax.tree_util.tree_leaves_with_path(host)}
  np.savez(f"{out}/state{pid}.npz", **flat)
  summary["restored"] = {"step": int(state.step), "position": position, "test": again}
  summary["process_index"] = jax.process_index()
  Path(f"{out}/summary{pid}.json").write_text(json.dumps(summary, default=str))
  """
)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _launch(env, count, devices, workdir, out, lengths) -> list[subprocess.Popen]:
  env = dict(env, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
  port = str(_free_port())
  args = [str(workdir), str(out), json.dumps(OVERRIDES), json.dumps(lengths)]
  return [
    subprocess.Popen(
      [sys.executable, "-c", SCRIPT, str(pid), str(count), port, *args],
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
    )
    for pid in range(count)
  ]


def _wait(procs: list[subprocess.Popen], timeout: float = 500) -> None:
  errors = []
  try:
    for proc in procs:
      _, err = proc.communicate(timeout=timeout)
      if proc.returncode:
        errors.append(f"process exited with {proc.returncode}:\n{err[-3000:]}")
  finally:
    for proc in procs:
      if proc.poll() is None:
        proc.kill()
        proc.communicate()
  assert not errors, "\n".join(errors)


def _steady(summary: dict) -> dict:
  return {k: v for k, v in summary.items() if not k.endswith(TIMINGS)}


def _load(out, pid):
  summary = json.loads((out / f"summary{pid}.json").read_text())
  with np.load(out / f"state{pid}.npz") as f:
    state = dict(f)
  return summary, state


@pytest.mark.slow(seconds=38)
def test_two_processes_train_and_checkpoint_like_one(tmp_path, env):
  multi, single = tmp_path / "multi", tmp_path / "single"
  for path in (multi, single):
    (path / "out").mkdir(parents=True)
  procs = _launch(env, 2, 2, multi / "run", multi / "out", [10, 20])
  procs += _launch(env, 1, 4, single / "run", single / "out", [20])
  _wait(procs)

  (s0, p0), (s1, p1) = _load(multi / "out", 0), _load(multi / "out", 1)
  one, params_one = _load(single / "out", 0)
  assert (s0["processes"], s0["devices"], one["processes"], one["devices"]) == (2, 4, 1, 4)
  assert (s0["process_index"], s1["process_index"]) == (0, 1)
  assert s0["backend"] == "cpu" and s0["steps"] == 20 and s0["resumed_from_step"] == 10
  assert s0["sparsity"] == pytest.approx(0.9)

  # Params and masks: bit for bit the same on both processes. Against the single process:
  # the same masks, and params equal up to float32 rounding (gloo sums the 4 devices'
  # gradients in another order than XLA:CPU's in-process all-reduce; measured after 20
  # steps: at most 3e-8 absolute, 4e-5 relative on the smallest entries).
  assert p0.keys() == p1.keys() == params_one.keys()
  assert any("masks" in k for k in p0) and any("params" in k for k in p0)
  for key in p0:
    np.testing.assert_array_equal(p0[key], p1[key], err_msg=key)
    if "masks" in key:
      np.testing.assert_array_equal(p0[key], params_one[key], err_msg=key)
    else:
      np.testing.assert_allclose(p0[key], params_one[key], rtol=1e-4, atol=1e-7, err_msg=key)
      assert (p0[key] != 0).sum() == (params_one[key] != 0).sum()

  # Metrics (the summary's numbers, the restored checkpoint's) agree on both processes.
  del s0["process_index"], s1["process_index"], one["process_index"]
  assert _steady(s0) == _steady(s1)
  assert s0["layers"] == one["layers"] and s0["sparsity"] == one["sparsity"]
  for key in ("test_loss", "test_accuracy", "validation_loss", "validation_accuracy"):
    assert s0[key] == pytest.approx(one[key], rel=1e-5), key
  # The checkpoint both processes saved restores exactly: its test loss is the final one.
  assert s0["restored"]["step"] == 20 and s0["restored"]["test"]["loss"] == s0["test_loss"]
  assert s0["restored"]["position"] == one["restored"]["position"]

  # Only process 0 wrote metrics.jsonl: each record once, and those of the single process.
  records = read_metrics(multi / "run" / "metrics.jsonl")
  steps = [r["step"] for r in records]
  assert steps == sorted(set(steps)) and steps[-1] == 20
  reference = {r["step"]: r for r in read_metrics(single / "run" / "metrics.jsonl")}
  for record in records:
    if "train_loss" in record:
      other = reference[record["step"]]
      assert record["sparsity"] == other["sparsity"]
      assert record["train_loss"] == pytest.approx(other["train_loss"], rel=1e-5)
      assert record["train_accuracy"] == pytest.approx(other["train_accuracy"], abs=1e-6)
  assert json.loads((multi / "run" / "summary.json").read_text())["processes"] == 2
  # TensorBoard: one event file per run (10 steps, then resumed to 20), from process 0.
  assert len(list((multi / "run" / "tensorboard").glob("events.out.tfevents.*"))) == 2
  tags = {e["tag"] for e in read_events(multi / "run" / "tensorboard")}
  assert {"train/loss", "layer_sparsity/Dense_0/kernel", "weights/Dense_0/kernel"} <= tags
