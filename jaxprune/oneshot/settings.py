"""Settings of a one-shot pruning run, and drawing calibration windows from a token stream.

SparseGPT and Wanda calibrate on 128 sequences of the model's context length drawn at random
from the training text, with 1% damping; those are the defaults here.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any

import numpy as np

DEFAULT_SAMPLES = 128


def _positive_int(name: str, value: Any, optional: bool = False) -> None:
  if value is None and optional:
    return
  message = (
    f"Settings.{name} must be a positive int{' or None' if optional else ''}; got {value!r}. "
    f"Example: jaxprune.oneshot.Settings({name}=8)."
  )
  if isinstance(value, bool) or not isinstance(value, numbers.Real):
    raise TypeError(message)
  if not isinstance(value, numbers.Integral) or value < 1:
    raise ValueError(message)


@dataclasses.dataclass(frozen=True)
class Settings:
  """How a one-shot run calibrates and prunes.

  Attributes:
    num_samples: calibration sequences drawn from a token stream (``None``: 128); with
      windows given as ``[N, T]``, ``None`` or N.
    seq_len: their length (``None``: the model's ``max_len``); with windows, ``None`` or T.
    seed: seed of the windows' random starts in a stream (``None``: 0); windows given as
      ``[N, T]`` take none.
    batch_size: sequences per calibration step (it divides ``num_samples``, and with a mesh
      is a multiple of its data axis): the linear inputs of one step are all that is held.
    damp: SparseGPT's damping λ as a fraction of the mean diagonal of XᵀX.
    block_size: SparseGPT's lazy-update block, in inputs.
    sequential: ``False`` (SparseGPT's and Wanda's default): the inputs of every linear of a
      block come from the dense block. ``True`` ("true sequential"): the linears are pruned
      stage by stage (q/k/v, then o, then gate/up, then down), each stage's inputs recomputed
      through the stages already pruned; one more calibration pass per stage.

  Example:
    >>> Settings(num_samples=64, seq_len=256).batch_size
    8
  """

  num_samples: int | None = None
  seq_len: int | None = None
  seed: int | None = None
  batch_size: int = 8
  damp: float = 0.01
  block_size: int = 128
  sequential: bool = False

  def __post_init__(self):
    _positive_int("num_samples", self.num_samples, optional=True)
    _positive_int("seq_len", self.seq_len, optional=True)
    _positive_int("batch_size", self.batch_size)
    _positive_int("block_size", self.block_size)
    if self.seed is not None and (
      isinstance(self.seed, bool) or not isinstance(self.seed, numbers.Integral)
    ):
      raise TypeError(f"Settings.seed must be an int or None; got {self.seed!r}.")
    d = self.damp
    if isinstance(d, bool) or not isinstance(d, numbers.Real):
      raise TypeError(f"Settings.damp must be a float; got {d!r}. Example: Settings(damp=0.01).")
    if not (math.isfinite(d) and d >= 0):
      raise ValueError(f"Settings.damp must be finite and >= 0; got {d!r}. E.g. damp=0.01.")
    if not isinstance(self.sequential, bool):
      raise TypeError(f"Settings.sequential must be a bool; got {self.sequential!r}.")

  def windows(self, tokens: Any, max_len: int | None = None) -> np.ndarray:
    """The calibration windows ``[N, T]`` (int32) from ``tokens``: a 1-D stream or windows.

    Raises:
      ValueError: a setting would be ignored or does not fit, or N is not a multiple of
        ``batch_size``.
    """
    tokens = np.asarray(tokens)
    if not np.issubdtype(tokens.dtype, np.integer):
      raise TypeError(
        f"Calibration tokens must be integers (a 1-D token stream or [N, T] windows); got "
        f"dtype {tokens.dtype}."
      )
    if tokens.ndim == 1:
      seq_len = self.seq_len or max_len
      if seq_len is None:
        raise ValueError(
          "Drawing calibration windows from a token stream needs their length; the model "
          "gives no max_len. Pass Settings(seq_len=...), e.g. Settings(seq_len=256)."
        )
      out = calibration_windows(
        tokens, self.num_samples or DEFAULT_SAMPLES, seq_len, 0 if self.seed is None else self.seed
      )
    elif tokens.ndim == 2:
      n, t = tokens.shape
      for name, value, have in (("num_samples", self.num_samples, n), ("seq_len", self.seq_len, t)):
        if value is not None and value != have:
          raise ValueError(
            f"Settings.{name}={value} but the calibration windows have shape {tokens.shape}; "
            f"pass {name}=None with windows, or a 1-D token stream to draw {name} from."
          )
      if self.seed is not None:
        raise ValueError(
          f"Settings.seed={self.seed} would be ignored: the calibration windows are given "
          f"({tokens.shape}). Pass seed=None, or a 1-D token stream to draw windows from."
        )
      out = tokens.astype(np.int32)
    else:
      raise ValueError(
        f"Calibration tokens must be a 1-D stream or [N, T] windows; got shape {tokens.shape}."
      )
    if out.shape[0] % self.batch_size:
      raise ValueError(
        f"{out.shape[0]} calibration sequences do not split into batches of "
        f"Settings.batch_size={self.batch_size}; use a batch size that divides it, e.g. "
        f"batch_size={math.gcd(out.shape[0], self.batch_size)}."
      )
    return out


def calibration_windows(stream: Any, num_samples: int, seq_len: int, seed: int = 0) -> np.ndarray:
  """``num_samples`` windows of ``seq_len`` tokens at random starts of a 1-D token stream.

  Example:
    >>> calibration_windows(np.arange(100), 2, 4, seed=0).shape
    (2, 4)
  """
  stream = np.asarray(stream)
  if stream.ndim != 1 or len(stream) < seq_len:
    raise ValueError(
      f"Need a 1-D token stream of at least seq_len={seq_len} tokens; got shape {stream.shape}."
    )
  starts = np.random.default_rng(seed).integers(0, len(stream) - seq_len + 1, size=num_samples)
  return np.stack([stream[s : s + seq_len] for s in starts]).astype(np.int32)
