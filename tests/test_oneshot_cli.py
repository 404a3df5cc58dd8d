"""The ``jaxprune-oneshot`` command on a tiny random Hugging Face checkpoint and a tiny text:
its summary against perplexity recomputed from the written pruned folder, exact sparsity in
the written tensors, the orbax checkpoint, and settings refused before any computation."""

import json
import tomllib
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from safetensors.numpy import load_file

from jaxprune.oneshot import cli, lm_io
from jaxprune.train.models.hf import load_hf, save_hf
from jaxprune.train.models.lm import DecoderLM, LMConfig

T = 16  # the model's context, the calibration and the evaluation windows
PROJ = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
  """A random 2-block llama checkpoint, scaled so its predictions are far from uniform, and
  6 KB of text (the last 5% validation, the 5% before it test)."""
  root = tmp_path_factory.mktemp("oneshot_cli")
  model = DecoderLM.from_config(
    LMConfig.tiny(num_layers=2, width=32, num_heads=2, mlp_width=64, max_len=T)
  )
  params = model.init(jax.random.key(0), jnp.zeros((1, T), jnp.int32))["params"]
  params = jax.tree.map(lambda x: x * 12.0 if x.ndim == 2 else x, params)
  save_hf(root / "dense", model, params)
  words = np.array(["to", "be", "or", "not", "that", "is", "the", "question", "whether"])
  text = " ".join(np.random.default_rng(0).choice(words, 1400)).encode()[:6000]
  (root / "text.txt").write_bytes(text)
  return root


def run(files, out, *extra):
  argv = [str(files / "dense"), "--data", f"text:{files / 'text.txt'}", "--out", str(out)]
  return cli.run([*argv, "--samples", "16", "--seq-len", str(T), "--quiet", *extra])


