"""TensorBoard event files of a run, in ``<workdir>/tensorboard``, without TensorFlow.

Events are written with tensorboardX (numpy and protobuf only); open them with
``tensorboard --logdir <workdir>/tensorboard``. What a run writes:

* scalars: every number of ``metrics.jsonl`` under ``train/``, ``validation/`` or
  ``test/`` (``train/loss``, ``validation/accuracy``...), plus ``sparsity`` and
  ``learning_rate``;
* ``layer_sparsity/<leaf path>``: the fraction of exact zeros in every kernel (leaves
  with ndim > 1) at each logging step;
* histograms, at each evaluation: ``weights/<leaf path>`` of the kernel entries that are
  not pruned (nonzero), and ``log_alpha/<leaf path>`` of variational-dropout layers.

The statistics are computed on the devices by `layer_sparsity` and `histograms` (jitted,
a few numbers per layer come back), so they cost little and work on sharded params. In a
multi-process run every process computes them (they are collective) and process 0 writes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tensorboardX import SummaryWriter
from tensorboardX.proto import event_pb2
from tensorboardX.record_writer import masked_crc32c

from jaxprune.bayes.l0 import GATE
from jaxprune.bayes.variational import LOG_SIGMA2, log_alphas

PyTree = Any
BINS = 30


def _kernels(params: PyTree) -> dict[str, jax.Array]:
  """Leaves with ndim > 1 by "/"-joined path, without the training-only log σ² and gates."""
  out = {}
  for path, leaf in jax.tree_util.tree_leaves_with_path(params):
    names = [str(getattr(k, "key", getattr(k, "name", k))) for k in path]
    if leaf.ndim > 1 and names[-1] not in (LOG_SIGMA2, GATE):
      out["/".join(names)] = leaf
  return out


def layer_sparsity(params: PyTree) -> dict[str, jax.Array]:
  """``{leaf path: fraction of exact zeros}`` of every kernel (ndim > 1); jittable.

  Example:
    >>> import jax.numpy as jnp
    >>> out = layer_sparsity({"Dense_0": {"kernel": jnp.array([[0.0, 1.0], [0.0, 0.0]]),
    ...                                   "bias": jnp.zeros(2)}})
    >>> {k: float(v) for k, v in out.items()}
    {'Dense_0/kernel': 0.75}
  """
  return {k: jnp.mean(v == 0, dtype=jnp.float32) for k, v in _kernels(params).items()}


def histogram(values: jax.Array, weights: jax.Array, bins: int = BINS) -> dict[str, jax.Array]:
  """TensorBoard's histogram of the entries of ``values`` where ``weights`` is True.

  Jittable (fixed number of equal-width bins between the selected entries' min and max).

  Returns:
    ``min``, ``max``, ``num``, ``sum``, ``sum_squares`` and ``bucket_limit`` (upper edges),
    ``bucket`` (counts) for `tensorboardX.SummaryWriter.add_histogram_raw`.

  Example:
    >>> import jax.numpy as jnp
    >>> h = histogram(jnp.array([0.0, 1.0, 2.0, 3.0]), jnp.array([False, True, True, True]), 2)
    >>> float(h["num"]), h["bucket"].tolist(), h["bucket_limit"].tolist()
    (3.0, [1.0, 2.0], [2.0, 3.0])
  """
  x = jnp.ravel(values).astype(jnp.float32)
  w = jnp.ravel(weights).astype(bool)
  num = jnp.sum(w, dtype=jnp.float32)
  lo = jnp.where(num > 0, jnp.min(jnp.where(w, x, jnp.inf)), 0.0)
  hi = jnp.where(num > 0, jnp.max(jnp.where(w, x, -jnp.inf)), 0.0)
  width = jnp.where(hi > lo, (hi - lo) / bins, 1.0)
  index = jnp.clip(jnp.floor((x - lo) / width).astype(jnp.int32), 0, bins - 1)
  counts = jnp.zeros(bins, jnp.float32).at[index].add(w.astype(jnp.float32))
  xw = jnp.where(w, x, 0.0)
  return {
    "min": lo,
    "max": hi,
    "num": num,
    "sum": jnp.sum(xw),
    "sum_squares": jnp.sum(xw * xw),
    "bucket_limit": lo + width * jnp.arange(1, bins + 1, dtype=jnp.float32),
    "bucket": counts,
  }


def histograms(params: PyTree) -> dict[str, dict[str, jax.Array]]:
  """Histograms of the kept (nonzero) kernel entries and of variational log α; jittable."""
  out = {f"weights/{k}": histogram(v, v != 0) for k, v in _kernels(params).items()}
  for k, v in log_alphas(params).items():
    out[f"log_alpha/{k}"] = histogram(v, jnp.ones(v.shape, bool))
  return out


def _scalar_tag(key: str) -> str:
  for split in ("train", "validation", "test"):
    if key.startswith(split + "_"):
      return f"{split}/{key[len(split) + 1 :]}"
  return key


class TensorBoardLog:
  """Writes a run's scalars, per-layer sparsity and histograms as TensorBoard events.

  Args:
    logdir: the folder of the event files (created if missing).
    resume_step: when a run resumes from step t, events of later steps written by the
      interrupted process are hidden from TensorBoard (a ``purge_step``).

  Example:
    >>> import tempfile
    >>> with TensorBoardLog(tempfile.mkdtemp()) as tb:
    ...   tb.scalars(10, {"step": 10, "train_loss": 0.5, "notice": None})
    >>> tb.tags
    ['train/loss']
  """

  def __init__(self, logdir: str | os.PathLike, resume_step: int | None = None):
    self.logdir = Path(logdir)
    self.logdir.mkdir(parents=True, exist_ok=True)
    purge = None if resume_step is None else resume_step + 1
    # Event file names hold the time in seconds; the suffix keeps two writers apart.
    suffix = f".{os.getpid()}.{resume_step or 0}"
    self._writer = SummaryWriter(
      os.fspath(self.logdir), purge_step=purge, flush_secs=30, filename_suffix=suffix
    )
    self.tags: list[str] = []

  def _tag(self, tag: str) -> str:
    if tag not in self.tags:
      self.tags.append(tag)
    return tag

  def scalars(self, step: int, record: dict[str, Any]) -> None:
    """Every int or float of a ``metrics.jsonl`` record except ``step`` and ``epoch``."""
    for key, value in record.items():
      if key in ("step", "epoch") or isinstance(value, bool):
        continue
      if isinstance(value, int | float):
        self._writer.add_scalar(self._tag(_scalar_tag(key)), float(value), step)

  def layer_sparsity(self, step: int, sparsity: dict[str, Any]) -> None:
    """``layer_sparsity/<path>`` scalars from `layer_sparsity` (after `jax.device_get`)."""
    for path, value in sparsity.items():
      self._writer.add_scalar(self._tag(f"layer_sparsity/{path}"), float(value), step)

  def histograms(self, step: int, hists: dict[str, dict[str, Any]]) -> None:
    """Histograms from `histograms` (after `jax.device_get`); empty ones are skipped."""
    for tag, h in hists.items():
      if float(h["num"]) == 0:
        continue
      self._writer.add_histogram_raw(
        self._tag(tag),
        min=float(h["min"]),
        max=float(h["max"]),
        num=int(h["num"]),
        sum=float(h["sum"]),
        sum_squares=float(h["sum_squares"]),
        bucket_limits=np.asarray(h["bucket_limit"], np.float64).tolist(),
        bucket_counts=np.asarray(h["bucket"], np.float64).tolist(),
        global_step=step,
      )

  def flush(self) -> None:
    self._writer.flush()

  def close(self) -> None:
    self._writer.close()

  def __enter__(self) -> TensorBoardLog:
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()


def read_events(logdir: str | os.PathLike) -> list[dict[str, Any]]:
  """The summaries in the event files of ``logdir``, in file and write order.

  Reads the TFRecord framing (length and data, each with its masked CRC-32C, checked)
  and parses each record as a TensorBoard ``Event``; a torn last record is skipped.

  Returns:
    ``{"step", "tag", "value"}`` for scalars and ``{"step", "tag", "histogram"}`` (a dict
    of the histogram's fields) for histograms.

  Example:
    >>> import tempfile
    >>> logdir = tempfile.mkdtemp()
    >>> with TensorBoardLog(logdir) as tb:
    ...   tb.scalars(3, {"validation_accuracy": 0.25})
    >>> read_events(logdir)
    [{'step': 3, 'tag': 'validation/accuracy', 'value': 0.25}]
  """
  import struct

  out: list[dict[str, Any]] = []
  for path in sorted(Path(logdir).glob("events.out.tfevents.*")):
    data = path.read_bytes()
    offset = 0
    while offset + 12 <= len(data):
      header = data[offset : offset + 8]
      (length,) = struct.unpack("<Q", header)
      (header_crc,) = struct.unpack("<I", data[offset + 8 : offset + 12])
      body = data[offset + 12 : offset + 12 + length]
      end = offset + 12 + length + 4
      if header_crc != masked_crc32c(header) or len(body) < length or end > len(data):
        break  # torn or damaged record
      (body_crc,) = struct.unpack("<I", data[end - 4 : end])
      if body_crc != masked_crc32c(body):
        break
      offset = end
      event = event_pb2.Event.FromString(body)
      for value in event.summary.value:
        if value.HasField("histo"):
          h = value.histo
          histo = {
            "min": h.min,
            "max": h.max,
            "num": h.num,
            "sum": h.sum,
            "sum_squares": h.sum_squares,
            "bucket_limit": list(h.bucket_limit),
            "bucket": list(h.bucket),
          }
          out.append({"step": event.step, "tag": value.tag, "histogram": histo})
        elif value.HasField("simple_value"):
          out.append({"step": event.step, "tag": value.tag, "value": value.simple_value})
  return out
