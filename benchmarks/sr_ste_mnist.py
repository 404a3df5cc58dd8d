"""SR-STE 2:4 against dense: LeNet-5 (Caffe) on MNIST, the same steps and recipe for both.

Both runs use ``configs/sr_ste.py``'s recipe (its optimizer, learning-rate schedule and
batch size, from ``configs/default.py``): the dense run trains with the inner optimizer
alone, the SR-STE run with `jaxprune.train.optim.dynamic_optimizer` of that config
(2:4 along the input axis, λ_W = 2e-4, masks re-chosen every step, first convolution
dense). The last 5,000 training images are held out for validation; ``--epochs`` of the
other 55,000, then the validation and test errors at the end (no early stopping, no choice
made on test). Seeds ``0 .. --seeds-1``; writes ``results.json`` under ``--out``, and with
``--record NAME`` the per-seed errors to ``benchmarks/results/NAME.json`` (`results_files`).

Each step is its own jitted call (params and optimizer state donated), not a
`jax.lax.scan` over an epoch: on XLA:CPU (jax 0.10.2) this model's step inside a
scan's while loop took 5.8x the CPU time of the same step jitted alone (batch 100,
adam: 443 vs 76 ms of process CPU time per step; SR-STE 446 ms in the scan).

``--step-cost`` measures those step costs instead of training: process CPU time per step
of the dense and the SR-STE step, each jitted alone and inside a `jax.lax.scan` over
``--cost-steps`` steps, and of the gradient of the model's first max-pool (XLA's
``select_and_scatter``) against the same pooling written as a reshape and ``max``.

  python benchmarks/sr_ste_mnist.py --epochs 3 --seeds 3 --out /tmp/sr_ste_mnist
  python benchmarks/sr_ste_mnist.py --step-cost --cost-steps 5
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from criteria_mnist import load_mnist
from results_files import RESULTS_DIR, write_per_seed

from jaxprune import criteria
from jaxprune.train.config import load_config
from jaxprune.train.models.convnets import LeNet5Caffe
from jaxprune.train.optim import dynamic_optimizer, inner_optimizer, learning_rate
from jaxprune.train.settings import resolve

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "sr_ste.py"
MODEL = LeNet5Caffe(num_classes=10)
METHODS = ("sr_ste", "dense")


def apply_fn(params, x):
  return MODEL.apply({"params": params}, x)


train_loss = criteria.classification_loss(apply_fn)


@jax.jit
def _correct(params, x, y):
  return jnp.sum(jnp.argmax(apply_fn(params, x), -1) == y)


def error(params, x, y, batch=1000):
  """Classification error (%) of ``params`` on ``(x, y)``."""
  right = sum(
    int(_correct(params, x[i : i + batch], y[i : i + batch])) for i in range(0, len(x), batch)
  )
  return 100.0 * (1.0 - right / len(x))


def run(method, config, epochs, data, seed):
  """Trains ``method`` ("dense" or "sr_ste") from seed ``seed``; returns a result dict."""
  (x, y), (xv, yv), (xt, yt) = data
  batch = config.train.batch_size
  per_epoch = x.shape[0] // batch
  total = epochs * per_epoch
  inner = inner_optimizer(config.optimizer, learning_rate(config.optimizer, total, per_epoch))
  tx = inner if method == "dense" else dynamic_optimizer(inner, config.pruning, per_epoch)
  params = MODEL.init(jax.random.key(seed), jnp.ones((1, 28, 28, 1)))["params"]
  # `ste`'s state starts with the params' own buffers as its dense weights: copy, so that
  # donating params and state together does not donate one buffer twice.
  opt_state = jax.tree.map(jnp.copy, tx.init(params))

  def step(params, opt_state, xb, yb):
    grads = jax.grad(train_loss)(params, {"image": xb, "label": yb})
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  step = jax.jit(step, donate_argnums=(0, 1))
  rng = np.random.default_rng(seed)
  start = time.perf_counter()
  for _ in range(epochs):
    perm = rng.permutation(x.shape[0])[: per_epoch * batch].reshape(per_epoch, batch)
    for idx in perm:
      params, opt_state = step(params, opt_state, x[idx], y[idx])
  jax.block_until_ready(params)
  seconds = time.perf_counter() - start
  kernels = [(p, v) for p, v in jax.tree_util.tree_leaves_with_path(params) if v.ndim > 1]
  zeros = {jax.tree_util.keystr(p): float(jnp.mean(v == 0)) for p, v in kernels}
  return dict(
    method=method,
    seed=seed,
    steps=total,
    val_error=error(params, xv, yv),
    test_error=error(params, xt, yt),
    zero_fraction=zeros,
    train_seconds=seconds,
  )


def _cpu_per_call(fn, calls):
  """Process CPU seconds per call of ``fn`` (after one warm-up call)."""
  jax.block_until_ready(fn())
  start = time.process_time()
  for _ in range(calls):
    jax.block_until_ready(fn())
  return (time.process_time() - start) / calls


def step_cost(config, steps, calls=3):
  """CPU ms per step: dense and SR-STE steps alone and in a scan; the first pool's gradient."""
  batch = 100  # the batch of the costs in RESULTS.md (the config trains with 128)
  x = jax.random.normal(jax.random.key(0), (steps, batch, 28, 28, 1))
  y = jax.random.randint(jax.random.key(1), (steps, batch), 0, 10)
  params = MODEL.init(jax.random.key(0), x[0, :1])["params"]
  inner = inner_optimizer(config.optimizer, learning_rate(config.optimizer, 1000, 100))
  out = {}
  for method in METHODS:
    tx = inner if method == "dense" else dynamic_optimizer(inner, config.pruning, 100)
    state = tx.init(params)

    def step(carry, xy, tx=tx):
      p, s = carry
      grads = jax.grad(train_loss)(p, {"image": xy[0], "label": xy[1]})
      updates, s = tx.update(grads, s, p)
      return (optax.apply_updates(p, updates), s), None

    alone = jax.jit(lambda c, xb, yb, step=step: step(c, (xb, yb))[0])
    scan = jax.jit(lambda c, step=step: jax.lax.scan(step, c, (x, y))[0])
    out[f"{method} alone"] = 1e3 * _cpu_per_call(lambda: alone((params, state), x[0], y[0]), calls)
    out[f"{method} in scan"] = 1e3 * _cpu_per_call(lambda: scan((params, state)), calls) / steps
  h = jax.random.normal(jax.random.key(2), (batch, 24, 24, 20))  # the first pool's input
  pools = {
    "max_pool gradient (select_and_scatter)": lambda h: nn.max_pool(h, (2, 2), strides=(2, 2)),
    "reshape + max gradient": lambda h: h.reshape(batch, 12, 2, 12, 2, 20).max(axis=(2, 4)),
  }
  for name, pool in pools.items():
    grad = jax.jit(jax.grad(lambda h, pool=pool: jnp.sum(pool(h) ** 2)))
    out[name] = 1e3 * _cpu_per_call(lambda grad=grad: grad(h), 10 * calls)
  return out


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--epochs", type=int, default=4)
  p.add_argument("--seeds", type=int, default=3)
  p.add_argument("--out", default="/tmp/sr_ste_mnist")
  p.add_argument("--record", default="", help="also write benchmarks/results/RECORD.json")
  p.add_argument("--step-cost", action="store_true", help="time the steps; no training")
  p.add_argument("--cost-steps", type=int, default=5, help="steps per scan (--step-cost)")
  args = p.parse_args()
  config = resolve(load_config(CONFIG))
  if args.step_cost:
    for name, ms in step_cost(config, args.cost_steps).items():
      print(f"{name:>40}: {ms:.1f} ms of process CPU time")
    return
  (x, y), (xt, yt) = load_mnist()
  data = ((x[:-5000], y[:-5000]), (x[-5000:], y[-5000:]), (xt, yt))
  out = Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  results = []
  for seed in range(args.seeds):
    for method in METHODS:
      r = run(method, config, args.epochs, data, seed)
      results.append(r)
      print(
        f"{method:>7} seed {seed}: val {r['val_error']:.2f}%  test {r['test_error']:.2f}%  "
        f"({r['steps']} steps, {r['train_seconds']:.0f}s)",
        flush=True,
      )
      (out / "results.json").write_text(json.dumps(results, indent=1))
  if args.record:
    fields = ("seed", "test_error", "val_error", "steps")
    write_per_seed(
      RESULTS_DIR / f"{args.record}.json",
      "SR-STE 2:4 vs dense on LeNet-5 (sr_ste_mnist.py), errors in %",
      shlex.join(["python", "benchmarks/sr_ste_mnist.py", *sys.argv[1:]]),
      {m: [{k: r[k] for k in fields} for r in results if r["method"] == m] for m in METHODS},
    )
  for method in METHODS:
    errs = [r["test_error"] for r in results if r["method"] == method]
    sd = statistics.stdev(errs) if len(errs) > 1 else 0.0
    print(f"{method:>7}: test error {statistics.mean(errs):.2f} ± {sd:.2f}%  ({errs})")


if __name__ == "__main__":
  main()
