"""Lottery tickets on digits: exact per-round sparsities, rewinding, controls, masks, resume."""

import contextlib
import dataclasses
import io
import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from trainer_helpers import REPO, cli_flags

import jaxprune
from jaxprune.train import experiment, export, lottery
from jaxprune.train.config import load_config
from jaxprune.train.loop import train_and_evaluate
from jaxprune.train.metrics_log import read_metrics
from jaxprune.train.settings import resolve

# LeNet-300-100 on 8x8 digits: kernels of 64x300, 300x100 and 100x10.
SIZES = {"Dense_0/kernel": 19200, "Dense_1/kernel": 30000, "Dense_2/kernel": 1000}
TINY = {
  "data.name": "digits",
  "train.num_steps": 20,
  "train.eval_every_epochs": 0.25,  # 21 steps per epoch at batch 60: every 5 steps
  "train.log_every_steps": 10,
  "checkpoint.every_steps": 5,
  "checkpoint.keep": 50,
  "checkpoint.async_save": False,
  "lottery.rounds": 2,
  "report.plots": False,
  "report.progress": False,
}


def _run(workdir, **changes):
  config = load_config("lottery", {**TINY, **changes})
  with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    result = lottery.run(config, workdir)
  return config, result


def _masks(path):
  with np.load(path) as data:
    return {k: data[k] for k in data.files}


# The tests of `tickets` run in one worker, one after another (``./run.sh test`` hands out
# each group whole): between two tests of another file a worker tears a module fixture
# down, so tests spread over the workers would train the lottery once each.
TICKETS = pytest.mark.xdist_group("lottery_tickets")


