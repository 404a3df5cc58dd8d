"""The whole training loop for a few steps on the bundled digits: files, numbers, resume."""

import dataclasses
import json
import shutil

import jax
import numpy as np
import optax
import pytest
from trainer_helpers import small

import jaxprune
import jaxprune.data as jdata
from jaxprune.data import preparation
from jaxprune.train import experiment, export, input_pipeline, optim
from jaxprune.train.config import load_config
from jaxprune.train.experiment import load_state
from jaxprune.train.loop import train_and_evaluate
from jaxprune.train.metrics_log import read_metrics
from jaxprune.train.settings import resolve

PNG = b"\x89PNG\r\n\x1a\n"


def _leaves_equal(a, b) -> bool:
  la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
  same_tree = jax.tree.structure(a) == jax.tree.structure(b)
  return same_tree and all(np.array_equal(x, y) for x, y in zip(la, lb, strict=True))


@pytest.mark.xdist_group("reference")
def test_the_loop_writes_metrics_summary_plots_and_prints_the_table(reference):
  workdir, summary = reference.workdir, reference.summary
  records = read_metrics(workdir / "metrics.jsonl")
  steps = [r["step"] for r in records]
  assert steps == sorted(set(steps)) and steps[-1] == 60
  # Validation every epoch (20 steps of 64 from the 1,293 kept examples), test at the end.
  assert [r["step"] for r in records if "validation_accuracy" in r] == [20, 40, 60]
  assert [r["step"] for r in records if "test_accuracy" in r] == [60]
  assert [r["step"] for r in records if "train_loss" in r] == [10, 20, 30, 40, 50, 60]
  assert records[-1]["sparsity"] == pytest.approx(0.9)

  on_disk = json.loads((workdir / "summary.json").read_text())
  assert on_disk == json.loads(json.dumps(summary))
  assert summary["dataset"] == "digits" and summary["steps"] == 60
  assert summary["test_error"] == pytest.approx(1 - summary["test_accuracy"])
  assert summary["test_accuracy"] == records[-1]["test_accuracy"]
  assert summary["validation_accuracy"] == records[-1]["validation_accuracy"]
  assert summary["validation_error"] == pytest.approx(1 - summary["validation_accuracy"])
  counts = (summary["train_examples"], summary["validation_examples"], summary["test_examples"])
  assert counts == (1293, 144, 360)
  # Both accuracies are those of the final state on the held-out and the test examples.
  state = load_state(reference.config, workdir)
  splits = input_pipeline.load_splits(resolve(reference.config).data)
  for name, dataset in (("validation", splits.validation), ("test", splits.test)):
    batch = dataset[np.arange(dataset.num_examples)]
    logits = state.apply_fn({"params": state.params}, batch["image"], train=False)
    correct = int((np.argmax(logits, -1) == batch["label"]).sum())
    assert summary[f"{name}_accuracy"] == pytest.approx(correct / dataset.num_examples, abs=1e-9)
  assert summary["sparsity"] == pytest.approx(0.9)
  kernels = {k: v for k, v in summary["layers"].items() if len(v["shape"]) > 1}
  assert all(v["sparsity"] == pytest.approx(0.9, abs=1e-3) for v in kernels.values())
  assert summary["params_total"] == 50_610
  assert summary["compression"] == pytest.approx(50_610 / summary["params_remaining"])
  assert summary["flops_dense"] == 50_200 and summary["speedup"] == pytest.approx(10.0, rel=1e-3)
  assert summary["steps_per_second"] > 0 and 0 <= summary["input_wait_fraction"] < 1
  # Three evaluations ran inside the loop; their time is reported and not counted as training.
  assert 0 < summary["eval_time_s"] < summary["train_time_s"]
  assert 59 / summary["steps_per_second"] < summary["train_time_s"] - summary["eval_time_s"]
  for name in ("curves.png", "layer_sparsity.png"):
    assert (workdir / name).read_bytes()[:8] == PNG
  assert json.loads((workdir / "config.json").read_text())["data"]["name"] == "digits"
  assert "test error" in reference.stdout and "Dense_0/kernel" in reference.stdout
  assert f"validation error {summary['validation_error']:.2%}" in reference.stdout
  assert "loss=" in reference.stderr and "sparsity=" in reference.stderr  # the progress bar


