"""The train state and the pure steps: extras reach the criterion, BatchNorm state, eval masks."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxprune
from jaxprune.errors import MissingExtraError
from jaxprune.train.state import create_train_state as _create
from jaxprune.train.steps import eval_step, train_step


def create_train_state(model, tx, input_shape, seed):
  """One compilation instead of one per initialiser op (much faster on CPU)."""
  return jax.jit(lambda: _create(model, tx, input_shape, seed))()


class Tiny(nn.Module):
  """A two-layer MLP on flattened images, called like the zoo's models."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train
    x = nn.relu(nn.Dense(32)(x.reshape((x.shape[0], -1))))
    return nn.Dense(10)(x)


SEEN: dict = {}


@jaxprune.criteria.register(
  "_test_uses_every_extra", needs=("loss_fn", "batch", "key"), overwrite=True
)
def _uses_every_extra(params, *, loss_fn, batch, key, **extras):
  """Magnitude, plus a zero term that depends on the loss on the batch and on the key."""
  del extras
  loss = loss_fn(params, batch)
  noise = jax.random.uniform(key, ())
  SEEN["traced"] = True
  return jax.tree.map(lambda w: jnp.abs(w) + 0.0 * (loss + noise), params)


def _batch(n=8, shape=(8, 8, 1)):
  rng = np.random.default_rng(0)
  return {
    "image": rng.normal(size=(n, *shape)).astype(np.float32),
    "label": rng.integers(0, 10, n).astype(np.int32),
  }


def test_train_step_passes_loss_fn_batch_and_key_to_the_criterion():
  model = Tiny()
  tx = jaxprune.masked(optax.adam(1e-3), 0.5, criterion="_test_uses_every_extra")
  state = create_train_state(model, tx, (8, 8, 1), seed=0)
  SEEN.clear()
  new_state, metrics = jax.jit(train_step)(state, _batch())
  assert SEEN.get("traced")
  assert int(new_state.step) == 1 and np.isfinite(float(metrics["loss"]))
  w = np.asarray(new_state.params["Dense_0"]["kernel"])
  assert w.shape == (64, 32)
  assert (w == 0).mean() == pytest.approx(0.5)


def test_apply_gradients_without_the_extras_fails_with_the_corrected_call():
  model = Tiny()
  tx = jaxprune.masked(optax.adam(1e-3), 0.5, criterion="_test_uses_every_extra")
  state = create_train_state(model, tx, (8, 8, 1), seed=0)
  grads = jax.tree.map(jnp.zeros_like, state.params)
  with pytest.raises(MissingExtraError, match="loss_fn"):
    state.apply_gradients(grads)


@pytest.fixture(scope="module")
def plain_state():
  return create_train_state(Tiny(), optax.sgd(0.1), (8, 8, 1), seed=3)


def test_step_keys_depend_only_on_seed_and_step(plain_state):
  key = jax.jit(lambda s: jax.random.key_data(s.step_key()))
  again = create_train_state(Tiny(), optax.adam(1e-3), (8, 8, 1), seed=3)
  np.testing.assert_array_equal(key(plain_state), key(again))
  later = plain_state.replace(step=plain_state.step + 1)
  assert not np.array_equal(key(plain_state), key(later))


class ConvBN(nn.Module):
  """The smallest model with BatchNorm (``train`` keyword like the zoo's models)."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.Conv(4, (3, 3), name="stem_conv")(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
    return nn.Dense(10)(jnp.mean(nn.relu(x), axis=(1, 2)))


def test_batchnorm_statistics_are_updated_by_the_training_step():
  model = ConvBN()
  tx = jaxprune.masked(optax.sgd(0.1, momentum=0.9), 0.5)
  state = create_train_state(model, tx, (8, 8, 1), seed=0)
  assert state.batch_stats
  new_state, _ = jax.jit(train_step)(state, _batch())
  before = jax.tree.leaves(state.batch_stats)
  after = jax.tree.leaves(new_state.batch_stats)
  assert any(not np.array_equal(x, y) for x, y in zip(before, after, strict=True))
  conv = np.asarray(new_state.params["stem_conv"]["kernel"])
  assert (conv == 0).mean() == pytest.approx(0.5, abs=0.01)


def test_eval_step_ignores_padding_rows(plain_state):
  state, step = plain_state, jax.jit(eval_step)
  batch = _batch(6)
  full = step(state, batch)
  padded = {k: np.concatenate([v, v[:2]]) for k, v in batch.items()}
  padded["mask"] = np.arange(8) < 6
  out = step(state, padded)
  assert float(out["count"]) == 6
  np.testing.assert_allclose(float(out["loss_sum"]), float(full["loss_sum"]), rtol=1e-6)
  assert float(out["correct"]) == float(full["correct"])


def test_activation_capture_feeds_wanda():
  model = Tiny()
  tx = jaxprune.masked(optax.adam(1e-3), 0.5, criterion="wanda")
  state = create_train_state(model, tx, (8, 8, 1), seed=0)
  new_state, _ = jax.jit(lambda s, b: train_step(s, b, capture_activations=True))(state, _batch())
  masks = jaxprune.masks_of(new_state.opt_state)
  assert float(np.mean(np.asarray(masks["Dense_0"]["kernel"]))) == pytest.approx(0.5)


def test_the_penalty_joins_the_objective_but_not_the_reported_loss():
  from jaxprune.train import models

  model = models.get_model("lenet300100", num_classes=10, layer="variational")
  batch = {"image": jnp.ones((4, 8, 8, 1)), "label": jnp.arange(4)}
  plain = create_train_state(model, optax.sgd(0.1), (8, 8, 1), 0)
  penalized = create_train_state(model, optax.sgd(0.1), (8, 8, 1), 0)
  kl = lambda params, step: jaxprune.bayes.kl_penalty(params) / 100.0
  a, ma = jax.jit(train_step)(plain, batch)
  b, mb = jax.jit(lambda s, b: train_step(s, b, penalty=kl))(penalized, batch)
  assert float(ma["loss"]) == float(mb["loss"])  # the cross-entropy, before the update
  sigma_a = a.params["VariationalDense_0"]["log_sigma2"]
  sigma_b = b.params["VariationalDense_0"]["log_sigma2"]
  assert float(jnp.mean(sigma_b - sigma_a)) > 0  # the KL pushes log sigma^2 up


def test_unknown_penalties_are_refused_with_the_choices():
  from jaxprune.train.config import load_config
  from jaxprune.train.penalty import TERMS
  from jaxprune.train.settings import PENALTIES, resolve

  with pytest.raises(ValueError, match="'kl' .* or 'l0'"):
    resolve(load_config("default", {"train.penalty": "l2"}))
  assert set(PENALTIES) == set(TERMS)  # every name the settings accept has its term
