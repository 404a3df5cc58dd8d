"""Drop and grow under distribution='global' and with structures: exact counts, moving masks."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxprune
from jaxprune import dynamic, structures

SHAPES = {"Dense_0": (16, 32), "Dense_1": (32, 24), "Dense_2": (24, 8)}
METHODS = {"rigl": dynamic.rigl, "set": dynamic.set_}


def _params():
  keys = jax.random.split(jax.random.key(0), len(SHAPES))
  params = {
    n: {"kernel": jax.random.normal(k, s)} for (n, s), k in zip(SHAPES.items(), keys, strict=True)
  }
  params["Dense_0"]["bias"] = jnp.zeros(32)
  return params


def _loss(params, x):
  h = jnp.tanh(x @ params["Dense_0"]["kernel"] + params["Dense_0"]["bias"])
  h = jnp.tanh(h @ params["Dense_1"]["kernel"])
  return jnp.mean(jnp.square(h @ params["Dense_2"]["kernel"] - 1.0))


def _run(tx, updates=5):
  """Masks after init and after each of ``updates`` steps (a mask update at every step),
  with the params after each step."""
  params = _params()
  state = tx.init(params)

  @jax.jit
  def step(params, state, x):
    grads = jax.grad(_loss)(params, x)
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  masks, history = [jaxprune.masks_of(state)], []
  for i in range(updates):
    x = jax.random.normal(jax.random.key(10 + i), (32, 16))
    params, state = step(params, state, x)
    masks.append(jaxprune.masks_of(state))
    history.append(params)
  return masks, history


def _kernels(masks):
  return {n: np.asarray(masks[n]["kernel"]) for n in SHAPES}


@pytest.mark.parametrize("distribution", ["global", "global_normalized"])
@pytest.mark.parametrize("method", sorted(METHODS))
def test_global_keeps_every_layer_count_of_the_first_mask(method, distribution):
  tx = METHODS[method](
    optax.adam(1e-2), 0.8, every=1, end=100, alpha=0.5, distribution=distribution
  )
  masks, history = _run(tx)
  first = _kernels(masks[0])
  counts = {n: int(m.sum()) for n, m in first.items()}
  # The global mask gives the layers different densities (not a uniform split).
  assert len({c / first[n].size for n, c in counts.items()}) == len(SHAPES)
  for before, after, params in zip(masks[:-1], masks[1:], history, strict=True):
    old, new = _kernels(before), _kernels(after)
    for n in SHAPES:
      assert int(new[n].sum()) == counts[n], (n, int(new[n].sum()), counts[n])
      assert (new[n] & ~old[n]).any(), n  # connections move in every layer, every update
      assert (np.asarray(params[n]["kernel"])[~new[n]] == 0.0).all()


def _units(x, structure):
  """(..., entries) view of a kernel: a channel is a column, a block a 4 x 4 tile."""
  x = np.asarray(x)
  if isinstance(structure, structures.Channels):
    return x.T
  r, c = x.shape
  return x.reshape(r // 4, 4, c // 4, 4).transpose(0, 2, 1, 3).reshape(r // 4, c // 4, 16)


STRUCTURES = {"channels": structures.channels(), "block": structures.block((4, 4))}


@pytest.mark.parametrize("name", sorted(STRUCTURES))
@pytest.mark.parametrize("method", sorted(METHODS))
def test_structured_masks_move_whole_units_at_a_constant_count(method, name):
  structure = STRUCTURES[name]
  tx = METHODS[method](optax.adam(1e-2), 0.5, every=1, end=100, alpha=0.5, structure=structure)
  masks, history = _run(tx)
  pruned = [n for n in SHAPES if not _kernels(masks[0])[n].all()]
  # channels() keeps the output layer (Dense_2) dense; block prunes every kernel.
  assert pruned == (["Dense_0", "Dense_1"] if name == "channels" else list(SHAPES))
  first = {n: _units(_kernels(masks[0])[n], structure) for n in pruned}
  moved = np.zeros((len(history), len(pruned)), int)
  for t, (before, after, params) in enumerate(zip(masks[:-1], masks[1:], history, strict=True)):
    for i, n in enumerate(pruned):
      old = _units(_kernels(before)[n], structure)
      new = _units(_kernels(after)[n], structure)
      assert (new.all(axis=-1) | ~new.any(axis=-1)).all(), n  # whole units only
      kept_old, kept_new = old.all(axis=-1), new.all(axis=-1)
      assert kept_new.sum() == first[n].all(axis=-1).sum(), n  # the same number of units
      moved[t, i] = (kept_new & ~kept_old).sum()
      w = _units(np.asarray(params[n]["kernel"]), structure)
      assert (w[~kept_new] == 0.0).all(), n  # pruned weights exactly 0.0
      assert (w[kept_new & ~kept_old] == 0.0).all(), n  # grown units start at 0.0
  # Units move at every update, and in every pruned leaf. (An update may regrow all the
  # units it dropped in one leaf, e.g. in ERK's densest: they keep their weights.)
  assert (moved.sum(axis=1) > 0).all() and (moved.sum(axis=0) > 0).all(), moved


def test_rigl_drops_units_by_mean_magnitude_and_grows_by_gradient_norm():
  # Four output channels (columns); 0 and 1 are active. Channel 0 has the smaller mean |w|,
  # so it is dropped (fraction 0.5 of 2 active). Channel 2's gradient has L2 norm 3 (mean
  # |g| 0.75), channel 3's L2 norm 2 (mean |g| 1): the norm picks channel 2.
  w = jnp.array([[0.1, 1.0, 0.0, 0.0]] * 4)
  mask = jnp.array([[True, True, False, False]] * 4)
  g = jnp.array([[0.0, 0.0, 3.0, 1.0]] + [[0.0, 0.0, 0.0, 1.0]] * 3)
  scores = dynamic.rigl_scores(
    {"k": w},
    grads={"k": g},
    masks={"k": mask},
    step=0,
    fraction=0.5,
    structure=structures.channels(),
  )["k"]
  new = structures.channels().make(scores, 0.5)
  assert new[0].tolist() == [False, True, True, False]
  assert (new == new[0]).all()


def test_set_grows_whole_units_from_its_key():
  w = jnp.ones((4, 8)) * jnp.arange(1.0, 9.0)  # channel 0 smallest
  mask = jnp.arange(8) < 4
  mask = jnp.broadcast_to(mask, (4, 8))
  new = []
  for seed in (0, 0, 1, 2, 3):
    s = dynamic.set_scores(
      {"k": w},
      masks={"k": mask},
      step=0,
      key=jax.random.key(seed),
      fraction=0.5,
      structure=structures.channels(),
    )["k"]
    new.append(np.asarray(structures.channels().make(s, 0.5))[0])
  assert all(m.sum() == 4 for m in new) and (new[0] == new[1]).all()
  assert all(m[2:4].all() for m in new)  # the survivors: channels 0 and 1 (least |w|) left
  assert len({tuple(m) for m in new}) > 1  # the grown pair depends on the key


def test_n_of_m_moves_weights_within_each_group():
  tx = dynamic.rigl(optax.adam(1e-2), 0.5, every=1, end=100, structure=structures.n_of_m(2, 4))
  masks, history = _run(tx)
  for before, after, params in zip(masks[:-1], masks[1:], history, strict=True):
    for n in SHAPES:
      old, new = _kernels(before)[n], _kernels(after)[n]
      groups = new.reshape(-1, 4, new.shape[-1]).sum(axis=1)  # runs of 4 along the input axis
      assert (groups == 2).all(), n
      assert (new & ~old).any(), n
      assert (np.asarray(params[n]["kernel"])[~new] == 0.0).all()


class _MLP(nn.Module):
  @nn.compact
  def __call__(self, x, train=False):
    h = nn.relu(nn.Dense(8, name="a")(x))
    return nn.Dense(2, name="b")(h)


def _groups():
  x = jnp.ones((1, 4))
  variables = _MLP().init(jax.random.key(0), x)
  return variables["params"], jaxprune.groups.trace(_MLP().apply, variables, x)


def test_pruned_group_channels_have_zero_gradient():
  # Why traced groups are refused: nothing would tell the channels to grow apart.
  params, groups = _groups()
  pruned, masks = jaxprune.prune(params, 0.5, structure=groups)
  x = jax.random.normal(jax.random.key(1), (16, 4))
  grads = jax.grad(lambda p: jnp.sum(_MLP().apply({"params": p}, x) ** 2))(pruned)
  off = jax.tree.map(lambda g, m: np.asarray(g)[~np.asarray(m)], grads, masks)
  assert sum(v.size for v in jax.tree.leaves(off)) > 0
  assert all((v == 0.0).all() for v in jax.tree.leaves(off))


@pytest.mark.parametrize("method", sorted(METHODS))
def test_traced_groups_are_refused(method):
  _, groups = _groups()
  with pytest.raises(ValueError, match="cannot move traced channel groups") as info:
    METHODS[method](optax.sgd(0.1), 0.5, end=100, distribution="uniform", structure=groups)
  assert "structure=jaxprune.structures.channels()" in str(info.value)
  make = dynamic.rigl_criterion if method == "rigl" else dynamic.set_criterion
  with pytest.raises(ValueError, match="cannot move traced channel groups"):
    make(0.3, structure=groups)


class _Positive:
  def validate(self, shape, path=""):
    del shape, path

  def make(self, scores, sparsity):
    del sparsity
    return scores > 0


def test_unknown_structures_and_global_within_are_refused():
  with pytest.raises(ValueError, match="built-in structures only"):
    dynamic.rigl(optax.sgd(0.1), 0.5, end=100, structure=_Positive())
  with pytest.raises(ValueError, match="would be ignored"):
    dynamic.set_(
      optax.sgd(0.1),
      0.5,
      end=100,
      distribution="global",
      structure=structures.unstructured(within=-1),
    )


@pytest.mark.parametrize(
  "layout",
  [{"distribution": "global"}, {"structure": jaxprune.structures.channels(prune_outputs=True)}],
)
@pytest.mark.parametrize("name", ["rigl", "set"])
def test_masked_refuses_a_drop_and_grow_criterion_built_for_another_layout(name, layout):
  # The registered criteria score single weights per leaf: with channels() they never moved
  # a unit, and under "global" their per-layer counts drifted.
  params = {"a": jnp.ones((8, 6)), "b": jnp.ones((6, 4))}
  masks = jaxprune.dynamic.random_masks(params, 0.5, key=jax.random.key(0), **layout)
  schedule = jaxprune.schedules.periodic(1)
  tx = jaxprune.masked(
    optax.sgd(0.1), 0.5, criterion=name, initial_masks=masks, schedule=schedule, **layout
  )
  with pytest.raises(ValueError, match=f"criterion '{name}' was built for structure=None"):
    tx.init(params)
  built = getattr(jaxprune.dynamic, f"{name}_criterion")(**layout)
  tx = jaxprune.masked(
    optax.sgd(0.1), 0.5, criterion=built, initial_masks=masks, schedule=schedule, **layout
  )
  tx.init(params)  # the same layout is accepted
