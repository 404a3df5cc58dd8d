"""Configs load and override; the optimizer, schedules and structures built from them."""

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxprune
from jaxprune.data.specs import SPECS
from jaxprune.train import models, optim, text_settings
from jaxprune.train.config import config_path, load_config, override
from jaxprune.train.settings import Optimizer, Schedule, resolve, structure_from_string
from jaxprune.train.state import create_train_state

CONFIGS = sorted(p.stem for p in (Path(__file__).resolve().parents[2] / "configs").glob("*.py"))


def test_every_method_family_has_a_config():
  methods = {"default", "snip", "grasp", "wanda", "random_erk", "channels", "variational_dropout"}
  assert methods | {"lenet5", "resnet20", "vit"} <= set(CONFIGS)


@pytest.mark.parametrize("name", CONFIGS)
def test_config_builds_its_optimizer_and_state(name):
  config = load_config(name)
  assert config.pruning.criterion in jaxprune.criteria.names()
  # Long enough to pass the warm-up (ViT-B/16 warms up for 32 epochs).
  total = max(1000, int(float(config.optimizer.warmup_epochs) * 100) + 100)
  tx, lr = optim.make_optimizer(resolve(config), steps_per_epoch=100, total_steps=total)
  model = models.get_model(config.model.name, num_classes=10, **config.model.kwargs.to_dict())
  spec = SPECS.get(config.data.name)
  shape = spec.image_shape if spec is not None else (28, 28, 1)  # VGG-16 needs >= 32x32
  if text_settings.is_text(config.data):  # a language model reads windows of tokens
    shape = (config.data.seq_len,)
  state = jax.eval_shape(lambda: create_train_state(model, tx, shape, 0))
  # Dense configs (the language model the one-shot benchmarks prune) train without masks.
  assert isinstance(state.opt_state, jaxprune.MaskedState) == bool(config.pruning.enabled)
  peak = max(float(lr(t)) for t in range(0, total, 10))
  assert peak == pytest.approx(config.optimizer.learning_rate, rel=1e-3)


def test_variants_override_only_what_differs():
  default, grasp = load_config("default"), load_config("grasp")
  assert grasp.pruning.criterion == "grasp" and grasp.pruning.scoring_temperature == 200.0
  assert grasp.optimizer == default.optimizer and grasp.model == default.model


def test_override_sets_dotted_fields_and_lists_valid_ones_when_unknown():
  config = load_config("default", {"pruning.sparsity": 0.95, "train.num_epochs": 3.0})
  assert (config.pruning.sparsity, config.train.num_epochs) == (0.95, 3.0)
  with pytest.raises(AttributeError, match=r"pruning has no field 'sparsty'.*'sparsity'"):
    override(config, {"pruning.sparsty": 0.5})
  with pytest.raises(FileNotFoundError, match="default"):
    config_path("no_such_config")


def test_loaded_config_is_locked_against_new_fields():
  config = load_config("default")
  with pytest.raises(AttributeError):
    config.pruning.new_field = 1


def test_schedule_in_epochs_becomes_steps():
  sched = Schedule(
    kind="polynomial", unit="epochs", begin=1.0, end=10.0, every=0.25, power=3.0, initial=0.0
  )
  built = optim.pruning_schedule(sched, steps_per_epoch=468)
  assert (built.begin, built.end, built.every) == (468, 4680, 117)
  update, sparsity = built(4680, 0.9)
  assert bool(update) and float(sparsity) == pytest.approx(0.9)
  with pytest.raises(ValueError, match="one_shot, periodic or polynomial|expected one of"):
    resolve(load_config("default", {"pruning.schedule.kind": "cosine"}))


