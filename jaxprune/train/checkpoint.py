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

A committed step can still be damaged afterwards (a full disk or a failing bucket leaves
truncated data files behind its commit marker). `Checkpointer.restore` then falls back to
the newest step that restores, prints which steps it skipped and why, and moves each
skipped one aside to ``<step>.damaged`` (kept for inspection; orbax ignores the name, so
it is neither restored, overwritten nor deleted).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxprune.train.settings import Checkpoint

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
    """Restores ``step`` (default: the newest that restores) into the structure of ``target``.

    Without ``step``, committed steps are tried newest first. A step that fails to restore
    while an older one restores is damaged (e.g. truncated data files): it is reported on
    stderr and moved aside to ``<step>.damaged`` for inspection.

    Args:
      target: a state built by the same create function (concrete, or abstract with
        shardings from `abstract_like`); restored arrays take its shardings.
      step: which step; None for the newest that restores.

    Returns:
      ``(state, data_state)``, or None when there is no checkpoint.

    Raises:
      CheckpointMismatchError: if ``step`` (or, without ``step``, every committed step)
        fails to restore into ``target``.
    """
    if step is not None:
      try:
        return self._restore_step(target, step)
      except (ValueError, KeyError, TypeError) as error:
        raise self._mismatch(step, error) from error
    steps = self.all_steps()[::-1]
    failed: list[tuple[int, Exception]] = []
    for candidate in steps:
      try:
        restored = self._restore_step(target, candidate)
      except Exception as error:  # any failure: try the next older step
        failed.append((candidate, error))
        continue
      for bad, error in failed:
        self._set_aside(bad, error, candidate)
      if failed:
        self._manager.reload()
      return restored
    if not failed:
      return None
    newest, error = failed[0]
    raise self._mismatch(newest, error, tried=len(failed)) from error

  def _restore_step(self, target: PyTree, step: int) -> tuple[PyTree, dict[str, Any]]:
    target = jax.tree.map(_abstract, target)
    args = ocp.args.Composite(state=ocp.args.StandardRestore(target), data=ocp.args.JsonRestore())
    restored = self._manager.restore(step, args=args)
    return restored.state, dict(restored.data)

  def _mismatch(self, step: int, error: Exception, tried: int = 1) -> CheckpointMismatchError:
    every = f" (nor did the {tried - 1} older ones)" if tried > 1 else ""
    return CheckpointMismatchError(
      f"The checkpoint of step {step} in {os.fspath(self.directory)!r} does not restore into "
      f"the state built from this config{every} ({type(error).__name__}: {error}). It was "
      "written by a run with another model, optimizer or pruning setup, or it is damaged. Use "
      f"a new --workdir, or delete {os.fspath(self.directory)!r} to start over."
    )

  def _set_aside(self, step: int, error: Exception, restored: int) -> None:
    """Renames a damaged step folder to ``<step>.damaged`` and says so."""
    source = self.directory / str(step)
    dest = source.with_name(f"{step}.damaged")
    n = 1
    while dest.exists():
      dest, n = source.with_name(f"{step}.damaged-{n}"), n + 1
    if jax.process_index() == 0:
      source.rename(dest)
    reason = f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"
    message = (
      f"WARNING: checkpoint step {step} in {os.fspath(self.directory)!r} is damaged and was "
      f"skipped ({reason}); resuming from step {restored}. The damaged step was moved to "
      f"{os.fspath(dest)!r} for inspection."
    )
    print(message, file=sys.stderr, flush=True)

  def wait(self) -> None:
    """Blocks until background writes are committed."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    """Waits for background writes and releases the manager."""
    self._manager.wait_until_finished()
    self._manager.close()


def for_run(policy: Checkpoint, directory: str | os.PathLike) -> Checkpointer | None:
  """The `Checkpointer` of a run's ``settings.checkpoint``, or None when disabled."""
  if not policy.enabled:
    return None
  return Checkpointer(
    directory, every_steps=policy.every_steps, keep=policy.keep, async_save=policy.async_save
  )


def restore_or_create(
  ckpt: Checkpointer | None, create: Any, placement: Any
) -> tuple[PyTree, dict[str, Any] | None]:
  """``(state, data position)`` of the newest checkpoint, or a new state and None.

  Args:
    ckpt: the run's checkpointer (None: always a new state).
    create: builds the initial state (jitted here, straight into its shardings).
    placement: the run's `jaxprune.train.sharding.Placement` (the restore target).
  """
  restored = None if ckpt is None else ckpt.restore(placement.abstract_state)
  if restored is not None:
    return restored
  return jax.jit(create, out_shardings=placement.state)(), None
