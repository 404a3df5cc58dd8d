"""Removing pruned channel groups: the smaller model gives the masked model's logits."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxprune
from jaxprune.surgery import apply_resized, save_checkpoint, shrink
from jaxprune.train import models


class VGGBN(nn.Module):
  """A small VGG with BatchNorm after every convolution."""

  @nn.compact
  def __call__(self, x, train=False):
    for s, width in enumerate((8, 16), start=1):
      for c in (1, 2):
        x = nn.Conv(width, (3, 3), padding="SAME", name=f"conv{s}{c}")(x)
        x = nn.relu(nn.BatchNorm(use_running_average=not train, name=f"bn{s}{c}")(x))
      x = nn.max_pool(x, (2, 2), strides=(2, 2))
    x = nn.relu(nn.Dense(32, name="fc")(x.reshape((x.shape[0], -1))))
    return nn.Dense(10, name="head")(x)


def _randomize(variables, key):
  """Kernels as initialised; random biases, BatchNorm scales, shifts and statistics."""
  leaves, treedef = jax.tree.flatten_with_path(variables)
  keys = jax.random.split(key, len(leaves))
  out = []
  for (path, x), k in zip(leaves, keys, strict=True):
    if x.ndim > 1 and "embed" not in jax.tree_util.keystr(path):
      out.append(x)
      continue
    r = 0.5 * jax.random.normal(k, x.shape)
    out.append(jnp.abs(r) + 0.5 if "var" in jax.tree_util.keystr(path) else r)
  return jax.tree.unflatten(treedef, out)


CASES = {
  "lenet300100": (models.LeNet300100(num_classes=10, hidden=(40, 20)), (28, 28, 1)),
  "lenet5": (models.LeNet5Caffe(num_classes=10), (28, 28, 1)),
  "vgg": (models.VGGSmall(num_classes=10, widths=(8, 16), hidden=32), (16, 16, 3)),
  "vgg_bn": (VGGBN(), (16, 16, 3)),
  "resnet20": (models.ResNet20(num_classes=10), (16, 16, 3)),
  "resnet20_projection": (models.ResNet20(num_classes=10, shortcut="projection"), (16, 16, 3)),
  "vit": (models.ViTSmall(num_classes=10, depth=2, mlp_dim=32), (16, 16, 3)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_smaller_model_gives_the_masked_models_logits(name, tmp_path):
  model, shape = CASES[name]
  x = jax.random.normal(jax.random.key(0), (4, *shape))
  variables = _randomize(model.init(jax.random.key(1), x), jax.random.key(2))
  groups = jaxprune.groups.trace(model.apply, variables, x, train=False)
  pruned, masks = jaxprune.prune(variables["params"], 0.5, structure=groups)
  masked_vars = {**variables, "params": pruned}
  small, widths = shrink(masked_vars, groups, masks)
  assert widths == {g.name: g.size - round(0.5 * g.size) for g in groups}
  expected = model.apply(masked_vars, x, train=False)
  got = apply_resized(model, small, x, train=False)
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
  # Without masks, channels whose parameters are all zero are the ones removed.
  again, _ = shrink(masked_vars, groups)
  assert jax.tree.map(jnp.shape, again) == jax.tree.map(jnp.shape, small)
  dense = models.count_params(variables)
  assert models.count_params(small) < 0.75 * dense
  assert save_checkpoint(tmp_path / "small", small) < save_checkpoint(tmp_path / "dense", variables)


def test_vit_keeps_half_its_heads_and_mlp_units():
  model, shape = CASES["vit"]
  x = jnp.ones((2, *shape))
  variables = model.init(jax.random.key(1), x)
  groups = jaxprune.groups.trace(model.apply, variables, x, train=False)
  pruned, masks = jaxprune.prune(variables["params"], 0.5, structure=groups)
  small, _ = shrink({"params": pruned}, groups, masks)
  attn = small["params"]["block1"]["attn"]
  assert attn["query"]["kernel"].shape == (64, 2, 16) and attn["out"]["kernel"].shape == (2, 16, 64)
  assert small["params"]["block1"]["mlp_in"]["kernel"].shape == (64, 16)


def _params_traced(model, shape):
  """Groups traced on the params alone (the other collections closed over)."""
  x = jax.random.normal(jax.random.key(0), (4, *shape))
  variables = _randomize(model.init(jax.random.key(1), x), jax.random.key(2))
  apply = lambda p, x: model.apply({**variables, "params": p}, x)
  return x, variables, jaxprune.groups.trace(apply, variables["params"], x)


def test_groups_traced_on_the_params_shrink_the_params_under_their_collection_or_alone():
  model, shape = CASES["lenet5"]
  x, variables, groups = _params_traced(model, shape)
  pruned, masks = jaxprune.prune(variables["params"], 0.5, structure=groups)
  expected = model.apply({"params": pruned}, x)
  small, widths = shrink({"params": pruned}, groups, masks)
  assert widths == {g.name: g.size - round(0.5 * g.size) for g in groups}
  assert models.count_params(small) < 0.75 * models.count_params(variables)
  np.testing.assert_allclose(apply_resized(model, small, x), expected, rtol=1e-5, atol=1e-5)
  alone, _ = shrink(pruned, groups, masks)
  assert jax.tree.map(jnp.shape, alone) == jax.tree.map(jnp.shape, small["params"])
  unmasked, _ = shrink({"params": pruned}, groups)  # the all-zero channels, without masks
  assert jax.tree.map(jnp.shape, unmasked) == jax.tree.map(jnp.shape, small)


def test_groups_traced_on_all_variables_shrink_the_params_alone():
  model, shape = CASES["vgg_bn"]
  x = jnp.ones((2, *shape))
  variables = model.init(jax.random.key(1), x)
  groups = jaxprune.groups.trace(model.apply, variables, x, train=False)
  pruned, masks = jaxprune.prune(variables["params"], 0.5, structure=groups)
  full, _ = shrink({**variables, "params": pruned}, groups, masks)
  alone, _ = shrink(pruned, groups, masks)
  assert jax.tree.map(jnp.shape, alone) == jax.tree.map(jnp.shape, full["params"])


def test_statistics_the_groups_were_not_traced_with_are_refused():
  model, shape = CASES["vgg_bn"]
  _, variables, groups = _params_traced(model, shape)
  pruned, masks = jaxprune.prune(variables["params"], 0.5, structure=groups)
  with pytest.raises(ValueError, match=r"(?s)batch_stats/.*trace\(model.apply, variables, x\)"):
    shrink({**variables, "params": pruned}, groups, masks)


def test_a_tree_of_another_model_or_an_already_shrunk_one_is_refused():
  model, shape = CASES["lenet5"]
  x, variables, groups = _params_traced(model, shape)
  pruned, masks = jaxprune.prune(variables["params"], 0.5, structure=groups)
  other = CASES["lenet300100"][0].init(jax.random.key(0), x)
  with pytest.raises(ValueError, match=r"(?s)not the ones the groups were traced on.*shrink\("):
    shrink(other, groups)
  small, _ = shrink({"params": pruned}, groups, masks)
  with pytest.raises(ValueError, match="shrink a tree once"):
    shrink(small, groups)


def test_masks_that_match_no_member_are_refused():
  model, shape = CASES["lenet5"]
  _, variables, groups = _params_traced(model, shape)
  pruned, _ = jaxprune.prune(variables["params"], 0.5, structure=groups)
  with pytest.raises(ValueError, match="match no member"):
    shrink({"params": pruned}, groups, {"other": {"kernel": jnp.ones((2, 2), bool)}})


class InvertedResidual(nn.Module):
  """A MobileNetV2-style block: 1x1 expand, 3x3 depthwise, 1x1 project, BatchNorm after each."""

  @nn.compact
  def __call__(self, x, train=False):
    def bn(name):
      return nn.BatchNorm(use_running_average=not train, name=name)

    x = nn.Conv(8, (3, 3), padding="SAME", name="stem")(x)
    y = nn.relu(bn("bn0")(nn.Conv(16, (1, 1), use_bias=False, name="expand")(x)))
    y = nn.Conv(16, (3, 3), padding="SAME", feature_group_count=16, use_bias=False, name="dw")(y)
    y = nn.relu(bn("bn1")(y))
    x = x + bn("bn2")(nn.Conv(8, (1, 1), use_bias=False, name="project")(y))
    return nn.Dense(10, name="head")(x.mean((1, 2)))


def test_a_depthwise_convolution_runs_at_its_new_width():
  model = InvertedResidual()
  x = jax.random.normal(jax.random.key(0), (4, 8, 8, 3))
  variables = _randomize(model.init(jax.random.key(1), x), jax.random.key(2))
  groups = jaxprune.groups.trace(model.apply, variables, x, train=False)
  pruned, masks = jaxprune.prune(variables["params"], 0.5, structure=groups)
  masked_vars = {**variables, "params": pruned}
  small, _ = shrink(masked_vars, groups, masks)
  assert small["params"]["dw"]["kernel"].shape == (3, 3, 1, 8)
  got = apply_resized(model, small, x, train=False)
  np.testing.assert_allclose(got, model.apply(masked_vars, x, train=False), rtol=1e-5, atol=1e-5)


def test_a_grouped_convolution_whose_groups_no_longer_fit_is_explained():
  model = nn.Conv(8, (3, 3), feature_group_count=2, name="grouped")
  smaller = {"params": {"kernel": jnp.ones((3, 3, 4, 6)), "bias": jnp.zeros(6)}}
  with pytest.raises(ValueError, match=r"(?s)feature_group_count=2.*\(3, 3, 4, 6\).*6 channels"):
    apply_resized(model, smaller, jnp.ones((1, 5, 5, 6)))
  fits = {"params": {"kernel": jnp.ones((3, 3, 4, 6)), "bias": jnp.zeros(6)}}
  assert apply_resized(model, fits, jnp.ones((1, 5, 5, 8))).shape == (1, 5, 5, 6)
