"""Checkpoints: round trip of the whole state with masks, keep-last-K, uncommitted saves ignored."""

import functools
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxprune
from jaxprune.train.checkpoint import Checkpointer, CheckpointMismatchError
from jaxprune.train.experiment import load_state
from jaxprune.train.loop import train_and_evaluate
from jaxprune.train.metrics_log import MetricsLog, read_metrics


@functools.partial(jax.jit, static_argnames=("seed", "packed"))
def _state(seed=0, packed=False):
  params = {"w": jax.random.normal(jax.random.key(seed), (16, 8)), "b": jnp.zeros(8)}
  tx = jaxprune.masked(optax.adam(1e-2), 0.75, packed=packed)
  opt_state = tx.init(params)
  grads = jax.tree.map(jnp.ones_like, params)
  updates, opt_state = tx.update(grads, opt_state, params)
  step = jnp.ones([], jnp.int32)
  return {"params": optax.apply_updates(params, updates), "opt_state": opt_state, "step": step}


def _assert_same(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize("packed", [False, True])
def test_round_trip_keeps_masks_and_iterator_position(tmp_path, packed):
  state = _state(packed=packed)
  ckpt = Checkpointer(tmp_path, every_steps=5, keep=2)
  assert ckpt.save(5, state, {"epoch": 2, "index": 64})
  ckpt.close()
  target = jax.eval_shape(lambda: _state(seed=1, packed=packed))
  restored, data = Checkpointer(tmp_path, every_steps=5).restore(target)
  _assert_same(restored, state)
  assert data == {"epoch": 2, "index": 64}
  masks = jaxprune.masks_of(restored["opt_state"])
  assert float(np.mean(np.asarray(masks["w"]))) == 0.25


def test_saves_on_the_interval_or_when_forced_and_keeps_the_last_k(tmp_path):
  ckpt = Checkpointer(tmp_path, every_steps=10, keep=2, async_save=False)
  state = _state()
  saved = [s for s in range(1, 36) if ckpt.save(s, state, {"epoch": 0, "index": 0})]
  assert saved == [10, 20, 30]
  assert ckpt.save(35, state, {"epoch": 0, "index": 0}, force=True)
  assert not ckpt.save(35, state, {"epoch": 0, "index": 0}, force=True)  # never rewritten
  ckpt.close()
  assert ckpt.all_steps() == [30, 35]


def test_an_uncommitted_save_is_ignored_and_cleaned_up(tmp_path):
  ckpt = Checkpointer(tmp_path, every_steps=1, keep=3)
  good = _state()
  ckpt.save(4, good, {"epoch": 0, "index": 256})
  ckpt.save(8, _state(seed=5), {"epoch": 0, "index": 512})
  ckpt.close()
  # A process killed while writing step 8 leaves it under orbax's temporary name.
  partial = tmp_path / "8.orbax-checkpoint-tmp-1700000000000000"
  (tmp_path / "8").rename(partial)
  for f in sorted(p for p in partial.rglob("*") if p.is_file())[::2]:
    f.write_bytes(f.read_bytes()[: len(f.read_bytes()) // 2])  # torn files
  fresh = Checkpointer(tmp_path, every_steps=1, keep=3)
  assert fresh.latest_step() == 4
  restored, data = fresh.restore(jax.eval_shape(_state))
  _assert_same(restored, good)
  assert data["index"] == 256
  # Training goes on from step 4; orbax removes the leftover before its first save.
  assert fresh.save(12, restored, data, force=True)
  fresh.close()
  assert fresh.all_steps() == [4, 12] and not partial.exists()


def test_a_checkpoint_of_another_model_is_refused_with_a_hint(tmp_path):
  ckpt = Checkpointer(tmp_path, every_steps=1)
  ckpt.save(1, _state(), {"epoch": 0, "index": 0})
  ckpt.close()
  other = {"params": {"w": jnp.zeros((4, 4))}, "opt_state": (), "step": 0}
  with pytest.raises(CheckpointMismatchError, match="--workdir"):
    Checkpointer(tmp_path, every_steps=1).restore(other)


def test_no_checkpoint_restores_none(tmp_path):
  assert Checkpointer(tmp_path / "new", every_steps=1).restore(_state()) is None


def test_metrics_log_resume_drops_records_after_the_checkpoint_and_torn_lines(tmp_path):
  path = tmp_path / "metrics.jsonl"
  with MetricsLog(path) as log:
    for step in (10, 20, 30):
      log.write({"step": step, "train_loss": 1.0 / step})
  with open(path, "a") as f:
    f.write('{"step": 40, "train_lo')  # killed mid-write
  assert [r["step"] for r in read_metrics(path)] == [10, 20, 30]
  with MetricsLog(path, resume_step=20) as log:
    log.write({"step": 30, "train_loss": float("nan")})
  records = read_metrics(path)
  assert [r["step"] for r in records] == [10, 20, 30]
  assert records[-1]["train_loss"] == "nan"
  shutil.copy(path, tmp_path / "copy.jsonl")
  with MetricsLog(path):
    pass
  assert read_metrics(path) == []


def _truncate_data_files(step_dir):
  """Halves every array data file of a committed step, as a full disk leaves them."""
  files = [p for p in step_dir.rglob("*") if p.is_file() and p.parent.name == "d"]
  assert files and (step_dir / "commit_success.txt").exists()
  for f in files:
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
  return {f.relative_to(step_dir): f.stat().st_size for f in files}


def test_a_damaged_latest_step_is_skipped_reported_and_kept_aside(tmp_path, capsys):
  ckpt = Checkpointer(tmp_path, every_steps=1, keep=3, async_save=False)
  good = _state()
  ckpt.save(4, good, {"epoch": 0, "index": 256})
  ckpt.save(8, _state(seed=5), {"epoch": 0, "index": 512})
  ckpt.close()
  sizes = _truncate_data_files(tmp_path / "8")
  fresh = Checkpointer(tmp_path, every_steps=1, keep=3, async_save=False)
  restored, data = fresh.restore(jax.eval_shape(_state))
  _assert_same(restored, good)
  assert data == {"epoch": 0, "index": 256}
  err = capsys.readouterr().err
  assert "checkpoint step 8" in err and "OUT_OF_RANGE" in err and "resuming from step 4" in err
  aside = tmp_path / "8.damaged"
  kept = {f.relative_to(aside): f.stat().st_size for f in aside.rglob("*") if f.parent.name == "d"}
  assert kept == sizes
  # Training goes on: step 8 is written anew, and the damaged copy is never deleted.
  assert fresh.all_steps() == [4]
  for step in (8, 12, 16, 20):
    assert fresh.save(step, restored, data)
  fresh.close()
  assert fresh.all_steps() == [12, 16, 20] and aside.is_dir()


def test_when_no_step_restores_the_error_names_the_newest_and_nothing_moves(tmp_path):
  ckpt = Checkpointer(tmp_path, every_steps=1, async_save=False)
  ckpt.save(1, _state(), {"epoch": 0, "index": 0})
  ckpt.save(2, _state(), {"epoch": 0, "index": 0})
  ckpt.close()
  other = {"params": {"w": jnp.zeros((4, 4))}, "opt_state": (), "step": 0}
  with pytest.raises(CheckpointMismatchError, match=r"step 2 .*nor did the 1 older"):
    Checkpointer(tmp_path, every_steps=1).restore(other)
  assert sorted(p.name for p in tmp_path.iterdir()) == ["1", "2"]


@pytest.mark.xdist_group("reference")
def test_a_run_whose_latest_checkpoint_is_damaged_resumes_from_the_one_before(
  reference, tmp_path, capsys
):
  workdir = tmp_path / "run"
  shutil.copytree(reference.workdir, workdir)
  steps = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir())
  last, before = steps[-1], steps[-2]
  sizes = _truncate_data_files(workdir / "checkpoints" / str(last))
  capsys.readouterr()
  summary = train_and_evaluate(reference.config, workdir, verbose=False)
  err = capsys.readouterr().err
  assert f"checkpoint step {last} in" in err and f"resuming from step {before}" in err
  assert summary["resumed_from_step"] == before and summary["steps"] == last
  aside = workdir / "checkpoints" / f"{last}.damaged"
  kept = {f.relative_to(aside): f.stat().st_size for f in aside.rglob("*") if f.parent.name == "d"}
  assert kept == sizes
  # The steps from `before` were trained again, to the same state bit for bit.
  a, b = load_state(reference.config, reference.workdir), load_state(reference.config, workdir)
  for field in ("step", "params", "opt_state", "batch_stats", "rng"):
    _assert_same(getattr(a, field), getattr(b, field))
  assert summary["test_accuracy"] == reference.summary["test_accuracy"]
