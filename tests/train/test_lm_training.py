"""The trainer on text: a tiny decoder LM on a tiny text, LM metrics, resume, masked training."""

import json
import math
import shutil

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import jaxprune
import jaxprune.data as jdata
from jaxprune.train import (
  experiment,
  lm_metrics,
  sharding,
  tensorboard_log,
  text_settings,
  text_task,
)
from jaxprune.train.config import load_config
from jaxprune.train.experiment import load_state
from jaxprune.train.loop import train_and_evaluate
from jaxprune.train.metrics_log import read_metrics

SEQ_LEN = 16


def _text() -> bytes:
  lines = [
    f"{i}: Shall I compare thee to a summer's day? Thou art more lovely.\n" for i in range(60)
  ]
  return "".join(lines).encode()


@pytest.fixture(scope="module")
def text_path(tmp_path_factory):
  path = tmp_path_factory.mktemp("text") / "sonnet.txt"
  path.write_bytes(_text())
  return path


def _config(text_path, **changes):
  """configs/shakespeare_lm.py on the test's text with a one-block LM, 12 steps."""
  overrides = {
    "data.name": f"text:{text_path}",
    "data.seq_len": SEQ_LEN,
    "data.validation_fraction": 0.1,
    "data.test_fraction": 0.1,
    "model.kwargs.num_layers": 1,
    "model.kwargs.width": 32,
    "model.kwargs.num_heads": 2,
    "model.kwargs.mlp_width": 64,
    "model.kwargs.max_len": SEQ_LEN,
    "optimizer.warmup_epochs": 0.0,
    "train.batch_size": 8,
    "train.num_steps": 12,
    "train.eval_batch_size": 8,
    "train.eval_every_epochs": 0.25,  # 6 steps (24 steps of 8 windows per epoch)
    "train.log_every_steps": 3,
    "checkpoint.every_steps": 4,
    "checkpoint.keep": 5,
    "report.plots": False,
    "report.progress": False,
  }
  return load_config(
    "shakespeare_lm", {**overrides, **{k.replace("__", "."): v for k, v in changes.items()}}
  )


@pytest.fixture(scope="module")
def dense_run(text_path, tmp_path_factory):
  config = _config(text_path)
  workdir = tmp_path_factory.mktemp("lm")
  return config, workdir, train_and_evaluate(config, workdir, verbose=False)


def _hand_eval(params, model, dataset, batch_size):
  """Nats per byte and bytes scored, from `text_eval_batches` and `cross_entropy_sum`."""
  apply = jax.jit(lambda p, x: model.apply({"params": p}, x, train=False))
  total, count = 0.0, 0.0
  for batch in jdata.text_eval_batches(dataset, batch_size, SEQ_LEN):
    logits = apply(params, batch["inputs"])
    t, c = lm_metrics.cross_entropy_sum(logits, jnp.asarray(batch["targets"]), batch["mask"])
    total, count = total + float(t), count + float(c)
  return total / count, count


def test_a_tiny_lm_trains_and_reports_nats_bits_per_byte_and_perplexity(dense_run, text_path):
  config, workdir, summary = dense_run
  assert summary["dataset"] == "text" and summary["model"] == "decoder_lm"
  assert summary["steps"] == 12 and summary["sparsity"] == 0.0
  for split in ("validation", "test"):
    nats = summary[f"{split}_loss"]
    assert summary[f"{split}_nats_per_byte"] == nats
    assert summary[f"{split}_bits_per_byte"] == pytest.approx(nats / math.log(2), rel=1e-12)
    assert summary[f"{split}_perplexity"] == pytest.approx(math.exp(nats), rel=1e-12)
    # Every byte of the split but the first is scored once.
    dataset = jdata.load_text(
      "text", split, path=text_path, validation_fraction=0.1, test_fraction=0.1
    )
    assert summary[f"{split}_tokens"] == dataset.num_tokens - 1
  # 12 steps of 8 windows learn something: below a uniform guess over bytes (8 bits).
  assert summary["validation_bits_per_byte"] < 7.0
  on_disk = json.loads((workdir / "summary.json").read_text())
  assert on_disk["test_perplexity"] == summary["test_perplexity"]
  # The metrics log has the LM metrics at every validation and the test metrics at the end.
  records = read_metrics(workdir / "metrics.jsonl")
  assert [r["step"] for r in records if "validation_bits_per_byte" in r] == [6, 12]
  assert [r["step"] for r in records if "test_perplexity" in r] == [12]
  last = records[-1]
  assert last["validation_bits_per_byte"] == summary["validation_bits_per_byte"]
  assert last["test_nats_per_byte"] == last["test_loss"] == summary["test_loss"]
  # TensorBoard has them too.
  events = tensorboard_log.read_events(workdir / "tensorboard")
  tags = {e["tag"] for e in events if "value" in e}
  assert {"validation/bits_per_byte", "test/perplexity", "train/loss"} <= tags
  assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["12", "4", "8"]


