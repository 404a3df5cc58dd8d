"""Language modelling in the trainer: text splits, the training feed, evaluation, LM metrics.

A config whose ``data.name`` is a text dataset of `jaxprune.data.text` (``"shakespeare"``,
or ``"text:PATH"`` for a user's own plain text) trains a next-byte model, e.g. the
``"decoder_lm"`` of `jaxprune.train.models.lm` (configs/shakespeare_lm.py). The trainer's
steps stay those of image classification: a batch is ``{"image": int32 tokens [B, T],
"label": int32 next tokens [B, T]}``, so the integer-label cross-entropy of logits
``[B, T, 256]`` is the mean next-token loss in nats per byte, its accuracy the next-byte
accuracy, and ``"mask"`` ``[B, T]`` weighs every scored byte of an evaluation once.

Settings read from ``config.data`` for text:

* ``seq_len``: tokens per training and evaluation window, ``T``;
* ``validation_fraction`` and ``test_fraction``: shares of a ``"text:PATH"`` held out
  (both > 0); ``"shakespeare"`` holds out whole plays, so both must be 0 there;
* ``on_device``: keep the training tokens on the devices and send each step only its
  window offsets (else windows are cut on the host).

An "example" is a window of ``T`` tokens: an epoch is ``ceil((n - 1) / T)`` windows of the
training split's ``n`` tokens, drawn at random offsets (`jaxprune.data.TextBatches`,
resumable by step). Evaluations cover every byte of a split but the first, once
(`jaxprune.data.text_eval_batches`) and report, besides loss and accuracy,
``nats_per_byte`` (= the loss), ``bits_per_byte`` (``nats / ln 2``), ``perplexity``
(``exp(nats)``) and the number of scored ``tokens``; `lm_record` names them per split for
the metrics log and the summary.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxprune.data.text import USER_TEXT, TextDataset, load_text, parse_name
from jaxprune.data.text_batches import TextBatches, text_eval_batches
from jaxprune.train.lm_metrics import byte_metrics
from jaxprune.train.sharding import HostLocalBatches
from jaxprune.train.splits import Splits
from jaxprune.train.text_settings import check_settings


@dataclasses.dataclass(frozen=True)
class TextSplit:
  """One split of a text dataset as the trainer sees it: windows of ``seq_len`` tokens.

  Attributes:
    dataset: the `jaxprune.data.TextDataset`.
    seq_len: tokens per window, ``T``.
  """

  dataset: TextDataset
  seq_len: int

  @property
  def name(self) -> str:
    return self.dataset.name

  @property
  def num_classes(self) -> int:
    return self.dataset.num_classes

  @property
  def num_tokens(self) -> int:
    return self.dataset.num_tokens

  @property
  def num_examples(self) -> int:
    """Windows of ``seq_len`` targets covering the split: ``ceil((n - 1) / T)``."""
    return self.dataset.num_windows(self.seq_len)

  @property
  def image_shape(self) -> tuple[int, ...]:
    """One example's shape: ``(seq_len,)`` tokens."""
    return (self.seq_len,)