def reference_metrics(folder, tokens, max_windows=None):
  """Bits per byte and perplexity of a Hugging Face folder on ``tokens``, in float64 NumPy:
  windows of T targets tile bytes 1 .. n-1, each window read from its first byte."""
  model, params = load_hf(folder)
  tokens = np.asarray(tokens, np.int64)
  starts = list(range(0, len(tokens) - 1, T))[:max_windows]
  nats, count = 0.0, 0
  for s in starts:
    window = tokens[s : s + T + 1]
    logits = np.asarray(model.apply({"params": params}, jnp.asarray(window[None, :-1])))[0]
    logits = logits[: len(window) - 1].astype(np.float64)
    logits -= logits.max(-1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    nats -= logp[np.arange(len(window) - 1), window[1:]].sum()
    count += len(window) - 1
  return {"bits_per_byte": nats / count / np.log(2), "perplexity": np.exp(nats / count)}, count


def split_tokens(files, split):
  from jaxprune.data.text import load_text

  return load_text("text", split, path=files / "text.txt").tokens


def test_sparsegpt_2_of_4_summary_matches_the_written_checkpoint(files, tmp_path):
  summary = run(files, tmp_path, "--method", "sparsegpt", "--structure", "2:4")
  out = json.loads((tmp_path / "summary.json").read_text())
  assert out == json.loads(json.dumps(summary))
  tokens = split_tokens(files, "validation")
  for name, folder in (("dense", files / "dense"), ("pruned", tmp_path / "hf")):
    want, count = reference_metrics(folder, tokens)
    assert out[name]["tokens"] == count == len(tokens) - 1
    for key, value in want.items():
      np.testing.assert_allclose(out[name][key], value, rtol=1e-5, err_msg=f"{name} {key}")
  ratio = out["pruned"]["perplexity"] / out["dense"]["perplexity"]
  assert abs(np.log(ratio)) > 0.01  # the pruned model predicts differently

  dense, pruned = (
    load_file(files / "dense/model.safetensors"),
    load_file(tmp_path / "hf/model.safetensors"),
  )
  assert sorted(dense) == sorted(pruned)
  for name, w in pruned.items():
    if any(p in name for p in PROJ):  # torch layout [out, in]: 2 of every 4 inputs per output
      nonzero = (w != 0).reshape(w.shape[0], -1, 4).sum(-1)
      assert (nonzero == 2).all(), name
    else:  # embedding, head and norms stay dense and untouched
      np.testing.assert_array_equal(w, dense[name], err_msg=name)
  assert len(out["layers"]) == 14 and {r["sparsity"] for r in out["layers"]} == {0.5}
  assert all(0 < r["rel_error"] < 1 and r["method"] == "sparsegpt 2:4" for r in out["layers"])
  assert out["settings"]["structure"] == "2:4" and out["sparsity_of_pruned_kernels"] == 0.5
  assert [s["name"] for s in out["stages"]] == ["block_0", "block_1"]
  assert set(out["timings"]) == {"load", "dense_eval", "prune", "pruned_eval", "save", "total"}

  restored = ocp.StandardCheckpointer().restore(tmp_path / "orbax")
  _, hf_params = load_hf(tmp_path / "hf")
  for (path, p), m, q in zip(
    jax.tree_util.tree_flatten_with_path(restored["params"])[0],
    jax.tree.leaves(restored["masks"]),
    jax.tree.leaves(hf_params),
    strict=True,
  ):
    np.testing.assert_array_equal(p, q, err_msg=jax.tree_util.keystr(path))
    assert (np.asarray(p)[~np.asarray(m)] == 0).all()


def test_magnitude_on_the_test_split_with_a_window_limit(files, tmp_path, capsys):
  out = run(
    files, tmp_path, "--method", "magnitude", "--sparsity", "0.3", "--split", "test",
    "--max-eval-windows", "5", "--eval-batch-size", "2",
  )  # fmt: skip
  assert "block_1/down_proj/kernel" in capsys.readouterr().out
  want, count = reference_metrics(tmp_path / "hf", split_tokens(files, "test"), max_windows=5)
  assert out["pruned"]["tokens"] == count == 5 * T and out["data"]["eval_split"] == "test"
  assert out["settings"]["structure"] == "layer" and out["settings"]["sparsity"] == 0.3
  np.testing.assert_allclose(out["pruned"]["perplexity"], want["perplexity"], rtol=1e-5)
  pruned = load_file(tmp_path / "hf/model.safetensors")
  for name, w in pruned.items():
    if any(p in name for p in PROJ):  # per layer: exactly round(0.3 n) zeros
      assert (w == 0).sum() == round(0.3 * w.size), name


def fails_before_computing(files, tmp_path, monkeypatch, capsys, *extra, out=None):
  def forbidden(*args, **kwargs):
    raise AssertionError("computed before the settings were checked")

  monkeypatch.setattr(lm_io, "evaluate_lm", forbidden)
  monkeypatch.setattr(cli, "prune_sequential", forbidden)
  argv = [str(files / "dense"), "--data", f"text:{files / 'text.txt'}", "--seq-len", str(T)]
  with pytest.raises(SystemExit) as error:
    cli.run([*argv, "--out", str(out or tmp_path / "out"), "--samples", "16", *extra])
  assert error.value.code == 2
  return capsys.readouterr().err


@pytest.mark.parametrize(
  ("extra", "message"),
  [
    (["--method", "obs"], "invalid choice: 'obs'"),
    (["--structure", "2:4", "--sparsity", "0.7"], "contradicts the structure 2:4"),
    (["--structure", "3:5"], "32 is not divisible by 5"),
    (["--structure", "rows"], "Unsupported structure 'rows'"),
    (["--sparsity", "1.0"], r"sparsity must be in \[0, 1\)"),
    (["--eval-seq-len", "64"], "longer than the model's context"),
    (["--samples", "12"], "--samples 12 do not split .* e.g. --batch-size 4"),
    (["--damp", "-1"], "--damp must be finite and >= 0"),
    (["--max-eval-windows", "0"], "--max-eval-windows must be a positive int"),
    (["--step", "3"], "step=3 would be ignored"),
    (["--data", "shakespear"], "Did you mean 'shakespeare'"),
  ],
)
def test_bad_settings_fail_before_any_computation(
  files, tmp_path, monkeypatch, capsys, extra, message
):
  err = fails_before_computing(files, tmp_path, monkeypatch, capsys, *extra)
  assert __import__("re").search(message, err), err


def test_existing_outputs_and_non_checkpoints_are_refused(files, tmp_path, monkeypatch, capsys):
  (tmp_path / "out").mkdir()
  (tmp_path / "out" / "summary.json").write_text("{}")
  err = fails_before_computing(files, tmp_path, monkeypatch, capsys)
  assert "already holds ['summary.json']" in err and "--overwrite" in err
  argv = [str(tmp_path), "--out", str(tmp_path / "o2")]
  with pytest.raises(SystemExit):
    cli.run(argv)
  assert "neither a Hugging Face checkpoint folder" in capsys.readouterr().err


def test_console_script_is_declared():
  project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
  assert project["project"]["scripts"]["jaxprune-oneshot"] == "jaxprune.oneshot.cli:main"
