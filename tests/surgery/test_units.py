"""Physical removal of dead units: the smaller network computes the same function."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxprune
from jaxprune.surgery import remove_units
from jaxprune.train import models


def _randomize_biases(params, key):
  """Nonzero biases, so removed units output constants that must be folded."""
  leaves, treedef = jax.tree.flatten_with_path(params)
  keys = jax.random.split(key, len(leaves))
  out = [
    jax.random.normal(k, x.shape) if "bias" in jax.tree_util.keystr(p) else x
    for (p, x), k in zip(leaves, keys, strict=True)
  ]
  return jax.tree.unflatten(treedef, out)


def test_lenet300100_without_its_pruned_neurons_gives_the_same_logits():
  model = models.get_model("lenet300100", num_classes=10)
  x = jax.random.normal(jax.random.key(0), (16, 8, 8, 1))
  params = _randomize_biases(model.init(jax.random.key(1), x)["params"], jax.random.key(2))
  rule = {"Dense_0/kernel": 0.5, "Dense_1/kernel": 0.8, ".*": None}
  pruned, _ = jaxprune.prune(
    params, 0.5, distribution=rule, structure=jaxprune.structures.channels()
  )
  small, widths = remove_units(pruned, ["Dense_0", "Dense_1", "Dense_2"])
  assert widths == {"Dense_0": 150, "Dense_1": 20}
  assert small["Dense_1"]["kernel"].shape == (150, 20) and small["Dense_2"]["kernel"].shape == (
    20,
    10,
  )
  smaller = models.get_model("lenet300100", num_classes=10, hidden=(150, 20))
  np.testing.assert_allclose(
    smaller.apply({"params": small}, x), model.apply({"params": pruned}, x), rtol=1e-5, atol=1e-5
  )


def test_units_fed_only_by_removed_units_go_too():
  # Unit 1 of "a" is dead (constant relu(2.0)); unit 0 of "b" reads only that unit, so once
  # it is folded into b's bias, b's unit 0 is a constant too and is removed as well.
  params = {
    "a": {"kernel": jnp.array([[1.0, 0.0]]), "bias": jnp.array([0.5, 2.0])},
    "b": {"kernel": jnp.array([[0.0, 1.0], [3.0, 1.0]]), "bias": jnp.array([-1.0, 0.0])},
    "c": {"kernel": jnp.array([[2.0], [1.0]]), "bias": jnp.array([0.0])},
  }
  x = jnp.array([[0.3], [-2.0], [1.5]])

  def forward(p):
    h = jax.nn.relu(x @ p["a"]["kernel"] + p["a"]["bias"])
    h = jax.nn.relu(h @ p["b"]["kernel"] + p["b"]["bias"])
    return h @ p["c"]["kernel"] + p["c"]["bias"]

  small, widths = remove_units(params, ["a", "b", "c"])
  assert widths == {"a": 1, "b": 1}
  np.testing.assert_allclose(forward(small), forward(params), rtol=1e-6)


class _ConvNet(nn.Module):
  widths: tuple[int, int, int] = (6, 8, 12)
  padding: str = "VALID"

  @nn.compact
  def __call__(self, x):
    x = nn.Conv(self.widths[0], (3, 3), padding=self.padding, name="c0")(x)
    x = nn.max_pool(x, (2, 2), strides=(2, 2))
    x = nn.Conv(self.widths[1], (3, 3), padding=self.padding, name="c1")(x)
    x = x.reshape((x.shape[0], -1))
    x = nn.relu(nn.Dense(self.widths[2], name="d0")(x))
    return nn.Dense(3, name="d1")(x)


def test_conv_filters_are_removed_through_pooling_and_flatten():
  model = _ConvNet()
  x = jax.random.normal(jax.random.key(0), (4, 12, 12, 2))
  params = _randomize_biases(model.init(jax.random.key(1), x)["params"], jax.random.key(2))
  rule = {"c0/kernel": 0.5, "c1/kernel": 0.5, "d0/kernel": 0.25, ".*": None}
  pruned, _ = jaxprune.prune(
    params, 0.5, distribution=rule, structure=jaxprune.structures.channels()
  )
  identity = lambda v: v
  small, widths = remove_units(
    pruned,
    ["c0", "c1", "d0", "d1"],
    activations=[identity, identity, jax.nn.relu],
    conv_padding="VALID",
  )
  assert widths == {"c0": 3, "c1": 4, "d0": 9}
  smaller = _ConvNet(widths=(3, 4, 9))
  np.testing.assert_allclose(
    smaller.apply({"params": small}, x), model.apply({"params": pruned}, x), rtol=1e-5, atol=1e-5
  )


def test_a_constant_before_a_same_padded_conv_is_refused():
  model = _ConvNet(padding="SAME")
  x = jnp.ones((1, 8, 8, 2))
  params = _randomize_biases(model.init(jax.random.key(1), x)["params"], jax.random.key(2))
  params["c0"]["kernel"] = params["c0"]["kernel"].at[..., 0].set(0.0)
  params["c0"]["bias"] = params["c0"]["bias"].at[0].set(1.0)
  with pytest.raises(ValueError, match=r"units \[0\] of c0 .* SAME-padded"):
    remove_units(params, ["c0", "c1", "d0", "d1"], activations=lambda v: v)
  params["c0"]["bias"] = params["c0"]["bias"].at[0].set(-1.0)  # relu(-1) = 0: nothing to fold
  small, widths = remove_units(params, ["c0", "c1", "d0", "d1"])
  assert widths["c0"] == 5


def test_bad_layer_lists_are_explained():
  params = {"a": {"kernel": jnp.ones((2, 3))}, "b": {"kernel": jnp.ones((4, 1))}}
  with pytest.raises(ValueError, match="no layer 'z'"):
    remove_units(params, ["a", "z"])
  with pytest.raises(ValueError, match="reads 4 inputs"):
    remove_units(params, ["a", "b"])
  with pytest.raises(ValueError, match="at least two layers"):
    remove_units(params, ["a"])
  with pytest.raises(ValueError, match="activations has 2 entries"):
    remove_units(params, ["a", "b"], activations=[jax.nn.relu, jax.nn.relu])
