"""Per-seed results beside RESULTS.md: the values each mean ± sd of a table is computed from.

The scripts that average seeds (``reproduce.py``, ``dynamic_mnist.py``, ``sr_ste_mnist.py``)
write one small JSON file per table or row under ``benchmarks/results/`` (or where their
flags say), in one format::

  {"table": "...", "command": "...", "date": "...",
   "rows": {"<row>": [{"seed": 0, "test_error": 0.0161, ...}, ...]}}

so that a reader can recompute every mean ± sd (sample sd, ddof 1) without rerunning:

  python benchmarks/results_files.py benchmarks/results/reproduce_han2015_lenet300.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def write_per_seed(
  path: str | Path,
  table: str,
  command: str,
  rows: Mapping[str, Sequence[Mapping[str, Any]]],
  date: str | None = None,
) -> Path:
  """Writes the per-seed records of ``rows`` (``{row: [record per seed]}``) to ``path``.

  Args:
    path: the JSON file to write (its folder is created).
    table: which table of RESULTS.md (and which row) the records are averaged into.
    command: the command that produced them.
    rows: per row, one JSON-ready dict per seed, each with a ``"seed"``.
    date: the date of the runs (default: today, UTC).

  Returns:
    ``path`` as a `Path`.

  Raises:
    ValueError: if a record has no ``"seed"``, or a row repeats a seed.

  Example:
    >>> import tempfile
    >>> p = write_per_seed(tempfile.mkdtemp() + "/t.json", "T", "python x.py",
    ...                    {"a": [{"seed": 0, "err": 1.0}, {"seed": 1, "err": 3.0}]}, "2026-12-01")
    >>> read_per_seed(p)["rows"]["a"][1]
    {'seed': 1, 'err': 3.0}
  """
  for name, records in rows.items():
    seeds = [r.get("seed") for r in records]
    if None in seeds or len(set(seeds)) != len(seeds):
      raise ValueError(
        f"row {name!r}: every record needs its own 'seed'; got seeds {seeds}. Pass one "
        "record per seed, e.g. [{'seed': 0, 'test_error': 0.02}, {'seed': 1, ...}]."
      )
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  data = {
    "table": table,
    "command": command,
    "date": date or datetime.datetime.now(datetime.UTC).date().isoformat(),
    "rows": {name: [dict(r) for r in records] for name, records in rows.items()},
  }
  tmp = path.with_name(path.name + ".tmp")
  tmp.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
  tmp.replace(path)  # never a file cut short
  return path


def read_per_seed(path: str | Path) -> dict[str, Any]:
  """Reads a `write_per_seed` file, checking its keys.

  Raises:
    ValueError: if the file lacks ``table``, ``command``, ``date`` or ``rows``.
  """
  data = json.loads(Path(path).read_text())
  missing = {"table", "command", "date", "rows"} - set(data)
  if missing:
    raise ValueError(
      f"{path} is not a per-seed results file: it lacks {sorted(missing)}; such files are "
      "written by results_files.write_per_seed (keys table, command, date, rows)."
    )
  return data


def _flat(record: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
  """The numbers of ``record``, nested dicts and lists flattened to dotted keys."""
  out: dict[str, float] = {}
  items = record.items() if isinstance(record, Mapping) else enumerate(record)
  for key, value in items:
    name = f"{prefix}{key}"
    if isinstance(value, bool) or value is None:
      continue
    if isinstance(value, int | float):
      out[name] = float(value)
    elif isinstance(value, Mapping | list | tuple):
      out.update(_flat(value, name + "."))
  return out


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
  """Mean and sample standard deviation (ddof 1; 0.0 for one value).

  Example:
    >>> [round(v, 4) for v in mean_sd([1.61, 1.70, 1.74])]  # the trainer's headline row
    [1.6833, 0.0666]
  """
  if not values:
    raise ValueError("mean_sd needs at least one value; got an empty sequence.")
  m = sum(values) / len(values)
  if len(values) == 1:
    return m, 0.0
  return m, math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


def summarize(data: Mapping[str, Any]) -> dict[str, dict[str, tuple[float, float, int]]]:
  """Per row and numeric field (dotted for nested ones): ``(mean, sd, seeds)``.

  A field counts only where every seed of the row has it; ``seed`` itself is left out.

  Example:
    >>> data = {"rows": {"a": [{"seed": 0, "e": 1.0, "r": [{"x": 2}]},
    ...                        {"seed": 1, "e": 3.0, "r": [{"x": 4}]}]}}
    >>> summarize(data)["a"]
    {'e': (2.0, 1.4142135623730951, 2), 'r.0.x': (3.0, 1.4142135623730951, 2)}
  """
  out = {}
  for name, records in data["rows"].items():
    flats = [_flat(r) for r in records]
    keys = [k for k in flats[0] if k != "seed" and all(k in f for f in flats)] if flats else []
    out[name] = {k: (*mean_sd([f[k] for f in flats]), len(flats)) for k in keys}
  return out


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("files", nargs="+", type=Path)
  parser.add_argument("--fields", default="", help="comma-separated fields (default: all)")
  args = parser.parse_args(argv)
  wanted = [f for f in args.fields.split(",") if f]
  for path in args.files:
    data = read_per_seed(path)
    print(f"# {path}: {data['table']} ({data['date']})\n# {data['command']}")
    for row, fields in summarize(data).items():
      for field, (m, sd, n) in fields.items():
        if not wanted or field in wanted:
          print(f"{row}\t{field}\t{m:.6g} ± {sd:.3g}\t(n={n})")


if __name__ == "__main__":
  main()
