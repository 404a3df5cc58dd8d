"""Structured pruning of a trained decoder LM: remove 25% of the heads and MLP units, shrink.

Loads a trained `jaxprune.train.models.lm.DecoderLM` (a Hugging Face folder read by
`load_hf`, or a ``jaxprune-train`` workdir: its ``config.json`` and newest orbax
checkpoint), traces its channel groups with `jaxprune.groups.trace` (one group per
block of attention heads, key/value heads under grouped-query attention, and one per
block of MLP units), scores every channel on calibration windows of the training split,
removes ``--fraction`` of the heads and of the MLP units, deletes them with
`jaxprune.surgery.shrink` and checks that the smaller model's logits equal the masked
model's. Reports validation and test perplexity and bits per byte of the dense model,
the smaller one right after removal, and the smaller one after a short Adam fine-tune on
the training split (learning rate picked on validation among ``--ft-lrs``), with the
parameter and MAC ratios and the measured forward speedup (jitted forward passes of the
dense and the smaller model on one fixed batch, timed interleaved; median of per-round
ratios).

**Score** (``--score output``, the default): a channel's contribution to the residual
stream over the calibration tokens, relative to that stream. A head (or key/value head
with its query heads) writes ``A_h W_o[h]`` into the stream (``A_h``: its attention
output, ``W_o[h]``: its rows of ``o_proj``), an MLP unit ``m_j W_down[j]``; removing the
channel changes the block's output by exactly that, so its squared norm
``tr(W_hᵀ (A_hᵀA_h) W_h)`` is the reconstruction error of removing it alone (the
objective SparseGPT and Wanda minimise per weight, here per channel), read from the
Gram matrix of ``o_proj``'s or ``down_proj``'s input. It is divided by the Frobenius
norm of the residual stream the branch is added to (the input of ``mlp_norm`` for heads,
the block's output for MLP units): every later layer reads the stream through an
RMSNorm, so what it sees of a removed channel is its contribution relative to the
stream, which grows with depth. That makes channels of different blocks comparable, and
the channels are removed **globally per kind**: the ``round(fraction * n)`` lowest of
all heads (and, separately, of all MLP units) of the model, keeping at least one per
block. (Per block, 25% of 6 heads is not a whole number.) ``--score wanda`` sums
``|W|·‖X_j‖`` over every weight of the channel (its q/k/v or gate/up columns and its
o/down rows), and ``--score weight`` is the channels' weight L2 norm (data-free); both
select globally the same way, on raw scores. ``--compare`` reports the perplexity right
after removal for those too. Calibration runs the dense model once (activations are not
recomputed through the pruned blocks).

Each calibration seed draws its own ``--calib-samples`` windows of the training split
and its own fine-tuning batches; ``--dense-ft`` also fine-tunes the dense model the same
way (seed 0), since a short extra training lowers the loss of a model still learning.

  python benchmarks/structural_lm.py --model /tmp/shakespeare_lm [--seeds 0,1,2]
      [--fraction 0.25] [--ft-steps 200] [--ft-lrs 1e-3,3e-4] [--compare wanda,weight]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from _timing import interleaved, median_ratio
from results_files import RESULTS_DIR, mean_sd, write_per_seed

import jaxprune
from jaxprune.data.text import TextDataset, load_text
from jaxprune.data.text_batches import TextBatches, text_eval_batches
from jaxprune.masks import num_to_keep
from jaxprune.oneshot import calibration_windows
from jaxprune.surgery import apply_resized, shrink
from jaxprune.train import lm_metrics
from jaxprune.train.models import count_params, get_model

PyTree = Any
SCORES = ("output", "wanda", "weight")
# The layer that consumes a channel kind, and the residual stream its output is added to.
_CONSUMERS = {"o_proj": ("heads", "mlp_norm"), "down_proj": ("mlp", "block_out")}


@dataclasses.dataclass(frozen=True)
class Settings:
  """The settings of one run (see the module doc and ``--help``)."""

  fraction: float = 0.25
  score: str = "output"
  seq_len: int = 128
  calib_samples: int = 128
  calib_batch: int = 16
  ft_steps: int = 200
  ft_batch: int = 16
  ft_lrs: tuple[float, ...] = (1e-3, 3e-4)
  eval_batch: int = 64
  eval_windows: int | None = None
  speed_batch: int = 16
  speed_repeats: int = 20
  compare: tuple[str, ...] = ()

  def __post_init__(self):
    if not 0.0 < self.fraction < 1.0:
      raise ValueError(f"fraction={self.fraction!r}; expected 0 < fraction < 1, e.g. 0.25.")
    for score in (self.score, *self.compare):
      if score not in SCORES:
        raise ValueError(f"Unknown score {score!r}; expected one of {SCORES}, e.g. 'output'.")
    if not self.ft_lrs:
      raise ValueError("ft_lrs is empty; pass the learning rates to choose among, e.g. (1e-3,).")
    if self.calib_samples % self.calib_batch:
      raise ValueError(
        f"calib_samples={self.calib_samples} is not a multiple of calib_batch="
        f"{self.calib_batch}; e.g. calib_samples=128, calib_batch=16."
      )


# ----------------------------------------------------------------------------- loading


def load_model(source: str | os.PathLike) -> tuple[nn.Module, PyTree, dict[str, Any]]:
  """``(model, params, info)`` from a Hugging Face folder or a ``jaxprune-train`` workdir.

  ``info`` has ``"source"``, ``"kind"`` (``"hf"`` or ``"workdir"``), and for a workdir the
  restored ``"step"``, the data name ``"data"`` and the training ``"seq_len"``.

  Raises:
    ValueError: if ``source`` is neither.
  """
  folder = Path(source)
  config_file = folder / "config.json"
  if not config_file.exists():
    raise ValueError(
      f"{folder} has no config.json; expected a Hugging Face checkpoint folder (config.json "
      "and model.safetensors) or a jaxprune-train workdir (config.json and checkpoints/), "
      "e.g. --model /tmp/shakespeare_lm."
    )
  config = json.loads(config_file.read_text())
  if "model" in config and (folder / "checkpoints").is_dir():
    return _load_workdir(folder, config)
  from jaxprune.train.models.hf import load_hf

  model, params = load_hf(folder)
  return model, jax.tree.map(jnp.asarray, params), {"source": str(folder), "kind": "hf"}


def _load_workdir(folder: Path, config: Mapping[str, Any]) -> tuple[nn.Module, PyTree, dict]:
  import orbax.checkpoint as ocp

  steps = sorted(
    int(p.name) for p in (folder / "checkpoints").iterdir() if p.name.isdigit() and p.is_dir()
  )
  if not steps:
    raise ValueError(f"{folder}/checkpoints holds no committed step; train the model first.")
  state = ocp.StandardCheckpointer().restore(folder / "checkpoints" / str(steps[-1]) / "state")
  params = jax.tree.map(jnp.asarray, state["params"])
  vocab = int(params["embed_tokens"]["embedding"].shape[0])
  model = get_model(config["model"]["name"], num_classes=vocab, **config["model"]["kwargs"])
  info = {
    "source": str(folder),
    "kind": "workdir",
    "step": steps[-1],
    "data": config["data"]["name"],
    "seq_len": int(config["data"]["seq_len"]),
    "finished": any(folder.glob("summary*.json")),
  }
  return model, params, info


# ----------------------------------------------------------------------------- calibration


def _stats_of_batch(model: nn.Module, params: PyTree, tokens: jax.Array) -> dict[str, jax.Array]:
  """Per block: the Gram matrix of the consumers' inputs, every projection's input column
  norms², and the squared norms of the residual streams (``mlp_norm``'s input, the output)."""
  out: dict[str, jax.Array] = {}

  def interceptor(next_fun, args, kwargs, context):
    result = next_fun(*args, **kwargs)
    path = tuple(context.module.path)
    if context.method_name != "__call__" or not path:
      return result
    if len(path) == 1 and path[0].startswith("block_"):
      out[f"{path[0]}/block_out"] = jnp.sum(jnp.square(result.astype(jnp.float32)))
    elif len(path) == 2 and path[0].startswith("block_"):
      x = args[0].astype(jnp.float32).reshape(-1, args[0].shape[-1])
      if path[1] == "mlp_norm":
        out[f"{path[0]}/mlp_norm"] = jnp.sum(jnp.square(x))
      elif isinstance(context.module, nn.Dense):
        out[f"{path[0]}/{path[1]}/sq"] = jnp.sum(jnp.square(x), axis=0)
        if path[1] in _CONSUMERS:
          out[f"{path[0]}/{path[1]}/gram"] = x.T @ x
    return result

  with nn.intercept_methods(interceptor):
    model.apply({"params": params}, tokens, train=False)
  return out


def calibration_stats(
  model: nn.Module, params: PyTree, windows: np.ndarray, batch: int
) -> dict[str, np.ndarray]:
  """`_stats_of_batch` summed over ``windows [N, T]`` in batches, as float64 NumPy arrays."""
  stats_fn = jax.jit(lambda p, t: _stats_of_batch(model, p, t))
  total: dict[str, np.ndarray] = {}
  for i in range(0, len(windows), batch):
    got = jax.device_get(stats_fn(params, jnp.asarray(windows[i : i + batch])))
    for k, v in got.items():
      total[k] = total.get(k, 0.0) + np.asarray(v, np.float64)
  return total


def _kind(group: Any) -> tuple[str, str, str]:
  """``(kind, block, consumer)`` of a traced group: ``"heads"`` or ``"mlp"``."""
  for path, axis in group.members:
    parts = path.removeprefix("params/").split("/")
    if len(parts) == 3 and parts[1] in _CONSUMERS and parts[2] == "kernel" and axis == 0:
      return _CONSUMERS[parts[1]][0], parts[0], parts[1]
  raise ValueError(
    f"{group!r} is read by neither o_proj nor down_proj; expected the heads and MLP units "
    "of a DecoderLM (jaxprune.train.models.lm)."
  )


def _leaf(params: PyTree, path: str) -> np.ndarray:
  node = params
  for key in path.removeprefix("params/").split("/"):
    node = node[key]
  return np.asarray(node, np.float64)


def channel_scores(
  groups: Any, params: PyTree, stats: Mapping[str, np.ndarray] | None, score: str
) -> list[np.ndarray]:
  """One score per channel of every group (higher = keep); see the module doc.

  Args:
    groups: `jaxprune.groups.trace` of the model, traced on its params.
    params: the dense params.
    stats: `calibration_stats` (unused for ``"weight"``).
    score: ``"output"``, ``"wanda"`` or ``"weight"``.

  Returns:
    Per group, float64 ``[size]``.
  """
  out = []
  for g in groups:
    _, block, consumer = _kind(g)
    if score == "output":
      idx = dict(zip(g.members, g.index, strict=True))[(f"{block}/{consumer}/kernel", 0)]
      w = _leaf(params, f"{block}/{consumer}/kernel")
      gram = stats[f"{block}/{consumer}/gram"]
      sq = np.array([np.sum((gram[np.ix_(r, r)] @ w[r]) * w[r]) for r in idx])
      stream = stats[f"{block}/{_CONSUMERS[consumer][1]}"]
      out.append(np.sqrt(np.maximum(sq, 0.0) / stream))
      continue
    total = np.zeros(g.size)
    for (path, axis), idx in zip(g.members, g.index, strict=True):
      w = np.abs(_leaf(params, path))
      if score == "wanda":
        if not path.endswith("/kernel"):
          continue  # biases and norm scales have no input
        norms = np.sqrt(stats[path.removesuffix("/kernel") + "/sq"])
        w = w * norms[:, None]
      else:
        w = np.square(w)
      picked = np.moveaxis(np.take(w, idx.reshape(-1), axis=axis), axis, 0)
      total += picked.reshape(g.size, -1).sum(axis=1)
    out.append(total if score == "wanda" else np.sqrt(total))
  return out


def select_removed(
  groups: Any, scores: Sequence[np.ndarray], fraction: float
) -> tuple[list[np.ndarray], dict[str, dict[str, int]]]:
  """Removes the ``round(fraction * n)`` lowest-scored channels of each kind, model-wide.

  Ties go to the earlier block and channel; a block keeps at least one channel per kind.

  Returns:
    ``(removed per group as bool [size], {kind: {"total": n, "removed": k}})``.

  Example:
    >>> import types
    >>> g = lambda block: types.SimpleNamespace(
    ...   size=2, members=((f"{block}/o_proj/kernel", 0),))
    >>> removed, counts = select_removed([g("block_0"), g("block_1")],
    ...                                  [np.array([1.0, 2.0]), np.array([0.5, 3.0])], 0.5)
    >>> [r.tolist() for r in removed], counts
    ([[True, False], [True, False]], {'heads': {'total': 4, 'removed': 2}})
  """
  groups = list(groups)
  removed = [np.zeros(g.size, bool) for g in groups]
  counts: dict[str, dict[str, int]] = {}
  kinds = [_kind(g)[0] for g in groups]
  for kind in dict.fromkeys(kinds):
    members = [i for i, k in enumerate(kinds) if k == kind]
    flat = [(float(scores[i][c]), i, c) for i in members for c in range(groups[i].size)]
    total = len(flat)
    goal = total - int(num_to_keep(total, fraction))
    left = {i: groups[i].size for i in members}
    done = 0
    for _, i, c in sorted(flat):
      if done == goal:
        break
      if left[i] > 1:
        removed[i][c] = True
        left[i] -= 1
        done += 1
    if done != goal:
      raise ValueError(f"Cannot remove {goal} of {total} {kind} and keep one per block.")
    counts[kind] = {"total": total, "removed": goal}
  return removed, counts


def masks_of(params: PyTree, groups: Any, removed: Sequence[np.ndarray]) -> PyTree:
  """Bool masks over ``params``: False on every member entry of a removed channel."""
  flat = {
    "/".join(str(getattr(k, "key", k)) for k in path): np.ones(np.shape(x), bool)
    for path, x in jax.tree_util.tree_flatten_with_path(params)[0]
  }
  for g, gone in zip(groups, removed, strict=True):
    for (path, axis), idx in zip(g.members, g.index, strict=True):
      m = flat[path.removeprefix("params/")]
      where = [slice(None)] * m.ndim
      where[axis] = idx[gone].reshape(-1)
      m[tuple(where)] = False
  leaves = [flat[p] for p in _paths(params)]
  return jax.tree.unflatten(jax.tree.structure(params), [jnp.asarray(m) for m in leaves])


def _paths(params: PyTree) -> list[str]:
  return [
    "/".join(str(getattr(k, "key", k)) for k in path)
    for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]
  ]


