"""Exact top-k mask time per leaf shape, and what the counting layout is worth.

`jaxprune.masks.topk_mask` finds the k-th largest key by counting passes that sum rows of
a ``15 x c`` view of the keys. The column count ``c`` is chosen 2 mod 4
(`jaxprune.masks._columns`), because XLA:CPU sums some column counts several times slower
than others. This script times ``topk_mask(|w|, 10% kept)`` for common layer shapes with
that layout and with the naive one (``c = n // 15``), interleaved, and prints the median
time of each and the median per-round ratio naive / chosen.

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


def _compiled(shape: tuple[int, ...], columns) -> jax.stages.Compiled:
  """``topk_mask`` for ``shape`` traced with ``columns`` as the layout rule."""
  saved = masks._columns
  masks._columns = columns
  try:
    w = jax.ShapeDtypeStruct(shape, jnp.float32)
    n = 1
    for d in shape:
      n *= d
    return jax.jit(lambda w: masks.topk_mask(jnp.abs(w), n // 10)).lower(w).compile()
  finally:
    masks._columns = saved


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--repeats", type=int, default=15)
  args = parser.parse_args()
  print(f"devices: {jax.devices()}; load average {os.getloadavg()[0]:.1f}")
  print("| leaf | entries | chosen layout (ms) | naive layout (ms) | naive / chosen |")
  print("|---|---|---|---|---|")
  for name, shape in SHAPES.items():
    w = jax.random.normal(jax.random.key(0), shape)
    chosen = _compiled(shape, masks._columns)
    naive = _compiled(shape, lambda n, rows: n // rows)
    assert bool(jnp.array_equal(chosen(w), naive(w)))
    times = interleaved({"chosen": lambda: chosen(w), "naive": lambda: naive(w)}, args.repeats)
    ms = {k: 1e3 * statistics.median(v) for k, v in times.items()}
    print(
      f"| {name} | {w.size:,} | {ms['chosen']:.2f} | {ms['naive']:.2f} | "
      f"{median_ratio(times, 'naive', 'chosen'):.2f}x |",
      flush=True,
    )


if __name__ == "__main__":
  main()
