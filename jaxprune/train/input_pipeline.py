"""Choosing the dataset a run trains on, offline first, and loading its train and test splits.

A name jaxprune does not know (not in `jaxprune.data.specs.SPECS`, nor a TFDS dataset
prepared in the data directory) is an error naming the closest known one (`check_name`).
For a TFDS dataset (``"mnist"``, ``"fashion_mnist"``) in order: use it if it is prepared
in the data directory; else prepare it from local IDX files (``settings.data.source_dir``,
else ``<data dir>/downloads/manual/<name>`` or, for MNIST, ``../shared/data/mnist`` next
to the checkout; see `jaxprune.data.preparation.source_dirs`); else download it if the
settings allow (``settings.data.download``); else fall back to ``settings.data.fallback`` (the
bundled ``"digits"``) with a printed notice, or fail at once with the command that
prepares it. Nothing here can start a download the config did not ask for.

In-memory datasets can also live on the device whole (`device_arrays`): the loop then
feeds only example indices (`Indices`) and gathers each batch inside the jitted step
(`gather`), which removes nearly all per-step host work.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jaxprune.data as jdata
from jaxprune.data.preparation import (
  build_command,
  find_prepared,
  find_source_dir,
  prepare_command,
  source_dirs,
)
from jaxprune.data.specs import SPECS, closest_name, did_you_mean
from jaxprune.train.settings import Data
from jaxprune.train.sharding import HostLocalBatches
from jaxprune.train.splits import Splits
from jaxprune.train.text_settings import is_text


def _needs_files(name: str) -> bool:
  return name not in SPECS or SPECS[name].needs_preparation


def _tfds_knows(name: str) -> bool:
  """Whether TFDS has a builder for ``name`` (``"name"`` or ``"name/config"``)."""
  import tensorflow_datasets as tfds  # heavy; only a dataset unknown to jaxprune needs it

  try:
    tfds.builder_cls(name.split("/")[0])
  except Exception:  # tfds raises DatasetNotFoundError (and others for odd names)
    return False
  return True


def check_name(data: Data) -> None:
  """Refuses a dataset name that is neither known to jaxprune nor a prepared TFDS dataset.

  Known names are those of `jaxprune.data.specs.SPECS`; any other name must be a TFDS
  dataset prepared in the data directory (or one TFDS can build, with ``download``). A
  misspelt name is never replaced by the fallback dataset.

  Args:
    data: ``settings.data``.

  Raises:
    ValueError: naming the known datasets and the closest one.

  Example:
    >>> from jaxprune.train.settings import Data
    >>> check_name(Data("mnist", data_dir="", source_dir="", download=False, fallback=""))
    >>> check_name(Data("mnsit", data_dir="", source_dir="", download=False, fallback=""))
    Traceback (most recent call last):
    ...
    ValueError: config.data.name='mnsit' is not a dataset ... Did you mean 'mnist'? ...
  """
  name, data_dir = data.name, data.data_dir or None
  if name in SPECS or find_prepared(name, data_dir) is not None:
    return
  if data.download and _tfds_knows(name):
    return
  where = data_dir or os.fspath(jdata.default_data_dir())
  raise ValueError(
    f"config.data.name={name!r} is not a dataset jaxprune knows ({sorted(SPECS)}) nor a "
    f"TFDS dataset prepared in {where!r}.{did_you_mean(name)} Use e.g. "
    f"--config.data.name={closest_name(name) or 'mnist'}; for another TFDS dataset, prepare "
    f"it first (tfds build {name} --file_format=array_record --data_dir {where}) or pass "
    "--config.data.download=True where the network is reachable."
  )


def resolve(data: Data) -> tuple[str, str | None]:
  """Returns ``(dataset name to use, notice or None)``, preparing the dataset if possible.

  Only a known dataset (`check_name`) that is not prepared falls back to ``data.fallback``.

  Args:
    data: ``settings.data`` (``name``, ``data_dir``, ``source_dir``, ``download``,
      ``fallback``).

  Raises:
    ValueError: if the name is unknown (`check_name`).
    jaxprune.data.DatasetNotPreparedError: if the dataset is unavailable and there is no
      fallback; the message shows the command that prepares it.
  """
  if is_text(data):  # text for language models: nothing to prepare or fall back to
    return data.name, None
  name = data.name
  check_name(data)
  if not _needs_files(name):
    return name, None
  data_dir = data.data_dir or None
  source = data.source_dir or None
  offline_source = source is not None or find_source_dir(name, data_dir) is not None
  if (
    name in SPECS
    and not (offline_source or data.download or jdata.is_prepared(name, data_dir))
    and data.fallback
  ):
    where = data_dir or os.fspath(jdata.default_data_dir())
    looked = ", ".join(os.fspath(p) for p in source_dirs(name, data_dir))
    looked = f" (looked in {looked})" if looked else ""
    idx = SPECS[name].from_idx
    command = prepare_command(name, where) if idx else build_command(name, where)
    notice = (
      f"NOTICE: dataset {name!r} is not prepared in {where!r}"
      f"{' and no IDX files were found' if idx else ''}{looked}; training on "
      f"{data.fallback!r} instead. To use {name!r}: {command}, or "
      "--config.data.download=True where the network is reachable."
    )
    return data.fallback, notice
  jdata.ensure_prepared(name, data_dir, source, download=data.download)
  return name, None


def load_splits(data: Data, *, verbose: bool = True) -> Splits:
  """Resolves the dataset (see `resolve`) and loads its train, validation and test splits.

  ``data.validation_fraction`` of the training split (drawn with ``data.validation_seed``,
  see `jaxprune.data.split_validation`) is held out as the validation split; 0 holds out
  nothing.

  Args:
    data: ``settings.data``.
    verbose: print the fallback notice to stderr.

  Returns:
    The `Splits`.

  Example:
    >>> from jaxprune.train.settings import Data
    >>> data = Data("digits", data_dir="", source_dir="", download=False, fallback="",
    ...             validation_fraction=0.1, validation_seed=0)
    >>> splits = load_splits(data)
    >>> splits.name, splits.train.num_examples, splits.validation.num_examples
    ('digits', 1293, 144)
    >>> splits.test.num_examples
    360
  """
  name, notice = resolve(data)
  if notice and verbose:
    print(notice, file=sys.stderr, flush=True)
  data_dir = (data.data_dir or None) if _needs_files(name) else None
  options = dict(data_dir=data_dir, augment=data.augment, image_size=data.image_size)
  train = jdata.load(name, "train", **options)
  test = jdata.load(name, train.spec.test_split, **options)
  validation = None
  if data.validation_fraction > 0:
    train, validation = jdata.split_validation(
      train, data.validation_fraction, data.validation_seed
    )
  return Splits(train, test, validation, notice)


class Indices:
  """A view of a dataset whose batches are example indices: ``{"index": int32 [b]}``.

  Iterated by a `jaxprune.data.BatchIterator`, it visits the examples in exactly the order
  (and with the same resumable position) as the dataset itself would; the images are then
  gathered on device from `device_arrays` by `gather`.
  """

  def __init__(self, dataset: jdata.Dataset):
    self.num_examples = dataset.num_examples

  def __getitem__(self, indices: np.ndarray) -> dict[str, np.ndarray]:
    return {"index": np.asarray(indices, np.int32)}


def device_arrays(dataset: jdata.Dataset, sharding: Any = None) -> dict[str, jax.Array]:
  """The whole split on device: raw uint8 ``"image"`` ``[N, H, W, C]`` and int32 ``"label"``.

  Args:
    dataset: an in-memory `jaxprune.data.Dataset` (MNIST's training split is 47 MB).
    sharding: where to put it, e.g. replicated over the mesh (every host holds the whole
      split, so this also works across hosts); None for the default device.
  """
  images, labels = dataset.raw(np.arange(dataset.num_examples))
  arrays = {"image": images.reshape((-1, *dataset.image_shape)), "label": labels.astype(np.int32)}
  if sharding is None:
    return jax.device_put(arrays)
  return {
    k: jax.make_array_from_callback(v.shape, sharding, lambda index, v=v: v[index])
    for k, v in arrays.items()
  }


def normalise(batch: dict[str, jax.Array], spec: Any) -> dict[str, jax.Array]:
  """A batch of uint8 images normalised like ``Dataset.__getitem__``, on the device.

  Jittable: ``pixel * (1 / (max_value * std)) - mean / std`` in float32, the operations of
  `jaxprune.data.augment.Preprocess.normalise` in the same order.

  Args:
    batch: ``{"image": uint8 [b, H, W, C], "label": int32 [b]}``.
    spec: the dataset's `jaxprune.data.specs.DatasetSpec` (``dataset.spec``).

  Returns:
    The batch with ``"image"`` float32.
  """
  scale, shift = spec.normalisation()
  return {**batch, "image": batch["image"].astype(jnp.float32) * scale - shift}


def gather(data: dict[str, jax.Array], index: jax.Array, spec: Any) -> dict[str, jax.Array]:
  """The batch at ``index`` from `device_arrays`, normalised like ``Dataset.__getitem__``.

  Args:
    data: from `device_arrays`.
    index: int32 ``[b]`` example indices.
    spec: the dataset's `jaxprune.data.specs.DatasetSpec` (``dataset.spec``).

  Returns:
    ``{"image": float32 [b, H, W, C], "label": int32 [b]}``.
  """
  return normalise({"image": data["image"][index], "label": data["label"][index]}, spec)


class _GlobalBatches:
  """Local batches (this process's rows) as global arrays when there are several processes."""

  def __init__(self, iterator: Any, sharding: Any, batch_size: int):
    self._iterator = iterator
    self._sharding = sharding
    self._batch_size = batch_size

  def __iter__(self) -> _GlobalBatches:
    return self

  def __next__(self) -> dict[str, Any]:
    batch = next(self._iterator)
    if jax.process_count() == 1:
      return batch
    return {
      k: jax.make_array_from_process_local_data(
        self._sharding, v, (self._batch_size, *np.shape(v)[1:])
      )
      for k, v in batch.items()
    }

  def get_state(self) -> dict[str, int]:
    return self._iterator.get_state()


class TrainFeed:
  """The training batches of a run: indices into a device-resident split, or host batches.

  With ``on_device=True``, an in-memory split and no random augmentation, the split is
  put on the devices once (replicated) and each step receives only its example indices,
  sharded over the batch axis; `jit_step` gathers the batch inside the step. Otherwise
  each process reads its rows of every batch through grain
  (`jaxprune.data.StreamedBatches`: ``num_workers`` processes read, decode and augment)
  and a prefetch thread puts them on the devices as uint8 (a quarter of the bytes of
  float32), which `jit_step` normalises inside the step. It hands them to the loop in the
  groups the workers produce (about 2 MiB), so a fast step does not wait on a thread
  hand-over per batch. Either way the order is that of a
  `jaxprune.data.BatchIterator` over the split, and `get_state` is its position.

  Args:
    dataset: the training split.
    batch_size: global batch size.
    seed: seed of the per-epoch order.
    batch_sharding: sharding of a batch (leading axis over devices).
    replicated: sharding of the device-resident split.
    on_device: keep an in-memory split on the devices.
    prefetch: batches prefetched ahead when streaming from the host.
    position: a `get_state` result to resume from.
    num_workers: grain worker processes of the host path.
  """

  def __init__(
    self,
    dataset: jdata.Dataset,
    batch_size: int,
    seed: int,
    *,
    batch_sharding: Any,
    replicated: Any,
    on_device: bool = True,
    prefetch: int = 2,
    position: dict[str, int] | None = None,
    num_workers: int = 0,
  ):
    self.spec = dataset.spec
    augmented = dataset.preprocess(train=True).random
    self.on_device = bool(on_device and dataset.in_memory and not augmented)
    self._batch_sharding = batch_sharding
    self._batch_size = batch_size
    if self.on_device:
      self._source: Any = Indices(dataset)
      iterator = jdata.BatchIterator(self._source, batch_size, seed=seed)
      if position is not None:
        iterator.set_state(position)
      self.data = device_arrays(dataset, replicated)
      self._iterator: Any = HostLocalBatches(iterator, batch_sharding)
    else:
      self._source = dataset
      streamed = jdata.StreamedBatches(
        dataset,
        batch_size,
        seed=seed,
        num_workers=num_workers,
        prefetch=prefetch,
        normalise=False,  # uint8 to the devices (a quarter of the bytes); `jit_step` normalises
      )
      if position is not None:
        streamed.set_state(position)
      self.data = None
      batches = _GlobalBatches(streamed, batch_sharding, batch_size)
      self._iterator = jdata.prefetch_to_device(
        batches, size=prefetch, sharding=batch_sharding, chunk=streamed.group_size
      )
      self._streamed = streamed

  def __iter__(self) -> TrainFeed:
    return self

  def __next__(self) -> dict[str, Any]:
    return next(self._iterator)

  def get_state(self) -> dict[str, int]:
    """The position after the last batch returned (save it with the checkpoint)."""
    return self._iterator.get_state()

  def close(self) -> None:
    """Stops the prefetch thread and the grain workers, if any."""
    if not self.on_device:
      self._iterator.close()
      self._streamed.close()

  def batch_shapes(self) -> dict[str, jax.ShapeDtypeStruct]:
    """Shapes and dtypes of the batches this feed yields (global batch size, x64 off)."""
    if self.on_device:
      rows = self._source[np.arange(1)]
    else:  # uint8 images, normalised inside the step
      rows = {
        "image": np.zeros((1, *self.spec.image_shape), np.uint8),
        "label": np.zeros(1, np.int32),
      }
    return {
      k: jax.ShapeDtypeStruct(
        (self._batch_size, *np.shape(v)[1:]), jax.dtypes.canonicalize_dtype(np.asarray(v).dtype)
      )
      for k, v in rows.items()
    }

  def jit_step(
    self, step_fn: Any, state_shardings: Any, out_shardings: Any, state: Any = None
  ) -> Any:
    """Jits ``step_fn(state, batch)`` for this feed's batches; returns ``f(state, batch)``.

    The state argument is donated: its buffers are reused for the new state (do not use
    the old state after the call). Arrays still referenced elsewhere, e.g. by a
    checkpoint being written, are copied instead of reused.

    Args:
      step_fn: the step, ``(state, batch) -> (state, metrics)``.
      state_shardings: shardings of the state (a pytree like it).
      out_shardings: shardings of ``(state, metrics)``.
      state: if given (the state or ``jax.eval_shape`` of it), the step is compiled now,
        ahead of the first call, for states like it and this feed's `batch_shapes`, so a
        training loop never pauses to compile mid-run and compile errors surface before
        training starts.
    """
    spec = self.spec
    if not self.on_device:
      fn = jax.jit(
        lambda state, batch: step_fn(state, normalise(batch, spec)),
        in_shardings=(state_shardings, self._batch_sharding),
        out_shardings=out_shardings,
        donate_argnums=0,
      )
      return fn if state is None else fn.lower(state, self.batch_shapes()).compile()
    replicated = jax.tree.leaves(self.data)[0].sharding
    on_data = jax.jit(
      lambda state, data, batch: step_fn(state, gather(data, batch["index"], spec)),
      in_shardings=(state_shardings, replicated, self._batch_sharding),
      out_shardings=out_shardings,
      donate_argnums=0,
    )
    if state is not None:
      on_data = on_data.lower(state, self.data, self.batch_shapes()).compile()
    return lambda state, batch: on_data(state, self.data, batch)
