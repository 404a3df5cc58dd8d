"""benchmarks/reproduce.py: its rows load as configs, --dry-run prints them, --write's text."""

import contextlib
import io
import json
import sys
from pathlib import Path

import pytest

from jaxprune.train.config import load_config

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import reproduce  # noqa: E402


@pytest.mark.parametrize(
  "row", [r for r in reproduce.ROWS if r.config is not None], ids=lambda r: r.name
)
def test_every_row_with_a_config_loads_with_its_overrides_and_grid(row):
  point = {k: v[-1] for k, v in row.grid.items()}
  config = load_config(row.config, {**reproduce.QUIET, **row.overrides, **point, "seed": 2})
  assert config.seed == 2 and config.report.plots is False
  for dotted, value in {**row.overrides, **point}.items():
    node = config
    for name in dotted.split("."):
      node = node[name]
    assert node == value, dotted


def test_the_snip_row_decays_the_learning_rate_at_the_papers_iteration():
  from jaxprune.train import optim
  from jaxprune.train.settings import resolve

  row = next(r for r in reproduce.ROWS if r.name == "snip2019_lenet300")
  settings = resolve(load_config(row.config, row.overrides))
  lr = optim.learning_rate(settings.optimizer, settings.train.num_steps, steps_per_epoch=540)
  assert [round(float(lr(t)), 6) for t in (0, 24_999, 25_000, 29_999)] == [0.1, 0.1, 0.01, 0.01]


def _main(*argv):
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    reproduce.main(list(argv))
  return out.getvalue().splitlines()


def test_dry_run_prints_grid_points_then_seeds_for_every_row(tmp_path):
  lines = _main("--dry-run", "--seeds", "0,1", "--out", str(tmp_path))
  han = [ln for ln in lines if "han2015_lenet300/" in ln]
  assert [ln.split("--workdir ")[1].split()[0].rsplit("/", 2)[-2:] for ln in han] == [
    ["grid", "learning_rate=0.001"],
    ["grid", "learning_rate=0.003"],
    ["han2015_lenet300", "seed_1"],  # seed 0 is the chosen grid point's run
  ]
  assert han[-1].endswith("--config.optimizer.learning_rate=CHOSEN --config.seed=1")
  lottery = [ln for ln in lines if "frankle2019_lenet300/seed_" in ln]
  assert len(lottery) == 2 and all("--config.lottery.random_rounds=7,12" in ln for ln in lottery)
  assert "# snip2019_lenet5: Lee et al. 2019 (SNIP), LeNet-5-Caffe, 99% sparsity" in lines
  assert sum("snip2019_lenet5/seed_" in ln for ln in lines) == 2
  vd5 = [ln for ln in lines if "molchanov2017_lenet5/seed_" in ln]
  assert len(vd5) == 2 and all("--config.model.name=lenet5" in ln for ln in vd5)
  assert not any("None.py" in ln for ln in lines)  # rows without a config print no command
  assert not (tmp_path / "reproduction.json").exists()


def test_every_command_turns_the_fallback_to_digits_off(tmp_path):
  lines = _main("--dry-run", "--seeds", "0,1", "--out", str(tmp_path))
  commands = [ln for ln in lines if ln.startswith("python -m jaxprune.train")]
  assert len(commands) > 10
  assert all(" --config.data.fallback= " in ln for ln in commands)


def test_a_run_without_its_dataset_fails_instead_of_training_digits(tmp_path, monkeypatch):
  from jaxprune.data import DatasetNotPreparedError, preparation
  from jaxprune.train import input_pipeline

  monkeypatch.setattr(input_pipeline, "find_source_dir", lambda name, data_dir=None: None)
  monkeypatch.setattr(preparation, "find_source_dir", lambda name, data_dir=None: None)
  extra = {"data.data_dir": str(tmp_path / "tfds"), "train.num_steps": 2, "seed": 0}
  for name in ("han2015_lenet300", "frankle2019_lenet300"):
    row = next(r for r in reproduce.ROWS if r.name == name)
    with pytest.raises(DatasetNotPreparedError, match="prepare mnist"):
      reproduce.run_one(row, tmp_path / name, extra)
    assert not (tmp_path / name / "summary.json").exists()
    assert not (tmp_path / name / "lottery.json").exists()


