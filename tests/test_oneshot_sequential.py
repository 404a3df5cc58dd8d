"""The sequential pass over a decoder LM: against a hand-written loop, exact counts, what stays
dense, targets, compile once per pass, and errors."""

import dataclasses

import jax
import numpy as np
import pytest
from oneshot_models import DecoderBlock, DecoderLM, init, tokens

import jaxprune
from jaxprune import oneshot, structures
from jaxprune.oneshot import LayerSpec, Settings

SETTINGS = Settings(batch_size=8, block_size=16)  # 2 calibration batches; shared compilations
BLOCK_KERNELS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@pytest.fixture(scope="module")
def lm():
  model = DecoderLM()
  return model, init(model), tokens(16, 8)


def hand_loop(model, params, windows, prune_block):
  """Embed; for each block: capture its linears' inputs on all windows (flax interceptors),
  prune them with ``prune_block(block_params, activations)``, run the pruned block. Each step
  is jitted once for both blocks (same shapes)."""
  block = DecoderBlock(model.width, model.num_heads, model.mlp_width, model.general)
  capture = jax.jit(lambda bp, h: jaxprune.criteria.capture_inputs(block.apply, {"params": bp}, h))
  forward = jax.jit(lambda bp, h: block.apply({"params": bp}, h))
  prune_block = jax.jit(prune_block)
  hidden = model.apply({"params": params}, windows, method="embed")
  params, masks = dict(params), {}
  for i in range(model.num_layers):
    bp = params[f"block_{i}"]
    bp, masks[f"block_{i}"] = prune_block(bp, capture(bp, hidden))
    params[f"block_{i}"] = bp
    hidden = forward(bp, hidden)
  return params, masks


def kernel_paths(tree):
  return {
    p: x
    for p, x in jaxprune.oneshot.sequential.leaves_with_paths(tree)
    if p.endswith("kernel") and p.startswith("block_")
  }


@pytest.mark.parametrize("method", ["sparsegpt", "wanda"])
def test_sequential_pass_equals_a_hand_written_two_block_loop(lm, method):
  model, params, windows = lm
  dist = {".*kernel": 0.5}
  if method == "sparsegpt":
    crit, structure = jaxprune.criteria.obs_criterion(damp=0.01, block_size=16), None
  else:
    crit, structure = "wanda", structures.unstructured(within=-1)

  def prune_block(bp, acts):
    return jaxprune.prune(
      bp, 0.5, criterion=crit, structure=structure, distribution=dist, activations=acts
    )

  want_params, want_masks = hand_loop(model, params, windows, prune_block)
  bw = oneshot.blockwise_from_decoder_lm(model)
  out = oneshot.prune_sequential(
    bw, params, windows, method=method, sparsity=0.5, settings=SETTINGS
  )
  got_k, want_k = kernel_paths(out.params), kernel_paths(want_params)
  got_m, want_m = kernel_paths(out.masks), kernel_paths(want_masks)
  assert sorted(got_k) == sorted(want_k) and len(got_k) == 14
  for path in want_k:
    np.testing.assert_array_equal(got_m[path], want_m[path], err_msg=path)
    np.testing.assert_allclose(got_k[path], want_k[path], rtol=1e-4, atol=1e-4, err_msg=path)
  assert [r.path for r in out.layers] == [
    f"block_{i}/{k}/kernel" for i in (0, 1) for k in BLOCK_KERNELS
  ]
  assert [s.name for s in out.stages] == ["block_0", "block_1"]


def test_embedding_head_and_norms_stay_dense_by_default(lm):
  model, params, windows = lm
  bw = oneshot.blockwise_from_decoder_lm(model)
  out = oneshot.prune_sequential(bw, params, windows, settings=SETTINGS)
  for path, x in jaxprune.oneshot.sequential.leaves_with_paths(params):
    new = dict(jaxprune.oneshot.sequential.leaves_with_paths(out.params))[path]
    mask = dict(jaxprune.oneshot.sequential.leaves_with_paths(out.masks))[path]
    if path.startswith("block_") and path.endswith("kernel"):
      assert not np.asarray(mask).all(), path
    else:
      np.testing.assert_array_equal(new, x, err_msg=path)
      assert np.asarray(mask).all(), path
  assert jax.tree.structure(out.masks) == jax.tree.structure(params)