@pytest.fixture(scope="module")
def tickets(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("lottery")
  config, result = _run(workdir, **{"report.plots": True})
  return config, workdir, result


@TICKETS
def test_rounds_reach_the_exact_per_layer_sparsities_and_are_nested(tickets):
  _, workdir, result = tickets
  # 20% of what remains per round (36% after two), 10% then 19% for the output layer.
  expected = [
    {"Dense_0/kernel": 19200, "Dense_1/kernel": 30000, "Dense_2/kernel": 1000},
    {"Dense_0/kernel": 15360, "Dense_1/kernel": 24000, "Dense_2/kernel": 900},
    {"Dense_0/kernel": 12288, "Dense_1/kernel": 19200, "Dense_2/kernel": 810},
  ]
  previous = None
  for r, kept in enumerate(expected):
    masks = _masks(workdir / f"round_{r}" / "masks.npz")
    assert {p: int(masks[p].sum()) for p in SIZES} == kept
    assert all(masks[p].all() for p in masks if p.endswith("bias"))
    assert result["rounds"][r]["kept"] == kept
    assert result["rounds"][r]["weights_remaining"] == sum(kept.values()) / sum(SIZES.values())
    if previous is not None:
      assert all(not (masks[p] & ~previous[p]).any() for p in SIZES)  # nested
    previous = masks
  # The trainer kept each round's masks fixed: the final state's masks are the file's.
  config = lottery.round_settings(
    tickets[0], workdir / "round_2" / "masks.npz", workdir / "rewind.npz"
  )
  final = experiment.load_state(config, workdir / "round_2")
  for path, m in jaxprune._tree.leaves_with_paths(jaxprune.masks_of(final.opt_state)):
    np.testing.assert_array_equal(np.asarray(m), previous[path])
  assert int(final.step) == 20


@TICKETS
def test_next_masks_prune_the_trained_weights_by_magnitude(tickets):
  config, workdir, _ = tickets
  round_1 = lottery.round_settings(
    config, workdir / "round_1" / "masks.npz", workdir / "rewind.npz"
  )
  trained = experiment.load_state(round_1, workdir / "round_1")
  masks = _masks(workdir / "round_2" / "masks.npz")
  for path, w in jaxprune._tree.leaves_with_paths(trained.params):
    if path not in SIZES:
      continue
    w = np.abs(np.asarray(w))
    assert w[masks[path]].min() >= w[~masks[path]].max()  # every kept weight beats every pruned


@TICKETS
def test_round_starts_from_rewound_weights_and_a_fresh_optimizer(tickets):
  config, workdir, _ = tickets
  rewind = _masks(workdir / "rewind.npz")
  init = experiment.build(load_config("lottery", TINY), verbose=False).create_state().params
  for path, w in jaxprune._tree.leaves_with_paths(init):
    np.testing.assert_array_equal(rewind[path], np.asarray(w))  # rewind point: initialisation
  for r in (1, 2):
    masks = _masks(workdir / f"round_{r}" / "masks.npz")
    cfg = lottery.round_settings(
      config, workdir / f"round_{r}" / "masks.npz", workdir / "rewind.npz"
    )
    state = experiment.build(cfg, verbose=False).create_state()
    assert int(state.step) == 0 and int(state.opt_state.count) == 0
    for path, w in jaxprune._tree.leaves_with_paths(state.params):
      np.testing.assert_array_equal(np.asarray(w), np.where(masks[path], rewind[path], 0.0))
    # Adam starts afresh: its counts and both moments are all 0, as optax.adam's init.
    inner = state.opt_state.inner_state
    assert len(jax.tree.leaves(inner)) >= 2 * len(SIZES)
    assert all(not np.asarray(x).any() for x in jax.tree.leaves(inner))


@TICKETS
def test_controls_have_the_right_masks_and_weights(tickets):
  _, workdir, result = tickets
  rewind = _masks(workdir / "rewind.npz")
  for r in (1, 2):
    ticket = _masks(workdir / f"round_{r}" / "masks.npz")
    reinit_cfg = json.loads(
      (workdir / "controls" / "reinit" / f"round_{r}" / "config.json").read_text()
    )
    assert reinit_cfg["pruning"]["initial_masks"] == os.fspath(workdir / f"round_{r}" / "masks.npz")
    fresh = _masks(reinit_cfg["model"]["initial_params"])
    assert all(not np.array_equal(fresh[p], rewind[p]) for p in SIZES)
    random = _masks(workdir / "controls" / "random" / f"round_{r}" / "masks.npz")
    for p in SIZES:
      assert int(random[p].sum()) == int(ticket[p].sum())
      assert not np.array_equal(random[p], ticket[p])
    for name in ("ticket", "reinit", "random"):
      entry = result["rounds"][r][name]
      assert entry["steps"] == 20 and 0.0 <= entry["test_error"] <= 1.0
      assert entry["early_stop_step"] in (5, 10, 15, 20)
  written = json.loads((workdir / "lottery.json").read_text())
  assert written["rounds"] == json.loads(json.dumps(result["rounds"]))
  assert (workdir / "lottery.png").stat().st_size > 0


def test_controls_run_only_in_their_rounds(tmp_path):
  # reinit at round 1 only, random at round 2 only (e.g. "7,12" for LeNet's 21% and 7%).
  _, result = _run(
    tmp_path, **{"train.num_steps": 10, "lottery.reinit_rounds": "1", "lottery.random_rounds": "2"}
  )
  assert [sorted(k for k in r if k in ("ticket", *lottery.CONTROLS)) for r in result["rounds"]] == [
    ["ticket"],
    ["reinit", "ticket"],
    ["random", "ticket"],
  ]
  assert sorted(p.name for p in (tmp_path / "controls").glob("*/round_*")) == ["round_1", "round_2"]
  assert not (tmp_path / "controls" / "random" / "round_1").exists()
  agg = lottery.aggregate([result])
  assert ["random" in r for r in agg] == [False, False, True]


@pytest.mark.parametrize("spec", ["0,7", "seven", ","])
def test_control_rounds_must_be_rounds_after_the_dense_one(tmp_path, spec):
  config = load_config("lottery", {**TINY, "lottery.random_rounds": spec})
  with pytest.raises(ValueError, match="random_rounds=.*e.g. --config.lottery.random_rounds=7,12"):
    lottery.run(config, tmp_path)
  assert not (tmp_path / "round_0").exists()


@pytest.mark.parametrize(
  ("changes", "match"),
  [
    ({"lottery.random_rounds": "2", "lottery.controls": "reinit"}, "'random' control is not run"),
    ({"lottery.reinit_rounds": "1,3", "lottery.controls": "reinit"}, "rounds after the last one"),
  ],
)
def test_control_rounds_that_would_be_ignored_are_errors(tmp_path, changes, match):
  config = load_config("lottery", {**TINY, **changes})
  with pytest.raises(ValueError, match=match):
    lottery.run(config, tmp_path)
  assert not (tmp_path / "round_0").exists()


@pytest.fixture
def no_training(monkeypatch):
  """Any training fails the test: a lottery config is checked before round 0 starts."""

  def trained(*args, **kwargs):
    raise AssertionError("a round trained before every setting was checked")

  monkeypatch.setattr(lottery, "train_and_evaluate", trained)


@pytest.mark.parametrize(
  ("changes", "match"),
  [
    # Settings every round sets itself: refused, not overridden.
    (
      {"pruning.sparsity": 0.5},
      r"sets config.pruning.sparsity itself; got 0.5.*--config.lottery.rate and "
      r"--config.lottery.rounds",
    ),
    ({"pruning.enabled": False}, r"sets config.pruning.enabled itself; got False"),
    (
      {"train.start_step": 3},
      r"sets config.train.start_step itself; got 3.*--config.lottery.rewind_step=k",
    ),
    ({"model.initial_params": "p.npz"}, r"sets config.model.initial_params itself"),
    ({"pruning.initial_masks": "m.npz"}, r"sets config.pruning.initial_masks itself"),
    # Settings no round reads: refused, not ignored.
    ({"pruning.criterion": "snip"}, r"does not read config.pruning.criterion.*'snip'"),
    ({"pruning.schedule.end": 5.0}, r"does not read config.pruning.schedule; got .*end=5.0"),
    (
      {"pruning.distribution": "global"},
      r"does not read config.pruning.distribution.*--config.lottery.distribution=global",
    ),
    ({"pruning.structure": "channels"}, r"does not read config.pruning.structure"),
    ({"pruning.seed": 3}, r"does not read config.pruning.seed.*--config.seed"),
    # The lottery's own settings.
    ({"lottery.distribution": "globl"}, r"Unknown config.lottery.distribution 'globl'"),
    ({"lottery.rounds": -1}, r"config.lottery.rounds=-1 .*expected an integer >= 0"),
    ({"lottery.rewind_step": -1}, r"config.lottery.rewind_step=-1 .*expected an integer >= 0"),
    (
      {"lottery.output_layer": "Dense_9/kernel"},
      r"config.lottery.output_layer='Dense_9/kernel' matches no pruned parameter",
    ),
    (
      {"lottery.rewind_step": 20},
      r"config.lottery.rewind_step=20 is not a step of round 0's 20 steps; expected 0 to 19",
    ),
  ],
)
def test_a_setting_the_lottery_would_override_or_ignore_is_refused_before_training(
  tmp_path, no_training, changes, match
):
  config = load_config("lottery", {**TINY, **changes})
  with pytest.raises(ValueError, match=match) as info:
    lottery.run(config, tmp_path)
  assert not (tmp_path / "round_0").exists()  # nothing trained or written
  assert "start_step" not in str(info.value) or "train.start_step" in changes
  if not any(k.startswith("lottery.") for k in changes):
    with pytest.raises(ValueError, match=match):  # the config check alone says the same
      lottery.check(config)


def test_the_lottery_configs_pass_the_checks():
  lottery.check(load_config("lottery"))
  lottery.check(load_config("lottery", {**TINY, "lottery.rewind_step": 19}))


@TICKETS
def test_exported_masks_start_any_run(tickets, tmp_path):
  _, workdir, _ = tickets
  path = workdir / "round_2" / "masks.npz"
  overrides = {
    **{k: v for k, v in TINY.items() if not k.startswith("lottery")},
    "pruning.initial_masks": os.fspath(path),
    "pruning.sparsity": 0.0,
  }
  config = load_config("default", overrides)
  with contextlib.redirect_stdout(io.StringIO()):
    summary = train_and_evaluate(config, tmp_path / "run")
  state = experiment.load_state(config, tmp_path / "run")
  expected = _masks(path)
  for p, m in jaxprune._tree.leaves_with_paths(jaxprune.masks_of(state.opt_state)):
    np.testing.assert_array_equal(np.asarray(m), expected[p])
  assert summary["sparsity"] == pytest.approx(1 - 32298 / 50200)
  # A file of another model is refused with the names it lacks.
  export.save_tree(tmp_path / "other.npz", {"Conv_0": {"kernel": np.ones((3, 3), bool)}})
  with pytest.raises(ValueError, match="missing .*Dense_0/kernel"):
    experiment.build(
      load_config("default", {**overrides, "pruning.initial_masks": str(tmp_path / "other.npz")})
    ).create_state()


def test_rewinding_to_step_k(tmp_path):
  k = 5
  config, result = _run(
    tmp_path / "lottery", **{"lottery.rewind_step": k, "lottery.rounds": 1, "lottery.controls": ""}
  )
  workdir = tmp_path / "lottery"
  # The rewind point is round 0's state after k steps, as a run stopped at k has it.
  round_0 = lottery.round_settings(config, workdir / "round_0" / "masks.npz", None)
  with contextlib.redirect_stdout(io.StringIO()):
    out = train_and_evaluate(round_0, tmp_path / "stopped", stop_step=k)
  assert out == {"steps": k, "stopped": True}
  at_k = experiment.load_state(round_0, tmp_path / "stopped")
  assert int(at_k.step) == k
  rewind = _masks(workdir / "rewind.npz")
  for path, w in jaxprune._tree.leaves_with_paths(at_k.params):
    np.testing.assert_array_equal(rewind[path], np.asarray(w))
  # Round 0 went on to the end as if never stopped; round 1 trains steps k to the end.
  assert json.loads((workdir / "round_0" / "summary.json").read_text())["steps"] == 20
  round_1 = lottery.round_settings(
    config, workdir / "round_1" / "masks.npz", workdir / "rewind.npz"
  )
  assert int(experiment.build(round_1, verbose=False).create_state().step) == k
  steps = [r["step"] for r in read_metrics(workdir / "round_1" / "metrics.jsonl")]
  assert steps[0] == 10 and steps[-1] == 20
  assert result["rounds"][1]["ticket"]["steps"] == 20


RESUME = {**TINY, "lottery.rounds": 1, "lottery.controls": "random", "train.num_steps": 40}


def _command(workdir):
  return [
    sys.executable,
    "-m",
    "jaxprune.train",
    "--config",
    os.fspath(REPO / "configs" / "lottery.py"),
    "--workdir",
    os.fspath(workdir),
    *cli_flags(RESUME),
  ]


def _committed(ckpts):
  return sorted(int(n) for n in os.listdir(ckpts) if n.isdigit()) if ckpts.is_dir() else []


@pytest.mark.slow(seconds=56)
def test_a_killed_lottery_run_resumes_mid_round(tmp_path, env):
  reference, killed = tmp_path / "reference", tmp_path / "killed"
  ref = subprocess.run(_command(reference), env=env, capture_output=True, text=True)
  assert ref.returncode == 0, ref.stderr[-4000:]
  assert "round  1 random" in ref.stdout

  ckpts = killed / "round_1" / "checkpoints"
  proc = subprocess.Popen(
    _command(killed),
    env=env,
    stdout=subprocess.DEVNULL,
    stderr=subprocess.PIPE,
    text=True,
    start_new_session=True,
  )
  deadline = time.monotonic() + 300
  while not (_committed(ckpts) and _committed(ckpts)[-1] >= 10):
    assert proc.poll() is None, proc.stderr.read()[-4000:]
    assert time.monotonic() < deadline, "timed out waiting for round 1 to reach step 10"
    time.sleep(0.005)
  os.killpg(proc.pid, signal.SIGKILL)
  proc.wait()
  stopped_at = _committed(ckpts)[-1]
  assert 10 <= stopped_at < 40 and not (killed / "round_1" / "summary.json").exists()

  again = subprocess.run(_command(killed), env=env, capture_output=True, text=True)
  assert again.returncode == 0, again.stderr[-4000:]
  summary = json.loads((killed / "round_1" / "summary.json").read_text())
  assert summary["resumed_from_step"] >= stopped_at

  config = load_config("lottery", RESUME)
  for name in ("round_1", "controls/random/round_1"):
    cfg = lottery.round_settings(config, killed / name / "masks.npz", killed / "rewind.npz")
    a, b = experiment.load_state(cfg, reference / name), experiment.load_state(cfg, killed / name)
    assert int(a.step) == int(b.step) == 40
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True):
      np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    for x, y in zip(
      jax.tree.leaves(jaxprune.masks_of(a.opt_state)),
      jax.tree.leaves(jaxprune.masks_of(b.opt_state)),
      strict=True,
    ):
      np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  ref_json = json.loads((reference / "lottery.json").read_text())
  killed_json = json.loads((killed / "lottery.json").read_text())
  assert killed_json["rounds"] == ref_json["rounds"]