def test_runs_on_another_dataset_never_reach_the_table(tmp_path):
  row = reproduce.ROWS[0]
  run = {"test_error": 0.02, "validation_error": 0.02, "compression": 10.0}
  # A finished run that fell back (an earlier version, or --config.data.fallback=digits).
  workdir = tmp_path / "seed_1"
  workdir.mkdir()
  (workdir / "summary.json").write_text(json.dumps({**run, "dataset": "digits"}))
  with pytest.raises(ValueError, match=r"seed_1 trained on 'digits', but han2015_lenet300"):
    reproduce.run_one(row, workdir, {"seed": 1})
  with pytest.raises(ValueError, match=r"run 1 of han2015_lenet300 trained on 'digits'"):
    reproduce.aggregate(row, [{**run, "dataset": "mnist"}, {**run, "dataset": "digits"}])
  with pytest.raises(ValueError, match=r"trained on None"):  # a summary that does not say
    reproduce.aggregate(row, [run])
  lottery_row = next(r for r in reproduce.ROWS if r.lottery_weights)
  with pytest.raises(ValueError, match=r"trained on 'digits'"):
    reproduce.aggregate(lottery_row, [{"dataset": "digits", "rounds": []}])
  assert reproduce.aggregate(row, [{**run, "dataset": "mnist"}])["test_error_mean"] == 0.02


def test_unknown_rows_are_refused_with_the_valid_names(capsys):
  with pytest.raises(SystemExit):
    reproduce.main(["--dry-run", "--rows", "han2015"])
  assert "han2015_lenet300" in capsys.readouterr().err


def _lottery_round(r, weights, ticket, reinit=None, random=None):
  row = {"round": r, "weights_remaining": weights}
  for name, err in (("ticket", ticket), ("reinit", reinit), ("random", random)):
    if err is not None:
      row[name] = {"test_error_mean": err, "test_error_sd": 0.001, "early_stop_step_mean": 3000}
  return row


def test_write_replaces_only_the_marked_section_with_rows_lottery_and_commands(tmp_path):
  results = {
    "han2015_lenet300": {
      "chosen": {"optimizer.learning_rate": 0.001},
      "grid": {"learning_rate=0.001": 0.019, "learning_rate=0.003": 0.021},
      **reproduce.aggregate(
        reproduce.ROWS[0],
        [
          {"test_error": e, "validation_error": 0.02, "compression": 11.8, "dataset": "mnist"}
          for e in (0.015, 0.017)
        ],
      ),
      "curve": [{"step": 900, "epoch": 1.0, "validation_error": 0.031, "sparsity": 0.5}],
    },
    "frankle2019_lenet300": {
      "chosen": {},
      "lottery": [
        _lottery_round(0, 1.0, 0.020),
        _lottery_round(7, 0.211, 0.016, 0.025, 0.027),
        _lottery_round(12, 0.0695, 0.018, 0.033, 0.040),
      ],
    },
  }
  text = reproduce.table(results, Path("runs/r"), [0, 1])
  path = tmp_path / "RESULTS.md"
  path.write_text(f"# R\n\nbefore\n{reproduce.BEGIN}\nOLD TEXT\n{reproduce.END}\nafter\n")
  reproduce.write_section(text, path)
  written = path.read_text()
  assert written.startswith("# R\n\nbefore\n" + reproduce.BEGIN) and "OLD TEXT" not in written
  assert written.endswith(reproduce.END + "\nafter\n")
  han = next(ln for ln in written.splitlines() if ln.startswith("| Han et al. 2015"))
  assert "| 1.59% / 12× | 1.60 ± 0.14% at 11.8× |" in han
  assert "learning_rate=0.001: 1.90%, learning_rate=0.003: 2.10%" in han
  lot = [ln for ln in written.splitlines() if ln.startswith("| Frankle & Carbin 2019")]
  assert "100.0% of weights: dense 2.00 ± 0.10%" in lot[0]
  assert "21.1% of weights: ticket 1.60 ± 0.10%; reinit 2.50 ± 0.10%; random 2.70" in lot[1]
  assert "7.0% of weights: ticket 1.80 ± 0.10%; reinit 3.30 ± 0.10%; random 4.00" in lot[2]
  assert "| 12 | 7.0% | 1.80 ± 0.10% (stop 3000) | 3.30 ± 0.10% (stop 3000) |" in written
  assert "- `snip2019_lenet5`: `python -m jaxprune.train --config configs/snip.py" in written
  assert "Validation curve, Han et al. 2015, LeNet-300-100, 12×" in written
  assert "| 1 | 900 | 3.10% | 50.00% |" in written
  png = reproduce.plot(results, tmp_path / "reproduction.png")
  assert png.stat().st_size > 10_000


def test_a_cited_row_reads_the_other_benchmarks_percentages(tmp_path):
  row = next(r for r in reproduce.ROWS if r.cited is not None)
  path = tmp_path / "results.json"
  path.write_text(
    json.dumps({row.cited[1]: {"lr": 0.003, "test_errors": [2.9, 2.7], "kept": 0.02}})
  )
  got = reproduce.cited(row, path)
  assert got["test_error_mean"] == pytest.approx(0.028)
  assert got["test_error_sd"] == pytest.approx(0.0014142, rel=1e-4)
  assert got["compression_mean"] == pytest.approx(50.0)
  assert reproduce.cited(row, tmp_path / "missing.json") is None


