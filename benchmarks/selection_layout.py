"""Exact top-k mask time per leaf shape, and what the CPU-only layouts are worth.

`jaxprune.masks.topk_mask` finds the k-th largest key by counting passes that sum rows of
a ``15 x c`` view of the keys. On XLA:CPU the column count ``c`` is chosen 2 mod 4
(`jaxprune.masks._columns`), because XLA:CPU sums some column counts several times slower
than others, and the tie cut sums each block as 16 interleaved int16 partial sums
(`jaxprune.masks._tie_cut`); other backends take ``c = n // 15`` and a plain sum per block.
This script times ``topk_mask(|w|, 10% kept)`` for common layer shapes with the CPU
layouts, with the naive column count only, and with both other-backend layouts (traced
with ``jax.default_backend`` reporting "gpu", run on the current device), interleaved, and
prints the median time of each and the median per-round ratios to the CPU layouts.

``--tie-cut`` times `jaxprune.masks._tie_cut` on its own instead, on the keys of each
shape: its CPU layout (16 interleaved int16 partial sums per block) against the plain
int32 sum per block that other backends use (traced with ``jax.default_backend``
reporting "gpu", run on the current device).

Usage: python benchmarks/selection_layout.py [--repeats 15] [--tie-cut]
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


def _tie_cut_compiled(n: int, backend: str) -> jax.stages.Compiled:
  """`masks._tie_cut` on ``n`` uint32 keys, traced with ``jax.default_backend`` = ``backend``."""
  saved = jax.default_backend
  jax.default_backend = lambda: backend
  try:
    keys = jax.ShapeDtypeStruct((n,), jnp.uint32)
    scalar = jax.ShapeDtypeStruct((), jnp.uint32), jax.ShapeDtypeStruct((), jnp.int32)
    return jax.jit(masks._tie_cut).lower(keys, *scalar).compile()
  finally:
    jax.default_backend = saved


def tie_cut_table(repeats: int) -> None:
  """Prints, per shape, `_tie_cut`'s time with the CPU layout and with the plain block sum."""
  print("| leaf | entries | int16 partial sums (ms) | plain int32 sum (ms) | plain / int16 |")
  print("|---|---|---|---|---|")
  for name, shape in SHAPES.items():
    w = jax.random.normal(jax.random.key(0), shape).reshape(-1)
    keys = masks.sortable_keys(jnp.abs(w))
    t = jnp.sort(keys)[-(w.size // 10)]  # the threshold of 10% kept
    room = jnp.int32(1)
    fns = {"cpu": _tie_cut_compiled(w.size, "cpu"), "plain": _tie_cut_compiled(w.size, "gpu")}
    assert int(fns["cpu"](keys, t, room)) == int(fns["plain"](keys, t, room))
    times = interleaved({k: (lambda f=f: f(keys, t, room)) for k, f in fns.items()}, repeats)
    ms = {k: 1e3 * statistics.median(v) for k, v in times.items()}
    print(
      f"| {name} | {w.size:,} | {ms['cpu']:.3f} | {ms['plain']:.3f} | "
      f"{median_ratio(times, 'plain', 'cpu'):.2f}x |",
      flush=True,
    )


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--repeats", type=int, default=15)
  parser.add_argument("--tie-cut", action="store_true", help="time the tie cut on its own")
  args = parser.parse_args()
  print(f"devices: {jax.devices()}; load average {os.getloadavg()[0]:.1f}")
  if args.tie_cut:
    tie_cut_table(args.repeats)
    return
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
