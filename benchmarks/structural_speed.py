"""Structured removal with traced groups: MACs, parameters and measured forward speedup.

For ResNet-20, a VGG with BatchNorm and the ViT, half of every traced group (channels,
attention heads, MLP units) is pruned by group L2 norm at initialisation, the groups are
removed with `jaxprune.surgery.shrink`, and the dense and smaller models' jitted forward
passes (batch 256, float32) are timed interleaved; the speedup is the median per-round
ratio. Accuracy is not measured here. ``--checkpoint-bytes`` also saves the dense and the
smaller params with `jaxprune.surgery.save_checkpoint` (orbax) and prints their bytes on
disk.

  python benchmarks/structural_speed.py [--repeats 20] [--batch 256]
  python benchmarks/structural_speed.py --models resnet20 --repeats 3 --checkpoint-bytes
"""

from __future__ import annotations

import argparse
import functools
import tempfile

import flax.linen as nn
import jax
import jax.numpy as jnp
from _timing import interleaved, median_ratio

import jaxprune
from jaxprune.surgery import apply_resized, save_checkpoint, shrink
from jaxprune.train import models


class VGGBN(nn.Module):
  """VGG-style CIFAR network with BatchNorm: three stages of two 3x3 conv-BN-ReLU, pool."""

  widths: tuple[int, ...] = (64, 128, 256)

  @nn.compact
  def __call__(self, x, train=False):
    for s, width in enumerate(self.widths, start=1):
      for c in (1, 2):
        x = nn.Conv(width, (3, 3), padding="SAME", name=f"conv{s}{c}")(x)
        x = nn.relu(nn.BatchNorm(use_running_average=not train, name=f"bn{s}{c}")(x))
      x = nn.max_pool(x, (2, 2), strides=(2, 2))
    x = nn.relu(nn.Dense(256, name="fc")(x.reshape((x.shape[0], -1))))
    return nn.Dense(10, name="head")(x)


CASES = {
  "resnet20": lambda: models.ResNet20(num_classes=10),
  "resnet20_proj": lambda: models.ResNet20(num_classes=10, shortcut="projection"),
  "vgg_bn": lambda: VGGBN(),
  "vit_small": lambda: models.ViTSmall(num_classes=10),
}


def _macs(model, variables, input_shape=(32, 32, 3)):
  """MACs per example (kernels and attention matmuls, as `models.flops_per_example` counts
  them), traced with the variables' own shapes on one input of ``input_shape``."""
  positions = {}

  def interceptor(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    m = context.module
    if context.method_name == "__call__" and isinstance(m, nn.Dense | nn.Conv | nn.DenseGeneral):
      kernel = m.variables["params"]["kernel"]
      n = 1
      for d in m.features if isinstance(m.features, tuple) else (m.features,):
        n *= d
      positions[tuple(m.path)] = out.size // n * kernel.size
    elif context.method_name == "__call__" and isinstance(m, nn.MultiHeadDotProductAttention):
      q = args[0]
      positions[tuple(m.path)] = 2 * (q.size // q.shape[-1]) * q.shape[-2] * m.qkv_features
    return out

  with nn.intercept_methods(interceptor):
    jax.eval_shape(lambda v: apply_resized(model, v, jnp.ones((1, *input_shape))), variables)
  return sum(positions.values())


def checkpoint_bytes(dense_params, small_params):
  """Bytes on disk of the orbax checkpoints of the dense and the smaller params."""
  with tempfile.TemporaryDirectory() as tmp:
    return {
      "dense": save_checkpoint(f"{tmp}/dense", dense_params),
      "small": save_checkpoint(f"{tmp}/small", small_params),
    }


def run(name, model, batch, repeats, with_bytes=False):
  x = jax.random.normal(jax.random.key(0), (batch, 32, 32, 3))
  variables = model.init(jax.random.key(1), x[:1])
  groups = jaxprune.groups.trace(model.apply, variables, x[:1], train=False)
  pruned, masks = jaxprune.prune(variables["params"], 0.5, structure=groups.by("l2"))
  small, _ = shrink({**variables, "params": pruned}, groups, masks)
  dense_fn = jax.jit(functools.partial(model.apply, train=False))
  small_fn = jax.jit(lambda v, x: apply_resized(model, v, x, train=False))
  times = interleaved(
    {"dense": lambda: dense_fn(variables, x), "small": lambda: small_fn(small, x)}, repeats
  )
  saved = checkpoint_bytes(variables["params"], small["params"]) if with_bytes else None
  return {
    "checkpoint_bytes": saved,
    "model": name,
    "params_ratio": models.count_params(variables["params"]) / models.count_params(small["params"]),
    "mac_ratio": _macs(model, variables) / _macs(model, small),
    "speedup": median_ratio(times, "dense", "small"),
    "ratios": sorted(a / b for a, b in zip(times["dense"], times["small"], strict=True)),
  }


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--repeats", type=int, default=20)
  parser.add_argument("--batch", type=int, default=256)
  parser.add_argument(
    "--models", default=",".join(CASES), help=f"comma-separated, of {list(CASES)}"
  )
  parser.add_argument(
    "--checkpoint-bytes",
    action="store_true",
    help="also print the bytes of the dense and the smaller params' orbax checkpoints",
  )
  args = parser.parse_args()
  print(f"backend={jax.default_backend()} batch={args.batch} repeats={args.repeats}")
  for name in args.models.split(","):
    r = run(name, CASES[name](), args.batch, args.repeats, args.checkpoint_bytes)
    q = r["ratios"]
    print(
      f"{r['model']:15s} params {r['params_ratio']:.2f}x fewer  MACs {r['mac_ratio']:.2f}x "
      f"fewer  measured forward speedup {r['speedup']:.2f}x (per-round ratios: min "
      f"{q[0]:.2f}, quartiles {q[len(q) // 4]:.2f}-{q[3 * len(q) // 4]:.2f}, max {q[-1]:.2f})"
    )
    if r["checkpoint_bytes"]:
      b = r["checkpoint_bytes"]
      print(
        f"{'':15s} orbax checkpoint of the params: dense {b['dense']:,} bytes, smaller "
        f"{b['small']:,} bytes ({b['dense'] / b['small']:.2f}x)"
      )


if __name__ == "__main__":
  main()