# ----------------------------------------------------------------------------- evaluation


def make_evaluate(model: nn.Module, settings: Settings) -> Callable[[PyTree, TextDataset], dict]:
  """``evaluate(params, split)`` -> `lm_metrics.byte_metrics` of the split (``nats_per_byte``,
  ``bits_per_byte``, ``perplexity``, ``tokens``)."""

  @jax.jit
  def sums(params, batch):
    logits = apply_resized(model, {"params": params}, batch["inputs"], train=False)
    return lm_metrics.cross_entropy_sum(logits, batch["targets"], batch["mask"])

  def evaluate(params: PyTree, split: TextDataset) -> dict[str, float]:
    total, count = 0.0, 0.0
    for batch in text_eval_batches(
      split, settings.eval_batch, settings.seq_len, max_windows=settings.eval_windows
    ):
      s, n = jax.device_get(sums(params, batch))
      total, count = total + float(s), count + float(n)
    return lm_metrics.byte_metrics(total, count)

  return evaluate


def make_finetune(model: nn.Module) -> Callable[..., tuple[PyTree, float]]:
  """``finetune(params, train, steps, lr, batch, seq_len, seed) -> (params, s per step)``.

  Adam at a constant learning rate on the mean next-token loss of random training windows
  (`jaxprune.data.TextBatches`); one compilation per parameter shapes serves every rate.
  """
  adam = optax.scale_by_adam()

  def loss_fn(params, inputs, targets):
    logits = apply_resized(model, {"params": params}, inputs, train=False)
    return lm_metrics.next_token_nats(logits, targets)

  @jax.jit
  def step(params, opt_state, inputs, targets, lr):
    loss, grads = jax.value_and_grad(loss_fn)(params, inputs, targets)
    updates, opt_state = adam.update(grads, opt_state, params)
    return jax.tree.map(lambda p, u: p - lr * u, params, updates), opt_state, loss

  def finetune(params, train, steps, lr, batch, seq_len, seed):
    batches = TextBatches(train, batch, seq_len, seed=seed)
    opt_state = adam.init(params)
    start = None
    for i in range(steps):
      b = batches.batch_at(i)
      params, opt_state, loss = step(params, opt_state, b["inputs"], b["targets"], lr)
      if i == 0:
        jax.block_until_ready(loss)
        start = time.perf_counter()
    jax.block_until_ready(params)
    per_step = (time.perf_counter() - start) / max(steps - 1, 1) if steps else 0.0
    return params, per_step

  return finetune


