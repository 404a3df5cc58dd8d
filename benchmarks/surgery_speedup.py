"""Measured speedup of physically removing pruned units, against the theoretical one.

For LeNet-300-100 and the small VGG (MNIST-sized inputs), prune whole neurons / filters
(`jaxprune.structures.channels`, hidden layers only) at several sparsities, remove them
with `jaxprune.surgery.remove_units`, rebuild the model with the new widths and time a
jitted forward pass of a batch against the dense model (interleaved repeats, median of
per-round ratios). Also checks that the smaller model gives the pruned model's logits and
prints the MAC ratio (`jaxprune.train.models.flops_per_example`) for comparison.

Usage: python benchmarks/surgery_speedup.py [--repeats 21] [--batch 256]
"""

from __future__ import annotations

import argparse
import os

import jax
import numpy as np
from _timing import interleaved, median_ratio

import jaxprune
from jaxprune.surgery import remove_units
from jaxprune.train import models

SPARSITIES = (0.5, 0.75, 0.9)
# name: (model attributes, widths attribute, layer chain, pruned kernels)
SETUPS = {
  "lenet300100": ({}, "hidden", ["Dense_0", "Dense_1", "Dense_2"], ["Dense_0", "Dense_1"]),
  "vgg_small": (
    {"widths": (32, 64), "hidden": 256},
    "widths",
    ["stage1_conv1", "stage1_conv2", "stage2_conv1", "stage2_conv2", "fc", "head"],
    ["stage1_conv1", "stage1_conv2", "stage2_conv1", "stage2_conv2", "fc"],
  ),
}


def _rebuilt(name: str, attrs: dict, widths_attr: str, widths: dict[str, int], chain):
  """The model with the widths left after removal (VGG stages take the wider conv)."""
  if name == "lenet300100":
    new = {widths_attr: tuple(widths[layer] for layer in chain[:-1])}
  else:
    # remove_units keeps each conv's own count; VGGSmall has one width per stage, so the
    # benchmark prunes both convs of a stage to the same count (exact channel counts).
    stage = [widths[chain[0]], widths[chain[2]]]
    new = {widths_attr: tuple(stage), "hidden": widths["fc"]}
  return models.get_model(name, num_classes=10, **{**attrs, **new})


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--repeats", type=int, default=21)
  parser.add_argument("--batch", type=int, default=256)
  args = parser.parse_args()
  print(f"devices: {jax.devices()}; load average {os.getloadavg()[0]:.1f}")
  print("| model | sparsity | widths | MACs dense / smaller | forward time dense / smaller |")
  print("|---|---|---|---|---|")
  x = jax.random.normal(jax.random.key(0), (args.batch, 28, 28, 1))
  for name, (attrs, widths_attr, chain, pruned_layers) in SETUPS.items():
    model = models.get_model(name, num_classes=10, **attrs)
    params = model.init(jax.random.key(1), x[:1], train=False)["params"]
    dense_fn = jax.jit(lambda p, x, model=model: model.apply({"params": p}, x, train=False))
    for sparsity in SPARSITIES:
      rule = {**{f"{layer}/kernel": sparsity for layer in pruned_layers}, ".*": None}
      structure = jaxprune.structures.channels()
      pruned, _ = jaxprune.prune(params, sparsity, distribution=rule, structure=structure)
      small, widths = remove_units(pruned, chain)  # ReLU after every hidden layer
      smaller = _rebuilt(name, attrs, widths_attr, widths, chain)
      small_fn = jax.jit(lambda p, x, model=smaller: model.apply({"params": p}, x, train=False))
      np.testing.assert_allclose(small_fn(small, x), dense_fn(pruned, x), rtol=1e-4, atol=1e-4)
      macs_dense = models.flops_per_example(model, {"params": params}, (28, 28, 1))
      macs_small = models.flops_per_example(smaller, {"params": small}, (28, 28, 1))
      times = interleaved(
        {"dense": lambda: dense_fn(params, x), "smaller": lambda: small_fn(small, x)},
        args.repeats,
      )
      print(
        f"| {name} | {sparsity:.0%} | {[widths[k] for k in chain[:-1]]} | "
        f"{macs_dense['dense'] / macs_small['dense']:.2f}x | "
        f"{median_ratio(times, 'dense', 'smaller'):.2f}x |",
        flush=True,
      )


if __name__ == "__main__":
  main()