def test_the_l0_row_reports_neurons_left_per_layer_beside_the_papers():
  row = next(r for r in reproduce.ROWS if r.name == "louizos2018_lenet300")
  assert row.config == "l0" and row.paper_neurons == "219-214-100"
  runs = [
    {
      "test_error": e,
      "validation_error": 0.015,
      "compression": 9.5,
      "neurons": {
        f"L0Dense_{i}": {"total": t, "remaining": k}
        for i, (t, k) in enumerate(zip((784, 300, 100), left, strict=True))
      },
      "architecture": "-".join(map(str, left)),
      "dataset": "mnist",
    }
    for e, left in ((0.014, (220, 210, 100)), (0.016, (224, 214, 98)))
  ]
  agg = reproduce.aggregate(row, runs)
  assert agg["neurons_mean"] == [222.0, 212.0, 99.0] and agg["neurons_total"] == [784, 300, 100]
  assert agg["architectures"] == ["220-210-100", "224-214-98"]
  text = reproduce.table({row.name: {"chosen": {}, "grid": {}, **agg}}, Path("runs/r"), [0, 1])
  line = next(ln for ln in text.splitlines() if ln.startswith("| Louizos et al. 2018 (L0)"))
  assert "| 1.40% / 219-214-100 neurons (3.0× implied) |" in line
  assert "| 1.50 ± 0.14% at 9.5×; neurons left 222 ± 2.8 – 212 ± 2.8 – 99 ± 1.4 (of " in line
  assert "- `louizos2018_lenet300`: `python -m jaxprune.train --config configs/l0.py" in text
  assert "Neurons left (L0): the inputs of each Dense layer" in text


def test_rows_not_rerun_keep_their_results_in_reproduction_json(tmp_path):
  old = {"han2015_lenet300": {"test_error_mean": 0.0174}, "evci2020_rigl_lenet300": None}
  (tmp_path / "reproduction.json").write_text(json.dumps(old))
  row = next(r for r in reproduce.ROWS if r.cited is not None)
  results = tmp_path / "results.json"
  results.write_text(json.dumps({row.cited[1]: {"lr": 0.003, "test_errors": [2.8], "kept": 0.02}}))
  _main("--rows", row.name, "--out", str(tmp_path), "--dynamic-results", str(results))
  merged = json.loads((tmp_path / "reproduction.json").read_text())
  assert merged["han2015_lenet300"] == {"test_error_mean": 0.0174}  # kept
  assert merged[row.name]["test_error_mean"] == pytest.approx(0.028)  # replaced


def test_a_cited_row_without_its_results_file_keeps_its_earlier_result(tmp_path):
  row = next(r for r in reproduce.ROWS if r.cited is not None)
  old = {row.name: {"test_error_mean": 0.023}}
  (tmp_path / "reproduction.json").write_text(json.dumps(old))
  _main("--rows", row.name, "--out", str(tmp_path))  # no --dynamic-results
  assert json.loads((tmp_path / "reproduction.json").read_text()) == old


def test_curve_averages_the_evaluations_all_seeds_reached(tmp_path):
  def write(seed, records):
    d = tmp_path / f"seed_{seed}"
    d.mkdir()
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return d

  a = write(
    0,
    [
      {"step": 50, "epoch": 0.5, "sparsity": 0.5},
      {"step": 100, "epoch": 1.0, "validation_accuracy": 0.9, "sparsity": 0.6},
      {"step": 200, "epoch": 2.0, "validation_accuracy": 0.96},  # sparsity as last logged
    ],
  )
  b = write(
    1,
    [
      {"step": 100, "epoch": 1.0, "validation_accuracy": 0.8, "sparsity": 0.8},
      {"step": 200, "epoch": 2.0, "validation_accuracy": 0.98, "sparsity": 0.9},
      {"step": 300, "epoch": 3.0, "validation_accuracy": 0.99, "sparsity": 0.9},  # b only
    ],
  )
  points = reproduce.curve([a, b])
  assert [p["step"] for p in points] == [100, 200]
  assert points[0]["validation_error"] == pytest.approx(0.15)
  assert points[1]["sparsity"] == pytest.approx(0.75)
  assert reproduce.curve([a, tmp_path / "missing"]) == []
  many = [{"step": s, "epoch": s / 10, "validation_error": 0.1, "sparsity": 0.5} for s in range(25)]
  table = reproduce.curve_table(many, rows=5).splitlines()
  assert len(table) == 2 + 5 and table[-1].startswith("| 2.4 | 24 |")
