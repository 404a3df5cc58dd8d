"""Re-estimated BatchNorm statistics are the batch statistics of the pruned network."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import jaxprune

AXES = (0, 1, 2)


class ConvBN(nn.Module):
  """Two 3x3 convolutions, each followed by BatchNorm and ReLU, then a linear head."""

  @nn.compact
  def __call__(self, x, train=False):
    for i in (1, 2):
      x = nn.Conv(8, (3, 3), name=f"conv{i}")(x)
      x = nn.relu(nn.BatchNorm(use_running_average=not train, name=f"bn{i}")(x))
    return nn.Dense(4, name="head")(x.reshape((x.shape[0], -1)))


class NNXConvBN(nnx.Module):
  """`ConvBN` in NNX."""

  def __init__(self, rngs: nnx.Rngs):
    self.conv1 = nnx.Conv(3, 8, (3, 3), rngs=rngs)
    self.bn1 = nnx.BatchNorm(8, rngs=rngs)
    self.conv2 = nnx.Conv(8, 8, (3, 3), rngs=rngs)
    self.bn2 = nnx.BatchNorm(8, rngs=rngs)
    self.head = nnx.Linear(6 * 6 * 8, 4, rngs=rngs)

  def __call__(self, x):
    x = nnx.relu(self.bn1(self.conv1(x)))
    x = nnx.relu(self.bn2(self.conv2(x)))
    return self.head(x.reshape((x.shape[0], -1)))


def _batches(n, seed=0, size=32):
  x = jax.random.normal(jax.random.key(seed), (n * size, 6, 6, 3)) + 0.5
  return [x[i * size : (i + 1) * size] for i in range(n)]


def _stale_pruned_linen():
  """ConvBN whose statistics are the dense model's, with 80% of its kernels pruned."""
  model = ConvBN()
  batches = _batches(4, seed=1)
  variables = model.init(jax.random.key(0), batches[0])
  dense_stats = jaxprune.recalibrate_batch_stats(model.apply, variables, batches)
  pruned, _ = jaxprune.prune(variables["params"], 0.8)
  return model, {"params": pruned, "batch_stats": dense_stats}


def _expected_linen(model, variables, batches):
  """Per BatchNorm, the mean over batches of its input's batch mean and variance."""
  means, variances = {}, {}
  for x in batches:
    _, state = model.apply(
      variables,
      x,
      train=True,
      mutable=["intermediates", "batch_stats"],
      capture_intermediates=lambda m, _: isinstance(m, nn.Conv),
    )
    for i in (1, 2):
      y = state["intermediates"][f"conv{i}"]["__call__"][0]
      means.setdefault(f"bn{i}", []).append(jnp.mean(y, AXES))
      variances.setdefault(f"bn{i}", []).append(jnp.var(y, AXES))
  return {
    k: {"mean": np.mean(means[k], 0), "var": np.mean(variances[k], 0)} for k in ("bn1", "bn2")
  }


def _assert_stats_close(got, expected):
  for name in ("bn1", "bn2"):
    for stat in ("mean", "var"):
      np.testing.assert_allclose(got[name][stat], expected[name][stat], rtol=1e-5, atol=1e-6)


def test_linen_statistics_are_the_average_batch_statistics_of_the_pruned_network():
  model, variables = _stale_pruned_linen()
  batches = _batches(3)
  new = jax.jit(lambda v, b: jaxprune.recalibrate_batch_stats(model.apply, v, b, train=False))(
    variables, batches
  )
  _assert_stats_close(new, _expected_linen(model, variables, batches))
  assert not np.allclose(new["bn2"]["var"], variables["batch_stats"]["bn2"]["var"], rtol=0.1)
  # num_batches reads only the first batches; an iterator works as well as a list.
  first = jaxprune.recalibrate_batch_stats(model.apply, variables, iter(batches), num_batches=2)
  _assert_stats_close(first, _expected_linen(model, variables, batches[:2]))


def _loss_and_accuracy(logits, labels):
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
  return float(loss), float(jnp.mean(jnp.argmax(logits, -1) == labels))


def test_linen_recalibration_restores_the_pruned_networks_evaluation():
  # The labels are what the pruned network predicts with the statistics of the whole
  # evaluation set; stale statistics from the dense network get many of them wrong.
  model, stale = _stale_pruned_linen()
  x_eval = _batches(1, seed=2, size=512)[0]
  logits, _ = model.apply(stale, x_eval, train=True, mutable=["batch_stats"])
  labels = jnp.argmax(logits, -1)
  new = jaxprune.recalibrate_batch_stats(model.apply, stale, _batches(8, seed=3))
  stale_loss, stale_acc = _loss_and_accuracy(model.apply(stale, x_eval), labels)
  loss, acc = _loss_and_accuracy(model.apply({**stale, "batch_stats": new}, x_eval), labels)
  assert acc >= 0.9 and acc > stale_acc + 0.2, (acc, stale_acc)
  assert loss < stale_loss, (loss, stale_loss)


