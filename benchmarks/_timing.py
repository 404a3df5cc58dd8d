"""Interleaved timing helpers shared by the benchmark scripts."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import jax


def time_once(fn: Callable[[], object]) -> float:
  """Seconds for one call, waiting for asynchronous dispatch to finish."""
  start = time.perf_counter()
  jax.block_until_ready(fn())
  return time.perf_counter() - start


def interleaved(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 2):
  """Runs each fn ``repeats`` times in rotation; returns {name: [seconds, ...]}."""
  for fn in fns.values():
    for _ in range(warmup):
      jax.block_until_ready(fn())
  times: dict[str, list[float]] = {k: [] for k in fns}
  for _ in range(repeats):
    for name, fn in fns.items():
      times[name].append(time_once(fn))
  return times


def median_ratio(times: dict[str, list[float]], num: str, den: str) -> float:
  """Median over repeats of the per-round ratio num/den (robust to machine noise)."""
  return statistics.median(a / b for a, b in zip(times[num], times[den], strict=True))
