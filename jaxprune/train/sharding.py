"""Data-parallel training over all devices with `jax.sharding`, optionally FSDP-style.

One `Mesh` with a single axis ``"data"`` spans every device. Batches are sharded along
their leading axis; the train state (params, optimizer moments, masks) is replicated, or
with ``fsdp=True`` each large leaf is split along its largest axis divisible by the
number of devices (masks have their params' shapes, so they are split the same way).
The jitted step is the same program in both cases: XLA inserts the all-reduce of the
gradients (data parallel) or the all-gathers and reduce-scatters (FSDP).

Multi-host (TPU pods, GPU clusters): start the same command on every host and call
``jax.distributed.initialize()`` first (the trainer does so when ``--multihost`` is
given; on Cloud TPU it needs no arguments, elsewhere pass ``coordinator_address``,
``num_processes`` and ``process_id`` or set the matching environment variables).
``jax.devices()`` then lists the devices of all hosts and the mesh spans them. Every
host runs the same data order (same seed) and puts on its own devices only the rows of
each global batch that they hold (`HostLocalBatches`), assembled into one global array.
Orbax writes each checkpoint once, coordinated across hosts; ``--workdir`` must be a
folder all hosts see at the same path (NFS, Filestore, a gcsfuse mount). Process 0 alone
writes the metrics, the summary, TensorBoard events and the plots. For example, on a
v4-32 slice::

  gcloud compute tpus tpu-vm ssh NAME --worker=all --command \\
    "jaxprune-train --multihost --config configs/resnet20.py --workdir /mnt/shared/run1"
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxprune.train.settings import Settings

AXIS = "data"
PyTree = Any


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D mesh over ``devices`` (default: all devices of all hosts) with axis ``"data"``.

  Example:
    >>> make_mesh().axis_names
    ('data',)
  """
  devices = jax.devices() if devices is None else list(devices)
  return Mesh(np.asarray(devices), (AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Splits the leading (batch) axis over the mesh."""
  return NamedSharding(mesh, P(AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  """A full copy on every device."""
  return NamedSharding(mesh, P())


def check_batch_size(batch_size: int, mesh: Mesh, what: str = "train.batch_size") -> None:
  """Raises a `ValueError` unless ``batch_size`` splits evenly over the mesh's devices."""
  n = mesh.size
  if batch_size % n:
    fixed = max(n, batch_size // n * n)
    raise ValueError(
      f"config.{what}={batch_size} does not split evenly over {n} devices; expected a "
      f"multiple of {n}, e.g. --config.{what}={fixed}."
    )


def fsdp_spec(shape: Sequence[int], num_devices: int, min_size: int = 16384) -> P:
  """Shards the largest axis divisible by ``num_devices``; small or indivisible leaves replicate.

  Example:
    >>> fsdp_spec((784, 300), 4) == P("data", None), fsdp_spec((300,), 4, min_size=1) == P("data")
    (True, True)
    >>> fsdp_spec((7, 9), 4) == P()  # no axis divisible by 4: replicated
    True
  """
  if int(np.prod(shape, dtype=np.int64)) < min_size or num_devices == 1:
    return P()
  axes = sorted(range(len(shape)), key=lambda a: -shape[a])
  for axis in axes:
    if shape[axis] % num_devices == 0:
      spec = [None] * len(shape)
      spec[axis] = AXIS
      return P(*spec)
  return P()


def state_shardings(
  state: PyTree, mesh: Mesh, *, fsdp: bool = False, min_size: int = 16384
) -> PyTree:
  """Shardings for every array of a state (concrete or from `jax.eval_shape`).

  Args:
    state: the train state (any pytree of arrays or ``ShapeDtypeStruct``).
    mesh: the mesh from `make_mesh`.
    fsdp: split large leaves along their largest divisible axis instead of replicating.
    min_size: under ``fsdp``, leaves with fewer entries stay replicated.

  Returns:
    A pytree of `NamedSharding` with the state's structure.
  """
  if not fsdp:
    return jax.tree.map(lambda _: replicated(mesh), state)
  return jax.tree.map(lambda x: NamedSharding(mesh, fsdp_spec(x.shape, mesh.size, min_size)), state)


@dataclasses.dataclass(frozen=True)
class Placement:
  """Where a run's arrays live.

  Attributes:
    mesh: the device mesh (`make_mesh`).
    batch: sharding of a batch (`batch_sharding`).
    state: shardings of the train state (a pytree like it, `state_shardings`).
    abstract: the train state from `jax.eval_shape`, without shardings.
    abstract_state: ``ShapeDtypeStruct`` leaves with the state's shardings (the restore
      and compile target).
  """

  mesh: Mesh
  batch: NamedSharding
  state: PyTree
  abstract: PyTree
  abstract_state: PyTree

  @property
  def replicated(self) -> NamedSharding:
    return replicated(self.mesh)

  def put(self, batch: PyTree) -> PyTree:
    """A host batch as a global array sharded over the batch axis."""
    return global_batch(batch, self.batch)


def place(settings: Settings, create_state: Callable[[], Any]) -> Placement:
  """The placement of a run over all devices: checks batch sizes, shards the state.

  Args:
    settings: the run's settings (``train.batch_size``, ``train.eval_batch_size``,
      ``sharding``).
    create_state: builds the initial train state (traced with `jax.eval_shape` only).

  Raises:
    ValueError: if a batch size does not split evenly over the devices.
  """
  mesh = make_mesh()
  check_batch_size(settings.train.batch_size, mesh)
  check_batch_size(settings.train.eval_batch_size, mesh, "train.eval_batch_size")
  abstract = jax.eval_shape(create_state)
  shardings = state_shardings(
    abstract, mesh, fsdp=settings.sharding.fsdp, min_size=settings.sharding.fsdp_min_size
  )
  target = jax.tree.map(
    lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), abstract, shardings
  )
  return Placement(mesh, batch_sharding(mesh), shardings, abstract, target)


def global_batch(batch: PyTree, sharding: NamedSharding, *, place: bool = True) -> PyTree:
  """A global batch (numpy, the same on every host) as arrays sharded over all hosts.

  On one host: ``jax.device_put(batch, sharding)`` (or ``batch`` itself when ``place`` is
  False, for a consumer that places it). On several: each host copies to its own devices
  the rows those devices hold, whichever they are (`jax.make_array_from_callback`), so
  the result does not depend on how the hosts' devices are ordered in the mesh.
  """
  if jax.process_count() == 1:
    return jax.device_put(batch, sharding) if place else batch

  def assemble(x: np.ndarray) -> jax.Array:
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

  return jax.tree.map(assemble, batch)


class HostLocalBatches:
  """Turns an iterator of global numpy batches into global `jax.Array` batches, multi-host.

  Every host iterates the same global batches (same seed) and copies only the rows its
  own devices hold (`global_batch`). On a single host batches pass through unchanged
  (numpy). ``get_state`` is the wrapped
  iterator's, so checkpoints record the same position on every host.

  Args:
    iterator: yields ``{"image": [B, ...], "label": [B]}`` numpy batches (global size B).
    sharding: the batch sharding (`batch_sharding`).
  """

  def __init__(self, iterator: Iterator[dict[str, np.ndarray]], sharding: NamedSharding):
    self._iterator = iterator
    self._sharding = sharding

  def __iter__(self) -> HostLocalBatches:
    return self

  def __next__(self) -> dict[str, jax.Array]:
    # On one host the jitted step (or a prefetcher) places the batch itself.
    return global_batch(next(self._iterator), self._sharding, place=False)

  def get_state(self) -> Any:
    return self._iterator.get_state()
