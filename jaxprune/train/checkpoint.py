"""Checkpoints of the whole run with orbax: train state (masks included) and data position.

A checkpoint of step t holds the `TrainState` after t steps (params, BatchNorm statistics,
optimizer state with the masks and the schedule's counter, the step, the base PRNG key)
and the training iterator's position (``BatchIterator.get_state()``, as JSON). Restoring
it and running the same config continues the run bit for bit.

Crash safety comes from orbax: a step is written into a temporary directory and renamed to
its final name only once complete, and older steps are deleted only after a newer one is
committed. A process killed mid-save leaves at most an uncommitted temporary directory,
which restoring ignores (the last committed step is restored) and which is deleted
before the next save.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

PyTree = Any


class CheckpointMismatchError(ValueError):
  """A checkpoint does not fit the state built from the config (another model or optimizer).

  Runs resume from ``<workdir>/checkpoints`` when it exists. If the config changed in a
  way that changes the state's shapes or structure, start a new run in another
  ``--workdir`` (or delete the old checkpoints).
  """


def abstract_like(state: PyTree, shardings: PyTree | None = None) -> PyTree:
  """``ShapeDtypeStruct`` leaves (with shardings, if given) describing ``state``.

  Pass ``jax.eval_shape(create_fn)`` to describe a state without allocating it.
  """
  if shardings is None:
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state)
  return jax.tree.map(
    lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, shardings
  )


def _abstract(x: Any) -> jax.ShapeDtypeStruct:
  if not hasattr(x, "shape") or not hasattr(x, "dtype"):
    x = np.asarray(x)
  return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None))


class Checkpointer:
  """Saves every ``every_steps`` steps (and when forced), keeps the last ``keep``, restores.

  Args:
    directory: where the step folders go (created if missing).
    every_steps: `save` without ``force`` writes only at multiples of this.
    keep: how many of the most recent checkpoints to keep.
    async_save: write in a background thread. The copy to host memory happens before
      `save` returns, so training goes on at once; a step that donates its state does
      not reuse buffers a save still references (JAX copies them instead).
    cleanup_tmp: delete uncommitted temporary step folders (left by a killed save) before
      the first save. Pass False when reading the checkpoints of a run that may still be
      saving.

  Example:
    >>> import jax.numpy as jnp, tempfile
    >>> ckpt = Checkpointer(tempfile.mkdtemp(), every_steps=10, keep=2)
    >>> ckpt.save(10, {"w": jnp.ones(3)}, {"epoch": 0, "index": 1280})
    True
    >>> state, data = ckpt.restore({"w": jnp.zeros(3)})
    >>> state["w"].tolist(), data
    ([1.0, 1.0, 1.0], {'epoch': 0, 'index': 1280})
    >>> ckpt.close()
  """

  def __init__(
    self,
    directory: str | os.PathLike,
    *,
    every_steps: int,
    keep: int = 2,
    async_save: bool = True,
    cleanup_tmp: bool = True,
  ):
    if every_steps < 1 or keep < 1:
      raise ValueError(
        f"Checkpointer needs every_steps >= 1 and keep >= 1; got every_steps={every_steps}, "
        f"keep={keep}. E.g. --config.checkpoint.every_steps=1000 --config.checkpoint.keep=2."
      )
    self.directory = Path(directory).absolute()
    self.every_steps = every_steps
    options = ocp.CheckpointManagerOptions(
      max_to_keep=keep,
      create=True,
      enable_async_checkpointing=async_save,
      cleanup_tmp_directories=cleanup_tmp,
    )
    self._manager = ocp.CheckpointManager(self.directory, options=options)

  def latest_step(self) -> int | None:
    """The newest committed step, or None."""
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    """Committed steps, oldest first."""
    return sorted(self._manager.all_steps())

  def save(
    self, step: int, state: PyTree, data_state: dict[str, Any], *, force: bool = False
  ) -> bool:
    """Saves ``state`` and the iterator position at ``step``.

    Without ``force`` only steps that are multiples of ``every_steps`` are written; a
    step already on disk is never rewritten.

    Returns:
      Whether a save was started.
    """
    if (step % self.every_steps and not force) or step in self._manager.all_steps():
      return False
    args = ocp.args.Composite(
      state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(dict(data_state))
    )
    return bool(self._manager.save(step, args=args, force=True))

  def restore(
    self, target: PyTree, step: int | None = None
  ) -> tuple[PyTree, dict[str, Any]] | None:
    """Restores ``step`` (default: the latest) into the structure of ``target``.

    Args:
      target: a state built by the same create function (concrete, or abstract with
        shardings from `abstract_like`); restored arrays take its shardings.
      step: which step; None for the latest.

    Returns:
      ``(state, data_state)``, or None when there is no checkpoint.

    Raises:
      CheckpointMismatchError: if the checkpoint's arrays do not fit ``target``.
    """
    step = self.latest_step() if step is None else step
    if step is None:
      return None
    target = jax.tree.map(_abstract, target)
    args = ocp.args.Composite(state=ocp.args.StandardRestore(target), data=ocp.args.JsonRestore())
    try:
      restored = self._manager.restore(step, args=args)
    except (ValueError, KeyError, TypeError) as error:
      raise CheckpointMismatchError(
        f"The checkpoint of step {step} in {os.fspath(self.directory)!r} does not fit the "
        f"state built from this config ({type(error).__name__}: {error}). It was written by "
        "a run with another model, optimizer or pruning setup. Use a new --workdir, or "
        f"delete {os.fspath(self.directory)!r} to start over."
      ) from error
    return restored.state, dict(restored.data)

  def wait(self) -> None:
    """Blocks until background writes are committed."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    """Waits for background writes and releases the manager."""
    self._manager.wait_until_finished()
    self._manager.close()