@pytest.mark.xdist_group("reference")
def test_restarting_a_finished_run_retrains_nothing(reference, tmp_path):
  workdir = tmp_path / "copy"
  shutil.copytree(reference.workdir, workdir)
  again = train_and_evaluate(reference.config, workdir, verbose=False)
  assert again["resumed_from_step"] == 60 and again["steps"] == 60
  assert again["test_accuracy"] == reference.summary["test_accuracy"]
  steps = [r["step"] for r in read_metrics(workdir / "metrics.jsonl")]
  assert steps == [r["step"] for r in read_metrics(reference.workdir / "metrics.jsonl")]


@pytest.mark.xdist_group("reference")
def test_resume_after_a_killed_save_is_bit_identical(reference, tmp_path):
  config, ref_dir = reference.config, reference.workdir
  assert sorted(p.name for p in (ref_dir / "checkpoints").iterdir()) == ["20", "40", "60"]

  # The run we resume was killed while saving step 40: step 20 is its last committed
  # checkpoint, step 40 exists only half-written under orbax's temporary name, and its
  # metrics log goes beyond step 20 and ends in a torn line.
  resumed = tmp_path / "resumed"
  (resumed / "checkpoints").mkdir(parents=True)
  shutil.copytree(ref_dir / "checkpoints" / "20", resumed / "checkpoints" / "20")
  partial = resumed / "checkpoints" / "40.orbax-checkpoint-tmp-1700000000000000"
  shutil.copytree(ref_dir / "checkpoints" / "40", partial)
  for f in sorted(p for p in partial.rglob("*") if p.is_file())[1::2]:
    f.unlink()
  lines = (ref_dir / "metrics.jsonl").read_text().splitlines()[:4]
  (resumed / "metrics.jsonl").write_text("\n".join(lines) + '\n{"step": 50, "tra')

  summary = train_and_evaluate(config, resumed, verbose=False)
  assert summary["resumed_from_step"] == 20
  assert not partial.exists()
  a, b = load_state(config, ref_dir), load_state(config, resumed)
  assert int(a.step) == int(b.step) == 60
  assert _leaves_equal(a.params, b.params)
  assert _leaves_equal(jaxprune.masks_of(a.opt_state), jaxprune.masks_of(b.opt_state))
  assert _leaves_equal(a.opt_state, b.opt_state)
  assert summary["test_accuracy"] == reference.summary["test_accuracy"]
  ref_steps = [r["step"] for r in read_metrics(ref_dir / "metrics.jsonl")]
  assert [r["step"] for r in read_metrics(resumed / "metrics.jsonl")] == ref_steps


@pytest.mark.xdist_group("reference")
def test_frozen_steps_give_the_run_of_the_cond_alone(reference, tmp_path):
  # The reference run uses the step compiled without the mask-update branch wherever the
  # schedule keeps the masks; this one runs the branch (lax.cond) at every step.
  config = reference.config.copy_and_resolve_references()
  with config.unlocked():
    config.pruning.frozen_step = False
    config.report.plots = config.report.progress = False
  train_and_evaluate(config, tmp_path / "cond", verbose=False)
  a, b = load_state(reference.config, reference.workdir), load_state(config, tmp_path / "cond")
  assert _leaves_equal(a.params, b.params)
  assert _leaves_equal(a.opt_state, b.opt_state)


def test_the_loop_runs_the_frozen_step_exactly_where_the_masks_stay(tmp_path, monkeypatch):
  # Count the calls of each step the loop builds (both are compiled before the loop).
  calls = {False: 0, True: 0}
  build = input_pipeline.TrainFeed.jit_step

  def counted(self, step_fn, *args, **kwargs):
    run, frozen = build(self, step_fn, *args, **kwargs), step_fn.keywords.get("masks_frozen")

    def step(state, batch):
      calls[bool(frozen)] += 1
      return run(state, batch)

    return step

  monkeypatch.setattr(input_pipeline.TrainFeed, "jit_step", counted)
  config = load_config("default", small(train__num_steps=12, checkpoint__enabled=False))
  train_and_evaluate(config, tmp_path / "frozen", verbose=False)
  updates = int(optim.mask_update_steps(resolve(config).pruning, 20, 12).sum())
  assert 0 < updates < 12 and calls == {False: updates, True: 12 - updates}
  calls.update({False: 0, True: 0})
  with config.unlocked():
    config.pruning.frozen_step = False
  train_and_evaluate(config, tmp_path / "cond", verbose=False)
  assert calls == {False: 12, True: 0}


