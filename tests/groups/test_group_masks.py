"""Group structures in prune and masked: whole coupled channels, exact counts, group scores."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxprune
from jaxprune.train import models


def _resnet():
  model = models.ResNet20(num_classes=10, widths=(8, 16, 16), blocks_per_stage=1)
  x = jnp.ones((2, 16, 16, 3))
  variables = model.init(jax.random.key(0), x)
  return variables, jaxprune.groups.trace(model.apply, variables, x, train=False)


def _channel_masks(groups, masks):
  """Per group, (channels × entries) bool arrays of every member's mask entries, and of the
  entries on vectors (bias, BatchNorm), which no other group can mask."""
  out = {}
  for g in groups:
    cols, vectors = [], []
    for (path, axis), idx in zip(g.members, g.index, strict=True):
      if not path.startswith("params/"):
        continue
      m = masks
      for k in path.split("/")[1:]:
        m = m[k]
      m = np.moveaxis(np.take(np.asarray(m), idx.reshape(-1), axis=axis), axis, 0)
      cols.append(m.reshape(g.size, -1))
      if m.ndim == 1:
        vectors.append(m.reshape(g.size, -1))
    out[g.name] = (np.concatenate(cols, axis=1), np.concatenate(vectors, axis=1))
  return out


def _check_whole_channels(groups, masks, sparsity):
  # A removed channel is masked in every member; a kept one keeps its bias and BatchNorm
  # entries (its kernel entries may still be masked by the group of another axis).
  for name, (m, vectors) in _channel_masks(groups, masks).items():
    kept = m.any(axis=1)
    assert (vectors == kept[:, None]).all(), name
    assert kept.sum() == m.shape[0] - round(sparsity * m.shape[0]), name


def test_prune_with_groups_masks_whole_channels_with_the_exact_count():
  variables, groups = _resnet()
  pruned, masks = jaxprune.prune(variables["params"], 0.5, structure=groups)
  _check_whole_channels(groups, masks, 0.5)
  # The head's outputs and the stem's input channels are in no group: never masked.
  assert masks["head"]["bias"].all() and masks["stem_conv"]["kernel"].any(axis=(0, 1, 3)).all()
  assert float(jnp.abs(pruned["stem_bn"]["scale"]).sum()) > 0


def test_masked_with_groups_under_a_schedule_and_jit():
  variables, groups = _resnet()
  params = variables["params"]
  sched = jaxprune.schedules.polynomial(begin=0, end=4, every=2)
  tx = jaxprune.masked(optax.sgd(0.1), 0.75, structure=groups, schedule=sched)
  state = tx.init(params)
  step = jax.jit(tx.update)
  grads = jax.tree.map(jnp.ones_like, params)
  previous = jaxprune.masks_of(state)
  for _ in range(6):
    updates, state = step(grads, state, params)
    params = optax.apply_updates(params, updates)
    masks = jaxprune.masks_of(state)
    # Masks only shrink: a channel whose input rows another group pruned is still alive,
    # so the next update ranks it by its score and revives no channel.
    for new, old in zip(jax.tree.leaves(masks), jax.tree.leaves(previous), strict=True):
      assert not np.any(np.asarray(new) & ~np.asarray(old))
    previous = masks
  _check_whole_channels(groups, masks, 0.75)
  zero = jax.tree.map(lambda p, m: bool(jnp.all(jnp.where(m, 0.0, p) == 0)), params, masks)
  assert all(jax.tree.leaves(zero))


class MLP(nn.Module):
  @nn.compact
  def __call__(self, x, train=False):
    h = nn.Dense(3, name="a", use_bias=False)(x)
    h = nn.relu(nn.BatchNorm(use_running_average=not train, name="bn")(h))
    return nn.Dense(2, name="b", use_bias=False)(h)


def _mlp(a_kernel, b_kernel, scale=None):
  x = jnp.ones((1, 2))
  model = MLP()
  variables = model.init(jax.random.key(0), x)
  groups = jaxprune.groups.trace(model.apply, variables, x)
  params = {**variables["params"], "a": {"kernel": jnp.array(a_kernel)}}
  params["b"] = {"kernel": jnp.array(b_kernel)}
  if scale is not None:
    params["bn"] = {**params["bn"], "scale": jnp.array(scale)}
  return params, groups


def _kept(masks):
  return masks["a"]["kernel"][0].tolist()


def test_l1_and_l2_group_scores_rank_differently():
  # Channel 0: entries (3, 0, 0) -> L1 3, L2 3. Channel 1: (1, 1, 1.5) -> L1 3.5, L2 2.06.
  # (BatchNorm scale and bias, 1 and 0 at init, add 1 to every channel's L1 and L2².)
  params, groups = _mlp([[3.0, 1.0, 5.0], [0.0, 1.0, 5.0]], [[0.0, 0.0], [1.5, 0.0], [5.0, 5.0]])
  _, l1 = jaxprune.prune(params, 1 / 3, structure=groups.by("l1"))
  _, l2 = jaxprune.prune(params, 1 / 3, structure=groups.by("l2"))
  assert _kept(l1) == [False, True, True] and _kept(l2) == [True, False, True]


def test_bn_scale_scores_only_the_batchnorm_scale():
  params, groups = _mlp(np.ones((2, 3)), np.ones((3, 2)), scale=[0.5, -0.1, 2.0])
  _, masks = jaxprune.prune(params, 1 / 3, structure=groups.by("bn_scale"))
  assert _kept(masks) == [True, False, True]
  assert masks["bn"]["bias"].tolist() == [True, False, True]


def test_group_taylor_squares_the_summed_signed_product():
  params, groups = _mlp(np.ones((2, 3)), np.ones((3, 2)))
  grads = jax.tree.map(jnp.zeros_like, params)
  # Channel 0: w·g = +2 and -2 on its two kernel entries: they cancel, (Σ w·g)² = 0, while
  # its Σ|w·g| = 4 is the largest; channel 1 has (0.5)², channel 2 has 1².
  grads["a"]["kernel"] = jnp.array([[2.0, 0.5, 1.0], [-2.0, 0.0, 0.0]])
  _, taylor = jaxprune.prune(
    params, 1 / 3, criterion="signed_taylor", grads=grads, structure=groups.by("taylor")
  )
  _, abs_sum = jaxprune.prune(params, 1 / 3, criterion="saliency", grads=grads, structure=groups)
  assert _kept(taylor) == [False, True, True] and _kept(abs_sum) == [True, False, True]


def test_group_lasso_on_traced_groups_sums_each_channels_norm():
  params, groups = _mlp([[3.0, 0.0, 1.0], [4.0, 0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
  params["bn"] = {"scale": jnp.zeros(3), "bias": jnp.zeros(3)}
  # Channel 0 has norm 5, channel 1 is all zero, channel 2 has norm 1; 6 entries each
  # (2 rows of a, BatchNorm scale and bias, 2 columns of b).
  value = jaxprune.penalties.group_lasso(params, group=groups)
  np.testing.assert_allclose(float(value), 6**0.5 * 6.0, rtol=1e-6)
  grad = jax.grad(lambda p: jaxprune.penalties.group_lasso(p, group=groups))(params)
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grad))
  assert grad["a"]["kernel"][:, 1].tolist() == [0.0, 0.0]


def test_groups_need_the_uniform_distribution():
  variables, groups = _resnet()
  try:
    jaxprune.prune(variables["params"], 0.5, structure=groups, distribution="erk")
  except ValueError as e:
    assert "distribution='uniform'" in str(e)
  else:
    raise AssertionError("expected a ValueError")
