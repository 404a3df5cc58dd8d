"""L0 regularisation (Louizos, Welling & Kingma 2018) on LeNet-300-100: learned neuron pruning.

Every Dense layer becomes a `jaxprune.bayes.L0Dense` with one hard-concrete gate per input
neuron (β = 2/3, γ = −0.1, ζ = 1.1): the 784 pixels, then the 300 and the 100 hidden units.
The loss adds λ·E[L0] with λ = 0.1/N for every layer, the expected number of weights the
open gates switch on (a gate counts its whole row of the kernel); gates start at a drop rate
of 0.2 on the pixels and 0.5 after, as in the paper. Training samples the gates per example;
evaluation uses the deterministic test-time gates clip(σ(log α)·(ζ − γ) + γ, 0, 1), and the
summary reports the neurons left per layer (gates that are nonzero at test time, e.g.
``219-214-100`` in the paper) beside the test error. The ``"l0_gate"`` criterion turns the
gates into masks once per epoch, so closed rows of the kernels are exact zeros.

The paper trains 200 epochs with Adam (lr 1e-3) at batch 100, and so do this config and
its row in `benchmarks/reproduce.py`.
"""

from pathlib import Path

import ml_collections

from jaxprune.train.config import load_config


def get_config() -> ml_collections.ConfigDict:
  """The default config with L0-gated layers and the expected-L0 penalty."""
  config = load_config(Path(__file__).with_name("default.py"))
  config.model.kwargs = ml_collections.ConfigDict(
    {"layer": "l0", "drop_rate_init": (0.2, 0.5, 0.5)}  # Gates per input neuron.
  )
  config.optimizer.learning_rate = 1e-3  # Adam, as in the paper.
  config.optimizer.lr_schedule = "constant"  # The paper keeps Adam's rate fixed.
  config.train.num_epochs = 200.0
  config.train.batch_size = 100
  config.train.eval_every_epochs = 10.0
  config.train.penalty = "l0"  # Expected L0 norm (weights switched by the open gates)...
  config.train.penalty_weight = 0.1  # ...times λ = 0.1/N (the weight per example is this / N).
  config.pruning.criterion = "l0_gate"  # Keep rows whose test-time gate is nonzero.
  config.pruning.sparsity = 0.0  # Not used: the gates decide.
  config.pruning.dense = ".*gate_log_alpha"  # Only the kernels carry masks.
  config.pruning.schedule.kind = "periodic"  # Masks follow the gates...
  config.pruning.schedule.begin = 0.0
  config.pruning.schedule.end = 0.0  # (no end)
  config.pruning.schedule.every = 1.0  # ...once per epoch.
  return config