def test_nnx_statistics_are_the_average_batch_statistics_of_the_pruned_network():
  model = NNXConvBN(nnx.Rngs(0))
  jaxprune.nnx_recalibrate_batch_stats(model, _batches(4, seed=1))  # the dense statistics
  params = nnx.state(model, nnx.Param)
  pruned, _ = jaxprune.prune(params, 0.8)
  nnx.update(model, pruned)
  model.eval()
  batches = _batches(3)
  means = {"bn1": [], "bn2": []}
  variances = {"bn1": [], "bn2": []}
  for x in batches:  # the forward pass written out, BatchNorm with batch statistics
    y = model.conv1(x)
    means["bn1"].append(jnp.mean(y, AXES))
    variances["bn1"].append(jnp.var(y, AXES))
    bn = model.bn1
    y = (y - jnp.mean(y, AXES)) / jnp.sqrt(jnp.var(y, AXES) + bn.epsilon)
    y = model.conv2(nnx.relu(y * bn.scale[...] + bn.bias[...]))
    means["bn2"].append(jnp.mean(y, AXES))
    variances["bn2"].append(jnp.var(y, AXES))
  stale = nnx.clone(nnx.state(model, nnx.BatchStat))
  new = jaxprune.nnx_recalibrate_batch_stats(model, batches)
  for name in ("bn1", "bn2"):
    bn = getattr(model, name)
    np.testing.assert_allclose(bn.mean[...], np.mean(means[name], 0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn.var[...], np.mean(variances[name], 0), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(new[name]["var"][...], bn.var[...])
    assert bn.use_running_average and bn.momentum == 0.99  # the model's flags are restored
  assert not np.allclose(model.bn2.var[...], stale["bn2"]["var"][...], rtol=0.1)


def test_nnx_recalibration_restores_the_pruned_networks_evaluation():
  model = NNXConvBN(nnx.Rngs(0))
  jaxprune.nnx_recalibrate_batch_stats(model, _batches(4, seed=1))
  pruned, _ = jaxprune.prune(nnx.state(model, nnx.Param), 0.8)
  nnx.update(model, pruned)
  x_eval = _batches(1, seed=2, size=512)[0]
  model.train()
  labels = jnp.argmax(nnx.clone(model)(x_eval), -1)  # statistics of the evaluation set
  model.eval()
  stale_loss, stale_acc = _loss_and_accuracy(model(x_eval), labels)
  jaxprune.nnx_recalibrate_batch_stats(model, _batches(8, seed=3))
  loss, acc = _loss_and_accuracy(model(x_eval), labels)
  assert acc >= 0.9 and acc > stale_acc + 0.2, (acc, stale_acc)
  assert loss < stale_loss, (loss, stale_loss)


def test_a_model_without_batchnorm_is_refused():
  model = nn.Dense(3)
  variables = model.init(jax.random.key(0), jnp.ones((1, 2)))
  with pytest.raises(ValueError, match=r"without BatchNorm statistics.*\['params'\]"):
    jaxprune.recalibrate_batch_stats(model.apply, variables, [jnp.ones((4, 2))])
  with pytest.raises(ValueError, match="without nnx.BatchNorm layers"):
    jaxprune.nnx_recalibrate_batch_stats(nnx.Linear(2, 3, rngs=nnx.Rngs(0)), [jnp.ones((4, 2))])


def test_too_few_batches_or_a_bad_count_is_refused():
  model, variables = _stale_pruned_linen()
  with pytest.raises(ValueError, match="received 2 batches; expected 5"):
    jaxprune.recalibrate_batch_stats(model.apply, variables, _batches(2), num_batches=5)
  with pytest.raises(ValueError, match="received 0 batches; expected at least one"):
    jaxprune.recalibrate_batch_stats(model.apply, variables, [])
  with pytest.raises(ValueError, match="num_batches must be a positive int"):
    jaxprune.recalibrate_batch_stats(model.apply, variables, _batches(2), num_batches=0)


def test_statistics_no_batchnorm_computed_are_refused():
  class Skips(nn.Module):
    @nn.compact
    def __call__(self, x, use_second=True):
      x = nn.BatchNorm(use_running_average=True, name="first")(x)
      return nn.BatchNorm(use_running_average=True, name="second")(x) if use_second else x

  model = Skips()
  variables = model.init(jax.random.key(0), jnp.ones((4, 2)))
  with pytest.raises(ValueError, match=r"\['second/mean', 'second/var'\] were not computed"):
    jaxprune.recalibrate_batch_stats(model.apply, variables, [jnp.ones((4, 2))], use_second=False)


def test_an_nnx_forward_that_keeps_running_averages_is_refused_and_changes_nothing():
  model = NNXConvBN(nnx.Rngs(0))
  before = nnx.clone(nnx.state(model, nnx.BatchStat))

  def forward(m, x):
    m.bn1(m.conv1(x))
    return m.bn2(m.conv2(m.conv1(x)), use_running_average=True)

  with pytest.raises(ValueError, match=r"at \['bn2'\] did not compute batch statistics"):
    jaxprune.nnx_recalibrate_batch_stats(model, _batches(2), forward=forward)
  after = nnx.state(model, nnx.BatchStat)
  assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.all(a == b)), before, after))
  assert model.bn2.momentum == 0.99 and model.bn2.use_running_average is False