def test_global_rounds_share_one_threshold_and_keep_the_output_rate():
  rng = np.random.default_rng(0)
  params = {
    "a": {"kernel": rng.normal(size=(40, 50)).astype(np.float32)},
    "b": {"kernel": 3 * rng.normal(size=(50, 20)).astype(np.float32)},
    "out": {"kernel": rng.normal(size=(20, 10)).astype(np.float32)},
  }
  paths = ["a/kernel", "b/kernel", "out/kernel"]
  lot = resolve(load_config("lottery", {"lottery.distribution": "global"})).lottery
  lot = dataclasses.replace(lot, output_layer="out/kernel")
  masks = jax.tree.map(lambda x: np.ones(x.shape, bool), params)
  for r in (1, 2):
    masks = lottery.next_masks(params, masks, r, lot, paths)
    params = jax.tree.map(lambda w, m: np.where(m, w, 0.0), params, masks)
    kept = {p: int(m.sum()) for p, m in jaxprune._tree.leaves_with_paths(masks)}
    assert kept["a/kernel"] + kept["b/kernel"] == 3000 - round((1 - 0.8**r) * 3000)
    assert kept["out/kernel"] == 200 - round((1 - 0.9**r) * 200)
    a, b = np.abs(params["a"]["kernel"]), np.abs(params["b"]["kernel"])
    kept_min = min(a[masks["a"]["kernel"]].min(), b[masks["b"]["kernel"]].min())
    assert kept_min >= max(a[~masks["a"]["kernel"]].max(), b[~masks["b"]["kernel"]].max())
  assert kept["b/kernel"] / 1000 > kept["a/kernel"] / 2000  # larger weights keep more
  # Magnitude on weights whose pruned entries are not zero would revive them: refused.
  with pytest.raises(RuntimeError, match="earlier round pruned"):
    lottery.next_masks(jax.tree.map(lambda w: w + 10.0, params), masks, 3, lot, paths)
