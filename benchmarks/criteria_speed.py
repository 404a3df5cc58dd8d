"""Cost of the data-driven criteria, measured side by side in one run.

Prints (interleaved repeats, medians of per-round ratios):
  * GraSP score time ÷ one gradient evaluation on the same model and batch (target ≤ 3×),
    also for SNIP, OBD (Hutchinson, k probes, looped and unrolled) and per-example Fisher;
  * peak memory of each compiled computation (XLA's memory analysis: arguments + outputs +
    temporaries), against the gradient's and the params' size (GraSP must be O(params));
  * layer-wise OBS (SparseGPT-style) on a 1024×1024 Dense kernel with 2048 calibration rows,
    unstructured 50% and 2:4: first call (with compilation) and steady-state time.

OBD and Fisher are much slower than a gradient, so they are timed in a second interleaved
group (again against the gradient) with ``--slow-repeats`` rounds.

Usage: python benchmarks/criteria_speed.py [--repeats 15] [--slow-repeats 3] [--batch 256]
       [--probes 8] [--obs-repeats 5] [--models lenet300100,lenet5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from _timing import interleaved, median_ratio

import jaxprune
from jaxprune import criteria
from jaxprune.train import models

MiB = 1 << 20


def setup(name: str, batch_size: int):
  model = models.get_model(name, num_classes=10)
  x = jax.random.normal(jax.random.key(1), (batch_size, 28, 28, 1))
  y = jax.random.randint(jax.random.key(2), (batch_size,), 0, 10)
  params = model.init(jax.random.key(0), x[:1])["params"]
  loss_fn = criteria.classification_loss(
    lambda p, im: model.apply({"params": p}, im), temperature=200.0
  )
  return params, loss_fn, {"image": x, "label": y}


def peak_bytes(fn, *args) -> int:
  m = jax.jit(fn).lower(*args).compile().memory_analysis()
  return m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes


def bench_scores(name: str, batch_size: int, repeats: int, slow_repeats: int, probes: int):
  params, loss_fn, batch = setup(name, batch_size)
  key = jax.random.key(3)
  grad = lambda p, b: jax.grad(loss_fn)(p, b)
  fast = {
    "grad": grad,
    "snip": lambda p, b: criteria.snip(p, loss_fn=loss_fn, batch=b),
    "grasp": lambda p, b: criteria.grasp(p, loss_fn=loss_fn, batch=b),
  }
  slow = {
    f"obd(k={probes}) loop": lambda p, b: criteria.obd(
      p, loss_fn=loss_fn, batch=b, key=key, hutchinson_samples=probes, hutchinson_unroll=False
    ),
    "obd unrolled": lambda p, b: criteria.obd(
      p, loss_fn=loss_fn, batch=b, key=key, hutchinson_samples=probes, hutchinson_unroll=True
    ),
    "fisher": lambda p, b: criteria.fisher(p, loss_fn=loss_fn, batch=b, fisher_chunk_size=32),
  }

  def run_all(fns, n):
    jitted = {k: jax.jit(f) for k, f in fns.items()}
    calls = {k: (lambda f=f: f(params, batch)) for k, f in jitted.items()}
    return interleaved(calls, n, warmup=1)

  fast_times = run_all(fast, repeats)
  slow_times = run_all({"grad": grad, **slow}, slow_repeats)
  n_params = sum(x.size for x in jax.tree.leaves(params))
  param_bytes = sum(x.nbytes for x in jax.tree.leaves(params))
  print(f"\n{name}: {n_params:,} params ({param_bytes / MiB:.2f} MiB), batch {batch_size}")
  print(f"  {'computation':<15} {'median ms':>10} {'÷ grad':>8} {'peak MiB':>9} {'÷ grad':>7}")
  grad_peak = peak_bytes(grad, params, batch)
  for times, fns in ((fast_times, fast), (slow_times, slow)):
    for k, f in fns.items():
      peak = peak_bytes(f, params, batch)
      ratio = 1.0 if k == "grad" else median_ratio(times, k, "grad")
      print(
        f"  {k:<15} {1e3 * statistics.median(times[k]):>10.2f} {ratio:>7.2f}x "
        f"{peak / MiB:>9.2f} {peak / grad_peak:>6.2f}x"
      )


def bench_obs(repeats: int) -> None:
  rng = np.random.default_rng(0)
  d = 1024
  mix = rng.normal(size=(d, d)).astype(np.float32) / np.sqrt(d)
  x = jnp.asarray(rng.normal(size=(2048, d)).astype(np.float32) @ mix)
  w = jnp.asarray(rng.normal(size=(d, d)).astype(np.float32) / np.sqrt(d))
  params = {"Dense_0": {"kernel": w}}
  acts = {"Dense_0/kernel": x}
  print(f"\nOBS (SparseGPT-style) on a {d}x{d} Dense kernel, {x.shape[0]} calibration rows")
  print(f"  {'structure':<14} {'first call s':>12} {'median s':>9} {'rel. error':>10}")
  dense_out = np.asarray(x @ w)
  for label, structure in [("unstructured", None), ("2:4", jaxprune.structures.n_of_m(2, 4))]:
    run = lambda s=structure: jaxprune.prune(
      params, 0.5, criterion="obs", activations=acts, structure=s
    )
    start = time.perf_counter()
    pruned, _ = jax.block_until_ready(run())
    first = time.perf_counter() - start
    steady = []
    for _ in range(repeats):
      start = time.perf_counter()
      jax.block_until_ready(run())
      steady.append(time.perf_counter() - start)
    out = np.asarray(x @ pruned["Dense_0"]["kernel"])
    err = np.linalg.norm(out - dense_out) / np.linalg.norm(dense_out)
    print(f"  {label:<14} {first:>12.2f} {statistics.median(steady):>9.2f} {err:>10.4f}")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--repeats", type=int, default=15)
  parser.add_argument("--batch", type=int, default=256)
  parser.add_argument("--slow-repeats", type=int, default=3, help="for OBD and Fisher")
  parser.add_argument("--probes", type=int, default=8, help="Hutchinson probes for OBD")
  parser.add_argument("--obs-repeats", type=int, default=5)
  parser.add_argument("--models", default="lenet300100,lenet5")
  args = parser.parse_args()
  print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {jax.device_count()} device(s)")
  for name in args.models.split(","):
    bench_scores(name, args.batch, args.repeats, args.slow_repeats, args.probes)
  bench_obs(args.obs_repeats)


if __name__ == "__main__":
  main()