def test_mask_update_steps_follow_the_schedule():
  config = load_config("default", small())
  steps = optim.mask_update_steps(resolve(config).pruning, steps_per_epoch=20, total_steps=60)
  assert np.flatnonzero(steps).tolist() == list(range(4, 41, 4))


def test_mnist_without_files_falls_back_to_digits_with_a_notice(tmp_path, monkeypatch, capsys):
  # As on a machine without ../shared/data/mnist.
  monkeypatch.setattr(input_pipeline, "find_source_dir", lambda name, data_dir=None: None)
  monkeypatch.setattr(preparation, "find_source_dir", lambda name, data_dir=None: None)
  data = resolve(load_config("default", {"data.data_dir": str(tmp_path / "tfds")})).data
  splits = input_pipeline.load_splits(data)
  assert splits.name == "digits" and "NOTICE" in splits.notice
  assert "python -m jaxprune.data prepare mnist" in capsys.readouterr().err
  data = dataclasses.replace(data, fallback="")
  with pytest.raises(jdata.DatasetNotPreparedError, match="prepare mnist"):
    input_pipeline.load_splits(data)
  assert not (tmp_path / "tfds").exists()  # nothing was downloaded or written


def test_an_unknown_dataset_name_is_an_error_not_a_run_on_the_fallback(tmp_path, monkeypatch):
  monkeypatch.setattr(input_pipeline, "find_source_dir", lambda name, data_dir=None: None)
  monkeypatch.setattr(preparation, "find_source_dir", lambda name, data_dir=None: None)
  overrides = small(data__name="mnsit", data__data_dir=str(tmp_path / "tfds"), train__num_steps=2)
  config = load_config("default", overrides)
  assert config.data.fallback == "digits"  # the fallback is on, and not used for a typo
  with pytest.raises(ValueError, match="config.data.name='mnsit' is not a dataset") as info:
    train_and_evaluate(config, tmp_path / "mnsit", verbose=False)
  message = str(info.value)
  assert "'fashion_mnist', " in message and "'mnist'" in message  # the known names
  assert "Did you mean 'mnist'? Use e.g. --config.data.name=mnist" in message
  assert not (tmp_path / "mnsit").exists()  # no workdir named after the dataset asked for
  assert not (tmp_path / "tfds").exists()


def test_only_known_or_prepared_dataset_names_pass(tmp_path):
  data = resolve(load_config("default", {"data.data_dir": str(tmp_path)})).data

  def check(name, download=False):
    input_pipeline.check_name(dataclasses.replace(data, name=name, download=download))

  for name in ("mnist", "fashion_mnist", "cifar10", "digits"):
    check(name)  # known, prepared or not
  with pytest.raises(ValueError, match="'svhn_cropped' is not a dataset"):
    check("svhn_cropped")  # a TFDS name neither prepared nor to be downloaded
  check("svhn_cropped", download=True)  # TFDS can build it
  with pytest.raises(ValueError, match="Did you mean 'cifar10'"):
    check("cifar-10", download=True)  # no TFDS builder of that name
  folder = tmp_path / "svhn_cropped" / "3.1.0"  # a prepared TFDS dataset jaxprune reads
  folder.mkdir(parents=True)
  (folder / "dataset_info.json").write_text('{"fileFormat": "array_record", "splits": []}')
  check("svhn_cropped")


