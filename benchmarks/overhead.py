"""Step overhead and memory of `masked(adam)` against plain adam, and mask update cost.

Prints, measured side by side in one run (interleaved repeats, medians of per-round ratios);
every train step donates its params and optimizer state, as a trainer's does:
  * train-step time ratio masked/plain between mask updates (MLP ≈10M params at batch 256,
    and a small CNN), unpacked and packed;
  * one magnitude update of all masks of the MLP at 90% run on its own, relative to one
    (donated) dense train step, for jaxprune's selection and for an argsort-based reference;
  * the mask update as the extra cost inside the jitted step: a masked step that updates
    every mask (``schedules.periodic(1)``) against the same masked step compiled with
    ``masks_frozen=True``, both relative to the plain adam step;
  * optimizer-state bytes: adam, masked(adam), masked(adam, packed=True).

Usage: python benchmarks/overhead.py [--repeats 15] [--steps 5]
"""

from __future__ import annotations

import argparse
import statistics

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from _timing import interleaved, median_ratio

import jaxprune
from jaxprune.criteria import magnitude
from jaxprune.selection import Plan


class MLP(nn.Module):
  widths: tuple[int, ...] = (2048, 2048, 2048)

  @nn.compact
  def __call__(self, x):
    x = x.reshape(x.shape[0], -1)
    for w in self.widths:
      x = nn.relu(nn.Dense(w)(x))
    return nn.Dense(10)(x)


class SmallCNN(nn.Module):
  @nn.compact
  def __call__(self, x):
    for f in (32, 64):
      x = nn.relu(nn.Conv(f, (3, 3))(x))
      x = nn.max_pool(x, (2, 2), (2, 2))
    return nn.Dense(10)(nn.relu(nn.Dense(256)(x.reshape(x.shape[0], -1))))


def make_step(model, tx, donate=False, frozen=False):
  """A jitted train step; ``donate=True`` reuses the params/state buffers, as trainers do.

  ``frozen=True`` passes ``masks_frozen=True`` to a masked transform's update (the step is
  compiled without the mask-update branch).
  """
  extra = {"masks_frozen": True} if frozen else {}

  def loss_fn(params, batch):
    logits = model.apply({"params": params}, batch["image"])
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()

  def step(params, state, batch):
    grads = jax.grad(loss_fn)(params, batch)
    updates, state = tx.update(grads, state, params, **extra)
    return optax.apply_updates(params, updates), state

  return jax.jit(step, donate_argnums=(0, 1) if donate else ())


def runner(step, params, state, batch, n):
  holder = {"p": params, "s": state}

  def run():
    p, s = holder["p"], holder["s"]
    for _ in range(n):
      p, s = step(p, s, batch)
    holder["p"], holder["s"] = p, s
    return p

  return run


def state_bytes(state) -> int:
  return sum(int(x.nbytes) for x in jax.tree.leaves(state))


def bench_model(name, model, batch, repeats, steps):
  params = model.init(jax.random.key(0), batch["image"])["params"]
  txs = {
    "adam": optax.adam(1e-3),
    "masked": jaxprune.masked(optax.adam(1e-3), 0.9),
    "packed": jaxprune.masked(optax.adam(1e-3), 0.9, packed=True),
  }
  fns, b = {}, {}
  for key, tx in txs.items():
    step = make_step(model, tx, donate=True)
    state = tx.init(params)
    b[key] = state_bytes(state)
    p, state = step(jax.tree.map(jnp.copy, params), state, batch)  # one-shot prune at step 0
    fns[key] = runner(step, p, state, batch, steps)
  times = interleaved(fns, repeats)
  nparams = sum(x.size for x in jax.tree.leaves(params))
  prunable = sum(x.size for x in jax.tree.leaves(params) if x.ndim > 1)
  print(f"\n== {name}: {nparams:,} params ({prunable:,} prunable), batch {batch['image'].shape[0]}")
  for key in ("adam", "masked", "packed"):
    print(f"  step {key:>7}: {statistics.median(times[key]) / steps * 1e3:8.2f} ms")
  print(f"  ratio masked/adam (median of {repeats}): {median_ratio(times, 'masked', 'adam'):.3f}")
  print(f"  ratio packed/adam (median of {repeats}): {median_ratio(times, 'packed', 'adam'):.3f}")
  print(
    f"  state bytes: adam {b['adam']:,}; masked {b['masked']:,} (+{b['masked'] - b['adam']:,} = "
    f"{(b['masked'] - b['adam']) / prunable:.3f} B/prunable param); packed {b['packed']:,} "
    f"(+{b['packed'] - b['adam']:,} = {8 * (b['packed'] - b['adam']) / nparams:.3f} bit/param)"
  )
  return params, fns, times


