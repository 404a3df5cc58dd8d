"""Accuracy of structured removal with traced groups on real MNIST: dense, just removed, fine-tuned.

For each model, train it dense briefly (Adam), remove half of every traced group (channels,
attention heads, MLP units) by group L2 norm, delete the removed channels with
`jaxprune.surgery.shrink`, then fine-tune the smaller model (run with `apply_resized`) for
a short budget. Reports validation and test accuracy of (a) the dense model, (b) the
smaller model right after removal and (c) the smaller model after fine-tuning, plus the
parameter and MAC ratios. The script checks that the smaller model's logits equal the
masked dense model's. For models with BatchNorm it also reports (b) and (c) with the
statistics re-estimated by `jaxprune.recalibrate_batch_stats` over the first
``--recal-batches`` training batches (``removed_recal_*``, ``ft_recal_*``): training's
running averages belong to the dense model (b) or trail the fine-tuning (c).

The one choice made, the fine-tuning learning rate (one of ``--ft-lrs``), is picked per
model and seed on a validation split of 5,000 training images (a fixed draw); the test
set is only reported. Images are standardised; LeNet-300-100 reads them at 28x28, the
convolutional models and the ViT (4x4 patches, as in ``structural_speed.py``) at 32x32,
zero-padded (background) around the digit.

  python benchmarks/structural_finetune.py [--models resnet20,vgg_bn] [--seeds 0,1,2]
      [--dense-steps 600] [--ft-steps 200] [--recal-batches 20] [--time-steps]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from structural_speed import VGGBN, _macs

import jaxprune
from jaxprune.data import read_idx
from jaxprune.surgery import apply_resized, shrink
from jaxprune.train import models

DATA = Path(os.environ.get("MNIST_DIR", "/work/shared/data/mnist"))
VALIDATION = 5000

CASES = {
  "lenet300": (lambda: models.LeNet300100(num_classes=10), 28),
  "vgg_bn": (lambda: VGGBN(), 32),
  "resnet20": (lambda: models.ResNet20(num_classes=10), 32),
  "resnet20_proj": (lambda: models.ResNet20(num_classes=10, shortcut="projection"), 32),
  "vit_small": (lambda: models.ViTSmall(num_classes=10), 32),
}


def load_mnist(data_dir: Path = DATA) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """{"train", "validation", "test"}: (uint8 images N x 28 x 28, int32 labels)."""
  x = np.asarray(read_idx(data_dir / "train-images-idx3-ubyte.gz"), np.uint8)
  y = np.asarray(read_idx(data_dir / "train-labels-idx1-ubyte.gz"), np.int32)
  held = np.zeros(len(x), bool)
  held[np.random.default_rng(0).permutation(len(x))[:VALIDATION]] = True
  x_test = np.asarray(read_idx(data_dir / "t10k-images-idx3-ubyte.gz"), np.uint8)
  y_test = np.asarray(read_idx(data_dir / "t10k-labels-idx1-ubyte.gz"), np.int32)
  return {"train": (x[~held], y[~held]), "validation": (x[held], y[held]), "test": (x_test, y_test)}


def images(raw: np.ndarray, side: int) -> np.ndarray:
  """Standardised float32 NHWC images, zero-padded (before standardising) to ``side``."""
  p = (side - raw.shape[1]) // 2
  x = np.pad(raw, ((0, 0), (p, side - raw.shape[1] - p), (p, side - raw.shape[2] - p)))
  return ((x.astype(np.float32) / 255.0 - 0.1307) / 0.3081)[..., None]


def _variables(params, stats):
  return {"params": params, **({"batch_stats": stats} if stats is not None else {})}


def make_step(model):
  """A jitted Adam step (learning rate an argument) of softmax cross-entropy, at any widths."""

  def loss_fn(params, stats, x, y):
    if stats is None:
      logits = apply_resized(model, _variables(params, None), x, train=True)
    else:
      logits, upd = apply_resized(
        model, _variables(params, stats), x, train=True, mutable=["batch_stats"]
      )
      stats = upd["batch_stats"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), stats

  @jax.jit
  def step(params, stats, opt_state, x, y, lr):
    (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, stats, x, y)
    updates, opt_state = optax.scale_by_adam().update(grads, opt_state, params)
    params = jax.tree.map(lambda p, u: p - lr * u, params, updates)
    return params, stats, opt_state, loss

  return step


def train(step, params, stats, x, y, steps, lr, seed, batch):
  """``steps`` of ``step`` on random batches; returns (params, stats, seconds per step)."""
  opt_state = optax.scale_by_adam().init(params)
  rng = np.random.default_rng(seed)
  order = np.concatenate([rng.permutation(len(x)) for _ in range(steps * batch // len(x) + 1)])
  start = None
  for i in range(steps):
    idx = order[i * batch : (i + 1) * batch]
    params, stats, opt_state, loss = step(params, stats, opt_state, x[idx], y[idx], lr)
    if i == 0:
      jax.block_until_ready(loss)
      start = time.perf_counter()
  jax.block_until_ready(params)
  per_step = (time.perf_counter() - start) / max(steps - 1, 1)
  return params, stats, per_step


def accuracy(predict, variables, x, y, batch=500):
  """Share of ``x`` that ``predict(variables, x)`` labels ``y``."""
  hits = 0
  for i in range(0, len(x), batch):
    hits += int((predict(variables, x[i : i + batch]) == y[i : i + batch]).sum())
  return hits / len(x)


def recalibrated(model, variables, x, batches, batch):
  """``variables`` with BatchNorm statistics re-estimated over the first ``batches`` of ``x``."""
  images = [x[i * batch : (i + 1) * batch] for i in range(batches)]
  apply = functools.partial(apply_resized, model)
  stats = jaxprune.recalibrate_batch_stats(apply, variables, images, train=False)
  return {**variables, "batch_stats": stats}


def run(name, data, seed, dense_steps, ft_steps, ft_lrs, dense_lr, batch, recal_batches=20):
  build, side = CASES[name]
  model = build()
  step = make_step(model)
  predict = jax.jit(lambda v, xb: jnp.argmax(apply_resized(model, v, xb, train=False), -1))
  x = {k: images(v[0], side) for k, v in data.items()}
  y = {k: v[1] for k, v in data.items()}
  variables = model.init(jax.random.key(seed), x["train"][:1])
  stats = variables.get("batch_stats")
  t0 = time.perf_counter()
  params, stats, dense_step_s = train(
    step, variables["params"], stats, x["train"], y["train"], dense_steps, dense_lr, seed, batch
  )
  dense = _variables(params, stats)
  dense_s = time.perf_counter() - t0
  row = {"model": name, "seed": seed, "dense_step_s": dense_step_s, "dense_s": dense_s}
  row["dense_val"] = accuracy(predict, dense, x["validation"], y["validation"])
  row["dense_test"] = accuracy(predict, dense, x["test"], y["test"])

  groups = jaxprune.groups.trace(model.apply, dense, x["train"][:1], train=False)
  pruned, masks = jaxprune.prune(params, 0.5, structure=groups.by("l2"))
  masked = {**dense, "params": pruned}
  small, _ = shrink(masked, groups, masks)
  probe = x["validation"][:256]
  np.testing.assert_allclose(
    apply_resized(model, small, probe, train=False),
    model.apply(masked, probe, train=False),
    rtol=1e-4,
    atol=1e-4,
    err_msg=f"{name}: the smaller model's logits differ from the masked model's",
  )
  row["params_ratio"] = models.count_params(params) / models.count_params(small["params"])
  row["mac_ratio"] = _macs(model, dense, (side, side, 1)) / _macs(model, small, (side, side, 1))
  row["removed_val"] = accuracy(predict, small, x["validation"], y["validation"])
  row["removed_test"] = accuracy(predict, small, x["test"], y["test"])
  recal = "batch_stats" in small and recal_batches > 0
  if recal:
    fresh = recalibrated(model, small, x["train"], recal_batches, batch)
    row["removed_recal_val"] = accuracy(predict, fresh, x["validation"], y["validation"])
    row["removed_recal_test"] = accuracy(predict, fresh, x["test"], y["test"])

  best = None
  row["ft_val_by_lr"] = {}
  step = make_step(model)  # one compilation for the smaller widths, shared by the lrs
  for lr in ft_lrs:
    t0 = time.perf_counter()
    p, s, ft_step_s = train(
      step,
      small["params"],
      small.get("batch_stats"),
      x["train"],
      y["train"],
      ft_steps,
      lr,
      seed + 1000,
      batch,
    )
    tuned = _variables(p, s)
    val = accuracy(predict, tuned, x["validation"], y["validation"])
    row["ft_val_by_lr"][lr] = val
    row["ft_step_s"], row["ft_s"] = ft_step_s, time.perf_counter() - t0
    if best is None or val > best[0]:
      best = (val, lr, tuned)
  row["ft_lr"], row["ft_val"] = best[1], best[0]
  row["ft_test"] = accuracy(predict, best[2], x["test"], y["test"])
  if recal:
    fresh = recalibrated(model, best[2], x["train"], recal_batches, batch)
    row["ft_recal_val"] = accuracy(predict, fresh, x["validation"], y["validation"])
    row["ft_recal_test"] = accuracy(predict, fresh, x["test"], y["test"])
  row["recal_batches"] = recal_batches if recal else 0
  return row


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument(
    "--models", default=",".join(CASES), help=f"comma-separated, of {list(CASES)}"
  )
  parser.add_argument("--seeds", default="0")
  parser.add_argument("--dense-steps", default="600", help="one number, or name=steps,...")
  parser.add_argument("--ft-steps", default="200", help="one number, or name=steps,...")
  parser.add_argument("--dense-lr", type=float, default=1e-3)
  parser.add_argument("--ft-lrs", default="1e-3,1e-4")
  parser.add_argument("--batch", type=int, default=64)
  parser.add_argument(
    "--recal-batches",
    type=int,
    default=20,
    help="training batches to re-estimate BatchNorm statistics over (0: do not report)",
  )
  parser.add_argument(
    "--eval-examples",
    type=int,
    default=0,
    help="evaluate on this many validation and test images (a fixed draw); 0: all",
  )
  parser.add_argument("--time-steps", action="store_true", help="only time 5 steps per model")
  parser.add_argument("--out", type=Path, default=Path("/tmp/structural_finetune.json"))
  args = parser.parse_args()

  def per_model(spec):
    if "=" not in spec:
      return dict.fromkeys(CASES, int(spec))
    return {k: int(v) for k, v in (kv.split("=") for kv in spec.split(","))}

  data = load_mnist()
  if args.eval_examples:
    n = args.eval_examples
    pick = np.sort(np.random.default_rng(0).permutation(len(data["test"][0]))[:n])
    data["test"] = tuple(a[pick] for a in data["test"])
    data["validation"] = tuple(a[:n] for a in data["validation"])
  names = args.models.split(",")
  print(
    f"backend={jax.default_backend()} batch={args.batch} train={len(data['train'][0])} "
    f"validation={len(data['validation'][0])} test={len(data['test'][0])}",
    flush=True,
  )
  if args.time_steps:
    for name in names:
      build, side = CASES[name]
      model = build()
      xs = images(data["train"][0][: 6 * args.batch], side)
      v = model.init(jax.random.key(0), xs[:1])
      ys = data["train"][1]
      _, _, s = train(
        make_step(model), v["params"], v.get("batch_stats"), xs, ys, 6, 1e-3, 0, args.batch
      )
      print(f"{name:14s} {s * 1e3:.0f} ms per training step (batch {args.batch}, dense)")
    return
  dense_steps, ft_steps = per_model(args.dense_steps), per_model(args.ft_steps)
  ft_lrs = [float(v) for v in args.ft_lrs.split(",")]
  rows = []
  for name in names:
    for seed in (int(s) for s in args.seeds.split(",")):
      r = run(
        name,
        data,
        seed,
        dense_steps[name],
        ft_steps[name],
        ft_lrs,
        args.dense_lr,
        args.batch,
        args.recal_batches,
      )
      r["dense_steps"], r["ft_steps"] = dense_steps[name], ft_steps[name]
      rows.append(r)
      print(json.dumps(r), flush=True)
      args.out.write_text(json.dumps(rows, indent=1))
  print(
    "\n| model | seed | dense steps / fine-tune steps | params ratio | MAC ratio | "
    "dense test | removed test | removed, BN re-estimated | fine-tuned test (lr) | "
    "fine-tuned, BN re-estimated |"
  )
  print("|---|---|---|---|---|---|---|---|---|---|")
  for r in rows:
    recal = lambda key: f"{100 * r[key]:.2f}" if key in r else "n/a (no BatchNorm)"
    print(
      f"| {r['model']} | {r['seed']} | {r['dense_steps']} / {r['ft_steps']} | "
      f"{r['params_ratio']:.2f}x | {r['mac_ratio']:.2f}x | {100 * r['dense_test']:.2f} | "
      f"{100 * r['removed_test']:.2f} | {recal('removed_recal_test')} | "
      f"{100 * r['ft_test']:.2f} ({r['ft_lr']:g}) | {recal('ft_recal_test')} |"
    )


if __name__ == "__main__":
  main()