@pytest.mark.parametrize(
  ("method", "structure", "sparsity"),
  [("sparsegpt", "layer", 0.5), ("wanda", "output", 0.5), ("sparsegpt", "2:4", None)]
  + [("magnitude", "4:8", None), ("sparsegpt", "output", 0.3)],
)
def test_exact_counts_in_every_kernel(lm, method, structure, sparsity):
  model, params, windows = lm
  bw = oneshot.blockwise_from_decoder_lm(model)
  out = oneshot.prune_sequential(
    bw,
    params,
    windows,
    method=method,
    sparsity=sparsity,
    structure=structure,
    settings=SETTINGS,
  )
  for path, keep in kernel_paths(out.masks).items():
    keep = np.asarray(keep)
    d_in = keep.shape[0]
    if structure == "layer":
      assert keep.sum() == keep.size - round(sparsity * keep.size), path
    elif structure == "output":
      assert (keep.sum(axis=0) == d_in - round(sparsity * d_in)).all(), path
    else:
      n, m = map(int, structure.split(":"))
      assert (keep.reshape(d_in // m, m, -1).sum(axis=1) == n).all(), path
    assert (np.asarray(kernel_paths(out.params)[path])[~keep] == 0).all()
  for r in out.layers:
    assert 0.0 <= r.error < 1.0 and r.seconds > 0


def test_dense_general_kernels_are_pruned_in_their_own_layout():
  model = DecoderLM(general=True)
  params, windows = init(model), tokens(8, 8)
  bw = oneshot.blockwise_from_decoder_lm(model)
  out = oneshot.prune_sequential(
    bw, params, windows, structure="2:4", settings=Settings(batch_size=8, block_size=16)
  )
  o = np.asarray(out.masks["block_1"]["o_proj"]["kernel"])
  q = np.asarray(out.masks["block_1"]["q_proj"]["kernel"])
  assert o.shape == (4, 8, 32) and q.shape == (32, 4, 8)
  assert (o.reshape(8, 4, 32).sum(axis=1) == 2).all()  # groups of 4 along (head, head_dim)
  assert (q.reshape(8, 4, 32).sum(axis=1) == 2).all()
  report = {r.path: r for r in out.layers}
  assert report["block_1/o_proj/kernel"].shape == (32, 32)


def test_true_sequential_takes_each_stages_inputs_from_the_pruned_stages(lm):
  model, params, windows = lm
  bw = oneshot.blockwise_from_decoder_lm(model)
  runs = {
    seq: oneshot.prune_sequential(
      bw, params, windows, method="wanda", settings=dataclasses.replace(SETTINGS, sequential=seq)
    )
    for seq in (False, True)
  }
  block = DecoderBlock(32, 4, 64)
  hidden = model.apply({"params": params}, windows, method="embed")
  bp_dense = params["block_0"]
  for seq, out in runs.items():
    bp_pruned = out.params["block_0"]
    # o_proj's reported error: its inputs from the dense block (default) or from the block with
    # q/k/v pruned (sequential).
    bp_in = dict(bp_dense)
    if seq:
      bp_in.update({k: bp_pruned[k] for k in ("q_proj", "k_proj", "v_proj")})
    x = jaxprune.criteria.capture_inputs(block.apply, {"params": bp_in}, hidden)["o_proj/kernel"]
    gram = np.asarray(x, np.float64).T @ np.asarray(x, np.float64)
    want = oneshot.reconstruction_error(
      bp_dense["o_proj"]["kernel"], bp_pruned["o_proj"]["kernel"], gram
    )
    got = {r.path: r.error for r in out.layers}["block_0/o_proj/kernel"]
    np.testing.assert_allclose(got, float(want), rtol=1e-3)
  a, b = (runs[s].masks["block_0"]["o_proj"]["kernel"] for s in (False, True))
  assert not np.array_equal(a, b)  # the inputs differ, so does Wanda's choice
  np.testing.assert_array_equal(
    runs[False].masks["block_0"]["q_proj"]["kernel"],
    runs[True].masks["block_0"]["q_proj"]["kernel"],
  )


def test_targets_prune_the_head_and_embedding_when_asked(lm):
  model, params, windows = lm
  bw = oneshot.blockwise_from_decoder_lm(model)
  targets = {
    "lm_head/kernel": LayerSpec("sparsegpt", 0.5),
    "embed_tokens/embedding": LayerSpec("magnitude", 0.25),
    ".*down_proj/kernel": None,
    ".*q_proj/kernel": 0.75,
  }
  out = oneshot.prune_sequential(bw, params, windows, targets=targets, settings=SETTINGS)
  rep = {r.path: r for r in out.layers}
  assert rep["lm_head/kernel"].stage == "head" and rep["lm_head/kernel"].sparsity == 0.5
  assert rep["embed_tokens/embedding"].stage == "start"
  assert rep["embed_tokens/embedding"].sparsity == 0.25
  assert rep["block_1/q_proj/kernel"].sparsity == 0.75
  assert "block_0/down_proj/kernel" not in rep
  np.testing.assert_array_equal(
    out.params["block_0"]["down_proj"]["kernel"], params["block_0"]["down_proj"]["kernel"]
  )
  assert [s.name for s in out.stages] == ["block_0", "block_1", "head"]
  # The head is calibrated on the final hidden states of the pruned model, embedding included.
  pruned_emb = {**params, "embed_tokens": out.params["embed_tokens"]}
  pruned_emb["block_0"], pruned_emb["block_1"] = out.params["block_0"], out.params["block_1"]
  h = model.apply({"params": pruned_emb}, windows, method="embed")
  for i in (0, 1):
    h = DecoderBlock(32, 4, 64).apply({"params": out.params[f"block_{i}"]}, h)
  x = nn_rms(h, params["final_norm"]["scale"]).reshape(-1, 32).astype(np.float64)
  want = oneshot.reconstruction_error(
    params["lm_head"]["kernel"], out.params["lm_head"]["kernel"], x.T @ x
  )
  np.testing.assert_allclose(rep["lm_head/kernel"].error, float(want), rtol=1e-3)


def nn_rms(h, scale):
  h = np.asarray(h, np.float64)
  return h / np.sqrt(np.mean(h**2, axis=-1, keepdims=True) + 1e-6) * np.asarray(scale)


def test_tied_head_is_pruned_through_the_transposed_embedding():
  model = DecoderLM(tie_embeddings=True)
  params, windows = init(model), tokens(8, 8)
  bw = oneshot.blockwise_from_decoder_lm(model)
  out = oneshot.prune_sequential(
    bw,
    params,
    windows,
    targets={"embed_tokens/embedding": LayerSpec("wanda", 0.5)},
    settings=Settings(batch_size=8),
  )
  keep = np.asarray(out.masks["embed_tokens"]["embedding"])  # [vocab, d]: per output = per row
  assert (keep.sum(axis=1) == 16).all()
  assert {r.path: r.shape for r in out.layers}["embed_tokens/embedding"] == (32, 64)


def test_one_compiled_program_per_pass_whatever_the_depth():
  traces = []

  def count(depth):
    model = DecoderLM(num_layers=depth)
    bw = oneshot.blockwise_from_decoder_lm(model)
    inner = bw.block

    def block(p, h):
      traces.append(depth)
      return inner(p, h)

    bw = dataclasses.replace(bw, block=block)
    oneshot.prune_sequential(bw, init(model), tokens(16, 8), settings=SETTINGS)
    return traces.count(depth)

  assert count(2) == count(4) <= 3  # find the linears, the Gram pass, the forward pass


def test_adapter_matches_the_model_and_refuses_other_shapes(lm):
  model, params, windows = lm
  bw = oneshot.blockwise_from_decoder_lm(model)
  assert bw.block_paths == ("block_0", "block_1") and bw.max_len == 16
  np.testing.assert_allclose(
    bw.apply(params, windows), model.apply({"params": params}, windows, train=False), rtol=1e-5
  )
  with pytest.raises(TypeError, match="has no method 'embed'"):
    oneshot.blockwise_from_decoder_lm(DecoderBlock(8, 2, 8))
  with pytest.raises(TypeError, match="blockwise_from_decoder_lm"):
    oneshot.prune_sequential(model, params, windows)
  with pytest.raises(TypeError, match="block_paths must be a non-empty tuple"):
    oneshot.Blockwise(bw.embed, bw.block, bw.head, "block_0")


def test_run_errors(lm):
  model, params, windows = lm
  bw = oneshot.blockwise_from_decoder_lm(model)
  with pytest.raises(ValueError, match="pattern '.*attn/q.*' matches no kernel path"):
    oneshot.prune_sequential(bw, params, windows, targets={".*attn/q.*": 0.5})
  with pytest.raises(oneshot.CaptureError, match="has no calibration input"):
    oneshot.prune_sequential(
      bw, params, windows, targets={"embed_tokens/embedding": 0.5}, settings=Settings(batch_size=8)
    )
  with pytest.raises(TypeError, match="settings must be a jaxprune.oneshot.Settings"):
    oneshot.prune_sequential(bw, params, windows, settings={"batch_size": 8})
  with pytest.raises(ValueError, match="Unknown one-shot method"):
    oneshot.prune_sequential(bw, params, windows, method="obs")
  with pytest.raises(ValueError, match="seq_len=12 but the calibration windows"):
    oneshot.prune_sequential(bw, params, windows, settings=Settings(seq_len=12, batch_size=8))
  with pytest.raises(ValueError, match="non-finite weights"):
    # 8 rows of 32 inputs: XᵀX has rank 8, singular without damping.
    settings = Settings(batch_size=1, damp=0.0, block_size=16)
    oneshot.prune_sequential(bw, params, windows[:1], settings=settings)


def test_calibration_windows_from_a_stream_use_the_models_context(lm):
  model, params, _ = lm
  bw = oneshot.blockwise_from_decoder_lm(model)
  stream = np.asarray(tokens(1, 400)[0])
  out = oneshot.prune_sequential(
    bw, params, stream, method="magnitude", settings=Settings(num_samples=8, seed=3, batch_size=8)
  )
  assert len(out.layers) == 14 and out.seconds > 0
  assert "block_0/q_proj/kernel" in out.table() and "magnitude 50% layer" in out.table()