def load_splits(data: Any, verbose: bool = True) -> Any:
  """The train, validation and test `TextSplit`s of ``config.data`` (checked first).

  ``verbose`` is accepted as by `jaxprune.train.input_pipeline.load_splits`; a text run has
  no fallback dataset, so there is nothing to announce.

  Returns:
    A `jaxprune.train.input_pipeline.Splits` of `TextSplit`s.

  Example:
    >>> import ml_collections, pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "notes.txt"
    >>> _ = path.write_bytes(b"to be or not to be " * 100)
    >>> data = ml_collections.ConfigDict(dict(name=f"text:{path}", seq_len=16,
    ...     validation_fraction=0.1, test_fraction=0.1))
    >>> splits = load_splits(data)
    >>> splits.train.num_tokens, splits.train.num_examples, splits.validation.image_shape
    (1520, 95, (16,))
  """
  del verbose
  check_settings(data)
  seq_len = int(data.seq_len)
  name = str(data.name)
  if parse_name(name)[0] == USER_TEXT:
    options = dict(
      validation_fraction=float(data.validation_fraction),
      test_fraction=float(data.test_fraction),
    )
  else:
    options = dict(data_dir=getattr(data, "data_dir", "") or None)
  split = {s: TextSplit(load_text(name, s, **options), seq_len) for s in ("train", "validation")}
  test = load_text(name, split["train"].dataset.spec.test_split, **options)
  for part in (*split.values(), TextSplit(test, seq_len)):
    if part.num_tokens < seq_len + 1:
      raise ValueError(
        f"The {part.dataset.split} split of {name!r} has {part.num_tokens} tokens, fewer "
        f"than a window of config.data.seq_len={seq_len} plus one; use a shorter window, "
        f"e.g. --config.data.seq_len={max(1, part.num_tokens - 1)}, or more text."
      )
  return Splits(split["train"], TextSplit(test, seq_len), split["validation"])


def windows(tokens: jax.Array, offsets: jax.Array, seq_len: int) -> dict[str, jax.Array]:
  """The trainer's batch from token windows at ``offsets``, jittable.

  Args:
    tokens: ``[n]`` integer tokens of the split (on the device).
    offsets: int32 ``[B]`` first token of each window.
    seq_len: ``T``; each window reads ``T + 1`` tokens.

  Returns:
    ``{"image": int32 [B, T] inputs, "label": int32 [B, T] next tokens}``.

  Example:
    >>> batch = windows(jnp.arange(10), jnp.array([0, 5]), seq_len=3)
    >>> batch["image"].tolist(), batch["label"].tolist()
    ([[0, 1, 2], [5, 6, 7]], [[1, 2, 3], [6, 7, 8]])
  """
  window = tokens[offsets[:, None] + jnp.arange(seq_len + 1)].astype(jnp.int32)
  return {"image": window[:, :-1], "label": window[:, 1:]}


class _Rows:
  """`TextBatches` as the trainer's numpy batches: window offsets, or the windows themselves."""

  def __init__(self, batches: TextBatches, offsets_only: bool):
    self._batches = batches
    self._offsets_only = offsets_only

  def __iter__(self) -> _Rows:
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    if self._offsets_only:
      step = self._batches.get_state()["step"]
      self._batches.set_state({"step": step + 1})
      return {"offset": self._batches.offsets(step).astype(np.int32)}
    batch = next(self._batches)
    return {"image": batch["inputs"], "label": batch["targets"]}

  def get_state(self) -> dict[str, int]:
    return self._batches.get_state()


