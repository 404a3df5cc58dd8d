"""Tests of the model zoo: parameter counts, output shapes, BatchNorm state and MAC counts."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprune.errors import MaskMismatchError
from jaxprune.train import models

MNIST = (28, 28, 1)
CIFAR = (32, 32, 3)
# Small variants keep the suite fast; the default sizes are checked where a count is known.
SMALL = {
  "lenet300100": {},
  "lenet5": {},
  "vgg_small": {"widths": (4, 8), "hidden": 16},
  "resnet20": {},
  "vit_small": {"dim": 16, "depth": 1, "num_heads": 2, "mlp_dim": 32},
}


def _fill(path, leaf, rng):
  """A concrete value for one abstract variable (numpy, so no per-shape compilation)."""
  name = path[-1].key
  if name in ("scale", "var"):
    return np.ones(leaf.shape, leaf.dtype)
  if name == "mean":
    return np.zeros(leaf.shape, leaf.dtype)
  return (0.1 * rng.standard_normal(leaf.shape)).astype(leaf.dtype)


@functools.cache
def _built(name: str, shape: tuple[int, ...], num_classes: int = 10):
  """The model and variables with the shapes `model.init` gives (traced by jax.eval_shape)."""
  model = models.get_model(name, num_classes, **SMALL[name])
  abstract = jax.eval_shape(model.init, jax.random.key(0), jnp.ones((1, *shape)))
  rng = np.random.default_rng(0)
  return model, jax.tree_util.tree_map_with_path(lambda p, x: _fill(p, x, rng), abstract)


def test_lenet300100_has_266610_params_in_three_dense_layers():
  _, variables = _built("lenet300100", MNIST)
  params = variables["params"]
  assert models.count_params(params) == 266_610
  assert [params[f"Dense_{i}"]["kernel"].shape for i in range(3)] == [
    (784, 300),
    (300, 100),
    (100, 10),
  ]


def test_lenet5_caffe_has_431080_params_and_an_800_input_dense_layer():
  _, variables = _built("lenet5", MNIST)
  params = variables["params"]
  assert models.count_params(params) == 431_080
  assert params["Conv_0"]["kernel"].shape == (5, 5, 1, 20)
  assert params["Conv_1"]["kernel"].shape == (5, 5, 20, 50)
  assert params["Dense_0"]["kernel"].shape == (800, 500)


def test_variational_lenet5_is_the_caffe_lenet5_at_evaluation_and_noisy_in_training():
  x = jnp.asarray(np.random.default_rng(0).standard_normal((3, 28, 28, 1)), jnp.float32)
  vd = models.get_model("lenet5", 10, layer="variational")
  variables = vd.init(jax.random.key(0), x[:1])
  params = variables["params"]
  assert sorted(params["Conv_0"]) == ["bias", "kernel", "log_sigma2"]
  assert params["Conv_0"]["log_sigma2"].shape == (5, 5, 1, 20)
  # With log sigma^2 = -40 every log alpha is < 3, so evaluation is the plain LeNet-5 with
  # the same weights; at -10 the smallest weights (|w| < e^-6.5) already have log alpha >= 3.
  plain = {k: {n: v for n, v in layer.items() if n != "log_sigma2"} for k, layer in params.items()}
  want = models.get_model("lenet5", 10).apply({"params": plain}, x)
  quiet = jax.tree_util.tree_map_with_path(
    lambda p, v: jnp.full_like(v, -40.0) if p[-1].key == "log_sigma2" else v, variables
  )
  np.testing.assert_allclose(vd.apply(quiet, x), want, rtol=1e-5, atol=1e-5)
  assert not np.allclose(vd.apply(variables, x), want, atol=1e-4)  # small weights dropped
  noisy = [vd.apply(variables, x, train=True, rngs={"dropout": jax.random.key(s)}) for s in (1, 2)]
  assert not np.allclose(noisy[0], noisy[1])  # local reparameterisation noise per key
  with pytest.raises(ValueError, match="'dense' or 'variational'.*layer=variational"):
    models.get_model("lenet5", 10, layer="l0").init(jax.random.key(0), x[:1])


@pytest.mark.parametrize(
  "name, shape",
  [
    ("lenet300100", MNIST),
    ("lenet5", MNIST),
    ("vgg_small", CIFAR),
    ("resnet20", CIFAR),
    ("vit_small", CIFAR),
    ("vit_small", MNIST),
  ],
)
def test_every_model_maps_a_batch_to_logits_under_jit(name, shape):
  model, variables = _built(name, shape, num_classes=7)
  x = jax.random.normal(jax.random.key(1), (3, *shape))
  logits = jax.jit(model.apply, static_argnames="train")(variables, x, train=False)
  assert logits.shape == (3, 7)
  assert bool(jnp.all(jnp.isfinite(logits)))
  # Different examples give different logits (the input is actually used).
  assert not np.allclose(logits[0], logits[1])


def test_conv_models_reject_unbatched_images_with_the_fix():
  model, variables = _built("lenet5", MNIST)
  with pytest.raises(ValueError, match=r"\[B, H, W, C\].*\(28, 28\).*reshape"):
    model.apply(variables, jnp.ones((28, 28)), train=False)


def test_resnet20_has_the_papers_parameter_count_and_projection_adds_shortcut_convs():
  _, variables = _built("resnet20", CIFAR)
  n = models.count_params(variables["params"])
  assert 260_000 < n < 280_000
  assert n == 269_722  # 0.27M: option A (parameter-free) shortcuts
  proj = models.ResNet20(num_classes=10, shortcut="projection")
  shapes = jax.eval_shape(proj.init, jax.random.key(0), jnp.ones((1, *CIFAR)))
  assert models.count_params(shapes["params"]) == n + (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)
  assert shapes["params"]["stage2_block1"]["proj_conv"]["kernel"].shape == (1, 1, 16, 32)


def test_resnet20_train_true_updates_batch_stats_and_train_false_uses_them():
  model, variables = _built("resnet20", CIFAR)
  x = 3.0 + jax.random.normal(jax.random.key(2), (4, *CIFAR))
  apply = jax.jit(
    lambda v, x, train: model.apply(v, x, train=train, mutable=["batch_stats"]),
    static_argnames="train",
  )
  logits, updates = apply(variables, x, train=True)
  assert logits.shape == (4, 10)
  old = variables["batch_stats"]["stem_bn"]["mean"]
  new = updates["batch_stats"]["stem_bn"]["mean"]
  assert new.shape == old.shape == (16,)
  assert not np.allclose(new, old)
  # Every BatchNorm layer's statistics moved, not only the stem's.
  moved = jax.tree.map(
    lambda a, b: not np.allclose(a, b), variables["batch_stats"], updates["batch_stats"]
  )
  assert all(jax.tree.leaves(moved))
  # In eval mode nothing is written and the running averages are used.
  _, same = apply(variables, x, train=False)
  assert jax.tree.all(jax.tree.map(np.array_equal, same["batch_stats"], variables["batch_stats"]))


def test_resnet20_rejects_an_unknown_shortcut():
  model = models.ResNet20(num_classes=10, shortcut="identity")
  with pytest.raises(ValueError, match="shortcut='identity'.*'pad', 'projection'"):
    model.init(jax.random.key(0), jnp.ones((1, *CIFAR)))


def test_get_model_unknown_name_lists_valid_names():
  with pytest.raises(ValueError, match="resnet18") as info:
    models.get_model("resnet18", num_classes=10)
  for name in ("lenet300100", "lenet5", "vgg_small", "resnet20", "vit_small"):
    assert repr(name) in str(info.value)


def test_get_model_unknown_keyword_lists_the_models_attributes():
  with pytest.raises(TypeError, match="width.*'widths'"):
    models.get_model("vgg_small", num_classes=10, width=(8,))


def test_count_params_and_count_nonzero():
  tree = {"a": jnp.array([[0.0, 1.0, 0.0], [2.0, 0.0, 0.0]]), "b": {"c": jnp.zeros(4)}, "d": None}
  assert models.count_params(tree) == 10
  assert models.count_nonzero(tree) == 2
  assert models.count_nonzero({"m": jnp.array([True, False, True])}) == 2


def test_lenet300100_dense_macs_are_266200():
  model, variables = _built("lenet300100", MNIST)
  report = models.flops_per_example(model, variables, MNIST)
  assert report["dense"] == 266_200
  assert {k: v["dense"] for k, v in report["layers"].items()} == {
    "Dense_0/kernel": 784 * 300,
    "Dense_1/kernel": 300 * 100,
    "Dense_2/kernel": 100 * 10,
  }
  assert report["remaining"] == 266_200
  assert report["speedup"] == 1.0
  assert report["attention"] == {}
  assert report["uncounted"] == ()


def _half_masks(params, seed):
  """Masks keeping exactly half of every kernel, at random places (biases dense)."""
  rng = np.random.default_rng(seed)

  def one(path, x):
    if path[-1].key != "kernel":
      return np.ones(x.shape, bool)
    return (rng.permutation(x.size) < x.size // 2).reshape(x.shape)

  return jax.tree_util.tree_map_with_path(one, params)


def test_lenet300100_macs_halve_per_layer_when_half_of_each_kernel_is_masked():
  model, variables = _built("lenet300100", MNIST)
  dense = models.flops_per_example(model, variables, MNIST)
  masks = _half_masks(variables["params"], 3)
  report = models.flops_per_example(model, variables, MNIST, masks=masks)
  for path, layer in report["layers"].items():
    assert layer["remaining"] == dense["layers"][path]["dense"] / 2
    assert layer["density"] == 0.5
  assert report["dense"] == 266_200
  assert report["remaining"] == 133_100
  assert report["speedup"] == 2.0
  # Without masks, the nonzero pattern of (pruned) params gives the same count.
  pruned = {"params": jax.tree.map(lambda p, m: p * m, variables["params"], masks)}
  assert models.flops_per_example(model, pruned, MNIST)["layers"] == report["layers"]


def test_lenet5_conv_macs_use_traced_output_sizes_for_each_input_shape():
  model, variables = _built("lenet5", MNIST)
  report = models.flops_per_example(model, variables, MNIST)
  assert {k: v["dense"] for k, v in report["layers"].items()} == {
    "Conv_0/kernel": 24 * 24 * (5 * 5 * 1 * 20),
    "Conv_1/kernel": 8 * 8 * (5 * 5 * 20 * 50),
    "Dense_0/kernel": 800 * 500,
    "Dense_1/kernel": 500 * 10,
  }
  assert report["dense"] == 2_293_000
  model, variables = _built("lenet5", CIFAR)
  layers = models.flops_per_example(model, variables, CIFAR)["layers"]
  assert layers["Conv_0/kernel"]["dense"] == 28 * 28 * (5 * 5 * 3 * 20)
  assert layers["Dense_0/kernel"]["dense"] == 5 * 5 * 50 * 500


def test_vgg_macs_count_every_conv_at_its_resolution():
  model, variables = _built("vgg_small", CIFAR)
  report = models.flops_per_example(model, variables, CIFAR)
  expected = {
    "stage1_conv1/kernel": 32 * 32 * (9 * 3 * 4),
    "stage1_conv2/kernel": 32 * 32 * (9 * 4 * 4),
    "stage2_conv1/kernel": 16 * 16 * (9 * 4 * 8),
    "stage2_conv2/kernel": 16 * 16 * (9 * 8 * 8),
    "fc/kernel": (8 * 8 * 8) * 16,
    "head/kernel": 16 * 10,
  }
  assert {k: v["dense"] for k, v in report["layers"].items()} == expected
  assert report["dense"] == sum(expected.values())


def test_resnet20_macs_cover_its_20_weight_layers():
  model, variables = _built("resnet20", CIFAR)
  report = models.flops_per_example(model, variables, CIFAR)
  assert len(report["layers"]) == 1 + 3 * 3 * 2 + 1  # stem, 18 block convs, head
  assert report["layers"]["stem_conv/kernel"]["dense"] == 32 * 32 * 27 * 16
  assert report["layers"]["stage3_block1/conv1/kernel"]["dense"] == 8 * 8 * (9 * 32 * 64)
  assert report["uncounted"] == ()
  assert 40e6 < report["dense"] < 41e6  # the usual ~41M MACs of ResNet-20 on CIFAR


def test_vit_macs_include_projections_and_both_attention_matmuls():
  model, variables = _built("vit_small", CIFAR)
  report = models.flops_per_example(model, variables, CIFAR)
  tokens, dim = 8 * 8 + 1, 16
  assert report["attention"] == {"block1/attn": 2 * tokens * tokens * dim}
  layers = report["layers"]
  assert layers["patch_embed/kernel"]["dense"] == 64 * (4 * 4 * 3 * dim)
  for proj in ("query", "key", "value", "out"):
    assert layers[f"block1/attn/{proj}/kernel"]["dense"] == tokens * dim * dim
  assert layers["block1/mlp_in/kernel"]["dense"] == tokens * dim * 32
  assert layers["head/kernel"]["dense"] == dim * 10
  assert report["uncounted"] == ()
  # Attention matmuls are never pruned: masking every kernel by half leaves them whole.
  masks = _half_masks(variables["params"], 4)
  pruned = models.flops_per_example(model, variables, CIFAR, masks=masks)
  kernels = sum(v["dense"] for v in layers.values())
  assert pruned["remaining"] == kernels / 2 + 2 * tokens * tokens * dim
  assert 1.0 < pruned["speedup"] < 2.0


def test_flops_masks_with_none_leaves_are_dense_and_mismatched_masks_raise():
  model, variables = _built("lenet300100", MNIST)
  masks = _half_masks(variables["params"], 5)
  masks["Dense_2"]["kernel"] = None
  report = models.flops_per_example(model, variables, MNIST, masks=masks)
  assert report["layers"]["Dense_2/kernel"]["remaining"] == 1000
  assert report["layers"]["Dense_0/kernel"]["remaining"] == 117_600
  del masks["Dense_1"]
  with pytest.raises(MaskMismatchError, match="Dense_1/kernel"):
    models.flops_per_example(model, variables, MNIST, masks=masks)


def test_flops_requires_the_variables_dict():
  model, variables = _built("lenet300100", MNIST)
  with pytest.raises(ValueError, match="'params' collection.*Dense_0"):
    models.flops_per_example(model, variables["params"], MNIST)


def test_vgg16_width_scales_every_stage_and_refuses_a_non_positive_width():
  narrow = jax.eval_shape(
    models.get_model("vgg16", 10, width=8).init, jax.random.key(0), jnp.ones((1, *CIFAR))
  )["params"]
  channels = [narrow[f"conv{i}"]["kernel"].shape[-1] for i in range(1, 14)]
  assert channels == [8, 8, 16, 16, 32, 32, 32, 64, 64, 64, 64, 64, 64]
  with pytest.raises(ValueError, match="positive channel count, got 0.*width=32"):
    models.get_model("vgg16", 10, width=0).init(jax.random.key(0), jnp.ones((1, *CIFAR)))
