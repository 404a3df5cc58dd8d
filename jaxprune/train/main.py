"""Command line: ``jaxprune-train --config configs/default.py --workdir runs/default``.

Any config field can be overridden, e.g. ``--config.pruning.sparsity=0.95`` or
``--config.train.num_epochs=5``. Runs resume from ``<workdir>/checkpoints``. Flags are
defined when `main` runs, so importing this module changes no global flag state.

Several processes (a TPU pod, a GPU cluster, or several processes on one machine) run
the same command with ``--multihost``; see `initialize_distributed`.
"""

import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from jaxprune.train import lottery
from jaxprune.train.loop import train_and_evaluate
from jaxprune.train.settings import resolve


def show_in_help(*names: str) -> None:
  """Lists these flags under ``--help`` of whatever script or module was started."""
  for name in names:
    flags.FLAGS.register_key_flag_for_module(sys.argv[0], flags.FLAGS[name])


def initialize_distributed(
  coordinator_address: str | None = None,
  num_processes: int | None = None,
  process_id: int | None = None,
) -> None:
  """Joins this process to a multi-process run (`jax.distributed.initialize`).

  On Cloud TPU, SLURM, Open MPI and Kubernetes JAX finds all three values itself; elsewhere
  pass them (``coordinator_address`` may also come from ``JAX_COORDINATOR_ADDRESS``).
  Several processes on one CPU machine exchange their collectives with gloo.

  Args:
    coordinator_address: ``host:port`` of process 0, the same on every process.
    num_processes: how many processes take part.
    process_id: this process's index, 0 to ``num_processes - 1``.
  """
  if jax.config.jax_cpu_collectives_implementation in (None, "", "none"):
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(
    coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id
  )


def main() -> None:
  """Entry point of ``jaxprune-train`` and ``python -m jaxprune.train``."""
  config = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file with get_config(), e.g. configs/default.py."
  )
  workdir = flags.DEFINE_string(
    "workdir", None, "Folder for checkpoints, metrics and reports (shared by all processes)."
  )
  multihost = flags.DEFINE_bool(
    "multihost", False, "Call jax.distributed.initialize() first (one process per host)."
  )
  coordinator = flags.DEFINE_string(
    "coordinator_address", None, "With --multihost: host:port of process 0 (auto on TPU/SLURM)."
  )
  num_processes = flags.DEFINE_integer(
    "num_processes", None, "With --multihost: number of processes (auto on TPU/SLURM)."
  )
  process_id = flags.DEFINE_integer(
    "process_id", None, "With --multihost: this process's index (auto on TPU/SLURM)."
  )
  flags.mark_flags_as_required(["config", "workdir"])
  show_in_help(
    "config", "workdir", "multihost", "coordinator_address", "num_processes", "process_id"
  )

  def run(argv: list[str]) -> None:
    if len(argv) > 1:
      raise app.UsageError(f"Unexpected arguments {argv[1:]}; pass options as --flag=value.")
    given = [f.name for f in (coordinator, num_processes, process_id) if f.value is not None]
    if given and not multihost.value:
      raise app.UsageError(
        f"--{', --'.join(given)} only apply to a multi-process run; add --multihost."
      )
    if not flags.FLAGS["verbosity"].present:
      logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO.
    if multihost.value:
      initialize_distributed(coordinator.value, num_processes.value, process_id.value)
    settings = resolve(config.value)
    if settings.lottery is not None:  # configs/lottery.py: rounds of pruning and rewinding
      lottery.main(settings, workdir.value)
    else:
      train_and_evaluate(settings, workdir.value)

  app.run(run)