def test_the_evaluation_scores_every_byte_once_whatever_the_batch_size(dense_run, text_path):
  config, workdir, summary = dense_run
  state = load_state(config, workdir)
  exp = experiment.build(config, verbose=False)
  for split in ("validation", "test"):
    dataset = getattr(exp.splits, split).dataset
    # Batches of 3 windows pad differently from the trainer's 8: same nats, same count.
    nats, count = _hand_eval(state.params, exp.model, dataset, batch_size=3)
    assert count == dataset.num_tokens - 1 == summary[f"{split}_tokens"]
    assert summary[f"{split}_loss"] == pytest.approx(nats, rel=1e-5)


def test_the_flops_of_a_token_model_count_its_linears_per_position(dense_run):
  _, _, summary = dense_run
  # Every Dense kernel [in, out] is applied at each of the SEQ_LEN positions of an example.
  kernels = [v["size"] for k, v in summary["layers"].items() if k.endswith("/kernel")]
  assert summary["flops_dense"] == SEQ_LEN * sum(kernels)


def test_a_resumed_lm_run_is_bit_identical(dense_run, tmp_path):
  config, workdir, summary = dense_run
  resumed = tmp_path / "resumed"
  (resumed / "checkpoints").mkdir(parents=True)
  shutil.copytree(workdir / "checkpoints" / "4", resumed / "checkpoints" / "4")
  again = train_and_evaluate(config, resumed, verbose=False)
  assert again["resumed_from_step"] == 4 and again["steps"] == 12
  a, b = load_state(config, workdir), load_state(config, resumed)
  assert jax.tree.all(jax.tree.map(np.array_equal, a.params, b.params))
  assert jax.tree.all(jax.tree.map(np.array_equal, a.opt_state, b.opt_state))
  assert again["test_bits_per_byte"] == summary["test_bits_per_byte"]


def test_device_and_host_text_feeds_give_the_same_windows(text_path):
  train = text_task.TextSplit(
    jdata.load_text("text", "train", path=text_path, validation_fraction=0.1, test_fraction=0.1),
    SEQ_LEN,
  )
  mesh = sharding.make_mesh()
  feeds = [
    text_task.TextFeed(
      train,
      4,
      seed=3,
      batch_sharding=sharding.batch_sharding(mesh),
      replicated=sharding.replicated(mesh),
      on_device=on_device,
      position={"step": 5},
    )
    for on_device in (True, False)
  ]
  expected = jdata.TextBatches(train.dataset, 4, SEQ_LEN, seed=3).batch_at(5)
  on_device = next(feeds[0])
  batch = text_task.windows(feeds[0].data, jnp.asarray(on_device["offset"]), SEQ_LEN)
  host = next(feeds[1])
  for b in (batch, host):
    np.testing.assert_array_equal(b["image"], expected["inputs"])
    np.testing.assert_array_equal(b["label"], expected["targets"])
  assert feeds[0].get_state() == feeds[1].get_state() == {"step": 6}


def _pruned_kernels(summary):
  return {k: v for k, v in summary["layers"].items() if len(v["shape"]) > 1}


def test_gradual_magnitude_pruning_of_the_lm_reaches_its_target(text_path, tmp_path):
  config = _config(
    text_path,
    pruning__enabled=True,
    pruning__sparsity=0.75,
    pruning__schedule__unit="steps",
    pruning__schedule__begin=2.0,
    pruning__schedule__end=8.0,
    pruning__schedule__every=2.0,
  )
  summary = train_and_evaluate(config, tmp_path, verbose=False)
  assert summary["sparsity"] == pytest.approx(0.75, abs=1e-4)
  for name, row in _pruned_kernels(summary).items():
    assert row["sparsity"] == pytest.approx(0.75, abs=1e-3), name
  sparsity = [r["sparsity"] for r in read_metrics(tmp_path / "metrics.jsonl") if "sparsity" in r]
  assert sparsity[0] < 0.75 and sparsity[-1] == pytest.approx(0.75, abs=1e-4)
  assert math.isfinite(summary["test_bits_per_byte"])


def test_rigl_keeps_the_lm_sparse_at_its_target(text_path, tmp_path):
  config = _config(
    text_path,
    pruning__enabled=True,
    pruning__sparsity=0.8,
    pruning__criterion="rigl",
    pruning__distribution="erk",
    pruning__schedule__kind="periodic",
    pruning__schedule__unit="steps",
    pruning__schedule__begin=0.0,
    pruning__schedule__every=3.0,
    pruning__schedule__end=9.0,
  )
  with config.unlocked():
    config.pruning.drop_fraction = 0.3
  summary = train_and_evaluate(config, tmp_path, verbose=False)
  sparsity = [r["sparsity"] for r in read_metrics(tmp_path / "metrics.jsonl") if "sparsity" in r]
  assert len(sparsity) == 4 and all(s == pytest.approx(0.8, abs=2e-3) for s in sparsity)
  assert summary["sparsity"] == pytest.approx(0.8, abs=2e-3)
  state = load_state(config, tmp_path)
  jaxprune.check_sparse(state.params, state.opt_state)
  # Connections moved: the final masks differ from those at step 0.
  initial = experiment.build(config, verbose=False).create_state()
  moved = jax.tree.map(
    lambda a, b: bool(np.any(np.asarray(a) != np.asarray(b))),
    jaxprune.masks_of(initial.opt_state),
    jaxprune.masks_of(state.opt_state),
  )
  assert any(jax.tree.leaves(moved))