def test_the_fallback_run_uses_the_digits_settings_and_prints_the_notice_once(
  tmp_path, monkeypatch, capsys
):
  monkeypatch.setattr(input_pipeline, "find_source_dir", lambda name, data_dir=None: None)
  monkeypatch.setattr(preparation, "find_source_dir", lambda name, data_dir=None: None)
  # The user's own choices (num_steps here) are kept; what the config inherited from
  # configs/default.py takes the value configs/digits.py gives it.
  overrides = {
    "data.data_dir": str(tmp_path / "tfds"),
    "train.num_steps": 12,
    "checkpoint.enabled": False,
    "report.plots": False,
    "report.progress": False,
  }
  config = load_config("default", overrides)
  summary = train_and_evaluate(config, tmp_path / "run")
  out, err = capsys.readouterr()
  assert (out + err).count("NOTICE: dataset 'mnist'") == 1
  assert summary["dataset"] == "digits" and summary["steps"] == 12
  assert summary["notice"].startswith("NOTICE: dataset 'mnist'")
  digits, default = load_config("digits"), load_config("default")
  changed = {
    "train.num_epochs": 30.0,
    "train.eval_every_epochs": 5.0,
    "train.log_every_steps": 10,
    "pruning.schedule.begin": 2.0,
    "pruning.schedule.end": 20.0,
    "pruning.schedule.every": 1.0,
    "checkpoint.every_steps": 100,
  }
  assert f"train.num_epochs={digits.train.num_epochs}" in summary["notice"]
  used = json.loads((tmp_path / "run" / "config.json").read_text())
  for dotted, value in changed.items():
    section, *rest = dotted.split(".")
    node = used[section]
    for key in rest:
      node = node[key]
    assert node == value, dotted
  assert used["data"]["name"] == "digits" and used["train"]["num_steps"] == 12
  assert used["optimizer"] == json.loads(default.optimizer.to_json())  # JSON: tuples are lists
  # Without the fallback settings the run keeps the config's own (MNIST) settings.
  with config.unlocked():
    config.data.fallback_config = ""
  exp = experiment.build(config, verbose=False)
  assert exp.settings.data.name == "digits"
  assert exp.settings.pruning.schedule == resolve(default).pruning.schedule


def test_device_resident_and_host_batches_visit_the_same_examples():
  train = jdata.load("digits", "train")
  kwargs = dict(batch_sharding=None, replicated=None, position={"epoch": 1, "index": 64})
  on_device = input_pipeline.TrainFeed(train, 32, 7, on_device=True, **kwargs)
  host = input_pipeline.TrainFeed(train, 32, 7, on_device=False, **kwargs)
  try:
    for _ in range(3):
      index = next(on_device)["index"]
      gathered = input_pipeline.gather(on_device.data, index, train.spec)
      batch = next(host)
      assert batch["image"].dtype == np.uint8  # normalised inside the step, like `gather`
      normalised = input_pipeline.normalise(batch, train.spec)
      np.testing.assert_array_equal(gathered["image"], normalised["image"])
      np.testing.assert_array_equal(gathered["label"], batch["label"])
      np.testing.assert_allclose(normalised["image"], train[index]["image"], rtol=1e-6, atol=1e-6)
    assert on_device.get_state() == host.get_state() == {"epoch": 1, "index": 160}
    for feed, got in ((on_device, {"index": index}), (host, batch)):
      shapes = {k: (v.shape, v.dtype) for k, v in feed.batch_shapes().items()}
      assert shapes == {
        k: (v.shape, jax.dtypes.canonicalize_dtype(v.dtype)) for k, v in got.items()
      }
  finally:
    host.close()


@pytest.mark.parametrize("on_device", [False, True])
def test_the_loop_compiles_both_steps_ahead_and_calls_only_those(tmp_path, monkeypatch, on_device):
  # 10 steps, masks updated at steps 4 and 8: the mask-updating step and the frozen one are
  # both compiled before the loop (from abstract states), and the loop calls nothing else.
  built, calls = [], {False: 0, True: 0}
  build = input_pipeline.TrainFeed.jit_step

  def recording(self, step_fn, shardings, out_shardings, state=None):
    frozen = bool(step_fn.keywords.get("masks_frozen"))
    built.append((frozen, state is not None, self.on_device))
    run = build(self, step_fn, shardings, out_shardings, state)
    if not self.on_device:
      assert isinstance(run, jax.stages.Compiled)  # compiled, not merely jitted

    def step(state, batch):
      calls[frozen] += 1
      return run(state, batch)

    return step

  monkeypatch.setattr(input_pipeline.TrainFeed, "jit_step", recording)
  config = load_config(
    "default", small(train__num_steps=10, checkpoint__enabled=False, data__on_device=on_device)
  )
  summary = train_and_evaluate(config, tmp_path, verbose=False)
  assert built == [(False, True, on_device), (True, True, on_device)]
  updates = np.flatnonzero(optim.mask_update_steps(resolve(config).pruning, 20, 10)).tolist()
  assert updates == [4, 8] and calls == {False: 2, True: 8}
  # The polynomial schedule (begin 4, end 40, power 3) at step 8, per kernel, exactly.
  target = 0.9 * (1 - (1 - (8 - 4) / (40 - 4)) ** 3)
  sizes = [64 * 300, 300 * 100, 100 * 10]
  pruned = [n - int(jaxprune.masks.num_to_keep(n, target)) for n in sizes]
  assert summary["steps"] == 10
  assert summary["sparsity"] == pytest.approx(sum(pruned) / sum(sizes), abs=1e-12)


