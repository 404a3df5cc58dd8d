"""Command line: ``jaxprune-train --config configs/default.py --workdir runs/default``.

Any config field can be overridden, e.g. ``--config.pruning.sparsity=0.95`` or
``--config.train.num_epochs=5``. Runs resume from ``<workdir>/checkpoints``. Flags are
defined when `main` runs, so importing this module changes no global flag state.
"""

import sys

from absl import app, flags
from ml_collections import config_flags


def show_in_help(*names: str) -> None:
  """Lists these flags under ``--help`` of whatever script or module was started."""
  for name in names:
    flags.FLAGS.register_key_flag_for_module(sys.argv[0], flags.FLAGS[name])


def main() -> None:
  """Entry point of ``jaxprune-train`` and ``python -m jaxprune.train``."""
  config = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file with get_config(), e.g. configs/default.py."
  )
  workdir = flags.DEFINE_string("workdir", None, "Folder for checkpoints, metrics and reports.")
  multihost = flags.DEFINE_bool(
    "multihost", False, "Call jax.distributed.initialize() first (one process per host)."
  )
  flags.mark_flags_as_required(["config", "workdir"])
  show_in_help("config", "workdir", "multihost")

  def run(argv: list[str]) -> None:
    if len(argv) > 1:
      raise app.UsageError(f"Unexpected arguments {argv[1:]}; pass options as --flag=value.")
    import jax
    from absl import logging

    from jaxprune.train.loop import train_and_evaluate

    if not flags.FLAGS["verbosity"].present:
      logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO.
    if multihost.value:
      jax.distributed.initialize()
    if "lottery" in config.value:  # configs/lottery.py: rounds of pruning and rewinding
      from jaxprune.train import lottery

      lottery.main(config.value, workdir.value)
    else:
      train_and_evaluate(config.value, workdir.value)

  app.run(run)