@pytest.mark.parametrize("decay", [0.0, 2e-4])  # STE, SR-STE
def test_ste_2_4_trains_the_lm_with_every_kernel_2_of_4(text_path, tmp_path, decay):
  config = _config(
    text_path,
    train__num_steps=6,
    pruning__enabled=True,
    pruning__sparsity=0.5,
    pruning__structure="2:4",
    pruning__dense="embed_tokens/.*",
    pruning__schedule__kind="periodic",
    pruning__schedule__unit="steps",
    pruning__schedule__begin=0.0,
    pruning__schedule__every=1.0,
    pruning__schedule__end=0.0,
  )
  with config.unlocked():
    config.pruning.method = "ste"
    config.pruning.decay = decay
  summary = train_and_evaluate(config, tmp_path, verbose=False)
  state = load_state(config, tmp_path)
  kernels = {
    "/".join(str(getattr(k, "key", k)) for k in path): np.asarray(leaf)
    for path, leaf in jax.tree_util.tree_leaves_with_path(state.params)
    if leaf.ndim > 1
  }
  assert len(kernels) == 9  # 7 in the block, the head, the (dense) embedding
  for name, kernel in kernels.items():
    groups = (kernel.reshape(-1, 4, kernel.shape[-1]) != 0).sum(axis=1)
    if name.startswith("embed_tokens"):
      assert (groups == 4).all()
    else:  # 2 of every 4 consecutive inputs kept, for every output
      assert (groups == 2).all(), name
  assert summary["sparsity"] == pytest.approx(0.5)
  assert math.isfinite(summary["validation_bits_per_byte"])


def _data(**fields):
  base = dict(
    name="shakespeare",
    seq_len=64,
    validation_fraction=0.0,
    test_fraction=0.0,
    data_dir="",
    source_dir="",
    download=False,
    fallback="",
    augment="",
    image_size=0,
    num_workers=0,
  )
  return ml_collections.ConfigDict({**base, **fields})


@pytest.mark.parametrize(
  "fields, message",
  [
    (dict(seq_len=0), "positive int seq_len"),
    (dict(validation_fraction=0.1), "holds out whole plays"),
    (dict(fallback="digits"), "fallback='digits' would be ignored"),
    (dict(augment="cifar"), "augment='cifar' would be ignored"),
    (dict(name="text"), "needs the path"),
    (dict(name="text:/tmp/x.txt", validation_fraction=0.0, test_fraction=0.1), "both must be > 0"),
  ],
)
def test_text_settings_that_cannot_be_honoured_are_errors(fields, message):
  # Refused when the config is resolved, before any data is read or anything compiles.
  config = load_config("shakespeare_lm", {f"data.{k}": v for k, v in fields.items()})
  with pytest.raises(ValueError, match=message):
    jaxprune.train.resolve(config)


def test_text_only_settings_on_an_image_dataset_are_errors():
  with pytest.raises(ValueError, match="seq_len=128 applies only to text datasets"):
    jaxprune.train.resolve(load_config("shakespeare_lm", {"data.name": "digits"}))
  overrides = {"data.name": "digits", "data.seq_len": 0, "data.test_fraction": 0.1}
  with pytest.raises(ValueError, match="test_fraction=0.1 applies only to text datasets"):
    jaxprune.train.resolve(load_config("shakespeare_lm", overrides))


def test_image_datasets_are_not_text():
  assert not text_settings.is_text(_data(name="digits"))
  assert text_settings.is_text(_data()) and text_settings.is_text(_data(name="text:/a/b.txt"))


def test_jaxprune_oneshot_prunes_a_trainer_workdir_and_reads_its_data(dense_run, tmp_path):
  # The workdir's config names the run's text and split; the dense numbers are the trainer's.
  from jaxprune.oneshot import cli

  config, workdir, summary = dense_run
  out = cli.run([str(workdir), "--out", str(tmp_path / "pruned"), "--samples", "8", "--quiet"])
  assert out["dense"]["bits_per_byte"] == pytest.approx(
    summary["validation_bits_per_byte"], rel=1e-5
  )
  assert out["dense"]["tokens"] == summary["validation_tokens"]
  assert out["pruned"]["bits_per_byte"] != out["dense"]["bits_per_byte"]
  written = json.loads((tmp_path / "pruned" / "summary.json").read_text())
  assert written["pruned"] == out["pruned"]
  assert {layer["sparsity"] for layer in written["layers"]} == {0.5}  # sparsegpt's default