def tune(finetune, evaluate, params, data, settings: Settings, seed: int) -> dict[str, Any]:
  """Fine-tunes at every ``settings.ft_lrs``; keeps the best on validation, tests it."""
  best, by_lr, step_s = None, {}, 0.0
  for lr in settings.ft_lrs:
    tuned, step_s = finetune(
      params, data["train"], settings.ft_steps, lr, settings.ft_batch, settings.seq_len, seed
    )
    val = evaluate(tuned, data["validation"])
    by_lr[f"{lr:g}"] = val["perplexity"]
    if best is None or val["nats_per_byte"] < best[0]["nats_per_byte"]:
      best = (val, lr, tuned)
  val, lr, tuned = best
  return {
    "lr": lr,
    "val_ppl_by_lr": by_lr,
    "val": val,
    "test": evaluate(tuned, data["test"]),
    "step_s": step_s,
  }


# ----------------------------------------------------------------------------- cost


def dot_macs(fn: Callable[..., Any], *args: Any) -> int:
  """Multiply-accumulates of every ``dot_general`` in the jaxpr of ``fn(*args)``.

  Example:
    >>> dot_macs(lambda a, b: a @ b, jnp.ones((2, 3)), jnp.ones((3, 4)))
    24
  """

  def count(jaxpr) -> int:
    total = 0
    for eqn in jaxpr.eqns:
      if eqn.primitive.name == "dot_general":
        (lhs_contract, _), _ = eqn.params["dimension_numbers"]
        lhs = eqn.invars[0].aval.shape
        total += math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs[d] for d in lhs_contract)
      for value in eqn.params.values():
        for sub in value if isinstance(value, tuple | list) else (value,):
          if isinstance(sub, jax.extend.core.ClosedJaxpr):
            total += count(sub.jaxpr)
          elif isinstance(sub, jax.extend.core.Jaxpr):
            total += count(sub)
    return total

  return count(jax.make_jaxpr(fn)(*args).jaxpr)


