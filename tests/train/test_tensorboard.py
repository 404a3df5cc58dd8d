"""TensorBoard event files: written by the loop, parsed back, the same numbers as metrics.jsonl."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprune.bayes import VariationalDense
from jaxprune.train import tensorboard_log
from jaxprune.train.metrics_log import read_metrics


@pytest.mark.xdist_group("reference")
def test_the_loop_writes_events_that_parse_and_match_the_metrics(reference):
  logdir = reference.workdir / "tensorboard"
  assert len(list(logdir.glob("events.out.tfevents.*"))) == 1
  events = tensorboard_log.read_events(logdir)
  scalars = {(e["step"], e["tag"]): e["value"] for e in events if "value" in e}
  records = read_metrics(reference.workdir / "metrics.jsonl")
  names = {"train_loss": "train/loss", "validation_accuracy": "validation/accuracy"}
  names |= {"test_accuracy": "test/accuracy", "sparsity": "sparsity"}
  checked = 0
  for record in records:
    for key, tag in names.items():
      if key in record:  # float32 in the event file
        assert scalars[(record["step"], tag)] == pytest.approx(record[key], rel=1e-6)
        checked += 1
  assert checked == 6 + 3 + 1 + 6
  # Per-layer sparsity at every logging step; the kernels end at the 90% target.
  kernels = ["Dense_0/kernel", "Dense_1/kernel", "Dense_2/kernel"]
  for name in kernels:
    steps = sorted(s for s, t in scalars if t == f"layer_sparsity/{name}")
    assert steps == [10, 20, 30, 40, 50, 60]
    assert scalars[(60, f"layer_sparsity/{name}")] == pytest.approx(0.9, abs=1e-3)
  # Histograms of the kept weights at each evaluation: their count is the nonzero count.
  hists = {(e["step"], e["tag"]): e["histogram"] for e in events if "histogram" in e}
  assert sorted({s for s, _ in hists}) == [20, 40, 60]
  for name in kernels:
    h = hists[(60, f"weights/{name}")]
    assert h["num"] == reference.summary["layers"][name]["nonzero"] == sum(h["bucket"])
    assert h["min"] < 0 < h["max"] and h["bucket_limit"][-1] == pytest.approx(h["max"])


def test_histograms_count_kept_weights_and_variational_log_alpha():
  layer = VariationalDense(4)
  params = layer.init(jax.random.key(0), jnp.ones((1, 6)), deterministic=True)["params"]
  params = {"var": params, "dense": {"kernel": jnp.array([[0.0, -1.0, 2.0], [3.0, 0.0, 4.0]])}}
  hists = jax.device_get(jax.jit(tensorboard_log.histograms)(params))
  assert set(hists) == {"weights/dense/kernel", "weights/var/kernel", "log_alpha/var/kernel"}
  dense = hists["weights/dense/kernel"]
  assert (float(dense["min"]), float(dense["max"]), float(dense["num"])) == (-1.0, 4.0, 4.0)
  assert float(dense["sum"]) == 8.0 and float(dense["sum_squares"]) == 30.0
  assert dense["bucket"].sum() == 4 and dense["bucket"][0] == 1 and dense["bucket"][-1] == 1
  assert float(hists["log_alpha/var/kernel"]["num"]) == 24.0


def test_a_resumed_log_hides_the_steps_after_the_checkpoint(tmp_path):
  with tensorboard_log.TensorBoardLog(tmp_path) as tb:
    tb.scalars(10, {"train_loss": 1.0})
    tb.scalars(20, {"train_loss": 2.0})
  with tensorboard_log.TensorBoardLog(tmp_path, resume_step=10) as tb:
    tb.scalars(20, {"train_loss": 3.0})
  events = tensorboard_log.read_events(tmp_path)
  # Both files parse; TensorBoard drops the first file's step 20 (purge from step 11 on).
  assert [(e["step"], e["value"]) for e in events] == [(10, 1.0), (20, 2.0), (20, 3.0)]
  assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 2


def test_a_torn_last_record_is_skipped(tmp_path):
  with tensorboard_log.TensorBoardLog(tmp_path) as tb:
    tb.scalars(1, {"train_loss": 1.0})
    tb.scalars(2, {"train_loss": 2.0})
  (path,) = tmp_path.glob("events.out.tfevents.*")
  path.write_bytes(path.read_bytes()[:-5])
  assert [e["step"] for e in tensorboard_log.read_events(tmp_path)] == [1]
  assert np.isfinite([e["value"] for e in tensorboard_log.read_events(tmp_path)]).all()
