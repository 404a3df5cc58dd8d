"""Compile time of a masked train step against the plain one, and how it grows with leaves.

One train step (forward, backward, adam, and for the masked variants the mask update under
the schedule's ``lax.cond``) is lowered and compiled with JAX's caches cleared before each
compilation. Variants are compiled in interleaved rounds and the script prints medians of
seconds (lower + compile), the masked/plain ratio, and the number of HLO instructions of the
compiled step (the increase over plain is the masking's own program):

* ``plain``: ``optax.adam``;
* ``magnitude``: ``jaxprune.masked(adam, 0.9)`` with a polynomial schedule, uniform;
* ``magnitude_erk``: the same with ``distribution="erk"``;
* ``rigl``: ``jaxprune.dynamic.rigl(adam, 0.9)`` (ERK, drop and grow);
* ``set``: ``jaxprune.dynamic.set_(adam, 0.9)`` (ERK).

Models: ResNet-50 (`jaxprune.train.models.ResNet50`), a 12-block ViT of width 192, and a
24-block decoder LM (hand-written attention, SwiGLU MLP: 7 kernels a block), on 64x64
images or 64 tokens, batch 8. ``--sweep`` compiles plain and magnitude steps of an MLP-like
stack of 1 to 256 kernels of mixed shapes and plots seconds against pruned leaves.
``--runtime`` times, for the same models, one magnitude selection of every mask at 90%
(`jaxprune.selection.Plan.select`, jitted on its own; median of ``--rounds`` calls) against
one plain adam train step, so that a faster compile is not bought with a slower update.

Usage:
  python benchmarks/compile_time.py [--models resnet50,vit,lm] [--variants ...] [--rounds 3]
  python benchmarks/compile_time.py --sweep [--leaves 1,4,16,64,256] [--plot out.png]
  python benchmarks/compile_time.py --runtime [--models ...] [--rounds 9]
"""

from __future__ import annotations

import argparse
import re
import statistics
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

import jaxprune
from jaxprune.criteria.registry import get as get_criterion
from jaxprune.selection import Plan
from jaxprune.train.models import ResNet50
from jaxprune.train.models.vit import ViTSmall

VARIANTS = ("plain", "magnitude", "magnitude_erk", "rigl", "set")