def forward_speedup(model, dense, small, settings: Settings, seed: int = 0) -> dict[str, float]:
  """Median per-round time ratio dense / smaller of the jitted forward on one fixed batch."""
  tokens = jax.random.randint(
    jax.random.key(seed), (settings.speed_batch, settings.seq_len), 0, model.num_classes
  )
  fwd = jax.jit(lambda p, t: apply_resized(model, {"params": p}, t, train=False))
  times = interleaved(
    {"dense": lambda: fwd(dense, tokens), "small": lambda: fwd(small, tokens)},
    settings.speed_repeats,
  )
  return {
    "speedup": median_ratio(times, "dense", "small"),
    "dense_ms": 1e3 * float(np.median(times["dense"])),
    "small_ms": 1e3 * float(np.median(times["small"])),
  }


# ----------------------------------------------------------------------------- one run


def remove(model, params, groups, stats, settings: Settings, score: str):
  """``(masked params, smaller params, counts)`` for ``score``."""
  scores = channel_scores(groups, params, stats, score)
  removed, counts = select_removed(groups, scores, settings.fraction)
  masks = masks_of(params, groups, removed)
  masked = jaxprune.apply_masks(params, masks)
  small, _ = shrink({"params": masked}, groups, masks)
  return masked, small["params"], counts


