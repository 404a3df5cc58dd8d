"""Dependency groups traced from the jaxpr, compared with groups written out by hand."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxprune
from jaxprune.train import models


def _summary(groups):
  """{name: (size, {(path, axis, positions per channel)})} of every group."""
  return {
    g.name: (g.size, {(p, a, i.shape[1]) for (p, a), i in zip(g.members, g.index, strict=True)})
    for g in groups
  }


def _trace(model, shape, **kw):
  x = jnp.ones((2, *shape))
  variables = model.init(jax.random.key(0), x)
  return variables, jaxprune.groups.trace(model.apply, variables, x, train=False, **kw)


def _dense(name, axis):
  return {(f"params/{name}/kernel", axis, 1)}


def _unit(name, size, consumer, rows=1):
  """A layer's output channel: its kernel column and bias, and the consumer's rows."""
  members = {
    (f"params/{name}/kernel", 1 if "Dense" in name or name in ("fc", "head") else 3, 1),
    (f"params/{name}/bias", 0, 1),
    (f"params/{consumer}/kernel", 0 if consumer.startswith(("Dense", "fc", "head")) else 2, rows),
  }
  return size, members


def test_lenet300100():
  _, groups = _trace(models.LeNet300100(num_classes=10), (28, 28, 1))
  assert _summary(groups) == {
    "params/Dense_0/kernel:1": _unit("Dense_0", 300, "Dense_1"),
    "params/Dense_1/kernel:1": _unit("Dense_1", 100, "Dense_2"),
  }
  assert groups.kept[("params/Dense_2/kernel", 1)] == "it reaches the model's output"


def test_lenet5_flatten_maps_channel_c_to_rows_c_plus_multiples_of_50():
  _, groups = _trace(models.LeNet5Caffe(num_classes=10), (28, 28, 1))
  assert _summary(groups) == {
    "params/Conv_0/kernel:3": _unit("Conv_0", 20, "Conv_1"),
    "params/Conv_1/kernel:3": _unit("Conv_1", 50, "Dense_0", rows=16),
    "params/Dense_0/kernel:1": _unit("Dense_0", 500, "Dense_1"),
  }
  g = groups["params/Conv_1/kernel:3"]
  rows = g.index[g.members.index(("params/Dense_0/kernel", 0))]
  np.testing.assert_array_equal(rows[3], 3 + 50 * np.arange(16))


def test_vgg():
  _, groups = _trace(models.VGGSmall(num_classes=10, widths=(8, 16), hidden=32), (32, 32, 3))
  assert _summary(groups) == {
    "params/stage1_conv1/kernel:3": _unit("stage1_conv1", 8, "stage1_conv2"),
    "params/stage1_conv2/kernel:3": _unit("stage1_conv2", 8, "stage2_conv1"),
    "params/stage2_conv1/kernel:3": _unit("stage2_conv1", 16, "stage2_conv2"),
    "params/stage2_conv2/kernel:3": _unit("stage2_conv2", 16, "fc", rows=64),
    "params/fc/kernel:1": _unit("fc", 32, "head"),
  }


def _bn(prefix):
  return {
    (f"params/{prefix}/scale", 0, 1),
    (f"params/{prefix}/bias", 0, 1),
    (f"batch_stats/{prefix}/mean", 0, 1),
    (f"batch_stats/{prefix}/var", 0, 1),
  }


def _conv(name, axis):
  return {(f"params/{name}/kernel", axis, 1)}


def _resnet_expected(widths, blocks, shortcut):
  expected = {}
  residual = {}  # stage -> members of its residual stream
  for s, width in enumerate(widths, start=1):
    res = set()
    if s == 1:
      res |= _conv("stem_conv", 3) | _bn("stem_bn")
    for b in range(1, blocks + 1):
      blk = f"stage{s}_block{b}"
      inner = _conv(f"{blk}/conv1", 3) | _bn(f"{blk}/bn1") | _conv(f"{blk}/conv2", 2)
      expected[f"params/{blk}/conv1/kernel:3"] = (width, inner)
      res |= _conv(f"{blk}/conv2", 3) | _bn(f"{blk}/bn2")
      if b > 1 or s == 1:
        res |= _conv(f"{blk}/conv1", 2)
      if b == 1 and s > 1 and shortcut == "projection":
        res |= _conv(f"{blk}/proj_conv", 3) | _bn(f"{blk}/proj_bn")
    if s > 1:
      nxt = f"stage{s}_block1"
      residual[s - 1] |= _conv(f"{nxt}/conv1", 2)
      if shortcut == "projection":
        residual[s - 1] |= _conv(f"{nxt}/proj_conv", 2)
    residual[s] = res
  residual[len(widths)] |= {("params/head/kernel", 0, 1)}
  return expected, residual


def test_resnet20_projection_shortcuts():
  _, groups = _trace(models.ResNet20(num_classes=10, shortcut="projection"), (32, 32, 3))
  expected, residual = _resnet_expected((16, 32, 64), 3, "projection")
  for s, width, name in [
    (1, 16, "stage1_block1"),
    (2, 32, "stage2_block1"),
    (3, 64, "stage3_block1"),
  ]:
    expected[f"params/{name}/conv2/kernel:3"] = (width, residual[s])
  assert _summary(groups) == expected


def test_resnet20_pad_shortcuts_tie_stage1_channels_to_the_middle_of_later_stages():
  _, groups = _trace(models.ResNet20(num_classes=10), (32, 32, 3))
  expected, residual = _resnet_expected((16, 32, 64), 3, "pad")
  # Only stage 1's residual channels are prunable; the padded channels of stages 2-3 are kept,
  # and stage-1 channel c is channel 8 + c of stage 2 and 24 + c of stage 3.
  expected["params/stage1_block1/conv2/kernel:3"] = (16, residual[1] | residual[2] | residual[3])
  assert _summary(groups) == expected
  g = groups["params/stage1_block1/conv2/kernel:3"]
  for path, offset in [("stage2_block3/conv2", 8), ("stage3_block1/conv2", 24), ("head", 24)]:
    axis = 0 if path == "head" else 3
    rows = g.index[g.members.index((f"params/{path}/kernel", axis))]
    np.testing.assert_array_equal(rows[:, 0], offset + np.arange(16))
  assert groups.kept[("params/stage2_block1/bn2/scale", 0)] == "pad inserts constant channels here"


class Bottleneck(nn.Module):
  """A ResNet-50 bottleneck (1x1, 3x3, 1x1 x4) with a strided projection shortcut."""

  @nn.compact
  def __call__(self, x, train=False):
    bn = lambda name: nn.BatchNorm(use_running_average=not train, name=name)
    y = nn.relu(bn("bn1")(nn.Conv(8, (1, 1), use_bias=False, name="conv1")(x)))
    y = nn.Conv(8, (3, 3), strides=2, use_bias=False, name="conv2")(y)
    y = nn.relu(bn("bn2")(y))
    y = bn("bn3")(nn.Conv(32, (1, 1), use_bias=False, name="conv3")(y))
    s = bn("proj_bn")(nn.Conv(32, (1, 1), strides=2, use_bias=False, name="proj_conv")(x))
    y = nn.relu(y + s)
    y = nn.Conv(16, (1, 1), name="next")(y)  # a consumer of the block's output channels
    return nn.Dense(5, name="head")(jnp.mean(nn.relu(y), axis=(1, 2)))


def test_bottleneck_with_projection_shortcut():
  _, groups = _trace(Bottleneck(), (8, 8, 4))
  residual = (
    _conv("conv3", 3) | _bn("bn3") | _conv("proj_conv", 3) | _bn("proj_bn") | _conv("next", 2)
  )
  assert _summary(groups) == {
    "params/conv1/kernel:3": (8, _conv("conv1", 3) | _bn("bn1") | _conv("conv2", 2)),
    "params/conv2/kernel:3": (8, _conv("conv2", 3) | _bn("bn2") | _conv("conv3", 2)),
    "params/conv3/kernel:3": (32, residual),
    "params/next/kernel:3": (
      16,
      _conv("next", 3) | {("params/next/bias", 0, 1)} | _dense("head", 0),
    ),
  }


def test_vit_heads_and_mlp_units_but_not_the_layernormed_width():
  _, groups = _trace(models.ViTSmall(num_classes=10, depth=2), (32, 32, 3))
  expected = {}
  for i in (1, 2):
    attn = f"block{i}/attn"
    heads = {(f"params/{attn}/{n}/kernel", 1, 1) for n in ("query", "key", "value")}
    heads |= {(f"params/{attn}/{n}/bias", 0, 1) for n in ("query", "key", "value")}
    heads |= {(f"params/{attn}/out/kernel", 0, 1)}
    expected[f"params/{attn}/key/kernel:1"] = (4, heads)
    mlp = {(f"params/block{i}/mlp_in/kernel", 1, 1), (f"params/block{i}/mlp_in/bias", 0, 1)}
    expected[f"params/block{i}/mlp_in/kernel:1"] = (128, mlp | _dense(f"block{i}/mlp_out", 0))
  got = _summary(groups)
  assert got == expected
  assert groups.kept[("params/ln_final/scale", 0)] == "reduce_sum reduces over it"


def test_concatenated_channels_map_to_offset_rows_of_the_consumer():
  class Cat(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
      a = nn.relu(nn.Dense(3, name="a")(x))
      b = nn.relu(nn.Dense(5, name="b")(x))
      return nn.Dense(2, name="c")(jnp.concatenate([a, b], axis=-1))

  _, groups = _trace(Cat(), (4,))
  rows_a = groups["params/a/kernel:1"].index[2]
  rows_b = groups["params/b/kernel:1"].index[2]
  assert groups["params/a/kernel:1"].members[2] == ("params/c/kernel", 0)
  assert rows_a[:, 0].tolist() == [0, 1, 2] and rows_b[:, 0].tolist() == [3, 4, 5, 6, 7]


class Shuffle(nn.Module):
  """A channel shuffle: a reshape that splits the channel axis, a transpose, a merge."""

  @nn.compact
  def __call__(self, x, train=False):
    y = nn.Dense(8, name="mix")(x)
    y = y.reshape(y.shape[0], 2, 4).transpose(0, 2, 1).reshape(y.shape[0], 8)
    return nn.Dense(3, name="head")(nn.relu(nn.Dense(6, name="ok")(y)))


def test_a_split_channel_axis_is_pruned_in_units_of_its_leading_axis():
  # mix's column 4g + i lands on row 2i + g of ok: unit g is columns 4g..4g+3, rows 2i + g.
  _, groups = _trace(Shuffle(), (4,))
  g = groups["params/mix/kernel:1"]
  assert g.size == 2
  index = dict(zip(g.members, g.index, strict=True))
  np.testing.assert_array_equal(index[("params/mix/kernel", 1)], [[0, 1, 2, 3], [4, 5, 6, 7]])
  np.testing.assert_array_equal(index[("params/ok/kernel", 0)], [[0, 2, 4, 6], [1, 3, 5, 7]])


class Outer(nn.Module):
  """Bilinear features: the outer product of two projections, flattened."""

  @nn.compact
  def __call__(self, x, train=False):
    a, b = nn.Dense(3, name="a")(x), nn.Dense(4, name="b")(x)
    y = (a[:, :, None] * b[:, None, :]).reshape(x.shape[0], 12)
    return nn.Dense(2, name="head")(nn.relu(nn.Dense(6, name="ok")(y)))


def test_a_reshape_merging_two_channel_axes_raises_naming_the_primitive_and_the_parameters():
  with pytest.raises(jaxprune.groups.GroupTraceError) as info:
    _trace(Outer(), (4,))
  message = str(info.value)
  assert "'reshape'" in message and "merges two channel axes (of sizes 3 and 4)" in message
  assert "params/a/kernel (axis 1)" in message and "params/b/kernel (axis 1)" in message
  assert "on_unsupported='keep'" in message
  _, groups = _trace(Outer(), (4,), on_unsupported="keep")
  assert [g.name for g in groups] == ["params/ok/kernel:1"]
  assert "reshape" in groups.kept[("params/a/kernel", 1)]
  assert "reshape" in groups.kept[("params/b/kernel", 1)]


def test_a_gather_on_channels_raises():
  class Gather(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
      y = nn.Dense(6, name="a")(x)
      return nn.Dense(2, name="b")(jnp.take(y, jnp.array([2, 0, 1, 3, 5, 4]), axis=1))

  with pytest.raises(jaxprune.groups.GroupTraceError, match="gather.*params/a/kernel"):
    _trace(Gather(), (4,))


def test_an_embedding_lookup_keeps_the_vocabulary_and_groups_the_features():
  class Embed(nn.Module):
    @nn.compact
    def __call__(self, tokens):
      hidden = nn.Embed(10, 6, name="embed")(tokens)  # jnp.take(embedding, tokens, axis=0)
      rows = self.param("table", nn.initializers.normal(), (5, 6))[tokens % 5]  # table[idx]
      return nn.Dense(3, name="head")(jnp.mean(hidden * rows, axis=1))

  tokens = jnp.array([[1, 7, 3]])
  variables = Embed().init(jax.random.key(0), tokens)
  groups = jaxprune.groups.trace(Embed().apply, variables, tokens)
  assert _summary(groups) == {
    "params/embed/embedding:1": (
      6,
      {("params/embed/embedding", 1, 1), ("params/table", 1, 1), ("params/head/kernel", 0, 1)},
    )
  }
  assert groups.kept[("params/embed/embedding", 0)].startswith("a gather indexes it")
  assert groups.kept[("params/table", 0)].startswith("a gather indexes it")


def test_nnx_model_through_split_and_merge():
  class MLP(nnx.Module):
    def __init__(self, rngs):
      self.l1 = nnx.Linear(4, 8, rngs=rngs)
      self.bn = nnx.BatchNorm(8, rngs=rngs)
      self.l2 = nnx.Linear(8, 3, rngs=rngs)

    def __call__(self, x):
      return self.l2(nnx.relu(self.bn(self.l1(x))))

  model = MLP(nnx.Rngs(0))
  model.eval()
  graphdef, state = nnx.split(model)
  groups = jaxprune.groups.trace(lambda s, x: nnx.merge(graphdef, s)(x), state, jnp.ones((2, 4)))
  assert _summary(groups) == {
    "l1/kernel/value:1": (
      8,
      {("l1/kernel/value", 1, 1), ("l1/bias/value", 0, 1), ("l2/kernel/value", 0, 1)}
      | {(f"bn/{n}/value", 0, 1) for n in ("scale", "bias", "mean", "var")},
    )
  }
