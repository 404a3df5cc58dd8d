"""benchmarks/structural_lm.py on a tiny random decoder LM: the whole run, and its score."""

import json
import sys
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from jaxprune.data.text import load_text
from jaxprune.train.models.hf import save_hf
from jaxprune.train.models.lm import DecoderLM, LMConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import structural_lm  # noqa: E402

KWARGS = dict(num_layers=2, width=32, num_heads=4, num_kv_heads=2, mlp_width=48, max_len=32)
SEQ = 16


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  """A ``jaxprune-train``-like workdir of a tiny random LM, and a small text."""
  root = tmp_path_factory.mktemp("structural_lm")
  words = [b"to", b"be", b"or", b"not", b"that", b"is", b"the", b"question"]
  rng = np.random.default_rng(0)
  text = root / "text.txt"
  text.write_bytes(b" ".join(words[i] for i in rng.integers(0, len(words), 2000)))
  model = DecoderLM.from_config(LMConfig.tiny(**KWARGS))
  params = model.init(jax.random.key(0), jnp.zeros((1, SEQ), jnp.int32))["params"]
  # Larger, uneven weights, so that channels differ and removing one shows in the logits.
  params = jax.tree.map(lambda x: x + 0.2 * jax.random.normal(jax.random.key(1), x.shape), params)
  config = {
    "model": {"name": "decoder_lm", "kwargs": KWARGS},
    "data": {"name": f"text:{text}", "seq_len": SEQ},
  }
  (root / "run").mkdir()
  (root / "run" / "config.json").write_text(json.dumps(config))
  with ocp.StandardCheckpointer() as ckpt:
    ckpt.save((root / "run" / "checkpoints" / "7" / "state").absolute(), {"params": params})
  return root / "run", model, params, text


def _data(text):
  return {s: load_text("text", s, path=text) for s in ("train", "validation", "test")}


def test_a_workdir_and_a_hugging_face_folder_load_to_the_same_model(workdir, tmp_path):
  run, model, params, text = workdir
  loaded, got, info = structural_lm.load_model(run)
  assert loaded.config == model.config
  assert info["step"] == 7 and info["seq_len"] == SEQ and info["data"] == f"text:{text}"
  assert not info["finished"]  # no summary.json yet
  jax.tree.map(np.testing.assert_array_equal, got, params)
  save_hf(tmp_path / "hf", model, params)
  loaded, got, info = structural_lm.load_model(tmp_path / "hf")
  assert loaded.config == model.config and info["kind"] == "hf"
  jax.tree.map(np.testing.assert_array_equal, got, params)
  with pytest.raises(ValueError, match="has no config.json"):
    structural_lm.load_model(tmp_path)


def test_one_seed_removes_a_quarter_of_the_heads_and_units_and_reports(workdir, tmp_path):
  run, model, params, text = workdir
  settings = structural_lm.Settings(
    seq_len=SEQ,
    calib_samples=8,
    calib_batch=4,
    ft_steps=3,
    ft_batch=4,
    eval_batch=8,
    eval_windows=6,
    speed_batch=2,
    speed_repeats=2,
    compare=("weight",),
  )
  record = structural_lm.run_seed(model, params, _data(text), settings, seed=0)
  # 2 blocks x 2 kv heads and 2 x 48 MLP units: 1 kv head (with its 2 query heads) and 24 units.
  assert record["removed_counts"] == {
    "heads": {"total": 4, "removed": 1},
    "mlp": {"total": 96, "removed": 24},
  }
  assert record["max_abs_logit_diff"] < 1e-4
  # 32x32 q/o, 32x16 k/v, three 32x48 MLP kernels: -1 head (q/o 16 columns/rows, k/v 8), -24 units.
  removed = 2 * 32 * 16 + 2 * 32 * 8 + 3 * 32 * 24
  total = sum(x.size for x in jax.tree.leaves(params))
  assert record["params_ratio"] == pytest.approx(total / (total - removed))
  assert record["mac_ratio"] > 1 and record["forward"]["speedup"] > 0
  for stage in ("dense", "removed", "removed_weight", "finetuned"):
    for split in ("val", "test"):
      got = record[stage][split]
      assert got["tokens"] == 6 * SEQ
      assert got["bits_per_byte"] == pytest.approx(got["nats_per_byte"] / np.log(2))
      assert got["perplexity"] == pytest.approx(np.exp(got["nats_per_byte"]))
  assert record["removed"]["val"]["nats_per_byte"] != record["dense"]["val"]["nats_per_byte"]
  assert record["finetuned"]["lr"] in settings.ft_lrs
  assert set(record["finetuned"]["val_ppl_by_lr"]) == {"0.001", "0.0003"}
  json.dumps(record)  # the per-seed file can hold it
  assert "| output score: removed, fine-tuned |" in structural_lm.table([record], None)


def _branch_outputs(model, params, tokens):
  """Block 0's residual stream after its attention (mlp_norm's input) and its output."""
  seen = {}

  def interceptor(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    path = tuple(context.module.path)
    if context.method_name == "__call__" and path == ("block_0", "mlp_norm"):
      seen["mid"] = args[0]
    if context.method_name == "__call__" and path == ("block_0",):
      seen["out"] = out
    return out

  with nn.intercept_methods(interceptor):
    model.apply({"params": params}, tokens, train=False)
  return seen


def test_output_score_is_the_change_of_the_stream_when_the_channel_alone_is_removed(workdir):
  _, model, params, text = workdir
  windows = np.asarray(load_text("text", "train", path=text).tokens[: 8 * SEQ], np.int32)
  windows = windows.reshape(8, SEQ)
  probe = jnp.asarray(windows[:2])
  apply = lambda p, t: model.apply({"params": p}, t, train=False)
  groups = list(structural_lm.jaxprune.groups.trace(apply, params, probe))
  stats = structural_lm.calibration_stats(model, params, windows, batch=4)
  scores = structural_lm.channel_scores(groups, params, stats, "output")
  dense = _branch_outputs(model, params, jnp.asarray(windows))
  for g, s in zip(groups, scores, strict=True):
    kind, block, _ = structural_lm._kind(g)
    if block != "block_0":
      continue
    where = "mid" if kind == "heads" else "out"
    for c in (0, g.size - 1):
      removed = [np.arange(h.size) == c if h is g else np.zeros(h.size, bool) for h in groups]
      masked = structural_lm.jaxprune.apply_masks(
        params, structural_lm.masks_of(params, groups, removed)
      )
      change = _branch_outputs(model, masked, jnp.asarray(windows))[where] - dense[where]
      relative = np.linalg.norm(change) / np.linalg.norm(dense[where])
      np.testing.assert_allclose(s[c], relative, rtol=1e-4)


def test_settings_that_cannot_run_are_refused():
  with pytest.raises(ValueError, match="Unknown score 'taylor'"):
    structural_lm.Settings(score="taylor")
  with pytest.raises(ValueError, match="0 < fraction < 1"):
    structural_lm.Settings(fraction=1.0)
  with pytest.raises(ValueError, match="not a multiple of calib_batch"):
    structural_lm.Settings(calib_samples=10, calib_batch=4)