def run_seed(
  model: nn.Module,
  params: PyTree,
  data: Mapping[str, TextDataset],
  settings: Settings,
  seed: int,
  dense_eval: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
  """One calibration seed: score, remove, shrink, check, evaluate, fine-tune, time.

  Args:
    model: a `DecoderLM`.
    params: its trained params.
    data: ``{"train", "validation", "test"}`` `TextDataset` splits.
    settings: the run's `Settings`.
    seed: draws the calibration windows (and, plus 1000, the fine-tuning batches).
    dense_eval: the dense model's ``{"val", "test"}`` from an earlier seed (else computed).

  Returns:
    A JSON-ready record (see `main`'s table for the fields reported).
  """
  evaluate = make_evaluate(model, settings)
  record: dict[str, Any] = {"seed": seed, "score": settings.score, "fraction": settings.fraction}
  if dense_eval is None:
    dense_eval = {
      s: evaluate(params, data[n]) for s, n in (("val", "validation"), ("test", "test"))
    }
  record["dense"] = dict(dense_eval)

  start = time.perf_counter()
  windows = calibration_windows(
    data["train"].tokens, settings.calib_samples, settings.seq_len, seed=seed
  )
  probe = jnp.asarray(windows[: min(8, len(windows))])
  groups = jaxprune.groups.trace(
    lambda p, t: model.apply({"params": p}, t, train=False), params, probe
  )
  stats = None
  if {settings.score, *settings.compare} - {"weight"}:
    stats = calibration_stats(model, params, windows, settings.calib_batch)
  masked, small, counts = remove(model, params, groups, stats, settings, settings.score)
  record["calibration_s"] = time.perf_counter() - start
  record["removed_counts"] = counts

  got = apply_resized(model, {"params": small}, probe, train=False)
  want = model.apply({"params": masked}, probe, train=False)
  diff = float(jnp.max(jnp.abs(got - want)))
  record["max_abs_logit_diff"] = diff
  np.testing.assert_allclose(
    got, want, rtol=1e-4, atol=1e-4, err_msg="the smaller model's logits differ from the masked"
  )

  record["params_ratio"] = count_params(params) / count_params(small)
  one = jnp.zeros((1, settings.seq_len), jnp.int32)
  macs = lambda p: dot_macs(lambda q: apply_resized(model, {"params": q}, one, train=False), p)
  record["dense_macs_per_token"] = macs(params) / settings.seq_len
  record["macs_per_token"] = macs(small) / settings.seq_len
  record["mac_ratio"] = record["dense_macs_per_token"] / record["macs_per_token"]
  record["forward"] = forward_speedup(model, params, small, settings, seed)

  record["removed"] = {
    "val": evaluate(small, data["validation"]),
    "test": evaluate(small, data["test"]),
  }
  for other in settings.compare:
    _, other_small, _ = remove(model, params, groups, stats, settings, other)
    record[f"removed_{other}"] = {
      "val": evaluate(other_small, data["validation"]),
      "test": evaluate(other_small, data["test"]),
    }
  record["finetuned"] = tune(make_finetune(model), evaluate, small, data, settings, seed + 1000)
  return record


def dense_finetune(model, params, data, settings: Settings, seed: int = 0) -> dict[str, Any]:
  """The control: the dense model fine-tuned exactly as the smaller ones are."""
  evaluate = make_evaluate(model, settings)
  return {"seed": seed, **tune(make_finetune(model), evaluate, params, data, settings, seed + 1000)}


# ----------------------------------------------------------------------------- main


def _fmt(values: Sequence[float], digits: int = 3) -> str:
  m, sd = mean_sd(list(values))
  return f"{m:.{digits}f} ± {sd:.{digits}f}" if len(values) > 1 else f"{m:.{digits}f}"


def table(records: Sequence[Mapping[str, Any]], control: Mapping[str, Any] | None) -> str:
  """The markdown table of `main`: perplexity and bits per byte, mean ± sd over seeds."""
  rows = [("dense", lambda r: r["dense"])]
  rows.append((f"{records[0]['score']} score: removed", lambda r: r["removed"]))
  for key in records[0]:
    if (
      key.startswith("removed_")
      and isinstance(records[0][key], Mapping)
      and "val" in records[0][key]
    ):
      rows.append((f"{key.removeprefix('removed_')} score: removed", lambda r, k=key: r[k]))
  rows.append((f"{records[0]['score']} score: removed, fine-tuned", lambda r: r["finetuned"]))
  lines = [
    "| model | val ppl | val bits/byte | test ppl | test bits/byte |",
    "|---|---|---|---|---|",
  ]
  for name, get in rows:
    cells = [
      _fmt([get(r)[s][m] for r in records])
      for s in ("val", "test")
      for m in ("perplexity", "bits_per_byte")
    ]
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
  if control is not None:
    cells = [
      f"{control[s][m]:.3f}" for s in ("val", "test") for m in ("perplexity", "bits_per_byte")
    ]
    lines.append(
      f"| dense, fine-tuned alike (seed {control['seed']}, lr {control['lr']:g}) | "
      + " | ".join(cells)
      + " |"
    )
  lines.append("")
  lr = ", ".join(f"{r['finetuned']['lr']:g}" for r in records)
  lines.append(
    f"params ratio {records[0]['params_ratio']:.3f}x, MAC ratio {records[0]['mac_ratio']:.3f}x "
    f"(MACs/token {records[0]['dense_macs_per_token']:,.0f} -> "
    f"{records[0]['macs_per_token']:,.0f}), "
    f"forward speedup {_fmt([r['forward']['speedup'] for r in records])}x, "
    f"fine-tune lr per seed: {lr}, max |logit diff| smaller vs masked "
    f"{max(r['max_abs_logit_diff'] for r in records):.2e}"
  )
  return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--model", required=True, help="a Hugging Face folder or a jaxprune-train workdir")
  p.add_argument(
    "--data", default=None, help="text dataset (default: the workdir's, else shakespeare)"
  )
  p.add_argument("--seq-len", type=int, default=None, help="default: the workdir's, else 128")
  p.add_argument("--seeds", default="0,1,2", help="calibration seeds")
  p.add_argument("--fraction", type=float, default=0.25)
  p.add_argument("--score", default="output", choices=SCORES)
  p.add_argument("--compare", default="", help=f"more scores, removal only, of {SCORES}")
  p.add_argument("--calib-samples", type=int, default=128)
  p.add_argument("--calib-batch", type=int, default=16)
  p.add_argument("--ft-steps", type=int, default=200)
  p.add_argument("--ft-batch", type=int, default=16)
  p.add_argument("--ft-lrs", default="1e-3,3e-4")
  p.add_argument("--eval-batch", type=int, default=64)
  p.add_argument("--eval-windows", type=int, default=0, help="first windows per split; 0: all")
  p.add_argument("--speed-batch", type=int, default=16)
  p.add_argument("--speed-repeats", type=int, default=20)
  p.add_argument("--dense-ft", action="store_true", help="also fine-tune the dense model (seed 0)")
  p.add_argument("--out", type=Path, default=RESULTS_DIR / "structural_lm.json")
  return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
  args = parse_args(argv)
  model, params, info = load_model(args.model)
  data_name = args.data or info.get("data") or "shakespeare"
  seq_len = args.seq_len or info.get("seq_len") or min(128, model.max_len)
  settings = Settings(
    fraction=args.fraction,
    score=args.score,
    seq_len=seq_len,
    calib_samples=args.calib_samples,
    calib_batch=args.calib_batch,
    ft_steps=args.ft_steps,
    ft_batch=args.ft_batch,
    ft_lrs=tuple(float(v) for v in args.ft_lrs.split(",")),
    eval_batch=args.eval_batch,
    eval_windows=args.eval_windows or None,
    speed_batch=args.speed_batch,
    speed_repeats=args.speed_repeats,
    compare=tuple(s for s in args.compare.split(",") if s),
  )
  data = {s: load_text(data_name, s) for s in ("train", "validation", "test")}
  print(f"{info} data={data_name} {dataclasses.asdict(settings)} backend={jax.default_backend()}")
  command = "python benchmarks/structural_lm.py " + " ".join(sys.argv[1:] if argv is None else argv)
  title = f"Structured pruning of a decoder LM on {data_name}"
  records, dense_eval = [], None
  for seed in (int(s) for s in args.seeds.split(",")):
    t0 = time.perf_counter()
    r = run_seed(model, params, data, settings, seed, dense_eval)
    r["seconds"] = time.perf_counter() - t0
    r["model"] = info
    dense_eval = r["dense"]
    records.append(r)
    print(json.dumps(r), flush=True)
    write_per_seed(args.out, title, command, {"pruned": records})
  control = None
  if args.dense_ft:
    control = dense_finetune(model, params, data, settings)
    print(json.dumps(control), flush=True)
    rows = {"pruned": records, "dense_finetuned": [control]}
    write_per_seed(args.out, title, command, rows)
  print(table(records, control))


if __name__ == "__main__":
  main()
