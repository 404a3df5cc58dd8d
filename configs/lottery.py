"""Lottery tickets: iterative magnitude pruning with rewinding on LeNet-300-100 and MNIST.

The recipe of Frankle & Carbin (2019), LeNet-300-100: Adam at 1.2e-3, batch 60, 50,000
iterations per round; each round removes 20% of the weights each layer still has (10% of
the output layer), rewinds the survivors to their initial values and resets Adam.
Controls in the same run: the ticket's masks with a fresh random initialisation
(``reinit``), and random masks with the ticket's per-layer counts (``random``).

Run it with ``jaxprune-train --config configs/lottery.py --workdir runs/lottery``; results
in ``runs/lottery/lottery.json`` and ``lottery.png`` (see `jaxprune.train.lottery`).
Rewinding to step k instead of initialisation (Frankle et al. 2020):
``--config.lottery.rewind_step=k``.

Each round sets ``pruning.enabled``, ``pruning.sparsity``, ``pruning.initial_masks``,
``model.initial_params`` and ``train.start_step`` itself, and no round reads
``pruning.criterion``, ``pruning.schedule``, ``pruning.distribution``, ``pruning.structure``,
``pruning.scoring_temperature`` or ``pruning.seed``: a value other than this file's is an
error before anything trains, naming the ``lottery`` field to set instead (e.g.
``--config.pruning.sparsity=0.5`` asks for ``lottery.rate`` and ``lottery.rounds``). See
`jaxprune.train.lottery.check`.
"""

from pathlib import Path

import ml_collections

from jaxprune.train.config import load_config


def get_config() -> ml_collections.ConfigDict:
  """The paper's LeNet-300-100 recipe; every lottery field is documented inline."""
  config = load_config(Path(__file__).with_name("default.py"))
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 1.2e-3  # The paper's Adam learning rate, constant.
  config.optimizer.lr_schedule = "constant"
  config.train.batch_size = 60
  config.train.num_steps = 50_000  # Iterations per round (about 55 epochs of 54,000).
  config.train.eval_every_epochs = 100 / 900  # Validation every 100 iterations (900 / epoch).
  config.train.log_every_steps = 500
  # Masks come from the rounds, fixed within a round: leave at 0 (the sparsity of round r is
  # 1 - (1 - lottery.rate) ** r; another value is refused, not overridden).
  config.pruning.sparsity = 0.0
  # Every kernel is pruned (biases stay dense); leave at "uniform" (lottery.distribution
  # chooses per-layer or global rounds; pruning.dense keeps layers dense).
  config.pruning.distribution = "uniform"
  config.checkpoint.every_steps = 2000

  with config.unlocked():
    config.lottery = ml_collections.ConfigDict()
    config.lottery.rounds = 15  # Pruning rounds after the dense one (0.8 ** 15: 3.5% left).
    config.lottery.rate = 0.2  # Fraction of the remaining weights removed per round.
    config.lottery.output_rate = 0.1  # The same for the output layer (LeNet: 10%).
    config.lottery.output_layer = "Dense_2/kernel"  # Regex of the output layer ("" = none).
    config.lottery.distribution = "layerwise"  # layerwise, or global (one threshold).
    # Rewind to this step of round 0 (0 = initialisation); the later rounds train from it to
    # the end (they set train.start_step to it; leave that at 0).
    config.lottery.rewind_step = 0
    config.lottery.controls = "reinit,random"  # Comma-separated controls ("" = none).
    config.lottery.reinit_rounds = ""  # Rounds with the reinit control, e.g. "7,12" ("" = all).
    config.lottery.random_rounds = ""  # Rounds with the random control ("" = all).
  return config
