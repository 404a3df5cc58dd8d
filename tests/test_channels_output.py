"""channels(): the model's output layer stays dense unless the caller opts in."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import jaxprune
from jaxprune.structures import channels
from jaxprune.train import models
from jaxprune.train.config import load_config
from jaxprune.train.optim import distribution_from_config
from jaxprune.train.settings import resolve, structure_from_string


def _units_kept(mask):
  """Number of output units (last axis) with any kept weight."""
  m = np.asarray(mask)
  return int(m.reshape(-1, m.shape[-1]).any(axis=0).sum())


def _lenet_params():
  model = models.get_model("lenet300100", num_classes=10)
  return model.init(jax.random.key(0), jnp.ones((1, 28, 28, 1)))["params"]


def test_default_channels_keeps_every_logit_and_prunes_hidden_units():
  _, masks = jaxprune.prune(_lenet_params(), 0.5, structure=channels())
  assert bool(masks["Dense_2"]["kernel"].all())  # all 10 classes stay
  assert _units_kept(masks["Dense_0"]["kernel"]) == 150
  assert _units_kept(masks["Dense_1"]["kernel"]) == 50


def test_masked_with_channels_keeps_the_output_layer_dense():
  params = _lenet_params()
  tx = jaxprune.masked(optax.sgd(0.1), 0.5, structure="channels")
  state = tx.init(params)
  grads = jax.tree.map(jnp.zeros_like, params)
  updates, state = jax.jit(tx.update)(grads, state, params)
  params = optax.apply_updates(params, updates)
  masks = jaxprune.masks_of(state)
  assert bool(masks["Dense_2"]["kernel"].all())
  assert int(jnp.count_nonzero(params["Dense_2"]["kernel"])) == 100 * 10
  assert _units_kept(masks["Dense_1"]["kernel"]) == 50


def test_prune_outputs_opts_in():
  _, masks = jaxprune.prune(_lenet_params(), 0.5, structure=channels(prune_outputs=True))
  assert _units_kept(masks["Dense_2"]["kernel"]) == 5


@pytest.mark.parametrize(
  "name, kwargs",
  [
    ("lenet300100", {}),
    ("lenet300100", {"layer": "variational"}),
    ("lenet5", {}),
    ("lenet5", {"layer": "variational"}),
    ("vgg_small", {}),
    ("resnet20", {}),
    ("vit_small", {}),
  ],
)
def test_every_trainer_model_has_its_logits_layer_found(name, kwargs):
  model = models.get_model(name, num_classes=7, **kwargs)
  shapes = jax.eval_shape(
    lambda: model.init(jax.random.key(0), jnp.ones((1, 28, 28, 1)), train=False)["params"]
  )
  pairs = jaxprune._tree.leaves_with_paths(shapes)
  out = channels().output_paths([p for p, _ in pairs], [x for _, x in pairs])
  # The logits layer is the only one whose kernel ends in num_classes = 7 units.
  logits = [p for p, x in pairs if p.endswith("kernel") and x.shape[-1] == 7]
  assert len(logits) == 1 and logits[0] in out
  assert {p.rsplit("/", 1)[0] for p in out} == {logits[0].rsplit("/", 1)[0]}


def test_channels_config_keeps_all_logits_with_and_without_its_dense_rule():
  for overrides in ({}, {"pruning.dense": ""}):
    pruning = resolve(load_config("configs/channels.py", overrides)).pruning
    _, masks = jaxprune.prune(
      _lenet_params(),
      pruning.sparsity,
      distribution=distribution_from_config(pruning),
      structure=structure_from_string(pruning.structure),
    )
    assert bool(masks["Dense_2"]["kernel"].all())
    assert not bool(masks["Dense_1"]["kernel"].all())


def test_natural_order_puts_layer_10_after_layer_2():
  params = {"layers": {str(i): {"kernel": jnp.ones((4, 4))} for i in range(11)}}
  _, masks = jaxprune.prune(params, 0.5, structure=channels())
  kept = {k: _units_kept(v["kernel"]) for k, v in masks["layers"].items()}
  assert kept == {**{str(i): 2 for i in range(10)}, "10": 4}


class _Mlp(nnx.Module):
  def __init__(self, rngs):
    self.hidden = nnx.Linear(6, 8, rngs=rngs)
    self.head = nnx.Linear(8, 3, rngs=rngs)

  def __call__(self, x):
    return self.head(nnx.relu(self.hidden(x)))


def test_nnx_state_head_by_name_with_value_paths():
  params = nnx.state(_Mlp(nnx.Rngs(0)), nnx.Param)
  _, masks = jaxprune.prune(params, 0.5, structure=channels())
  assert bool(masks["head"]["kernel"][...].all())
  assert _units_kept(masks["hidden"]["kernel"][...]) == 4


def test_output_override_and_its_errors():
  params = {"a": {"kernel": jnp.ones((4, 4))}, "b": {"kernel": jnp.ones((4, 4))}}
  _, masks = jaxprune.prune(params, 0.5, structure=channels(output="a"))
  assert bool(masks["a"]["kernel"].all()) and _units_kept(masks["b"]["kernel"]) == 2
  with pytest.raises(ValueError, match=r"output='c'.*matches no kernel.*a/kernel, b/kernel"):
    jaxprune.prune(params, 0.5, structure=channels(output="c"))


def test_two_output_named_layers_are_an_error():
  params = {n: {"kernel": jnp.ones((4, 4))} for n in ("Dense_0", "head", "out")}
  with pytest.raises(ValueError, match=r"several.*head, out.*channels\(output='head'\)"):
    jaxprune.prune(params, 0.5, structure=channels())


def test_nothing_left_to_prune_is_an_error():
  with pytest.raises(ValueError, match=r"output layer dense \(kernel\).*prune_outputs=True"):
    jaxprune.prune({"kernel": jnp.ones((4, 4))}, 0.5, structure=channels())
  _, masks = jaxprune.prune(
    {"kernel": jnp.ones((4, 4))}, 0.5, structure=channels(prune_outputs=True)
  )
  assert _units_kept(masks["kernel"]) == 2
