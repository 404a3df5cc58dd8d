"""Finding the linears of a block from its jaxpr, and the Gram matrices of their inputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from oneshot_models import DecoderBlock, DecoderLM, init

import jaxprune
from jaxprune.oneshot import CaptureError, blockwise_from_decoder_lm, call_with_grams, find_linears

STAGES = {
  "q_proj/kernel": 0,
  "k_proj/kernel": 0,
  "v_proj/kernel": 0,
  "o_proj/kernel": 1,
  "gate_proj/kernel": 2,
  "up_proj/kernel": 2,
  "down_proj/kernel": 3,
}


def block_fn(general=False):
  module = DecoderBlock(32, 4, 64, general)
  return module, lambda p, h: module.apply({"params": p}, h)


def block_setup(general=False, seed=0):
  module, fn = block_fn(general)
  h = jax.random.normal(jax.random.key(seed), (3, 8, 32))
  params = module.init(jax.random.key(1), h)["params"]
  return module, fn, params, h


def test_linears_of_a_block_with_dense_layers_and_their_stages():
  _, fn, params, h = block_setup()
  found = find_linears(fn, params, h)
  got = {
    lin.path: (lin.stage, lin.view.in_features, lin.view.out_features) for lin in found.linears
  }
  sizes = {"gate_proj/kernel": (32, 64), "up_proj/kernel": (32, 64), "down_proj/kernel": (64, 32)}
  want = {p: (s, *sizes.get(p, (32, 32))) for p, s in STAGES.items()}
  assert got == want
  assert found.problems == {}


def test_grams_equal_the_inputs_captured_by_flax_interceptors():
  module, fn, params, h = block_setup()
  found = find_linears(fn, params, h)
  collect = frozenset(lin.index for lin in found.linears)
  out, grams = jax.jit(lambda p, x: call_with_grams(fn, p, x, collect=collect))(params, h)
  np.testing.assert_allclose(out, fn(params, h), rtol=1e-5, atol=1e-5)
  acts = jaxprune.criteria.capture_inputs(module.apply, {"params": params}, h)
  for lin in found.linears:
    x = np.asarray(acts[lin.path], np.float64)
    np.testing.assert_allclose(grams[lin.index], x.T @ x, rtol=1e-4, atol=1e-3)


def test_dense_general_3d_kernels_flatten_in_the_products_order():
  _, fn, params, h = block_setup(general=True)
  found = find_linears(fn, params, h)
  by_path = {lin.path: lin for lin in found.linears}
  assert {p: lin.stage for p, lin in by_path.items()} == STAGES
  q, o = by_path["q_proj/kernel"], by_path["o_proj/kernel"]
  assert q.view.shape == (32, 4, 8) and (q.view.in_features, q.view.out_features) == (32, 32)
  assert o.view.shape == (4, 8, 32) and (o.view.in_features, o.view.out_features) == (32, 32)
  kernel = params["o_proj"]["kernel"]
  np.testing.assert_array_equal(o.view.to_2d(kernel), kernel.reshape(32, 32))
  # o_proj's input is the attention output [B, T, H, hd], flattened as (h, d).
  _, grams = call_with_grams(fn, params, h, collect=frozenset({o.index}))

  def attention_output(p, x):  # the same block up to o_proj, written out
    x_n = jax.vmap(jax.vmap(lambda r: r * jax.lax.rsqrt(jnp.mean(r**2) + 1e-6)))(x)
    x_n = x_n * p["attn_norm"]["scale"]
    from oneshot_models import rope

    q, k, v = (jnp.einsum("btd,dhk->bthk", x_n, p[f"{n}_proj"]["kernel"]) for n in "qkv")
    s = jnp.einsum("bqhd,bkhd->bhqk", rope(q), rope(k)) / jnp.sqrt(8.0)
    s = jnp.where(jnp.tril(jnp.ones((8, 8), bool)), s, -1e9)
    return jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(s, axis=-1), v)

  x = np.asarray(attention_output(params, h), np.float64).reshape(-1, 32)
  np.testing.assert_allclose(grams[o.index], x.T @ x, rtol=1e-4, atol=1e-3)


def test_einsum_and_transposed_tied_head_are_linears():
  def fn(p, x):
    y = jnp.einsum("btd,dk->btk", x, p["w_in"].astype(jnp.bfloat16).astype(jnp.float32))
    return jax.nn.gelu(y) @ p["table"].T  # a tied head: [vocab, d] used transposed

  p = {"w_in": jnp.ones((6, 4)), "table": jnp.ones((10, 4))}
  x = jax.random.normal(jax.random.key(0), (2, 3, 6))
  found = find_linears(fn, p, x)
  by = {lin.path: lin for lin in found.linears}
  assert (by["table"].view.in_features, by["table"].view.out_features) == (4, 10)
  assert by["table"].stage == 1 and by["w_in"].stage == 0
  np.testing.assert_array_equal(by["table"].view.to_2d(p["table"]), p["table"].T)
  _, grams = call_with_grams(fn, p, x, collect=frozenset({by["w_in"].index}))
  x2 = np.asarray(x, np.float64).reshape(-1, 6)
  np.testing.assert_allclose(grams[by["w_in"].index], x2.T @ x2, rtol=1e-5, atol=1e-5)


def test_head_of_a_tied_decoder_lm_finds_the_embedding():
  model = DecoderLM(tie_embeddings=True)
  params = init(model)
  bw = blockwise_from_decoder_lm(model)
  found = find_linears(bw.head, params, jnp.ones((2, 8, 32)))
  assert [lin.path for lin in found.linears] == ["embed_tokens/embedding"]


def test_a_weight_shared_kernel_sums_the_grams_of_its_products():
  def fn(p, x):
    return jnp.tanh(x @ p["w"]) @ p["w"]

  p = {"w": jax.random.normal(jax.random.key(0), (5, 5))}
  x = jax.random.normal(jax.random.key(1), (7, 5))
  lin = find_linears(fn, p, x).linears[0]
  assert lin.uses == 2
  _, grams = call_with_grams(fn, p, x, collect=frozenset({0}))
  x1 = np.asarray(x, np.float64)
  x2 = np.tanh(x1 @ np.asarray(p["w"], np.float64))
  np.testing.assert_allclose(grams[0], x1.T @ x1 + x2.T @ x2, rtol=1e-4, atol=1e-4)


def test_kernels_whose_input_cannot_be_found_say_why():
  def fn(p, x):
    y = x @ (p["scaled"] * 2.0)  # scaled before the product

    def body(c, _):
      return jnp.tanh(c @ p["in_scan"]), None

    y = jax.lax.scan(body, y, None, length=2)[0]  # inside lax.scan
    heads = jnp.einsum("bhd,hde->bhe", y.reshape(2, 2, 2), p["per_head"])  # batch dims
    return heads.reshape(2, 4) @ p["ok"] + jnp.sum(p["unused"])

  p = {
    "scaled": jnp.ones((4, 4)),
    "in_scan": jnp.ones((4, 4)),
    "per_head": jnp.ones((2, 2, 2)),
    "ok": jnp.ones((4, 3)),
    "unused": jnp.ones((2, 2)),
  }
  found = find_linears(fn, p, jnp.ones((2, 4)))
  assert [lin.path for lin in found.linears] == ["ok"]
  with pytest.raises(CaptureError, match=r"'scaled'.*reaches `mul` before any matrix product"):
    found.get("scaled")
  with pytest.raises(CaptureError, match=r"'in_scan'.*enters `scan`"):
    found.get("in_scan")
  with pytest.raises(CaptureError, match=r"'per_head'.*batch dimensions"):
    found.get("per_head")
  with pytest.raises(CaptureError, match=r"'unused'.*reaches `reduce_sum`.*Linears found: ok"):
    found.get("unused")
