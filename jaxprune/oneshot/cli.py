"""``jaxprune-oneshot``: prune a language model in one shot and compare its perplexity.

Loads a checkpoint (a Hugging Face folder or a ``jaxprune-train`` workdir, see
`jaxprune.oneshot.lm_io`), calibrates on random windows of the training text, prunes block
by block (`prune_sequential`) and reports bits per byte and perplexity of the dense and the
pruned model on the held-out text (every byte of the validation split, or of the test split
with ``--split test``). Writes ``<out>/hf`` (Hugging Face folder), ``<out>/orbax`` (params
and masks) and ``<out>/summary.json`` (settings, metrics, per-layer table, timings)::

  jaxprune-oneshot runs/shakespeare_lm --data shakespeare --method sparsegpt \\
      --structure 2:4 --samples 128 --seq-len 128 --out runs/shakespeare_lm_sparsegpt_2of4

Every setting is checked, and the model, data and calibration windows are read, before
any evaluation or pruning starts.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
from tqdm.auto import tqdm

from jaxprune import structures
from jaxprune.data.text import load_text
from jaxprune.data.text_batches import text_eval_batches
from jaxprune.oneshot import lm_io
from jaxprune.oneshot.blockwise import Blockwise, blockwise_from_decoder_lm
from jaxprune.oneshot.capture import find_linears
from jaxprune.oneshot.linear import METHODS, LayerSpec
from jaxprune.oneshot.report import OneShotResult
from jaxprune.oneshot.sequential import prune_sequential
from jaxprune.oneshot.settings import DEFAULT_SAMPLES, Settings
from jaxprune.oneshot.targets import resolve_targets

PROG = "jaxprune-oneshot"
MAX_DEFAULT_SEQ_LEN = 2048
_OUTPUTS = ("summary.json", "hf", "orbax")


def build_parser() -> argparse.ArgumentParser:
  """The command line of ``jaxprune-oneshot``."""
  p = argparse.ArgumentParser(
    prog=PROG,
    description=(
      "Calibrated one-shot pruning of a language model (SparseGPT, Wanda, magnitude), with "
      "perplexity dense vs pruned on held-out text."
    ),
  )
  p.add_argument(
    "checkpoint", help="a Hugging Face checkpoint folder or the workdir of a jaxprune-train run"
  )
  p.add_argument("--out", required=True, help="folder for hf/, orbax/ and summary.json")
  p.add_argument("--overwrite", action="store_true", help="replace the outputs in --out")
  p.add_argument("--step", type=int, help="workdir checkpoint step (default: the latest)")
  g = p.add_argument_group("data (byte tokens)")
  g.add_argument(
    "--data",
    help="'shakespeare' or 'text:PATH' (a file or folder); default: the run's data for a "
    "workdir, 'shakespeare' for a Hugging Face folder",
  )
  g.add_argument("--data-dir", help="where 'shakespeare' is prepared (default data directory)")
  g.add_argument(
    "--split", default="validation", choices=("validation", "test"), help="held-out split"
  )
  g = p.add_argument_group("pruning")
  g.add_argument("--method", default="sparsegpt", choices=METHODS)
  g.add_argument(
    "--sparsity", type=float, help="fraction removed per layer (default 0.5; N:M implies it)"
  )
  g.add_argument(
    "--structure",
    help="'layer' (unstructured), 'output' (per output unit), or N:M such as '2:4', '4:8' "
    "(default: per output for wanda, per layer otherwise)",
  )
  g = p.add_argument_group("calibration (random windows of the training split)")
  g.add_argument("--samples", type=int, default=DEFAULT_SAMPLES, help="calibration windows")
  g.add_argument(
    "--seq-len", type=int, help=f"window length (default: max_len, at most {MAX_DEFAULT_SEQ_LEN})"
  )
  g.add_argument("--seed", type=int, default=0, help="seed of the windows' starts")
  g.add_argument("--batch-size", type=int, default=8, help="calibration windows per pass")
  g.add_argument("--damp", type=float, default=0.01, help="SparseGPT damping (of mean diag)")
  g.add_argument("--block-size", type=int, default=128, help="SparseGPT lazy-update block")
  g.add_argument(
    "--true-sequential",
    action="store_true",
    help="prune q/k/v, o, gate/up, down in turn, each calibrated on the stages already pruned",
  )
  g = p.add_argument_group("evaluation")
  g.add_argument("--eval-seq-len", type=int, help="evaluation window (default: --seq-len)")
  g.add_argument("--eval-batch-size", type=int, default=8, help="evaluation windows per batch")
  g.add_argument(
    "--max-eval-windows", type=int, help="evaluate only the first N windows (default: all)"
  )
  p.add_argument("--quiet", action="store_true", help="no progress bars")
  return p


@dataclasses.dataclass
class Plan:
  """Everything a run needs, checked and loaded before any computation."""

  args: argparse.Namespace
  spec: LayerSpec
  settings: Settings
  loaded: lm_io.LoadedLM
  blockwise: Blockwise
  data: str
  calibration: np.ndarray
  eval_split: Any
  seq_len: int
  eval_seq_len: int
  load_seconds: float


def _positive(name: str, value: int | None) -> None:
  if value is not None and value < 1:
    raise ValueError(f"--{name} must be a positive int; got {value}. E.g. --{name} 64.")


def _check_out(out: Path, overwrite: bool) -> None:
  if out.exists() and not out.is_dir():
    raise ValueError(f"--out {os.fspath(out)!r} is a file; pass a folder.")
  there = [name for name in _OUTPUTS if (out / name).exists()]
  if there and not overwrite:
    raise ValueError(
      f"--out {os.fspath(out)!r} already holds {there} from an earlier run; pass another "
      "folder or add --overwrite."
    )


def _data_name(args: argparse.Namespace, loaded: lm_io.LoadedLM) -> tuple[str, dict[str, Any]]:
  """The text dataset and its `load_text` keywords."""
  kwargs: dict[str, Any] = {}
  if args.data_dir is not None:
    kwargs["data_dir"] = args.data_dir
  if args.data is not None:
    return args.data, kwargs
  if loaded.data is None:
    return "shakespeare", kwargs
  name = loaded.data["name"]
  if name.partition(":")[0] == "text":  # the run's own held-out shares
    for key in ("validation_fraction", "test_fraction"):
      if loaded.data.get(key):
        kwargs[key] = loaded.data[key]
  return name, kwargs


def _check_structure(spec: LayerSpec, bw: Blockwise, params: Any, seq_len: int) -> None:
  """Raises before any computation if an N:M group does not tile a kernel's inputs (every
  block has the shapes of block 0)."""
  tokens = jax.ShapeDtypeStruct((1, seq_len), np.int32)
  hidden = jax.eval_shape(bw.embed, params, tokens)
  specs = resolve_targets(params, bw.block_paths, spec)
  for lin in find_linears(bw.block, bw.block_params(params, 0), hidden).linears:
    for prefix in bw.block_paths:
      full = f"{prefix}/{lin.path}"
      if full in specs:
        specs[full].check(lin.view.in_features, full)


def plan(args: argparse.Namespace) -> Plan:
  """Checks the settings, reads the checkpoint and the data, and draws the calibration
  windows; raises ValueError/TypeError naming the bad setting (nothing is computed yet)."""

  structure = args.structure
  if structure is not None:
    structure = {"unstructured": "layer", "per-output": "output"}.get(structure, structure)
  spec = LayerSpec(args.method, args.sparsity, structure).resolved()
  for name in ("samples", "batch_size", "block_size", "eval_batch_size", "max_eval_windows"):
    _positive(name.replace("_", "-"), getattr(args, name))
  _positive("seq-len", args.seq_len)
  _positive("eval-seq-len", args.eval_seq_len)
  if args.samples % args.batch_size:
    raise ValueError(
      f"--samples {args.samples} do not split into calibration batches of --batch-size "
      f"{args.batch_size}; pass a batch size that divides it, e.g. --batch-size "
      f"{math.gcd(args.samples, args.batch_size)}."
    )
  if not (math.isfinite(args.damp) and args.damp >= 0):
    raise ValueError(f"--damp must be finite and >= 0; got {args.damp}. E.g. --damp 0.01.")
  out = Path(args.out)
  _check_out(out, args.overwrite)
  start = time.perf_counter()
  loaded = lm_io.load_lm(args.checkpoint, step=args.step)
  max_len = int(loaded.model.max_len)
  seq_len = args.seq_len or min(max_len, MAX_DEFAULT_SEQ_LEN)
  eval_seq_len = args.eval_seq_len or seq_len
  for flag, value in (("--seq-len", seq_len), ("--eval-seq-len", eval_seq_len)):
    if value > max_len:
      raise ValueError(
        f"{flag} {value} is longer than the model's context (max_len={max_len}); pass "
        f"{flag} {max_len} or less."
      )
  settings = Settings(
    num_samples=args.samples,
    seq_len=seq_len,
    seed=args.seed,
    batch_size=args.batch_size,
    damp=args.damp,
    block_size=args.block_size,
    sequential=args.true_sequential,
  )
  data, kwargs = _data_name(args, loaded)
  train = load_text(data, "train", **kwargs)
  held_out = load_text(data, args.split, **kwargs)
  calibration = settings.windows(train.tokens.astype(np.int32), max_len)
  next(iter(text_eval_batches(held_out, args.eval_batch_size, eval_seq_len)))  # checks sizes
  params = jax.device_put(loaded.params)
  loaded = dataclasses.replace(loaded, params=params)
  bw = blockwise_from_decoder_lm(loaded.model)
  _check_structure(spec, bw, params, seq_len)
  return Plan(
    args,
    spec,
    settings,
    loaded,
    bw,
    data,
    calibration,
    held_out,
    seq_len,
    eval_seq_len,
    time.perf_counter() - start,
  )


def _bar(quiet: bool, desc: str):
  return lambda it, total: tqdm(
    it, total=total, desc=desc, unit="batch", disable=quiet, file=sys.stderr, leave=False
  )


def _evaluate(plan: Plan, params: Any, desc: str) -> dict[str, float]:
  a = plan.args
  return lm_io.evaluate_lm(
    plan.loaded.model,
    params,
    plan.eval_split,
    seq_len=plan.eval_seq_len,
    batch_size=a.eval_batch_size,
    max_windows=a.max_eval_windows,
    progress=_bar(a.quiet, desc),
  )


def _prune(plan: Plan) -> OneShotResult:
  bar = tqdm(
    total=len(plan.blockwise.block_paths),
    desc=f"pruning ({plan.spec.describe()})",
    unit="block",
    disable=plan.args.quiet,
    file=sys.stderr,
  )

  def advance(stage, layers):
    errors = [r.error for r in layers if math.isfinite(r.error)]
    bar.set_postfix(block=stage.name, max_rel_error=f"{max(errors, default=0.0):.3g}")
    bar.update(1)

  try:
    return prune_sequential(
      plan.blockwise,
      plan.loaded.params,
      plan.calibration,
      method=plan.spec.method,
      sparsity=plan.spec.sparsity,
      structure=plan.spec.structure,
      settings=dataclasses.replace(plan.settings, num_samples=None, seq_len=None, seed=None),
      callback=advance,
    )
  finally:
    bar.close()


def _structure_name(spec: LayerSpec) -> str:
  st = spec.structure
  if isinstance(st, structures.NOfM):
    return f"{st.n}:{st.m}"
  return "layer" if st.within is None else "output"


def _finite(x: float) -> float | None:
  return x if math.isfinite(x) else None


def _summary(plan: Plan, result: OneShotResult, dense, pruned, timings, outputs, argv) -> dict:
  a, loaded = plan.args, plan.loaded
  sizes = [math.prod(r.shape) for r in result.layers]
  removed = sum(r.sparsity * n for r, n in zip(result.layers, sizes, strict=True))
  return {
    "command": " ".join([PROG, *map(shlex.quote, argv)]),
    "checkpoint": {
      "path": loaded.source,
      "kind": loaded.kind,
      "step": loaded.step,
      "config": dataclasses.asdict(loaded.model.config),
    },
    "data": {
      "name": plan.data,
      "calibration_split": "train",
      "eval_split": a.split,
      "eval_tokens": dense["tokens"],
    },
    "settings": {
      "method": plan.spec.method,
      "sparsity": plan.spec.sparsity,
      "structure": _structure_name(plan.spec),
      "samples": plan.calibration.shape[0],
      "seq_len": plan.seq_len,
      "seed": a.seed,
      "batch_size": a.batch_size,
      "damp": a.damp,
      "block_size": a.block_size,
      "true_sequential": a.true_sequential,
      "eval_seq_len": plan.eval_seq_len,
      "eval_batch_size": a.eval_batch_size,
      "max_eval_windows": a.max_eval_windows,
    },
    "dense": dense,
    "pruned": pruned,
    "sparsity_of_pruned_kernels": removed / sum(sizes) if sizes else 0.0,
    "layers": [
      {
        "path": r.path,
        "stage": r.stage,
        "method": r.spec.describe(),
        "shape": list(r.shape),
        "sparsity": r.sparsity,
        "rel_error": _finite(r.error),
        "seconds": r.seconds,
      }
      for r in result.layers
    ],
    "stages": [dataclasses.asdict(s) for s in result.stages],
    "timings": timings,
    "outputs": outputs,
  }


def _report(summary: dict, table: str) -> str:
  d, p = summary["dense"], summary["pruned"]
  s = summary["settings"]
  lines = [
    table,
    "",
    f"{s['method']} {s['structure']} at sparsity {s['sparsity']:g}; "
    f"{summary['data']['name']} {summary['data']['eval_split']}, {d['tokens']} bytes scored:",
    f"  dense : {d['bits_per_byte']:.4f} bits/byte, perplexity {d['perplexity']:.4f}",
    f"  pruned: {p['bits_per_byte']:.4f} bits/byte, perplexity {p['perplexity']:.4f}",
    f"pruned in {summary['timings']['prune']:.1f} s; outputs in {summary['outputs']['summary']}",
  ]
  return "\n".join(lines)


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
  """Runs the command with ``argv`` (default ``sys.argv[1:]``) and returns its summary.

  Bad settings exit with status 2 and a message before anything is computed.
  """
  argv = list(sys.argv[1:] if argv is None else argv)
  parser = build_parser()
  args = parser.parse_args(argv)
  start = time.perf_counter()
  try:
    p = plan(args)
  except (ValueError, TypeError, FileNotFoundError) as error:  # the settings, before compute
    parser.error(str(error))
  t = time.perf_counter()
  dense = _evaluate(p, p.loaded.params, "dense eval")
  dense_seconds = time.perf_counter() - t
  result = _prune(p)
  t = time.perf_counter()
  pruned = _evaluate(p, result.params, "pruned eval")
  pruned_seconds = time.perf_counter() - t
  t = time.perf_counter()
  out = Path(args.out)
  outputs = lm_io.save_pruned(out, p.loaded.model, result.params, result.masks)
  outputs["summary"] = os.fspath((out / "summary.json").absolute())
  timings = {
    "load": p.load_seconds,
    "dense_eval": dense_seconds,
    "prune": result.seconds,
    "pruned_eval": pruned_seconds,
    "save": time.perf_counter() - t,
  }
  timings["total"] = time.perf_counter() - start
  summary = _summary(p, result, dense, pruned, timings, outputs, argv)
  (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
  print(_report(summary, result.table()), flush=True)
  return summary


def main() -> None:
  """Entry point of ``jaxprune-oneshot`` and ``python -m jaxprune.oneshot``."""
  run()
