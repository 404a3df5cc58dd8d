"""configs/l0.py (Louizos et al. 2018) trains a few steps on the bundled digits.

The run starts with some gates closed and the others open; it checks the reported neurons
against the gates, that a closed gate turns its input neuron into an exact zero (the kernel
row and the network's output), and that the reported test error is the one of the
deterministic test-time gates.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from trainer_helpers import small

from jaxprune import bayes
from jaxprune.bayes.l0 import open_cut
from jaxprune.train import evaluation, experiment
from jaxprune.train.config import load_config
from jaxprune.train.export import save_tree
from jaxprune.train.loop import train_and_evaluate
from jaxprune.train.report import format_table


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """One 30-step run of configs/l0.py on digits, from params whose gates are a mix: every
  third gate starts closed (log α = −5, below the cut −log 11), the others open (+3); 30
  Adam steps of 1e-3 keep each on its side. The masks follow the gates every step."""
  workdir = tmp_path_factory.mktemp("l0")
  overrides = small(
    train__num_steps=30,
    pruning__schedule__unit="steps",
    pruning__schedule__begin=0.0,
    pruning__schedule__every=1.0,  # the last update is the last step: masks match the gates
    pruning__schedule__end=0.0,
  )
  config = load_config("l0", overrides)
  params = jax.device_get(experiment.build(config, verbose=False).create_state().params)
  for layer in params.values():
    n = layer["gate_log_alpha"].shape[0]
    layer["gate_log_alpha"] = np.where(np.arange(n) % 3 == 0, -5.0, 3.0).astype(np.float32)
  save_tree(workdir / "init.npz", params)
  with config.unlocked():
    config.model.initial_params = str(workdir / "init.npz")
  summary = train_and_evaluate(config, workdir / "run", verbose=False)
  state = experiment.load_state(config, workdir / "run")
  return config, summary, state


def test_the_config_follows_the_paper():
  config = load_config("l0")
  assert config.model.kwargs.layer == "l0" and config.train.penalty == "l0"
  assert tuple(config.model.kwargs.drop_rate_init) == (0.2, 0.5, 0.5)
  assert config.train.penalty_weight == 0.1  # λ = 0.1/N
  assert (config.train.batch_size, config.optimizer.learning_rate) == (100, 1e-3)
  assert config.optimizer.name == "adam" and config.optimizer.lr_schedule == "constant"
  assert config.pruning.criterion == "l0_gate" and config.train.num_epochs == 200.0


def test_reported_neurons_are_the_open_test_time_gates(run):
  _, summary, state = run
  assert summary["steps"] == 30 and np.isfinite(summary["test_loss"])
  params = jax.device_get(state.params)
  layers = ["L0Dense_0", "L0Dense_1", "L0Dense_2"]
  assert list(summary["neurons"]) == layers
  counts = []
  for name in layers:
    la = np.asarray(params[name]["gate_log_alpha"])
    z = np.asarray(bayes.deterministic_gates(la))
    left = int((z != 0.0).sum())
    assert left == int((la > open_cut()).sum())
    assert summary["neurons"][name] == {"total": la.shape[0], "remaining": left}
    assert left == la.shape[0] - len(range(0, la.shape[0], 3))  # the closed third stayed so
    # The masks followed the gates at the last step: closed rows of the kernel are exact
    # zeros, open rows are not, so the deployed kernel has `left` nonzero rows.
    kernel = np.asarray(params[name]["kernel"])
    assert (kernel[z == 0.0] == 0.0).all() and (kernel[z != 0.0] != 0.0).any(axis=1).all()
    assert summary["layers"][f"{name}/kernel"]["nonzero"] == left * kernel.shape[1]
    counts.append(left)
  assert summary["architecture"] == "-".join(map(str, counts))
  assert evaluation.architecture(summary["neurons"]) == summary["architecture"]
  assert f"gated layer) {summary['architecture']} of 64-300-100" in format_table(summary)


def test_closed_gates_give_exact_zeros_and_the_error_is_the_deterministic_one(run):
  config, summary, state = run
  exp = experiment.build(config, verbose=False)
  test = exp.splits.test
  batch = test[np.arange(test.num_examples)]
  images, params = np.asarray(batch["image"]), jax.device_get(state.params)
  logits = np.asarray(exp.model.apply({"params": params}, images, train=False))
  # The forward pass by hand: every layer's input times its test-time gates, whose closed
  # entries are exact zeros for every example.
  x = jnp.asarray(images.reshape(len(images), -1))
  for i, name in enumerate(("L0Dense_0", "L0Dense_1", "L0Dense_2")):
    layer = params[name]
    gated, _ = bayes.l0.apply_gates(x, layer["kernel"], layer["gate_log_alpha"], None)
    closed = ~np.asarray(bayes.gate_open(layer["gate_log_alpha"]))
    assert closed.any() and (np.asarray(gated)[:, closed] == 0.0).all(), name
    x = gated @ layer["kernel"] + layer["bias"]
    x = jax.nn.relu(x) if i < 2 else x
  np.testing.assert_allclose(logits, np.asarray(x), rtol=1e-5, atol=1e-5)
  # Pixels behind closed gates do not change the output at all (bitwise).
  closed = ~np.asarray(bayes.gate_open(params["L0Dense_0"]["gate_log_alpha"]))
  noisy = images.reshape(len(images), -1).copy()
  noisy[:, closed] = np.random.default_rng(0).normal(size=(len(images), int(closed.sum())))
  noisy_logits = exp.model.apply({"params": params}, noisy.reshape(images.shape), train=False)
  np.testing.assert_array_equal(np.asarray(noisy_logits), logits)
  # The reported test error is the deterministic gates' error on the test split.
  error = float(np.mean(logits.argmax(-1) != np.asarray(batch["label"])))
  assert summary["test_error"] == pytest.approx(error, abs=1e-9)
