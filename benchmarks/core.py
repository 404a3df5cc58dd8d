"""The core engine's speed benchmarks in one run, unchanged on any backend.

Measures, with the same code and sizes on CPU, GPU or TPU:

1. exact mask selection on large leaves: ``masks.topk_mask(|w|, 10% kept)`` against a mask
   from a full ``argsort`` and from ``jax.lax.top_k`` (all three keep the same count);
2. the ``masked(adam)`` train step between mask updates against the plain adam step (MLP
   784-2048-2048-2048-10 and a small CNN, batch 256, unpacked and packed masks);
3. the mask update's cost: run on its own against one dense train step, and inside the
   jitted step (a step updating every mask against the same step with ``masks_frozen=True``).

Every train step donates its params and optimizer state. Each comparison runs its variants
in rotation (A, B, C, A, B, C, ...), and reports medians of the per-round ratios, so load
that drifts during the run hits every variant alike. Inputs are random: nothing is read from
disk or the network.

Usage:
  python benchmarks/core.py [--backend auto|cpu|gpu|tpu] [--quick] [--repeats N] [--steps N]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
from pathlib import Path

_PLATFORMS = {"cpu": "cpu", "gpu": "", "tpu": "tpu"}  # JAX_PLATFORMS per --backend


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument(
    "--backend",
    choices=["auto", *_PLATFORMS],
    default="auto",
    help="backend to run on; auto takes JAX's default (the accelerator when there is one)",
  )
  parser.add_argument("--quick", action="store_true", help="smaller leaves, fewer repeats")
  parser.add_argument("--repeats", type=int, default=None, help="rounds per comparison")
  parser.add_argument("--steps", type=int, default=None, help="train steps per timed call")
  args = parser.parse_args(argv)
  args.repeats = args.repeats or (3 if args.quick else 9)
  args.steps = args.steps or (2 if args.quick else 3)
  return args


def _select_backend(backend: str):
  """Imports jax on ``backend``; exits with a message when JAX cannot run there."""
  if backend != "auto":
    if "jax" in sys.modules:
      raise SystemExit("core.py must choose the backend before jax is imported.")
    if _PLATFORMS[backend]:  # gpu: JAX takes whichever GPU plugin is installed
      os.environ["JAX_PLATFORMS"] = _PLATFORMS[backend]
  import jax

  try:
    got = jax.default_backend()
  except RuntimeError as e:
    raise SystemExit(
      f"--backend {backend}: JAX found no such device ({e}). Install the jax build for "
      "it (pip install 'jax[cuda12]' for NVIDIA GPUs, 'jax[tpu]' for TPUs) or run with "
      "--backend cpu."
    ) from e
  if backend != "auto" and got != backend:
    raise SystemExit(f"--backend {backend} was requested but JAX runs on {got}.")
  return jax


def bench_selection(jax, shapes, repeats: int) -> dict[str, dict[str, float]]:
  """Median ms of topk_mask / argsort / lax.top_k masks at 10% kept, per leaf shape."""
  import jax.numpy as jnp
  from _timing import interleaved, median_ratio

  from jaxprune import masks

  def by_argsort(w, k):
    order = jnp.argsort(-jnp.abs(w).reshape(-1), stable=True)
    return jnp.zeros(w.size, bool).at[order[:k]].set(True).reshape(w.shape)

  def by_top_k(w, k):
    _, idx = jax.lax.top_k(jnp.abs(w).reshape(-1), k)
    return jnp.zeros(w.size, bool).at[idx].set(True).reshape(w.shape)

  out = {}
  print("\n== exact mask selection, 10% kept (ms; ratios: median of per-round ratios)")
  print("| leaf | entries | topk_mask | argsort | lax.top_k | argsort / topk | top_k / topk |")
  print("|---|---|---|---|---|---|---|")
  for shape in shapes:
    w = jax.random.normal(jax.random.key(0), shape)
    k = w.size // 10
    fns = {
      "topk_mask": jax.jit(lambda w, k=k: masks.topk_mask(jnp.abs(w), k)),
      "argsort": jax.jit(lambda w, k=k: by_argsort(w, k)),
      "top_k": jax.jit(lambda w, k=k: by_top_k(w, k)),
    }
    for name, fn in fns.items():
      kept = int(fn(w).sum())
      if kept != k:
        raise AssertionError(f"{name} kept {kept} of {w.size}, expected {k}")
    times = interleaved({name: (lambda fn=fn: fn(w)) for name, fn in fns.items()}, repeats)
    ms = {name: 1e3 * statistics.median(t) for name, t in times.items()}
    r_sort = median_ratio(times, "argsort", "topk_mask")
    r_topk = median_ratio(times, "top_k", "topk_mask")
    print(
      f"| {'x'.join(map(str, shape))} | {w.size:,} | {ms['topk_mask']:.2f} | {ms['argsort']:.2f} "
      f"| {ms['top_k']:.2f} | {r_sort:.1f}x | {r_topk:.1f}x |",
      flush=True,
    )
    out["x".join(map(str, shape))] = {**ms, "argsort/topk_mask": r_sort, "top_k/topk_mask": r_topk}
  return out


def main(argv: list[str] | None = None) -> None:
  args = parse_args(argv)
  jax = _select_backend(args.backend)
  sys.path.insert(0, str(Path(__file__).resolve().parent))  # _timing, overhead
  import jax.numpy as jnp
  import numpy as np
  import overhead

  dev = jax.devices()[0]
  load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
  print(
    f"jax {jax.__version__}, backend {jax.default_backend()}, {jax.device_count()} x "
    f"{dev.device_kind}; host {platform.machine()} with {os.cpu_count()} CPUs, load {load:.1f}; "
    f"repeats {args.repeats}, steps {args.steps}{', quick' if args.quick else ''}"
  )
  shapes = (
    [(1024, 1024), (2048, 2048)] if args.quick else [(2048, 2048), (4096, 2304), (2**24 + 1,)]
  )
  bench_selection(jax, shapes, args.repeats)

  rng = np.random.default_rng(0)
  mnist_like = {
    "image": jnp.asarray(rng.normal(size=(256, 28, 28, 1)).astype(np.float32)),
    "label": jnp.asarray(rng.integers(0, 10, 256).astype(np.int32)),
  }
  mlp = "MLP 784-2048-2048-2048-10"
  overhead.bench_model(mlp, overhead.MLP(), mnist_like, args.repeats, args.steps)
  if not args.quick:
    cifar_like = {
      "image": jnp.asarray(rng.normal(size=(256, 32, 32, 3)).astype(np.float32)),
      "label": mnist_like["label"],
    }
    cnn = "small CNN (conv32-conv64-dense256)"
    overhead.bench_model(cnn, overhead.SmallCNN(), cifar_like, args.repeats, args.steps)
  overhead.bench_mask_update(overhead.MLP(), mnist_like, args.repeats)
  overhead.bench_update_in_step(overhead.MLP(), mnist_like, args.repeats, args.steps)


if __name__ == "__main__":
  main()
