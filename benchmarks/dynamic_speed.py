"""Cost of a RigL mask update against a donated dense train step (MLP, ~10M params).

Three jitted, donated train steps of the same MLP (784-2048-2048-2048-10, batch 256):

  * ``dense``:   plain adam;
  * ``between``: `jaxprune.dynamic.rigl(adam, 0.9)` on a step without mask update
    (``masks_frozen=True``, as the trainer compiles it);
  * ``update``:  the same on a step that moves connections (drop by magnitude, grow by
    gradient, optimizer-state reset of grown entries).

Prints median times and the per-round ratios update/dense, between/dense and
(update − between)/dense: the cost of the mask update itself in dense steps.

Usage: python benchmarks/dynamic_speed.py [--repeats 15] [--sparsity 0.9]
"""

from __future__ import annotations

import argparse
import statistics

import jax
import jax.numpy as jnp
import optax
from _timing import interleaved, median_ratio
from overhead import MLP, make_step

import jaxprune


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--repeats", type=int, default=15)
  ap.add_argument("--sparsity", type=float, default=0.9)
  ap.add_argument("--batch", type=int, default=256)
  args = ap.parse_args()

  model = MLP()
  kx, ky = jax.random.split(jax.random.key(1))
  batch = {
    "image": jax.random.normal(kx, (args.batch, 28, 28, 1)),
    "label": jax.random.randint(ky, (args.batch,), 0, 10),
  }
  params = model.init(jax.random.key(0), batch["image"])["params"]
  n = sum(x.size for x in jax.tree.leaves(params))
  adam = optax.adam(1e-3)
  # every=1: the schedule moves connections at every step (the drop fraction stays > 0).
  rigl = jaxprune.dynamic.rigl(optax.adam(1e-3), args.sparsity, every=1, end=1_000_000)
  dense_step = make_step(model, adam, donate=True)
  rigl_step = make_step(model, rigl, donate=True)

  def loss_fn(p, b):
    logits = model.apply({"params": p}, b["image"])
    return optax.softmax_cross_entropy_with_integer_labels(logits, b["label"]).mean()

  @jax.jit
  def frozen(p, s, b):
    updates, s = rigl.update(jax.grad(loss_fn)(p, b), s, p, masks_frozen=True)
    return optax.apply_updates(p, updates), s

  frozen_step = jax.jit(frozen, donate_argnums=(0, 1))
  holders = {
    "dense": [jax.tree.map(jnp.copy, params), adam.init(params), dense_step],
    "between": [jax.tree.map(jnp.copy, params), rigl.init(params), frozen_step],
    "update": [jax.tree.map(jnp.copy, params), rigl.init(params), rigl_step],
  }

  def runner(name):
    def run():
      h = holders[name]
      h[0], h[1] = h[2](h[0], h[1], batch)
      return h[0]

    return run

  times = interleaved({k: runner(k) for k in holders}, args.repeats)
  print(f"MLP {n:,} params, batch {args.batch}, sparsity {args.sparsity}, {jax.devices()[0]}")
  for k, v in times.items():
    print(f"  {k:>8}: {statistics.median(v) * 1e3:8.2f} ms")
  print(f"  update / dense:  {median_ratio(times, 'update', 'dense'):.3f}")
  print(f"  between / dense: {median_ratio(times, 'between', 'dense'):.3f}")
  extra = statistics.median(
    (u - b) / d for u, b, d in zip(times["update"], times["between"], times["dense"], strict=True)
  )
  print(f"  (update - between) / dense: {extra:.3f}  (the mask update itself)")


if __name__ == "__main__":
  main()
