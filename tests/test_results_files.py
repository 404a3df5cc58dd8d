"""Per-seed results files: written by the benchmarks that average seeds, read back to the
same mean ± sd, and the compression count behind the reproduction table's rows."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import reproduce  # noqa: E402
import results_files  # noqa: E402


def _summary(seed, err, biases_zero=0):
  """A fake summary.json of a LeNet-5 SNIP run at 99% (the trainer's field names)."""
  kept_kernels = 4305
  layers = {
    "Dense_0/kernel": {"shape": [800, 500], "size": 400_000, "nonzero": 4000, "sparsity": 0.99},
    "Dense_0/bias": {"shape": [500], "size": 500, "nonzero": 500 - biases_zero, "sparsity": 0},
    "rest/kernel": {"shape": [30500, 1], "size": 30500, "nonzero": 305, "sparsity": 0.99},
    "rest/bias": {"shape": [80], "size": 80, "nonzero": 80, "sparsity": 0.0},
  }
  remaining = kept_kernels + 580 - biases_zero
  return {
    "dataset": "mnist",
    "test_error": err,
    "validation_error": err + 0.001 * seed,
    "compression": 431_080 / remaining,
    "params_total": 431_080,
    "params_remaining": remaining,
    "sparsity": 0.99,
    "layers": layers,
    "neurons": {},
    "architecture": "",
  }


def test_per_seed_records_round_trip_to_the_rows_mean_and_sd(tmp_path):
  row = next(r for r in reproduce.ROWS if r.name == "snip2019_lenet5")
  runs = [_summary(s, e, z) for s, e, z in ((0, 0.0150, 14), (1, 0.0137, 40), (2, 0.0151, 21))]
  agg = reproduce.aggregate(row, runs)
  records = [reproduce.per_seed_record(s, f"runs/r/seed_{s}", r) for s, r in enumerate(runs)]
  path = reproduce.write_row_seeds(row, records, tmp_path, "python benchmarks/reproduce.py ...")
  assert path == tmp_path / "reproduce_snip2019_lenet5.json"
  data = results_files.read_per_seed(path)
  assert data["table"].startswith("Reproduction table: Lee et al. 2019 (SNIP), LeNet-5")
  back = data["rows"][row.name]
  assert [r["zero_biases"] for r in back] == [14, 40, 21]
  assert [r["zero_kernel_entries"] for r in back] == [426_195] * 3
  again = reproduce.aggregate(row, back)  # the records hold what aggregate reads
  for key in ("test_error_mean", "test_error_sd", "compression_mean", "compression_sd"):
    assert again[key] == pytest.approx(agg[key], rel=1e-12), key
  stats = results_files.summarize(data)[row.name]
  assert stats["test_error"][:2] == pytest.approx((agg["test_error_mean"], agg["test_error_sd"]))
  assert stats["compression"][0] == pytest.approx(88.70, abs=0.005)
  # The masks' count, recomputed from the records: 431,080 / (431,080 − 426,195) = 88.25×.
  masks_only = [r["params_total"] / (r["params_total"] - r["zero_kernel_entries"]) for r in back]
  assert masks_only == pytest.approx([88.246] * 3, abs=1e-3)


def test_lottery_records_give_the_same_rounds_again():
  row = next(r for r in reproduce.ROWS if r.lottery_weights)

  def run(errs):
    return {
      "dataset": "mnist",
      "rounds": [
        {
          "round": i,
          "weights_remaining": 0.8**i,
          "ticket": {"test_error": e, "early_stop_step": 1000 * (i + 1), "extra": 1},
          **({"reinit": {"test_error": 2 * e, "early_stop_step": 4000}} if i else {}),
        }
        for i, e in enumerate(errs)
      ],
    }

  runs = [run([0.02, 0.018]), run([0.024, 0.016])]
  records = [reproduce.per_seed_record(s, "w", r) for s, r in enumerate(runs)]
  assert "extra" not in records[0]["rounds"][0]["ticket"]
  assert reproduce.aggregate(row, records) == reproduce.aggregate(row, runs)


def test_a_record_without_its_own_seed_is_refused(tmp_path):
  with pytest.raises(ValueError, match=r"row 'a': every record needs its own 'seed'; got "):
    results_files.write_per_seed(tmp_path / "x.json", "T", "c", {"a": [{"seed": 0}, {"seed": 0}]})
  (tmp_path / "other.json").write_text(json.dumps({"rows": {}}))
  with pytest.raises(ValueError, match=r"lacks \['command', 'date', 'table'\]"):
    results_files.read_per_seed(tmp_path / "other.json")


def test_the_command_line_prints_every_fields_mean_and_sd(tmp_path, capsys):
  path = results_files.write_per_seed(
    tmp_path / "t.json",
    "Trainer headline",
    "jaxprune-train ...",
    {"default": [{"seed": s, "test_error": e} for s, e in enumerate((1.61, 1.70, 1.74))]},
  )
  results_files.main([str(path)])
  out = capsys.readouterr().out
  assert "default\ttest_error\t1.68333 ± 0.0666\t(n=3)" in out


def test_reproduce_writes_the_per_seed_file_of_every_row_it_runs(tmp_path, monkeypatch):
  summaries = {0: _summary(0, 0.015, 14), 1: _summary(1, 0.014, 40)}
  monkeypatch.setattr(reproduce, "run_one", lambda row, workdir, extra: summaries[extra["seed"]])
  per_seed = tmp_path / "per_seed"
  reproduce.main(
    [
      "--rows",
      "snip2019_lenet5",
      "--seeds",
      "0,1",
      "--out",
      str(tmp_path / "runs"),
      "--per-seed-dir",
      str(per_seed),
    ]
  )
  data = results_files.read_per_seed(per_seed / "reproduce_snip2019_lenet5.json")
  assert data["command"] == "python benchmarks/reproduce.py --rows snip2019_lenet5 --seeds 0,1"
  assert [r["seed"] for r in data["rows"]["snip2019_lenet5"]] == [0, 1]
  assert data["rows"]["snip2019_lenet5"][1]["workdir"].endswith("snip2019_lenet5/seed_1")


def test_a_set_variant_runs_apart_and_never_reaches_the_table(tmp_path, monkeypatch):
  seen = []

  def fake(row, workdir, extra):
    seen.append((row.overrides["train.num_steps"], workdir))
    return _summary(extra["seed"], 0.02)

  monkeypatch.setattr(reproduce, "run_one", fake)
  out = tmp_path / "runs"
  reproduce.main(
    ["--rows", "snip2019_lenet5", "--seeds", "0", "--out", str(out), "--set", "train.num_steps=30"]
  )
  assert seen == [(30, out / "set_num_steps=30" / "snip2019_lenet5" / "seed_0")]
  data = results_files.read_per_seed(
    out / "set_num_steps=30" / "per_seed" / "reproduce_snip2019_lenet5.json"
  )
  assert data["command"].endswith("--seeds 0 --set train.num_steps=30")
  assert data["table"].endswith("a variant, not the table's recipe: train.num_steps=30")
  for argv in (
    ["--set", "train.num_steps=30"],  # no --rows
    ["--rows", "snip2019_lenet5", "--set", "train.num_steps=30", "--write"],
    ["--rows", "evci2020_rigl_lenet300", "--set", "train.num_steps=30"],
    ["--rows", "snip2019_lenet5", "--set", "train.num_steps"],
  ):
    with pytest.raises(SystemExit):
      reproduce.main([*argv, "--out", str(out)])


def test_the_cited_row_counts_compression_as_the_other_rows_do(tmp_path):
  row = next(r for r in reproduce.ROWS if r.cited is not None)
  path = tmp_path / "results.json"
  entry = {"lr": 0.003, "test_errors": [2.3, 2.4], "kept": 0.02, "compressions": [46.4, 46.6]}
  path.write_text(json.dumps({row.cited[1]: entry}))
  got = reproduce.cited(row, path)
  assert got["compression_mean"] == pytest.approx(46.5)
  assert got["compression_basis"] == "all parameters"
  text = reproduce.table({row.name: got}, Path("runs/r"), [0, 1])
  line = next(ln for ln in text.splitlines() if ln.startswith("| Evci et al. 2020"))
  assert "at 46.5× |" in line and "kernels only" not in line
  # A results file from before the per-seed compressions: labelled, not passed off as equal.
  path.write_text(
    json.dumps({row.cited[1]: {k: v for k, v in entry.items() if k != "compressions"}})
  )
  text = reproduce.table({row.name: reproduce.cited(row, path)}, Path("runs/r"), [0, 1])
  line = next(ln for ln in text.splitlines() if ln.startswith("| Evci et al. 2020"))
  assert "at 50.0× (ERK kernels only: kernel weights / kept kernel weights, biases not" in line
