"""Exact top-k mask time per leaf shape, and what the CPU-only layouts are worth.

`jaxprune.masks.topk_mask` finds the k-th largest key by counting passes that sum rows of
a ``15 x c`` view of the keys. On XLA:CPU the column count ``c`` is chosen 2 mod 4
(`jaxprune.masks._columns`), because XLA:CPU sums some column counts several times slower
than others; other backends take ``c = n // 15``.
This script times ``topk_mask(|w|, 10% kept)`` for common layer shapes with the CPU
layouts, with the naive column count only, and with both other-backend layouts (traced
with ``jax.default_backend`` reporting "gpu", run on the current device), interleaved, and
prints the median time of each and the median per-round ratios to the CPU layouts.

Usage: python benchmarks/selection_layout.py [--repeats 15]
"""

from __future__ import annotations

import argparse
import os
import statistics

import jax
import jax.numpy as jnp
from _timing import interleaved, median_ratio

from jaxprune import masks

SHAPES = {
  "LeNet-300-100 Dense_0": (784, 300),
  "LeNet-300-100 Dense_1": (300, 100),
  "LeNet-5 Dense_0": (800, 500),
  "conv 3x3x64x64": (3, 3, 64, 64),
  "conv 3x3x128x128": (3, 3, 128, 128),
  "conv 3x3x256x256": (3, 3, 256, 256),
  "ViT-S MLP 384x1536": (384, 1536),
  "conv 3x3x512x512": (3, 3, 512, 512),
  "Dense 2048x2048": (2048, 2048),
  "Dense 4096x2304": (4096, 2304),
}


def _compiled(shape: tuple[int, ...], columns=None, backend=None) -> jax.stages.Compiled:
  """``topk_mask`` for ``shape``, traced with ``columns`` as the layout rule and/or
  ``jax.default_backend`` reporting ``backend``."""
  saved_columns, saved_backend = masks._columns, jax.default_backend
  if columns is not None:
    masks._columns = columns
  if backend is not None:
    jax.default_backend = lambda: backend
  try:
    w = jax.ShapeDtypeStruct(shape, jnp.float32)
    n = 1
    for d in shape:
      n *= d
    return jax.jit(lambda w: masks.topk_mask(jnp.abs(w), n // 10)).lower(w).compile()
  finally:
    masks._columns, jax.default_backend = saved_columns, saved_backend


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--repeats", type=int, default=15)
  args = parser.parse_args()
  print(f"devices: {jax.devices()}; load average {os.getloadavg()[0]:.1f}")
  print(
    "| leaf | entries | CPU layouts (ms) | naive columns (ms) | other-backend layouts (ms) "
    "| naive columns / CPU | other-backend / CPU |"
  )
  print("|---|---|---|---|---|---|---|")
  for name, shape in SHAPES.items():
    w = jax.random.normal(jax.random.key(0), shape)
    fns = {
      "cpu": _compiled(shape),
      "naive": _compiled(shape, columns=lambda n, rows: n // rows),
      "other": _compiled(shape, backend="gpu"),
    }
    want = fns["cpu"](w)
    assert all(bool(jnp.array_equal(f(w), want)) for f in fns.values())
    times = interleaved({k: (lambda f=f: f(w)) for k, f in fns.items()}, args.repeats)
    ms = {k: 1e3 * statistics.median(v) for k, v in times.items()}
    print(
      f"| {name} | {w.size:,} | {ms['cpu']:.2f} | {ms['naive']:.2f} | {ms['other']:.2f} | "
      f"{median_ratio(times, 'naive', 'cpu'):.2f}x | {median_ratio(times, 'other', 'cpu'):.2f}x |",
      flush=True,
    )


if __name__ == "__main__":
  main()
