"""One-shot pruning of a language model: perplexity of magnitude, Wanda and SparseGPT at 50%,
2:4 and 4:8 over calibration seeds, prune time, and SparseGPT's per-layer time against the
time of forming its Hessian.

For a checkpoint (a Hugging Face folder or a ``jaxprune-train`` workdir, as
``jaxprune-oneshot`` reads them), the dense model and every method x structure x seed are
evaluated on the whole validation and test splits (every byte scored once, or the first
``--max-eval-windows`` windows). "50%" is each method's reference comparison group: per
layer for magnitude and SparseGPT, per output for Wanda; N:M groups run along the inputs.
Calibration: ``--samples`` random windows of ``--seq-len`` bytes of the training split,
drawn with the seed (the only thing a seed changes; dense has one record).

Timing: every method x structure first runs once untimed on seed 0's windows (its cold
time, compilation included, is recorded as ``cold_prune_seconds``), so the seeds' prune
seconds are warm. SparseGPT's per-layer time (per
structure, minimum over seeds) is compared with the time
of forming that layer's Hessian XᵀX from its ``samples * seq_len`` inputs alone (one
float32 product at HIGHEST precision, 2·N·in² FLOPs: the floor of any method that needs
XᵀX), and with the Gram pass of its block as it runs (block forward plus every XᵀX).

  python benchmarks/oneshot_lm.py runs/shakespeare_lm --data shakespeare \\
      --record oneshot_shakespeare_lm --out /tmp/oneshot_lm.json

Writes ``--out`` (all settings, per-seed records, per-layer timings) and with ``--record
NAME`` the per-seed records to ``benchmarks/results/NAME.json`` (`results_files`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from results_files import RESULTS_DIR, mean_sd, write_per_seed

from jaxprune.data.text import load_text
from jaxprune.oneshot import LayerSpec, Settings, blockwise_from_decoder_lm, lm_io, prune_sequential

METHODS = ("magnitude", "wanda", "sparsegpt")
STRUCTURES = {"50%": (0.5, None), "2:4": (None, "2:4"), "4:8": (None, "4:8")}


def parse_args(argv):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("checkpoint", help="Hugging Face folder or jaxprune-train workdir")
  p.add_argument("--data", help="'shakespeare' or 'text:PATH' (default: as jaxprune-oneshot)")
  p.add_argument("--seeds", default="0,1,2", help="calibration seeds, comma-separated")
  p.add_argument("--methods", default=",".join(METHODS))
  p.add_argument("--structures", default=",".join(STRUCTURES))
  p.add_argument("--samples", type=int, default=128)
  p.add_argument("--seq-len", type=int, help="calibration and evaluation window (max_len)")
  p.add_argument("--batch-size", type=int, default=8, help="calibration windows per pass")
  p.add_argument("--eval-batch-size", type=int, default=16)
  p.add_argument("--max-eval-windows", type=int, help="evaluate the first N windows only")
  p.add_argument("--gram-repeats", type=int, default=5, help="timings of each XᵀX")
  p.add_argument("--out", help="JSON file with everything")
  p.add_argument("--record", help="per-seed records to benchmarks/results/NAME.json")
  args = p.parse_args(argv)
  args.seeds = [int(s) for s in args.seeds.split(",")]
  args.methods = args.methods.split(",")
  args.structures = args.structures.split(",")
  for m in args.methods:
    LayerSpec(m).resolved()
  for s in args.structures:
    if s not in STRUCTURES:
      p.error(f"--structures: {s!r} is not one of {list(STRUCTURES)}")
  return args


def metrics(loaded, params, splits, seq_len, args) -> dict[str, float]:
  out = {}
  for name, split in splits.items():
    m = lm_io.evaluate_lm(
      loaded.model,
      params,
      split,
      seq_len=seq_len,
      batch_size=args.eval_batch_size,
      max_windows=args.max_eval_windows,
    )
    out[f"{name}_perplexity"] = m["perplexity"]
    out[f"{name}_bits_per_byte"] = m["bits_per_byte"]
    out[f"{name}_tokens"] = m["tokens"]
  return out


def gram_seconds(rows: int, width: int, repeats: int) -> float:
  """Median seconds of XᵀX for X [rows, width] float32 (HIGHEST precision), compiled once."""
  x = jax.random.normal(jax.random.key(0), (rows, width), jnp.float32)
  gram = jax.jit(lambda x: jnp.matmul(x.T, x, precision=jax.lax.Precision.HIGHEST))
  jax.block_until_ready(gram(x))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(gram(x))
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def run_one(bw, loaded, stream, method, structure_name, seed, seq_len, args):
  sparsity, structure = STRUCTURES[structure_name]
  settings = Settings(
    num_samples=args.samples, seq_len=seq_len, seed=seed, batch_size=args.batch_size
  )
  return prune_sequential(
    bw,
    loaded.params,
    stream,
    method=method,
    sparsity=sparsity,
    structure=structure,
    settings=settings,
  )


def main(argv=None):
  args = parse_args(sys.argv[1:] if argv is None else argv)
  loaded = lm_io.load_lm(args.checkpoint)
  loaded = dataclasses.replace(loaded, params=jax.device_put(loaded.params))
  seq_len = args.seq_len or min(int(loaded.model.max_len), 2048)
  data = args.data or (loaded.data["name"] if loaded.data else "shakespeare")
  stream = load_text(data, "train").tokens.astype(np.int32)
  splits = {s: load_text(data, s) for s in ("validation", "test")}
  bw = blockwise_from_decoder_lm(loaded.model)
  say = lambda text: print(text, file=sys.stderr, flush=True)

  rows: dict[str, list[dict]] = {
    "dense": [{"seed": 0, **metrics(loaded, loaded.params, splits, seq_len, args)}]
  }
  say(f"dense: {rows['dense'][0]}")
  layer_seconds: dict[tuple[str, str], list[float]] = {}
  block_grams: list[float] = []
  shapes: dict[str, tuple[int, int]] = {}
  for structure_name in args.structures:
    for method in args.methods:
      name = f"{method} {structure_name}"
      cold = run_one(bw, loaded, stream, method, structure_name, args.seeds[0], seq_len, args)
      rows[name] = []
      for seed in args.seeds:
        result = run_one(bw, loaded, stream, method, structure_name, seed, seq_len, args)
        record = {
          "seed": seed,
          **metrics(loaded, result.params, splits, seq_len, args),
          "prune_seconds": result.seconds,
          "cold_prune_seconds": cold.seconds,
        }
        rows[name].append(record)
        say(f"{name} seed {seed}: {record}")
        if method == "sparsegpt":
          for r in result.layers:
            layer_seconds.setdefault((structure_name, r.path), []).append(r.seconds)
            shapes[r.path] = r.shape
          block_grams += [s.hessian_seconds for s in result.stages]

  n_rows = args.samples * seq_len
  widths = {w for w, _ in shapes.values()}
  floor = {w: gram_seconds(n_rows, w, args.gram_repeats) for w in sorted(widths)}
  per_layer = [
    {
      "structure": structure_name,
      "path": path,
      "shape": list(shapes[path]),
      "sparsegpt_seconds": min(times),
      "hessian_seconds": floor[shapes[path][0]],
      "ratio": min(times) / floor[shapes[path][0]],
    }
    for (structure_name, path), times in layer_seconds.items()
  ]
  summary = {
    "command": " ".join(
      ["python benchmarks/oneshot_lm.py", *map(shlex.quote, sys.argv[1:] if argv is None else argv)]
    ),
    "checkpoint": loaded.source,
    "config": dataclasses.asdict(loaded.model.config),
    "data": data,
    "settings": {
      "samples": args.samples,
      "seq_len": seq_len,
      "batch_size": args.batch_size,
      "damp": Settings().damp,
      "block_size": Settings().block_size,
      "seeds": args.seeds,
      "max_eval_windows": args.max_eval_windows,
    },
    "device": str(jax.devices()[0].device_kind),
    "rows": rows,
    "sparsegpt_layers": per_layer,
    "block_gram_pass_seconds_median": statistics.median(block_grams) if block_grams else None,
  }
  table = [
    "| model | validation ppl | test ppl | prune s (warm) | prune s (cold) |",
    "|---|---|---|---|---|",
  ]
  for name, records in rows.items():
    cells = [name]
    for key in ("validation_perplexity", "test_perplexity", "prune_seconds", "cold_prune_seconds"):
      values = [r[key] for r in records if key in r]
      m, sd = mean_sd(values) if values else (float("nan"), float("nan"))
      cells.append(f"{m:.3f} ± {sd:.3f}" if values else "")
    table.append("| " + " | ".join(cells) + " |")
  print("\n".join(table))
  if per_layer:
    print("\n| SparseGPT | layer | in x out | solve s | XᵀX s | ratio |\n|---|---|---|---|---|---|")
    for r in per_layer:
      shape = " x ".join(map(str, r["shape"]))
      print(
        f"| {r['structure']} | {r['path']} | {shape} | {r['sparsegpt_seconds']:.4f} | "
        f"{r['hessian_seconds']:.4f} | {r['ratio']:.1f} |"
      )
  if args.out:
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=1, default=str) + "\n")
  if args.record:
    path = write_per_seed(
      RESULTS_DIR / f"{args.record}.json",
      f"One-shot pruning of {loaded.source} on {data}",
      summary["command"],
      rows,
    )
    print(f"per-seed records: {path}", file=sys.stderr)
  return summary


if __name__ == "__main__":
  main()