def test_step_learning_rate_multiplies_by_the_factor_at_each_decay_epoch():
  # SNIP's LeNet recipe: 0.1, x0.1 every 25k iterations; here x0.1 at epochs 2 and 4.5.
  opt = Optimizer(
    name="sgd", learning_rate=0.1, lr_schedule="step", decay_epochs=(2.0, 4.5), decay_factor=0.1,
    warmup_epochs=0.0, end_lr_factor=0.0, weight_decay=0.0, momentum=0.0, nesterov=False,
    grad_clip_norm=0.0,
  )  # fmt: skip
  lr = optim.learning_rate(opt, total_steps=100, steps_per_epoch=10)
  got = [float(lr(t)) for t in (0, 19, 20, 44, 45, 99)]
  np.testing.assert_allclose(got, [0.1, 0.1, 0.01, 0.01, 0.001, 0.001], rtol=1e-6)
  # With a warm-up, the decay epochs still count from the start of the run.
  opt = dataclasses.replace(opt, warmup_epochs=1.0)
  lr = optim.learning_rate(opt, total_steps=100, steps_per_epoch=10)
  got = [float(lr(t)) for t in (0, 5, 10, 19, 20, 45)]
  np.testing.assert_allclose(got, [0.0, 0.05, 0.1, 0.1, 0.01, 0.001], rtol=1e-6)


@pytest.mark.parametrize(
  "spec, expected",
  [
    ("unstructured", jaxprune.structures.unstructured()),
    ("", jaxprune.structures.unstructured()),
    ("rows", jaxprune.structures.unstructured(within=-1)),
    ("channels", jaxprune.structures.channels()),
    ("2:4", jaxprune.structures.n_of_m(2, 4)),
    (" 1:8 ", jaxprune.structures.n_of_m(1, 8)),
    ("block:2x2", jaxprune.structures.block((2, 2))),
    ("block:4x1", jaxprune.structures.block((4, 1))),
    ("BLOCK:3x2x2", jaxprune.structures.block((3, 2, 2))),
  ],
)
def test_structure_strings(spec, expected):
  parsed = structure_from_string(spec)
  assert parsed == expected and type(parsed) is type(expected)
  if isinstance(expected, jaxprune.structures.NOfM):
    assert (parsed.n, parsed.m, parsed.axis) == (expected.n, expected.m, None)
  if isinstance(expected, jaxprune.structures.Block):
    assert parsed.shape == expected.shape and all(type(d) is int for d in parsed.shape)


def test_unknown_names_fail_with_the_valid_choices():
  with pytest.raises(ValueError, match="'channels'"):
    structure_from_string("filters-ish")
  with pytest.raises(ValueError, match="adamw"):
    resolve(load_config("default", {"optimizer.name": "adagrad"}))


def test_dense_pattern_keeps_the_output_layer_unpruned():
  config = load_config(
    "channels", {"pruning.schedule.kind": "one_shot", "pruning.schedule.begin": 0.0}
  )
  tx, _ = optim.make_optimizer(resolve(config), steps_per_epoch=10, total_steps=10)
  model = models.get_model("lenet300100", num_classes=10)

  @jax.jit
  def first_update():
    params = model.init(jax.random.key(0), jnp.ones((1, 8, 8, 1)))["params"]
    grads = jax.tree.map(jnp.ones_like, params)
    return tx.update(grads, tx.init(params), params)[1]

  masks = jaxprune.masks_of(first_update())
  assert bool(masks["Dense_2"]["kernel"].all())
  kept_units = np.asarray(masks["Dense_0"]["kernel"]).any(axis=0)
  assert kept_units.sum() == 30  # whole neurons: 10% of 300 kept
  assert np.asarray(masks["Dense_0"]["kernel"])[:, kept_units].all()


def test_dense_pattern_with_a_non_uniform_distribution_is_refused():
  with pytest.raises(ValueError, match="uniform"):
    resolve(load_config("channels", {"pruning.distribution": "erk"}))


def test_disabled_pruning_gives_the_plain_inner_optimizer():
  config = load_config("default", {"pruning.enabled": False})
  tx, _ = optim.make_optimizer(resolve(config), 10, 100)
  state = tx.init({"w": jnp.ones((3, 3))})
  with pytest.raises(ValueError, match="No jaxprune.masked state"):
    jaxprune.masks_of(state)


def test_last_mask_update_of_each_kind():
  sched = resolve(load_config("default")).pruning.schedule
  assert optim.last_mask_update(sched, 100) == 1000
  assert optim.last_mask_update(resolve(load_config("snip")).pruning.schedule, 100) == 0
