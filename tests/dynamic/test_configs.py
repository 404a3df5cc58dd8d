"""The dynamic-sparsity configs run in the trainer (digits, a few steps) and keep their promise."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxprune
from jaxprune.train import models, optim
from jaxprune.train.config import load_config
from jaxprune.train.experiment import load_state
from jaxprune.train.loop import train_and_evaluate
from jaxprune.train.settings import resolve
from jaxprune.train.state import create_train_state
from jaxprune.train.steps import train_step

SMALL = {
  "data.name": "digits",
  "train.batch_size": 64,
  "train.num_steps": 12,
  "train.eval_every_epochs": 1000.0,
  "optimizer.lr_schedule": "constant",
  "checkpoint.every_steps": 12,
  "report.plots": False,
  "report.progress": False,
}
# Drop and grow at steps 0, 4 and 8, the drop fraction reaching 0 at step 9.
MOVING = {
  "pruning.schedule.unit": "steps",
  "pruning.schedule.every": 4.0,
  "pruning.schedule.end": 9.0,
}
KERNELS = ("Dense_0", "Dense_1", "Dense_2")


def _kernel_masks(opt_state):
  masks = jaxprune.masks_of(opt_state)
  return {k: np.asarray(masks[k]["kernel"]) for k in KERNELS}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["rigl", "set"])
def test_drop_and_grow_configs_move_connections_at_constant_counts(name, tmp_path):
  config = load_config(name, {**SMALL, **MOVING})
  train_and_evaluate(config, tmp_path, verbose=False)
  state = load_state(config, tmp_path)
  after = _kernel_masks(state.opt_state)
  tx, _ = optim.make_optimizer(resolve(config), steps_per_epoch=22, total_steps=12)
  before = _kernel_masks(tx.init(state.params))  # the random ERK masks of step 0
  for k in KERNELS:
    assert after[k].sum() == before[k].sum(), k
    assert (np.asarray(state.params[k]["kernel"])[~after[k]] == 0).all()
  assert any((after[k] & ~before[k]).any() for k in KERNELS)  # connections moved
  densities = [before[k].mean() for k in KERNELS]
  assert densities[0] < densities[2]  # ERK: the small output layer is denser


@pytest.mark.slow
def test_static_erk_config_never_changes_its_masks(tmp_path):
  config = load_config("static_erk", SMALL)
  train_and_evaluate(config, tmp_path, verbose=False)
  state = load_state(config, tmp_path)
  tx, _ = optim.make_optimizer(resolve(config), steps_per_epoch=22, total_steps=12)
  before = _kernel_masks(tx.init(state.params))
  after = _kernel_masks(state.opt_state)
  for k in KERNELS:
    np.testing.assert_array_equal(after[k], before[k])
  total = sum(m.sum() for m in after.values()) / sum(m.size for m in after.values())
  assert abs(total - 0.02) < 1e-3  # 98% sparse over the kernels, from step 0


@pytest.mark.slow
def test_sr_ste_config_trains_exactly_2_of_4_in_the_loop(tmp_path):
  # The loop on digits with LeNet-300-100 (LeNet-5 needs 28x28 inputs; below).
  config = load_config("sr_ste", {**SMALL, "model.name": "lenet300100", "pruning.dense": ""})
  summary = train_and_evaluate(config, tmp_path, verbose=False)
  assert summary["steps"] == 12 and np.isfinite(summary["test_loss"])
  params = load_state(config, tmp_path).params
  for k in KERNELS:
    nonzero = np.asarray(params[k]["kernel"]) != 0
    groups = nonzero.reshape(-1, 4, nonzero.shape[-1]).sum(axis=1)
    assert (groups <= 2).all() and groups.mean() > 1.9, k


@pytest.mark.slow
def test_sr_ste_config_on_lenet5_steps_with_2_of_4_kernels():
  config = load_config("sr_ste")
  tx, _ = optim.make_optimizer(resolve(config), steps_per_epoch=10, total_steps=20)
  model = models.get_model("lenet5", num_classes=10)
  state = create_train_state(model, tx, (28, 28, 1), seed=0)
  batch = {"image": jax.random.normal(jax.random.key(0), (8, 28, 28, 1)), "label": jnp.arange(8)}
  step = jax.jit(train_step)
  for _ in range(2):
    state, metrics = step(state, batch)
  assert np.isfinite(float(metrics["loss"]))
  masks = jaxprune.masks_of(state.opt_state)
  assert masks["Conv_0"]["kernel"].all()  # kept dense: one input channel
  for name in ("Conv_1", "Dense_0", "Dense_1"):
    m = np.asarray(masks[name]["kernel"])
    groups = np.moveaxis(m, -2, -1).reshape(*m.shape[:-2], m.shape[-1], -1, 4).sum(-1)
    assert (groups == 2).all(), name
    np.testing.assert_array_equal(np.asarray(state.params[name]["kernel"]) != 0, m)
