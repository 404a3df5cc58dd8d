"""The trainer re-estimates BatchNorm statistics after one-shot pruning when asked to."""

import jax
import numpy as np
import pytest
from trainer_helpers import small

import jaxprune
from jaxprune.data import eval_batches
from jaxprune.train import experiment, optim, recalibration
from jaxprune.train.config import load_config
from jaxprune.train.loop import train_and_evaluate
from jaxprune.train.settings import resolve

# A narrow one-block-per-stage ResNet-20 on digits, pruned once at its last step (step 5).
ONE_SHOT_AT_THE_END = dict(
  model__name="resnet20",
  train__num_steps=6,
  pruning__schedule__kind="one_shot",
  pruning__schedule__begin=5.0,
  pruning__frozen_step=False,
  report__tensorboard=False,
)


def _config(**changes):
  config = load_config("default", small(**{**ONE_SHOT_AT_THE_END, **changes}))
  with config.unlocked():
    config.model.kwargs.widths = (4, 8, 8)
    config.model.kwargs.blocks_per_stage = 1
  return config


def _same(a, b):
  return all(jax.tree.leaves(jax.tree.map(lambda x, y: bool(np.array_equal(x, y)), a, b)))


@pytest.mark.slow(seconds=60)
def test_the_switch_re_estimates_batch_stats_after_one_shot_pruning(tmp_path):
  off = _config(pruning__recalibrate_bn=0)
  on = _config(pruning__recalibrate_bn=3)
  summary_off = train_and_evaluate(off, tmp_path / "off", verbose=False)
  summary_on = train_and_evaluate(on, tmp_path / "on", verbose=False)
  assert summary_off["bn_recalibration"] is None
  assert summary_on["bn_recalibration"] == {"after_step": 6, "batches": 3}
  state_off = experiment.load_state(off, tmp_path / "off")
  state_on = experiment.load_state(on, tmp_path / "on")
  assert _same(state_on.params, state_off.params)  # recalibration leaves the weights alone
  assert not _same(state_on.batch_stats, state_off.batch_stats)
  # The statistics are the pruned network's, averaged over the first 3 training batches.
  train = experiment.build(on, verbose=False).splits.train
  images = [b["image"] for b in eval_batches(train, 64)][:3]
  variables = {"params": state_off.params, "batch_stats": state_off.batch_stats}
  expected = jaxprune.recalibrate_batch_stats(state_off.apply_fn, variables, images, train=False)
  jax.tree.map(
    lambda got, want: np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6),
    state_on.batch_stats,
    expected,
  )
  assert summary_on["test_loss"] != summary_off["test_loss"]


def _plan(config, has_batch_stats=True):
  settings = resolve(config)
  updates = optim.mask_update_steps(settings.pruning, steps_per_epoch=20, total_steps=60)
  return recalibration.plan(settings, has_batch_stats, updates, train_examples=1293)


def test_by_default_models_with_batchnorm_recalibrate_after_the_last_mask_update():
  assert _plan(_config()) == (5, recalibration.AUTO_BATCHES)
  assert _plan(_config(), has_batch_stats=False) == (None, 0)
  gradual = _config(  # mask updates at steps 4, 8, ..., 40
    pruning__schedule__kind="polynomial",
    pruning__schedule__begin=4.0,
    pruning__schedule__end=40.0,
    pruning__schedule__every=4.0,
  )
  assert _plan(gradual) == (40, recalibration.AUTO_BATCHES)
  assert _plan(_config(pruning__enabled=False)) == (None, 0)
  assert _plan(_config(pruning__recalibrate_bn=0)) == (None, 0)
  assert _plan(_config(pruning__recalibrate_bn=20)) == (5, 20)


def test_a_recalibration_that_would_be_ignored_or_cannot_be_filled_is_refused():
  asked = _config(pruning__recalibrate_bn=4)
  with pytest.raises(ValueError, match=r"would be ignored: the model .* no BatchNorm.*=0 \(off\)"):
    _plan(asked, has_batch_stats=False)
  with pytest.raises(ValueError, match="would be ignored: pruning is disabled"):
    _plan(_config(pruning__recalibrate_bn=4, pruning__enabled=False))
  fixed = _config(pruning__recalibrate_bn=4, pruning__initial_masks="m.npz", pruning__sparsity=0.0)
  with pytest.raises(ValueError, match="would be ignored: no step of the run updates the masks"):
    _plan(fixed)
  with pytest.raises(ValueError, match=r"split has 1293 \(20 full batches\)"):
    _plan(_config(pruning__recalibrate_bn=21))
  with pytest.raises(ValueError, match="expected -1 .automatic., 0 .off. or a number"):
    _plan(_config(pruning__recalibrate_bn=-2))


def test_the_lenet_default_run_is_refused_an_explicit_recalibration(tmp_path):
  config = load_config("default", small(pruning__recalibrate_bn=4))
  with pytest.raises(ValueError, match="'lenet300100' has no BatchNorm statistics"):
    train_and_evaluate(config, tmp_path / "run", verbose=False)
