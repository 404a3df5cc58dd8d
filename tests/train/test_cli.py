"""The command lines: jaxprune-train (python -m jaxprune.train) and jaxprune-sweep.

Overrides reaching a training run are checked by test_resume_kill.py, whose runs all go
through the command line.
"""

import csv
import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from trainer_helpers import REPO, cli_flags, small

from jaxprune.train.sweep import markdown_table, run_name


def test_console_scripts_are_declared():
  scripts = {e.name: e.value for e in metadata.entry_points(group="console_scripts")}
  assert scripts["jaxprune-train"] == "jaxprune.train.main:main"
  assert scripts["jaxprune-sweep"] == "jaxprune.train.sweep:main"


def test_train_command_rejects_an_unknown_field(tmp_path, env):
  command = [
    sys.executable,
    "-m",
    "jaxprune.train",
    "--config",
    str(REPO / "configs" / "default.py"),
    "--workdir",
    str(tmp_path),
    "--config.pruning.sparsty=0.5",
  ]
  result = subprocess.run(command, env=env, capture_output=True, text=True)
  assert result.returncode != 0 and "sparsty" in result.stderr
  assert not (tmp_path / "summary.json").exists()


def test_sweep_command_writes_table_csv_and_plot(tmp_path, env):
  sweep = Path(sys.executable).with_name("jaxprune-sweep")
  command = [
    str(sweep) if sweep.exists() else sys.executable,
    *([] if sweep.exists() else ["-c", "from jaxprune.train.sweep import main; main()"]),
    "--config",
    str(REPO / "configs" / "channels.py"),
    "--workdir",
    str(tmp_path),
    "--sparsities=0.9",
    "--structures=unstructured,channels",
    *cli_flags(small(train__num_steps=30, pruning__schedule__end=20.0)),
  ]
  result = subprocess.run(command, env=env, capture_output=True, text=True)
  assert result.returncode == 0, result.stderr[-3000:]
  with open(tmp_path / "results.csv") as f:
    rows = list(csv.DictReader(f))
  assert [(r["structure"], r["target_sparsity"]) for r in rows] == [
    ("dense", "0.0"),
    ("unstructured", "0.9"),
    ("channels", "0.9"),
  ]
  assert float(rows[0]["sparsity"]) == 0.0
  assert float(rows[1]["sparsity"]) == pytest.approx(0.9, abs=1e-3)
  units = json.loads(
    (tmp_path / run_name("channels", "magnitude", 0.9) / "summary.json").read_text()
  )
  assert units["layers"]["Dense_0/kernel"]["sparsity"] == pytest.approx(0.9)
  assert units["layers"]["Dense_2/kernel"]["sparsity"] == 0.0  # the output layer stays dense
  table = (tmp_path / "results.md").read_text()
  assert "| sparsity | unstructured / magnitude | channels / magnitude |" in table
  assert (tmp_path / "accuracy_vs_sparsity.png").read_bytes()[:4] == b"\x89PNG"
  assert table.strip() in result.stdout


def test_markdown_table_puts_sparsities_in_rows():
  rows = [
    dict(structure="dense", criterion="-", target_sparsity=0.0, test_accuracy=0.99),
    dict(structure="unstructured", criterion="magnitude", target_sparsity=0.5, test_accuracy=0.98),
    dict(structure="channels", criterion="magnitude", target_sparsity=0.5, test_accuracy=0.9),
  ]
  assert markdown_table(rows).splitlines() == [
    "| sparsity | unstructured / magnitude | channels / magnitude |",
    "|---|---|---|",
    "| 0 (dense) | 99.00 | 99.00 |",
    "| 0.5 | 98.00 | 90.00 |",
  ]