def test_the_wanda_config_prunes_every_output_neuron_alike_in_the_loop(tmp_path):
  # One-shot Wanda at step 8 (the trainer captures the Dense inputs for that step only).
  config = load_config("wanda", small(train__num_steps=12, pruning__schedule__begin=8.0))
  train_and_evaluate(config, tmp_path, verbose=False)
  masks = jaxprune.masks_of(load_state(config, tmp_path).opt_state)
  for name in ("Dense_0", "Dense_1", "Dense_2"):
    mask = np.asarray(masks[name]["kernel"])
    kept = int(jaxprune.masks.num_to_keep(mask.shape[0], 0.9))
    assert (mask.sum(axis=0) == kept).all(), name  # the same count in every output neuron


def _masks_are_the_threshold_at_init(config, workdir) -> tuple[int, int]:
  """Asserts that the run's masks are exactly its criterion's threshold on the initial
  params (a run whose only mask update is at step 0) and that its params are 0.0 wherever
  they prune; returns the number of masked leaves checked and of entries pruned."""
  init = experiment.build(config, verbose=False).create_state().params
  crit = jaxprune.criteria.get(config.pruning.criterion)
  state = load_state(config, workdir)
  masks, scores = jaxprune.masks_of(state.opt_state), crit.fn(init)
  checked, pruned = 0, 0
  for mask, score, param in zip(
    jax.tree.leaves(masks),
    jax.tree.leaves(scores, is_leaf=lambda x: x is None),
    jax.tree.leaves(state.params),
    strict=True,
  ):
    if score is not None:
      np.testing.assert_array_equal(mask, np.asarray(score) >= crit.threshold)
      assert (np.asarray(param)[~np.asarray(mask)] == 0.0).all()
      checked, pruned = checked + 1, pruned + int((~np.asarray(mask)).sum())
  return checked, pruned


@pytest.mark.parametrize("layer, penalty", [("variational", "kl"), ("l0", "l0")])
def test_learned_sparsity_trains_with_its_penalty_in_the_loop(tmp_path, layer, penalty):
  overrides = small(
    train__num_steps=12,
    train__penalty=penalty,
    pruning__sparsity=0.0,
    pruning__schedule__begin=0.0,  # one mask update, at step 0 (the next would be step 100)
    pruning__schedule__every=100.0,
    pruning__schedule__end=0.0,
  )
  config = load_config("variational_dropout", overrides)
  with config.unlocked():
    config.model.kwargs.layer = layer
    config.pruning.criterion = {"kl": "log_alpha", "l0": "l0_gate"}[penalty]
    config.pruning.dense = {"kl": ".*log_sigma2", "l0": ".*gate_log_alpha"}[penalty]
  summary = train_and_evaluate(config, tmp_path, verbose=False)
  kernels = [name for name, v in summary["layers"].items() if len(v["shape"]) > 1]
  assert len(kernels) == 3 and summary["flops_dense"] == 50_200  # the bayes layers counted
  assert np.isfinite(summary["test_loss"]) and summary["steps"] == 12
  checked, pruned = _masks_are_the_threshold_at_init(config, tmp_path)
  assert checked == 3  # the three kernels
  if penalty == "kl":  # weights this small at initialisation already have log alpha >= 3
    assert pruned > 0


