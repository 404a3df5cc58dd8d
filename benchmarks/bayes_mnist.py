"""Sparse variational dropout and L0 gates on MNIST: compression, test error, per-layer tables.

Trains LeNet-300-100 or LeNet-5-Caffe made of `jaxprune.bayes` layers with a jitted loop
(one `jax.lax.scan` per epoch), the optimizer wrapped in `jaxprune.masked` with the
``"log_alpha"`` or ``"l0_gate"`` threshold criterion, so the final params are exactly sparse.

  python benchmarks/bayes_mnist.py --model lenet300 --method vd --epochs 30
  python benchmarks/bayes_mnist.py --model lenet5 --method vd --epochs 10
  python benchmarks/bayes_mnist.py --model lenet300 --method l0 --epochs 30

Prints a per-layer table and a summary line (also written as JSON), and saves a PNG of
the log α histograms per layer for variational dropout.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import time
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxprune
from jaxprune import bayes
from jaxprune._tree import leaves_with_paths
from jaxprune.data import read_idx

DATA = Path(os.environ.get("MNIST_DIR", "/work/shared/data/mnist"))


def load_mnist(data_dir: Path = DATA):
  """Returns ((x_train, y_train), (x_test, y_test)), images float32 in [0, 1], NHWC."""
  out = []
  for split in ("train", "t10k"):
    x = read_idx(data_dir / f"{split}-images-idx3-ubyte.gz").astype(np.float32) / 255.0
    y = read_idx(data_dir / f"{split}-labels-idx1-ubyte.gz").astype(np.int32)
    out.append((x.reshape(-1, 28, 28, 1), y))
  return tuple(out)


class LeNet300(nn.Module):
  """LeNet-300-100: 784-300-100-10 with ReLU, variational or L0 (per-input gates) layers."""

  method: str = "vd"
  threshold: float | None = 3.0

  def dense(self, features: int, name: str):
    if self.method == "l0":
      return bayes.L0Dense(features, gate="input", name=name)
    return bayes.VariationalDense(features, threshold=self.threshold, name=name)

  @nn.compact
  def __call__(self, x, deterministic: bool):
    x = x.reshape((x.shape[0], -1))
    x = nn.relu(self.dense(300, "fc1")(x, deterministic))
    x = nn.relu(self.dense(100, "fc2")(x, deterministic))
    return self.dense(10, "fc3")(x, deterministic)


class LeNet5(nn.Module):
  """LeNet-5-Caffe: conv 20@5x5 → pool → conv 50@5x5 → pool → dense 500 → dense 10."""

  method: str = "vd"
  threshold: float | None = 3.0

  @nn.compact
  def __call__(self, x, deterministic: bool):
    if self.method == "l0":
      conv = lambda f, n: bayes.L0Conv(f, (5, 5), padding="VALID", gate="input", name=n)
      dense = lambda f, n: bayes.L0Dense(f, gate="input", name=n)
    else:
      conv = lambda f, n: bayes.VariationalConv(
        f, (5, 5), padding="VALID", threshold=self.threshold, name=n
      )
      dense = lambda f, n: bayes.VariationalDense(f, threshold=self.threshold, name=n)
    x = nn.relu(conv(20, "conv1")(x, deterministic))
    x = nn.max_pool(x, (2, 2), (2, 2))
    x = nn.relu(conv(50, "conv2")(x, deterministic))
    x = nn.max_pool(x, (2, 2), (2, 2))
    x = x.reshape((x.shape[0], -1))
    x = nn.relu(dense(500, "fc1")(x, deterministic))
    return dense(10, "fc2")(x, deterministic)


def _xent(logits, y):
  return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def make_epoch(model, tx, x_train, y_train, args, penalty_fn):
  """Returns ``(epoch_fn, steps)``: one epoch of minibatch steps, as one jitted `lax.scan`
  (``--loop scan``) or a Python loop over a jitted step (``--loop python``; XLA:CPU runs
  convolutions inside a scan several times slower than in a plain jitted step)."""
  n = x_train.shape[0]
  bs = args.batch_size
  steps = n // bs

  def loss_fn(params, x, y, key, step, deterministic):
    logits = model.apply({"params": params}, x, deterministic=deterministic, rngs={"dropout": key})
    ce = _xent(logits, y)
    pen = penalty_fn(params, step)
    return ce + pen, (ce, pen)

  def body(carry, idx, key, deterministic):
    params, opt_state, step = carry
    x, y = x_train[idx], y_train[idx]
    k = jax.random.fold_in(key, step + 1)
    grads, (ce, pen) = jax.grad(loss_fn, has_aux=True)(params, x, y, k, step, deterministic)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    return (params, opt_state, step + 1), (ce, pen)

  def batches(key):
    return jax.random.permutation(jax.random.fold_in(key, 0), n)[: steps * bs].reshape(steps, bs)

  if args.loop == "scan":

    @functools.partial(jax.jit, static_argnames="deterministic")
    def epoch(params, opt_state, key, step0, deterministic=False):
      f = lambda c, idx: body(c, idx, key, deterministic)
      (params, opt_state, _), (ce, pen) = jax.lax.scan(f, (params, opt_state, step0), batches(key))
      return params, opt_state, ce.mean(), pen.mean()

    return epoch, steps

  step_fn = jax.jit(body, static_argnames="deterministic", donate_argnums=0)

  def epoch(params, opt_state, key, step0, deterministic=False):
    carry, stats = (params, opt_state, jnp.asarray(step0, jnp.int32)), []
    for idx in batches(key):
      carry, st = step_fn(carry, idx, key, deterministic=deterministic)
      stats.append(st)
    ce, pen = jnp.mean(jnp.asarray(stats), axis=0)
    return carry[0], carry[1], ce, pen

  return epoch, steps


def evaluate(model, params, x, y, batch=2000):
  """Test error (%) of the deterministic network."""
  f = jax.jit(lambda p, xb: jnp.argmax(model.apply({"params": p}, xb, deterministic=True), -1))
  wrong = 0
  for i in range(0, x.shape[0], batch):
    wrong += int(jnp.sum(f(params, x[i : i + batch]) != y[i : i + batch]))
  return 100.0 * wrong / x.shape[0]


def layer_table(params, method: str):
  """Per-layer rows: kernel shape, nonzero/total weights, and neurons kept (inputs in use)."""
  rows = []
  flat = leaves_with_paths(params)
  for path, w in flat:
    if not path.endswith("kernel"):
      continue
    w = np.asarray(w)
    nz = int(np.count_nonzero(w))
    row_alive = np.any(w.reshape(-1, w.shape[-2], w.shape[-1]) != 0, axis=(0, 2))
    rows.append(
      {
        "layer": path.rsplit("/", 1)[0],
        "shape": "x".join(map(str, w.shape)),
        "total": int(w.size),
        "nonzero": nz,
        "density_%": round(100.0 * nz / w.size, 3),
        "inputs_kept": f"{int(row_alive.sum())}/{row_alive.size}",
      }
    )
  return rows


def print_table(rows):
  cols = list(rows[0])
  widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in cols]
  print("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
  for r in rows:
    print("  ".join(str(r[c]).ljust(w) for c, w in zip(cols, widths, strict=True)))


def plot_log_alpha(params, path: Path, title: str):
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  las = bayes.log_alphas(params)
  fig, axes = plt.subplots(1, len(las), figsize=(3.2 * len(las), 2.8), squeeze=False)
  for ax, (name, la) in zip(axes[0], las.items(), strict=True):
    la = np.asarray(la).ravel()
    ax.hist(la, bins=80, range=(-8, 8), color="tab:blue")
    ax.axvline(3.0, color="tab:red", ls="--", lw=1)
    ax.set_yscale("log")
    kept = 100.0 * np.mean(la < 3.0)
    ax.set_title(f"{name.rsplit('/', 1)[0]}: {kept:.2f}% kept", fontsize=9)
    ax.set_xlabel("log α")
  fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--model", choices=("lenet300", "lenet5"), default="lenet300")
  p.add_argument("--method", choices=("vd", "l0"), default="vd")
  p.add_argument("--epochs", type=int, default=30, help="epochs with the penalty")
  p.add_argument("--pretrain-epochs", type=int, default=0, help="deterministic epochs first")
  p.add_argument("--batch-size", type=int, default=100)
  p.add_argument("--lr", type=float, default=1e-3)
  p.add_argument("--pretrain-lr", type=float, default=1e-3)
  p.add_argument(
    "--lr-decay-from", type=float, default=0.5, help="fraction of epochs, then linear to 0"
  )
  p.add_argument("--kl-warmup-epochs", type=float, default=0.0)
  p.add_argument("--kl-ramp-epochs", type=float, default=5.0)
  p.add_argument("--l0-lambda", type=float, default=0.1, help="λ; the penalty is λ/N·E[L0]")
  p.add_argument("--l0-weighted", action="store_true", help="count weights, not gates")
  p.add_argument(
    "--mask-every", type=int, default=0, help="epochs between mask updates (0: last step only)"
  )
  p.add_argument(
    "--loop", choices=("scan", "python"), default=None, help="default: scan for lenet300"
  )
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--out", type=Path, default=Path("/tmp/bayes_mnist"))
  args = p.parse_args(argv)
  if args.loop is None:
    args.loop = "scan" if args.model == "lenet300" else "python"
  args.out.mkdir(parents=True, exist_ok=True)
  tag = f"{args.model}_{args.method}"

  (xtr, ytr), (xte, yte) = load_mnist()
  xtr, ytr, xte, yte = map(jnp.asarray, (xtr, ytr, xte, yte))
  n = xtr.shape[0]
  Model = LeNet300 if args.model == "lenet300" else LeNet5
  model = Model(method=args.method)
  key = jax.random.key(args.seed)
  params = model.init(key, xtr[:2], deterministic=True)["params"]
  t0 = time.time()

  # Phase 1 (optional): plain deterministic training of the weights, no penalty.
  if args.pretrain_epochs:
    dense_model = Model(method=args.method, threshold=None)
    tx0 = optax.adam(args.pretrain_lr)
    epoch0, steps = make_epoch(dense_model, tx0, xtr, ytr, args, lambda p, s: 0.0)
    st0 = tx0.init(params)
    for e in range(args.pretrain_epochs):
      params, st0, ce, _ = epoch0(params, st0, jax.random.fold_in(key, 10_000 + e), 0, True)
      err = evaluate(dense_model, params, xte, yte)
      print(
        f"pretrain {e + 1:3d}  ce {float(ce):.4f}  test err {err:.2f}%  {time.time() - t0:.0f}s"
      )

  # Phase 2: the penalty and the threshold criterion.
  steps = n // args.batch_size
  total = steps * args.epochs
  if args.method == "vd":
    crit = bayes.log_alpha_criterion(3.0)

    def penalty_fn(p, step):
      w = bayes.kl_weight(
        step,
        num_examples=n,
        warmup_steps=int(args.kl_warmup_epochs * steps),
        ramp_steps=int(args.kl_ramp_epochs * steps),
      )
      return w * bayes.kl_penalty(p)
  else:
    crit = bayes.l0_gate_criterion()

    def penalty_fn(p, step):
      del step
      return args.l0_lambda / n * bayes.l0_penalty(p, weighted=args.l0_weighted)

  decay_begin = int(args.lr_decay_from * total)
  lr = optax.join_schedules(
    [optax.constant_schedule(args.lr), optax.linear_schedule(args.lr, 0.0, total - decay_begin)],
    [decay_begin],
  )
  if args.mask_every:
    every = args.mask_every * steps
    schedule = jaxprune.schedules.periodic(every, begin=(total - 1) % every)
  else:
    schedule = jaxprune.schedules.one_shot(total - 1)
  tx = jaxprune.masked(optax.adam(lr), None, criterion=crit, schedule=schedule)
  epoch, steps = make_epoch(model, tx, xtr, ytr, args, penalty_fn)
  opt_state = tx.init(params)
  for e in range(args.epochs):
    params, opt_state, ce, pen = epoch(params, opt_state, jax.random.fold_in(key, e), e * steps)
    if (e + 1) % max(1, args.epochs // 15) == 0 or e + 1 == args.epochs:
      err = evaluate(model, params, xte, yte)
      rows = layer_table(_eval_sparse(params, args.method), args.method)
      tot = sum(r["total"] for r in rows)
      nz = sum(r["nonzero"] for r in rows)
      print(
        f"epoch {e + 1:3d}  ce {float(ce):.4f}  penalty {float(pen):.4f}  test err {err:.2f}%  "
        f"compression {tot / max(nz, 1):.1f}x  {time.time() - t0:.0f}s",
        flush=True,
      )
  wall = time.time() - t0

  # The masks from jaxprune.masked made the params exactly sparse: count and evaluate them
  # as they are (evaluation mask off, so the numbers describe exactly these params).
  raw_model = Model(method=args.method, threshold=None) if args.method == "vd" else model
  err = evaluate(raw_model, params, xte, yte)
  rows = layer_table(params, args.method)
  masks = jaxprune.masks_of(opt_state)
  leaked = sum(
    int(jnp.count_nonzero(jnp.where(m, 0.0, w)))
    for w, m in zip(jax.tree.leaves(params), jax.tree.leaves(masks), strict=True)
  )
  assert leaked == 0, f"{leaked} masked-out entries are nonzero"
  total_w = sum(r["total"] for r in rows)
  nz_w = sum(r["nonzero"] for r in rows)
  n_bias = sum(int(params[k]["bias"].size) for k in params)
  summary = {
    "model": args.model,
    "method": args.method,
    "epochs": args.epochs,
    "pretrain_epochs": args.pretrain_epochs,
    "batch_size": args.batch_size,
    "lr": args.lr,
    "test_error_%": round(err, 2),
    "weights_total": total_w,
    "weights_nonzero": nz_w,
    "compression_weights": round(total_w / max(nz_w, 1), 1),
    "compression_with_biases": round((total_w + n_bias) / max(nz_w + n_bias, 1), 1),
    "inputs_kept_per_layer": "-".join(r["inputs_kept"].split("/")[0] for r in rows),
    "wall_s": round(wall, 1),
  }
  print()
  print_table(rows)
  print()
  print(jaxprune.sparsity_summary(params))
  print()
  print(json.dumps(summary))
  (args.out / f"{tag}.json").write_text(json.dumps({"summary": summary, "layers": rows}, indent=1))
  flat = {path: np.asarray(x) for path, x in leaves_with_paths(params)}
  np.savez_compressed(args.out / f"{tag}_params.npz", **flat)
  if args.method == "vd":
    png = args.out / f"{tag}_log_alpha.png"
    title = f"{args.model} sparse VD: log α per layer (cut at 3; removed weights have θ = 0, so 8)"
    plot_log_alpha(params, png, title)
    print(f"log α histograms: {png}")


def _eval_sparse(params, method):
  """The params the evaluation uses: kernels with removed weights zeroed."""
  if method == "vd":
    crit = bayes.log_alpha_criterion(3.0)
  else:
    crit = bayes.l0_gate_criterion()
  return jaxprune.prune(params, None, criterion=crit)[0]


if __name__ == "__main__":
  main()