def argsort_masks(params, sparsity):
  """Reference: per-leaf threshold from a full argsort (what the field's library does)."""
  out = {}
  for path, x in jax.tree_util.tree_flatten_with_path(params)[0]:
    if x.ndim > 1:
      flat = jnp.abs(x).reshape(-1)
      order = jnp.argsort(flat)
      k = int(round(sparsity * flat.size))
      out[jax.tree_util.keystr(path)] = jnp.zeros(flat.size, bool).at[order[k:]].set(True)
  return out


def _donated_runner(model, tx, params, batch, steps=1, frozen=False):
  """A runner of ``steps`` donated train steps from a private copy of ``params``.

  A frozen masked step starts after one updating step, so it runs on pruned masks.
  """
  p, state = jax.tree.map(jnp.copy, params), tx.init(params)
  if frozen:
    p, state = make_step(model, tx, donate=True)(p, state, batch)
  return runner(make_step(model, tx, donate=True, frozen=frozen), p, state, batch, steps)


def bench_mask_update(model, batch, repeats):
  """One update of all masks, run on its own, against one donated dense train step."""
  params = model.init(jax.random.key(0), batch["image"])["params"]
  plan = Plan.make(params, "uniform", None)
  crit = jaxprune.criteria.get("magnitude")

  @jax.jit
  def update_masks(params):
    return plan.select(jax.tree.leaves(params), magnitude(params), 0.9, 0.9, crit)

  argsort = jax.jit(lambda p: argsort_masks(p, 0.9))
  fns = {
    "dense_step": _donated_runner(model, optax.adam(1e-3), params, batch),
    "jaxprune": lambda: update_masks(params),
    "argsort": lambda: argsort(params),
  }
  times = interleaved(fns, repeats)
  print("\n== mask update on its own (magnitude, all masks of the MLP at 90%)")
  for k, v in times.items():
    print(f"  {k:>10}: {statistics.median(v) * 1e3:8.2f} ms")
  print(f"  jaxprune update / dense step: {median_ratio(times, 'jaxprune', 'dense_step'):.3f}")
  print(f"  argsort update  / dense step: {median_ratio(times, 'argsort', 'dense_step'):.3f}")
  return times


def bench_update_in_step(model, batch, repeats, steps):
  """The mask update as the extra cost of an updating step inside the jitted step."""
  params = model.init(jax.random.key(0), batch["image"])["params"]
  every = jaxprune.masked(optax.adam(1e-3), 0.9, schedule=jaxprune.schedules.periodic(1))
  fns = {
    "adam": _donated_runner(model, optax.adam(1e-3), params, batch, steps),
    "updating": _donated_runner(model, every, params, batch, steps),
    "frozen": _donated_runner(model, every, params, batch, steps, frozen=True),
  }
  times = interleaved(fns, repeats)
  ms = {k: statistics.median(v) / steps * 1e3 for k, v in times.items()}
  rounds = zip(times["updating"], times["frozen"], times["adam"], strict=True)
  extra = [(u - f) / a for u, f, a in rounds]
  print("\n== mask update inside the jitted step (MLP, 90%, every step updates all masks)")
  for k in fns:
    print(f"  step {k:>9}: {ms[k]:8.2f} ms")
  print(f"  updating / frozen step: {median_ratio(times, 'updating', 'frozen'):.3f}")
  print(f"  (updating - frozen) / adam step: {statistics.median(extra):.3f}")
  print(f"  frozen / adam step: {median_ratio(times, 'frozen', 'adam'):.3f}")
  return times


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--repeats", type=int, default=15)
  ap.add_argument("--steps", type=int, default=5)
  args = ap.parse_args()
  rng = np.random.default_rng(0)
  mnist_like = {
    "image": jnp.asarray(rng.normal(size=(256, 28, 28, 1)).astype(np.float32)),
    "label": jnp.asarray(rng.integers(0, 10, 256).astype(np.int32)),
  }
  print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {jax.device_count()} device(s)")
  bench_model("MLP 784-2048-2048-2048-10", MLP(), mnist_like, args.repeats, args.steps)
  cifar_like = {
    "image": jnp.asarray(rng.normal(size=(256, 32, 32, 3)).astype(np.float32)),
    "label": mnist_like["label"],
  }
  bench_model("small CNN (conv32-conv64-dense256)", SmallCNN(), cifar_like, args.repeats, 2)
  bench_mask_update(MLP(), mnist_like, max(5, args.repeats // 2))
  bench_update_in_step(MLP(), mnist_like, max(5, args.repeats // 2), args.steps)


if __name__ == "__main__":
  main()
