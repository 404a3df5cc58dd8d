"""Sparse training from scratch vs pruning: LeNet-300-100 on MNIST, same steps for all.

Methods, each at the same overall sparsity with the same optimizer steps (batch 100):

  * ``rigl``        `jaxprune.dynamic.rigl`: random ERK masks, drop-and-grow every 100 steps,
                    α = 0.3 cosine-decayed to 0 at 75% of training (Evci et al. 2020);
  * ``set``         `jaxprune.dynamic.set_`: the same with random regrowth (Mocanu et al.);
  * ``static_erk``  fixed random ERK masks from step 0 (`jaxprune.dynamic.static`);
  * ``snip_static`` fixed SNIP masks (global ranking, one class-balanced batch at init);
  * ``magnitude``   gradual magnitude pruning (Zhu & Gupta, cubic from 10% to 60% of
                    training, ERK layer targets), from dense.

Every method gets the same recipe: ``--schedule`` (constant, or cosine decay to 0 over the
run) and ``--weight-decay`` (> 0: adamw with that decoupled decay, else adam).

The last 5,000 training images are a validation split: each method's learning rate is
picked from ``--lrs`` by validation error (the mean over seeds ``0..--val-seeds-1``) -- for
RigL and SET jointly with ΔT (``--every``) and α (``--alphas``) -- then ``--seeds`` runs with
those settings report test error (mean ± sd). The test set is read only by those runs;
``--seeds 0`` stops after validation, for recipe searches. Writes ``results.json`` and
``error_vs_sparsity.png`` under ``--out``; ``--record NAME`` also writes the per-seed test
errors, kept fractions and compressions (all parameters / nonzero ones, biases included,
as the reproduction table counts) to ``benchmarks/results/NAME.json``.

  python benchmarks/dynamic_mnist.py --epochs 20 --sparsities 0.98 --out /tmp/dynamic_mnist
  python benchmarks/dynamic_mnist.py --methods rigl --every 50,100,200 --alphas 0.1,0.3,0.5
  python benchmarks/dynamic_mnist.py --methods rigl --schedule cosine --weight-decay 0.05 --seeds 0
  python benchmarks/dynamic_mnist.py --epochs 20 --sparsities 0.98 --lrs 1e-3,3e-3 \
    --schedule cosine --weight-decay 0.05 --val-seeds 2 --seeds 3 --record dynamic_mnist_98
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from criteria_mnist import MODEL, apply_fn, calibration_batch, load_mnist, train_loss
from results_files import RESULTS_DIR, write_per_seed

import jaxprune
from jaxprune import dynamic, schedules

BATCH = 100
METHODS = ("rigl", "set", "static_erk", "snip_static", "magnitude")
DROP_GROW = ("rigl", "set")
SCHEDULES = ("constant", "cosine")


def optimizer(lr, steps, schedule="constant", weight_decay=0.0):
  """adam (adamw when ``weight_decay`` > 0) at a constant or cosine-to-0 learning rate."""
  if schedule not in SCHEDULES:
    raise ValueError(f"schedule must be one of {SCHEDULES}; got {schedule!r}, e.g. 'cosine'.")
  rate = optax.cosine_decay_schedule(lr, steps) if schedule == "cosine" else lr
  if weight_decay > 0:
    return optax.adamw(rate, weight_decay=weight_decay)
  return optax.adam(rate)


def build(method, lr, sparsity, steps, params, calib, seed, every=100, alpha=0.3, recipe=None):
  inner = optimizer(lr, steps, **(recipe or {}))
  end = int(0.75 * steps)
  if method == "rigl":
    return dynamic.rigl(inner, sparsity, every=every, alpha=alpha, end=end, seed=seed)
  if method == "set":
    return dynamic.set_(inner, sparsity, every=every, alpha=alpha, end=end, seed=seed)
  if method == "static_erk":
    return dynamic.static(inner, dynamic.random_masks(params, sparsity, key=jax.random.key(seed)))
  if method == "snip_static":
    _, masks = jaxprune.prune(
      params, sparsity, criterion="snip", distribution="global", loss_fn=train_loss, batch=calib
    )
    return dynamic.static(inner, masks)
  if method == "magnitude":
    sched = schedules.polynomial(begin=steps // 10, end=6 * steps // 10, every=100)
    return jaxprune.masked(inner, sparsity, schedule=sched, distribution="erk")
  raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")


def counts(params):
  """The kernels' kept fraction, and all parameters / nonzero parameters (biases included).

  Example:
    >>> import numpy as np
    >>> counts({"w": np.array([[0.0, 1.0], [0.0, 0.0]]), "b": np.array([0.5, 0.0])})
    (0.25, 3.0)
  """
  leaves = jax.tree.leaves(params)
  kernels = [v for v in leaves if v.ndim > 1]
  kept = float(sum(np.count_nonzero(k) for k in kernels) / sum(k.size for k in kernels))
  nonzero = sum(np.count_nonzero(v) for v in leaves)
  return kept, float(sum(v.size for v in leaves) / nonzero)


def run(method, lr, sparsity, epochs, train, evaluate, seed, every=100, alpha=0.3, recipe=None):
  """Trains from a fresh init; returns the error (%) on ``evaluate``, the kernels' kept
  fraction and the compression (`counts`)."""
  (x, y), (xe, ye) = train, evaluate
  steps = epochs * (x.shape[0] // BATCH)
  params = MODEL.init(jax.random.key(seed), jnp.ones((1, 28, 28, 1)))["params"]
  calib = calibration_batch(np.asarray(x), np.asarray(y), 10, seed)
  tx = build(method, lr, sparsity, steps, params, calib, seed, every, alpha, recipe)

  @jax.jit
  def epoch(params, opt_state, key):
    perm = jax.random.permutation(key, x.shape[0])[: steps // epochs * BATCH]

    def step(carry, idx):
      params, opt_state = carry
      grads = jax.grad(train_loss)(params, {"image": x[idx], "label": y[idx]})
      updates, opt_state = tx.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), None

    return jax.lax.scan(step, (params, opt_state), perm.reshape(-1, BATCH))[0]

  opt_state = tx.init(params)
  for e in range(epochs):
    params, opt_state = epoch(params, opt_state, jax.random.key(1000 * seed + e))
  acc = float(jnp.mean(jnp.argmax(apply_fn(params, xe), -1) == ye))
  return 100.0 * (1.0 - acc), *counts(jax.device_get(params))


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--epochs", type=int, default=20)
  p.add_argument("--sparsities", default="0.98")
  p.add_argument("--methods", default=",".join(METHODS))
  p.add_argument("--lrs", default="1e-3,3e-3")
  p.add_argument("--every", default="100", help="RigL/SET ΔT grid (steps between updates)")
  p.add_argument("--alphas", default="0.3", help="RigL/SET initial drop fraction grid")
  p.add_argument(
    "--schedule", default="constant", choices=SCHEDULES, help="lr schedule, all methods"
  )
  p.add_argument("--weight-decay", type=float, default=0.0, help="> 0: adamw, all methods")
  p.add_argument("--val-seeds", type=int, default=1, help="seeds averaged per validation point")
  p.add_argument("--seeds", type=int, default=3, help="test seeds; 0: validation only")
  p.add_argument("--out", default="/tmp/dynamic_mnist")
  p.add_argument(
    "--record",
    default="",
    help="also write the per-seed values to benchmarks/results/RECORD.json",
  )
  args = p.parse_args()
  (x, y), (xt, yt) = load_mnist()
  x, y, xt, yt = map(jnp.asarray, (x, y, xt, yt))
  train, val, test = (x[:-5000], y[:-5000]), (x[-5000:], y[-5000:]), (xt, yt)
  out = Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  recipe = dict(schedule=args.schedule, weight_decay=args.weight_decay)
  results = {}
  for s in [float(v) for v in args.sparsities.split(",")]:
    for method in args.methods.split(","):
      start = time.perf_counter()
      grid = [(lr, 100, 0.3) for lr in args.lrs.split(",")]
      if method in DROP_GROW:
        grid = [
          (lr, int(every), float(alpha))
          for lr in args.lrs.split(",")
          for every in args.every.split(",")
          for alpha in args.alphas.split(",")
        ]
      val_err, val_runs = {}, {}
      for lr, every, alpha in grid:
        errs = [
          run(method, float(lr), s, args.epochs, train, val, seed, every, alpha, recipe)[0]
          for seed in range(args.val_seeds)
        ]
        val_runs[f"lr={lr},every={every},alpha={alpha}"] = errs
        val_err[f"lr={lr},every={every},alpha={alpha}"] = err = statistics.mean(errs)
        print(
          f"  {method} s={s} lr={lr} every={every} alpha={alpha} {args.schedule} "
          f"wd={args.weight_decay}: val {err:.2f}% {errs}",
          flush=True,
        )
      lr, every, alpha = min(grid, key=lambda g: val_err[f"lr={g[0]},every={g[1]},alpha={g[2]}"])
      best = f"lr={lr},every={every},alpha={alpha}"
      if args.seeds == 0:  # validation only: the test set is not read
        results[f"{method}@{s}"] = dict(
          method=method,
          sparsity=s,
          epochs=args.epochs,
          val_error=val_err,
          val_runs=val_runs,
          **recipe,
        )
        (out / "results.json").write_text(json.dumps(results, indent=1))
        continue
      runs = [
        run(method, float(lr), s, args.epochs, train, test, seed, every, alpha, recipe)
        for seed in range(args.seeds)
      ]
      errs = [r[0] for r in runs]
      results[f"{method}@{s}"] = dict(
        method=method,
        sparsity=s,
        lr=float(lr),
        every=every,
        alpha=alpha,
        **recipe,
        epochs=args.epochs,
        val_error=val_err,
        val_runs=val_runs,
        test_errors=errs,
        mean=statistics.mean(errs),
        sd=statistics.stdev(errs) if len(errs) > 1 else 0.0,
        kept=runs[0][1],
        kepts=[r[1] for r in runs],
        compressions=[r[2] for r in runs],
      )
      r = results[f"{method}@{s}"]
      print(
        f"{method:>12} s={s:.2f} {best} val {val_err[best]:.2f}%  test error "
        f"{r['mean']:.2f} ± {r['sd']:.2f}%  kept {r['kept']:.4f}  "
        f"({time.perf_counter() - start:.0f}s)",
        flush=True,
      )
      (out / "results.json").write_text(json.dumps(results, indent=1))
      if args.record:
        record(results, RESULTS_DIR / f"{args.record}.json")
  if args.seeds > 0:
    plot(results, out / "error_vs_sparsity.png")


def record(results, path):
  """Writes the per-seed values of ``results`` (rows with test runs) in `results_files`' form.

  Example:
    >>> import tempfile
    >>> from results_files import read_per_seed
    >>> res = {"rigl@0.98": dict(test_errors=[2.3, 2.4], kepts=[0.02, 0.02],
    ...                          compressions=[46.5, 46.4], lr=0.003)}
    >>> data = read_per_seed(record(res, tempfile.mkdtemp() + "/r.json"))
    >>> data["rows"]["rigl@0.98"][1]
    {'seed': 1, 'test_error_pct': 2.4, 'kept': 0.02, 'compression': 46.4, 'lr': 0.003}
  """
  import shlex
  import sys

  rows = {
    key: [
      {"seed": s, "test_error_pct": e, "kept": k, "compression": c, "lr": r["lr"]}
      for s, (e, k, c) in enumerate(
        zip(r["test_errors"], r["kepts"], r["compressions"], strict=True)
      )
    ]
    for key, r in results.items()
    if "test_errors" in r
  }
  command = shlex.join(["python", "benchmarks/dynamic_mnist.py", *sys.argv[1:]])
  return write_per_seed(path, "Sparse training from scratch (dynamic_mnist.py)", command, rows)


def plot(results, path):
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(6, 4))
  for method in METHODS:
    rows = sorted(
      (r for r in results.values() if r["method"] == method), key=lambda r: r["sparsity"]
    )
    if rows:
      ax.errorbar(
        [100 * r["sparsity"] for r in rows],
        [r["mean"] for r in rows],
        yerr=[r["sd"] for r in rows],
        marker="o",
        capsize=3,
        label=method,
      )
  ax.set(xlabel="sparsity (%)", ylabel="test error (%)", title="LeNet-300-100, MNIST")
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)


if __name__ == "__main__":
  main()
