"""Pruning at initialisation vs magnitude pruning after training: LeNet-300-100 on MNIST.

For each sparsity (default 90/95/98%), trains LeNet-300-100 with fixed masks chosen at
step 0 by ``jaxprune.masked(optax.adam(lr), s, criterion=c, schedule=one_shot(0))``:

  * ``random``  random scores, the same sparsity in every layer (``distribution="uniform"``),
    and with Erdős–Rényi-kernel layer sparsities (``"erk"``);
  * ``snip``    SNIP connection sensitivity, one global ranking (``"global"``);
  * ``grasp``   GraSP with the reference's logit temperature T = 200, global ranking;

and compares with magnitude pruning (global) of a dense network trained for the same
number of epochs, both straight after pruning and after ``--finetune-epochs`` epochs with
the masks fixed. SNIP and GraSP score one class-balanced calibration batch
(``--calib-per-class`` images per class). Each epoch is one jitted `jax.lax.scan`.

Prints a table of test error (%) and writes ``results.json`` and ``accuracy.png``
(test accuracy vs sparsity, one line per criterion) under ``--out``.

  python benchmarks/criteria_mnist.py --epochs 15 --out /tmp/criteria_mnist
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxprune
from jaxprune import criteria
from jaxprune.data import read_idx
from jaxprune.train.models import LeNet300100

DATA = Path(os.environ.get("MNIST_DIR", "/work/shared/data/mnist"))
MODEL = LeNet300100(num_classes=10)


def load_mnist(data_dir: Path = DATA):
  """((x_train, y_train), (x_test, y_test)): images standardised, NHWC float32."""
  out = []
  for split in ("train", "t10k"):
    x = np.asarray(read_idx(data_dir / f"{split}-images-idx3-ubyte.gz"), np.float32) / 255.0
    y = np.asarray(read_idx(data_dir / f"{split}-labels-idx1-ubyte.gz"), np.int32)
    out.append((((x - 0.1307) / 0.3081).reshape(-1, 28, 28, 1), y))
  return tuple(out)


def apply_fn(params, x):
  return MODEL.apply({"params": params}, x)


train_loss = criteria.classification_loss(apply_fn)


def calibration_batch(x, y, per_class: int, seed: int):
  """``per_class`` random training images of each class (GraSP's balanced sampling)."""
  rng = np.random.default_rng(seed)
  idx = np.concatenate(
    [rng.choice(np.flatnonzero(y == c), per_class, replace=False) for c in range(10)]
  )
  return {"image": jnp.asarray(x[idx]), "label": jnp.asarray(y[idx])}


def make_epoch(tx, batch_size: int, extras: dict):
  """One epoch of adam steps over a shuffled training set, as one jitted scan."""

  @jax.jit
  def epoch(params, opt_state, x, y, key, calib):
    n = (x.shape[0] // batch_size) * batch_size
    perm = jax.random.permutation(key, x.shape[0])[:n].reshape(-1, batch_size)

    def step(carry, idx):
      params, opt_state = carry
      batch = {"image": x[idx], "label": y[idx]}
      loss, grads = jax.value_and_grad(train_loss)(params, batch)
      kw = {k: (calib if v is None else v) for k, v in extras.items()}
      updates, opt_state = tx.update(grads, opt_state, params, **kw)
      return (optax.apply_updates(params, updates), opt_state), loss

    (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), perm)
    return params, opt_state, losses.mean()

  return epoch


@jax.jit
def test_accuracy(params, x, y):
  return jnp.mean(jnp.argmax(apply_fn(params, x), -1) == y)


def train(params, tx, epochs, data, calib, seed, extras=None):
  (x, y), _ = data
  epoch = make_epoch(tx, 100, extras or {})
  opt_state = tx.init(params)
  x, y = jnp.asarray(x), jnp.asarray(y)
  for e in range(epochs):
    params, opt_state, _ = epoch(params, opt_state, x, y, jax.random.key(1000 * seed + e), calib)
  return params, opt_state


def kept_fraction(params):
  kernels = [v for p, v in jax.tree_util.tree_leaves_with_path(params) if v.ndim > 1]
  return float(sum(jnp.sum(k != 0) for k in kernels) / sum(k.size for k in kernels))


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--epochs", type=int, default=15, help="training epochs of every run")
  p.add_argument("--finetune-epochs", type=int, default=5, help="after magnitude pruning")
  p.add_argument("--sparsities", default="0.9,0.95,0.98")
  p.add_argument("--lr", type=float, default=1e-3)
  p.add_argument("--calib-per-class", type=int, default=10)
  p.add_argument("--grasp-temperature", type=float, default=200.0)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--out", type=Path, default=Path("/tmp/criteria_mnist"))
  args = p.parse_args()
  start = time.perf_counter()
  data = load_mnist()
  (x_train, y_train), (x_test, y_test) = data
  x_test, y_test = jnp.asarray(x_test), jnp.asarray(y_test)
  calib = calibration_batch(x_train, y_train, args.calib_per_class, args.seed)
  init = MODEL.init(jax.random.key(args.seed), jnp.ones((1, 28, 28, 1)))["params"]
  sparsities = [float(s) for s in args.sparsities.split(",")]
  grasp_loss = criteria.classification_loss(apply_fn, temperature=args.grasp_temperature)
  at_init = {
    "random": ("random", "uniform", {}),
    "random (ERK)": ("random", "erk", {}),
    "snip": ("snip", "global", {"loss_fn": train_loss, "batch": None}),
    "grasp": ("grasp", "global", {"loss_fn": grasp_loss, "batch": None}),
  }
  error = lambda params: 100.0 * (1.0 - float(test_accuracy(params, x_test, y_test)))
  results: dict[str, dict[str, float]] = {}

  dense, _ = train(init, optax.adam(args.lr), args.epochs, data, calib, args.seed)
  results["dense"] = {str(s): error(dense) for s in sparsities}
  print(
    f"dense: {results['dense'][str(sparsities[0])]:.2f}% test error "
    f"({time.perf_counter() - start:.0f} s)",
    flush=True,
  )
  for s in sparsities:
    for name, (crit, dist, extras) in at_init.items():
      tx = jaxprune.masked(
        optax.adam(args.lr),
        s,
        criterion=crit,
        distribution=dist,
        schedule=jaxprune.schedules.one_shot(0),
        seed=args.seed,
      )
      params, _ = train(init, tx, args.epochs, data, calib, args.seed, extras)
      results.setdefault(name, {})[str(s)] = error(params)
      assert abs(kept_fraction(params) - (1 - s)) < 2e-3, (name, s, kept_fraction(params))
    pruned, _ = jaxprune.prune(dense, s, distribution="global")
    results.setdefault("magnitude (no fine-tuning)", {})[str(s)] = error(pruned)
    tx = jaxprune.masked(
      optax.adam(args.lr), s, distribution="global", schedule=jaxprune.schedules.one_shot(0)
    )
    tuned, _ = train(dense, tx, args.finetune_epochs, data, calib, args.seed + 1)
    results.setdefault(f"magnitude + {args.finetune_epochs} ep. fine-tuning", {})[str(s)] = error(
      tuned
    )
    print(
      f"sparsity {s:.0%}: "
      + ", ".join(f"{k} {v[str(s)]:.2f}" for k, v in results.items() if k != "dense")
      + f" ({time.perf_counter() - start:.0f} s)",
      flush=True,
    )
  elapsed = time.perf_counter() - start

  header = f"{'method (test error %)':<34}" + "".join(f"{s:>8.0%}" for s in sparsities)
  print(
    f"\nLeNet-300-100 on MNIST, {args.epochs} epochs of adam({args.lr}), batch 100, "
    f"seed {args.seed}; dense: {results['dense'][str(sparsities[0])]:.2f}%"
  )
  print(header)
  for name, row in results.items():
    if name != "dense":
      print(f"{name:<34}" + "".join(f"{row[str(s)]:>8.2f}" for s in sparsities))
  print(f"total time {elapsed:.0f} s on {os.cpu_count()} CPU cores")

  args.out.mkdir(parents=True, exist_ok=True)
  (args.out / "results.json").write_text(
    json.dumps(
      {
        "args": {k: str(v) for k, v in vars(args).items()},
        "test_error": results,
        "seconds": elapsed,
      },
      indent=2,
    )
  )
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(1, 2, figsize=(11, 4))
  xs = [100 * s for s in sparsities]
  for ax, low in zip(axes, (None, 94.0), strict=True):
    for name, row in results.items():
      acc = [100 - row[str(s)] for s in sparsities]
      style = {"linestyle": "--", "color": "gray"} if name == "dense" else {"marker": "o"}
      ax.plot(xs, acc, label=name, **style)
    ax.set_xlabel("sparsity (%)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_xticks(xs)
    ax.grid(alpha=0.3)
    if low is not None:
      ax.set_ylim(low, 99.0)
      ax.set_title("zoomed")
  axes[0].set_title(f"LeNet-300-100 on MNIST ({args.epochs} epochs, adam)")
  axes[0].legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(args.out / "accuracy.png", dpi=110)
  print(f"wrote {args.out / 'results.json'} and {args.out / 'accuracy.png'}")


if __name__ == "__main__":
  main()