def test_variational_lenet5_trains_with_masks_on_its_four_kernels(mock_tfds, tmp_path):
  # The sparse VD LeNet-5-Caffe row of the reproduction table: conv and dense kernels carry
  # log sigma^2 and masks that follow log alpha; the log sigma^2 stay dense.
  overrides = {
    "model.name": "lenet5",
    "data.data_dir": mock_tfds("mnist", 48),
    "data.fallback": "",
    "train.num_steps": 3,
    "train.batch_size": 8,
    "train.eval_batch_size": 16,
    "train.eval_every_epochs": 1000.0,
    "pruning.frozen_step": False,  # one compiled step
    "report.plots": False,
    "report.progress": False,
    "report.tensorboard": False,
  }
  config = load_config("variational_dropout", overrides)
  summary = train_and_evaluate(config, tmp_path / "run", verbose=False)
  assert summary["dataset"] == "mnist" and summary["steps"] == 3
  assert summary["flops_dense"] == 2_293_000 and np.isfinite(summary["test_loss"])
  kernels = sorted(n for n, v in summary["layers"].items() if len(v["shape"]) > 1)
  assert kernels == ["Conv_0/kernel", "Conv_1/kernel", "Dense_0/kernel", "Dense_1/kernel"]
  checked, pruned = _masks_are_the_threshold_at_init(config, tmp_path / "run")
  assert checked == 4  # the four kernels
  masks = jaxprune.masks_of(load_state(config, tmp_path / "run").opt_state)
  assert bool(np.all(masks["Conv_1"]["log_sigma2"]))
  kept = np.asarray(masks["Conv_1"]["kernel"])
  assert kept.shape == (5, 5, 20, 50) and 0 < kept.sum() < kept.size and pruned > 0


def test_an_evaluation_stops_a_run_whose_pruned_weights_are_not_zero(tmp_path, monkeypatch):
  # A transformation after masked (here one halving its updates) leaves pruned weights at
  # half their value; the first evaluation after pruning must stop the run and say why.
  make = optim.make_optimizer

  def rescaled(*args, **kwargs):
    tx, lr = make(*args, **kwargs)
    return optax.chain(tx, optax.scale(0.5)), lr

  monkeypatch.setattr(optim, "make_optimizer", rescaled)
  config = load_config(
    "default", small(train__num_steps=12, train__eval_every_epochs=0.5, checkpoint__enabled=False)
  )
  with pytest.raises(jaxprune.SparsityError, match="Dense_0/kernel(.|\n)*masked last"):
    train_and_evaluate(config, tmp_path, verbose=False)
  monkeypatch.setattr(optim, "make_optimizer", make)
  summary = train_and_evaluate(config, tmp_path / "plain", verbose=False)
  assert summary["sparsity"] > 0.0


def test_the_trainer_prunes_further_from_initial_masks_and_never_below_them(tmp_path):
  # A random 50% ticket, pruned on to 90% by the polynomial schedule (updates at 0, 2, ..., 8).
  overrides = small(
    train__num_steps=12,
    train__log_every_steps=1,
    pruning__schedule__begin=0.0,
    pruning__schedule__end=8.0,
    pruning__schedule__every=2.0,
  )
  params = experiment.build(load_config("default", overrides)).create_state().params
  start = jaxprune.dynamic.random_masks(params, 0.5, key=jax.random.key(0), distribution="uniform")
  export.save_tree(tmp_path / "masks.npz", start)
  config = load_config(
    "default", {**overrides, "pruning.initial_masks": str(tmp_path / "masks.npz")}
  )
  summary = train_and_evaluate(config, tmp_path / "run", verbose=False)
  sparsity = [r["sparsity"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl")]
  assert len(sparsity) == 12
  assert sparsity[0] == pytest.approx(0.5)  # the schedule's 0% at step 0 keeps the ticket
  assert all(b >= a for a, b in zip(sparsity, sparsity[1:], strict=False))
  assert sparsity[-1] == summary["sparsity"] == pytest.approx(0.9, abs=1e-4)
  final = jaxprune.masks_of(load_state(config, tmp_path / "run").opt_state)
  for new, old in zip(jax.tree.leaves(final), jax.tree.leaves(start), strict=True):
    assert not np.any(np.asarray(new) & ~np.asarray(old))  # every kept entry was kept by m