class DecoderBlock(nn.Module):
  """Pre-RMSNorm block: hand-written causal attention (q/k/v/o) and a SwiGLU MLP."""

  dim: int
  heads: int

  @nn.compact
  def __call__(self, x):
    b, t, d = x.shape
    h = nn.RMSNorm()(x)
    q, k, v = (nn.Dense(d, use_bias=False, name=n)(h) for n in ("q", "k", "v"))
    split = lambda a: a.reshape(b, t, self.heads, d // self.heads)
    att = jnp.einsum("bthd,bshd->bhts", split(q), split(k)) / jnp.sqrt(d // self.heads)
    att = jnp.where(jnp.tril(jnp.ones((t, t), bool)), att, -1e9)
    y = jnp.einsum("bhts,bshd->bthd", jax.nn.softmax(att, -1), split(v)).reshape(b, t, d)
    x = x + nn.Dense(d, use_bias=False, name="o")(y)
    h = nn.RMSNorm()(x)
    up = nn.Dense(4 * d, use_bias=False, name="up")(h)
    gate = nn.Dense(4 * d, use_bias=False, name="gate")(h)
    return x + nn.Dense(d, use_bias=False, name="down")(nn.silu(gate) * up)


class DecoderLM(nn.Module):
  vocab: int = 256
  dim: int = 128
  depth: int = 24
  heads: int = 4

  @nn.compact
  def __call__(self, tokens):
    x = nn.Embed(self.vocab, self.dim)(tokens)
    for i in range(self.depth):
      x = DecoderBlock(self.dim, self.heads, name=f"block{i}")(x)
    return nn.Dense(self.vocab, use_bias=False, name="head")(nn.RMSNorm()(x))


class Stack(nn.Module):
  """``n`` Dense layers of mixed widths (a cycle of five), for the leaves sweep."""

  n: int

  @nn.compact
  def __call__(self, x):
    widths = (64, 96, 128, 80, 112)
    for i in range(self.n):
      x = nn.relu(nn.Dense(widths[i % len(widths)])(x))
    return x


def model_and_batch(name: str):
  key = jax.random.key(0)
  if name == "resnet50":
    return ResNet50(num_classes=10), jnp.ones((8, 64, 64, 3)), jnp.zeros(8, jnp.int32), True
  if name == "vit":
    vit = ViTSmall(num_classes=10, patch_size=8, dim=192, depth=12, num_heads=3, mlp_dim=768)
    return vit, jnp.ones((8, 64, 64, 3)), jnp.zeros(8, jnp.int32), False
  if name == "lm":
    tokens = jax.random.randint(key, (8, 64), 0, 256)
    return DecoderLM(), tokens, tokens, False
  raise ValueError(f"unknown model {name!r}; expected resnet50, vit or lm")


def make_tx(variant: str):
  adam = optax.adam(1e-3)
  if variant == "plain":
    return adam
  schedule = jaxprune.schedules.polynomial(begin=0, end=1000, every=100)
  if variant == "magnitude":
    return jaxprune.masked(adam, 0.9, schedule=schedule)
  if variant == "magnitude_erk":
    return jaxprune.masked(adam, 0.9, schedule=schedule, distribution="erk")
  if variant == "rigl":
    return jaxprune.dynamic.rigl(adam, 0.9, end=1000)
  if variant == "set":
    return jaxprune.dynamic.set_(adam, 0.9, end=1000)
  raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")


def step_fn(model, tx, has_bn: bool):
  def loss_fn(params, extra, x, y):
    variables = {"params": params, **extra}
    if has_bn:
      logits, _ = model.apply(variables, x, train=True, mutable=["batch_stats"])
    else:
      logits = model.apply(variables, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  def step(params, extra, opt_state, x, y):
    grads = jax.grad(loss_fn)(params, extra, x, y)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  return step


def compile_once(model, variables, tx, x, y, has_bn):
  """(seconds to lower and compile, (HLO instructions, kernels, distinct kernels)) with every
  JAX cache cleared."""
  params = variables["params"]
  extra = {k: v for k, v in variables.items() if k != "params"}
  opt_state = jax.eval_shape(tx.init, params)
  jax.clear_caches()
  start = time.perf_counter()
  compiled = jax.jit(step_fn(model, tx, has_bn)).lower(params, extra, opt_state, x, y).compile()
  seconds = time.perf_counter() - start
  hlo = compiled.as_text()
  return seconds, (count_instructions(hlo), *count_kernels(hlo))


def count_instructions(hlo: str) -> int:
  """HLO instructions in every computation of a compiled module's text."""
  return len(re.findall(r"^\s+(?:ROOT )?[%\w.\-]+ = ", hlo, flags=re.M))


def count_kernels(hlo: str) -> tuple[int, int]:
  """(fused computations, distinct ones) of a compiled module's text.

  Two fused computations are the same kernel when they differ only in names and metadata;
  XLA generates code once per distinct kernel, so the distinct count is what compile time
  follows (a kernel that slices leaf i's scalar from a shared vector carries the constant
  i, and is distinct from every other leaf's).

  Example:
    >>> xs = [jnp.ones((64, 32)) for _ in range(8)]
    >>> shared = lambda xs, s: [jnp.abs(x) > s for x in xs]  # one kernel, used 8 times
    >>> apart = lambda xs, s: [jnp.abs(x) > s + i for i, x in enumerate(xs)]  # 8 kernels
    >>> kernels = lambda f: count_kernels(jax.jit(f).lower(xs, 0.5).compile().as_text())
    >>> kernels(shared)[1] < 4, kernels(apart)
    (True, (8, 8))
  """
  bodies = []
  for comp in re.split(r"\n(?=\S)", hlo):
    if comp.startswith("%fused_computation") or comp.startswith("%wrapped"):
      body = comp.split("\n", 1)[-1]
      bodies.append(re.sub(r"metadata=\{[^}]*\}|backend_config=\{.*\}|%[\w.\-]+", "", body))
  return len(bodies), len(set(bodies))


def interleaved_compiles(model, variables, variants, x, y, has_bn, rounds):
  """({variant: [seconds per round]}, {variant: (instructions, kernels, distinct)}), with the
  variants interleaved."""
  times = {v: [] for v in variants}
  sizes = {}
  for _ in range(rounds):
    for v in variants:
      seconds, sizes[v] = compile_once(model, variables, make_tx(v), x, y, has_bn)
      times[v].append(seconds)
  return times, sizes


def bench(models, variants, rounds):
  for name in models:
    model, x, y, has_bn = model_and_batch(name)
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    kernels = sum(1 for p in jax.tree.leaves(variables["params"]) if p.ndim > 1)
    times, sizes = interleaved_compiles(model, variables, variants, x, y, has_bn, rounds)
    print(f"\n{name}: {kernels} kernels (ndim > 1), {rounds} interleaved rounds")
    base = statistics.median(times["plain"]) if "plain" in times else None
    for v in variants:
      med = statistics.median(times[v])
      ratio = f"{med / base:5.2f}x" if base else "   -  "
      (hlo, kernels, distinct), plain = sizes[v], sizes.get("plain", sizes[v])
      print(
        f"  {v:14s} {med:7.2f} s  {ratio}  HLO {hlo:6d} (+{hlo - plain[0]})  kernels "
        f"{kernels} (+{kernels - plain[1]}), distinct {distinct} (+{distinct - plain[2]})"
      )


def runtime(models, rounds):
  """Milliseconds of one selection of every mask and of one plain adam step, per model."""
  for name in models:
    model, x, y, has_bn = model_and_batch(name)
    variables = model.init(jax.random.key(0), x)
    params = variables["params"]
    extra = {k: v for k, v in variables.items() if k != "params"}
    plan = Plan.make(params, "uniform", None)
    magnitude = get_criterion("magnitude")

    def select(p, s, plan=plan):
      return plan.select(jax.tree.leaves(p), jax.tree.map(jnp.abs, p), s, s, magnitude)

    tx = optax.adam(1e-3)
    calls = {
      "select": (jax.jit(select), (params, jnp.float32(0.9))),
      "adam step": (jax.jit(step_fn(model, tx, has_bn)), (params, extra, tx.init(params), x, y)),
    }
    times = {k: [] for k in calls}
    for fn, args in calls.values():
      jax.block_until_ready(fn(*args))
    for _ in range(rounds):
      for k, (fn, args) in calls.items():
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times[k].append(time.perf_counter() - start)
    ms = {k: 1e3 * statistics.median(v) for k, v in times.items()}
    size = sum(p.size for p in jax.tree.leaves(params))
    print(
      f"{name}: {size / 1e6:.1f}M params, selection {ms['select']:.1f} ms, adam step "
      f"{ms['adam step']:.1f} ms ({ms['select'] / ms['adam step']:.2f}x), {rounds} rounds"
    )


def sweep(leaves, rounds, plot):
  rows = []
  for n in leaves:
    model = Stack(n)
    x = jnp.ones((8, 64))
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    y = jnp.zeros(8, jnp.int32)
    got, sizes = interleaved_compiles(model, variables, ("plain", "magnitude"), x, y, False, rounds)
    plain, masked = (statistics.median(got[v]) for v in ("plain", "magnitude"))
    (hlo_p, _, distinct_p), (hlo_m, _, distinct_m) = sizes["plain"], sizes["magnitude"]
    rows.append((n, plain, masked))
    print(
      f"  {n:4d} leaves: plain {plain:6.2f} s, masked {masked:6.2f} s ({masked / plain:4.2f}x), "
      f"HLO {hlo_p} -> {hlo_m} (+{(hlo_m - hlo_p) / n:.0f} per leaf), distinct kernels "
      f"{distinct_p} -> {distinct_m} (+{(distinct_m - distinct_p) / n:.1f} per leaf)"
    )
  if plot:
    import matplotlib  # lazy: only the plot needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot([r[0] for r in rows], [r[1] for r in rows], "o-", label="adam")
    ax.plot([r[0] for r in rows], [r[2] for r in rows], "s-", label="masked(adam), magnitude")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("pruned leaves")
    ax.set_ylabel("lower + compile (s)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(plot, dpi=120)
    print(f"wrote {plot}")


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--models", default="resnet50,vit,lm")
  parser.add_argument("--variants", default=",".join(VARIANTS))
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--sweep", action="store_true")
  parser.add_argument("--leaves", default="1,4,16,64,256")
  parser.add_argument("--plot", default="")
  parser.add_argument("--runtime", action="store_true")
  args = parser.parse_args()
  print(f"jax {jax.__version__}, backend {jax.default_backend()}")
  if args.runtime:
    runtime(args.models.split(","), args.rounds)
  elif args.sweep:
    sweep([int(n) for n in args.leaves.split(",")], args.rounds, args.plot)
  else:
    bench(args.models.split(","), args.variants.split(","), args.rounds)


if __name__ == "__main__":
  main()