class TextFeed:
  """The training batches of a text run, with the interface of `input_pipeline.TrainFeed`.

  Batch ``s`` holds the windows `jaxprune.data.TextBatches` draws for step ``s`` (seeded by
  ``(seed, s)`` alone), so a resumed run sees the batches an uninterrupted one would. With
  ``on_device`` the split's tokens live on the devices (replicated) and each step receives
  only int32 window offsets ``[B]``, sharded over the batch axis; `jit_step` cuts the
  windows inside the step. Otherwise each step receives the windows cut on the host.

  Args:
    dataset: the training `TextSplit`.
    batch_size: global batch size (windows per step).
    seed: seed of the window offsets.
    batch_sharding: sharding of a batch (leading axis over devices).
    replicated: sharding of the device-resident tokens.
    on_device: keep the tokens on the devices.
    prefetch: unused (a text batch needs no host work worth prefetching); any value.
    position: a `get_state` result to resume from.
    num_workers: must be 0 (`check_settings`).
  """

  def __init__(
    self,
    dataset: TextSplit,
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
    del prefetch
    if num_workers:
      raise ValueError(
        f"config.data.num_workers={num_workers}: text windows are cut without worker "
        "processes; set --config.data.num_workers=0."
      )
    self.seq_len = dataset.seq_len
    self.on_device = bool(on_device)
    self._batch_size = int(batch_size)
    self._batch_sharding = batch_sharding
    batches = TextBatches(dataset.dataset, batch_size, dataset.seq_len, seed=seed)
    if position is not None:
      batches.set_state(position)
    self._rows = _Rows(batches, offsets_only=self.on_device)
    self._iterator = HostLocalBatches(self._rows, batch_sharding)
    self.data = None
    if self.on_device:
      tokens = dataset.dataset.tokens
      self.data = jax.make_array_from_callback(tokens.shape, replicated, lambda i: tokens[i])

  def __iter__(self) -> TextFeed:
    return self

  def __next__(self) -> dict[str, Any]:
    return next(self._iterator)

  def get_state(self) -> dict[str, int]:
    """The position after the last batch returned: ``{"step": k}`` (saved with checkpoints)."""
    return self._rows.get_state()

  def close(self) -> None:
    """Nothing to stop (no threads or workers)."""

  def batch_shapes(self) -> dict[str, jax.ShapeDtypeStruct]:
    """Shapes and dtypes of the batches this feed yields (global batch size)."""
    if self.on_device:
      return {"offset": jax.ShapeDtypeStruct((self._batch_size,), jnp.int32)}
    shape = jax.ShapeDtypeStruct((self._batch_size, self.seq_len), jnp.int32)
    return {"image": shape, "label": shape}

  def jit_step(
    self, step_fn: Any, state_shardings: Any, out_shardings: Any, state: Any = None
  ) -> Any:
    """Jits ``step_fn(state, batch)`` for this feed's batches, as `TrainFeed.jit_step` does.

    The state argument is donated. With ``state`` (or its `jax.eval_shape`) the step is
    compiled now, ahead of the first call.
    """
    if not self.on_device:
      fn = jax.jit(
        step_fn,
        in_shardings=(state_shardings, self._batch_sharding),
        out_shardings=out_shardings,
        donate_argnums=0,
      )
      return fn if state is None else fn.lower(state, self.batch_shapes()).compile()
    seq_len = self.seq_len
    on_data = jax.jit(
      lambda state, tokens, batch: step_fn(state, windows(tokens, batch["offset"], seq_len)),
      in_shardings=(state_shardings, self.data.sharding, self._batch_sharding),
      out_shardings=out_shardings,
      donate_argnums=0,
    )
    if state is not None:
      on_data = on_data.lower(state, self.data, self.batch_shapes()).compile()
    return lambda state, batch: on_data(state, self.data, batch)


def eval_batches(dataset: TextSplit, batch_size: int):
  """`jaxprune.data.text_eval_batches` of a split as the trainer's evaluation batches.

  Yields:
    ``{"image": int32 [B, T], "label": int32 [B, T], "mask": bool [B, T]}``; the mask
    marks every byte of the split but the first exactly once over all batches.
  """
  for batch in text_eval_batches(dataset.dataset, batch_size, dataset.seq_len):
    yield {"image": batch["inputs"], "label": batch["targets"], "mask": batch["mask"]}


def lm_metrics(sums: Mapping[str, Any]) -> dict[str, float]:
  """Loss, accuracy and the LM metrics from the summed eval-step outputs over a text split.

  The sums are those of `jaxprune.train.steps.eval_step` over the scored tokens
  (``loss_sum`` in nats, ``correct``, ``count``).

  Example:
    >>> import math
    >>> out = lm_metrics({"loss_sum": 10 * math.log(4.0), "correct": 3.0, "count": 10.0})
    >>> out["bits_per_byte"], round(out["perplexity"], 9), out["accuracy"], out["tokens"]
    (2.0, 4.0, 0.3, 10)
  """
  count = float(sums["count"])
  metrics = byte_metrics(sums["loss_sum"], count)
  accuracy = float(sums["correct"]) / count
  nats = metrics["nats_per_byte"]
  return {"loss": nats, "accuracy": accuracy, "error": 1.0 - accuracy, **metrics}
