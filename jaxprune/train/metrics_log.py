"""``metrics.jsonl``: one JSON record per line, appended and flushed as training goes.

Each line is written and flushed at once, so a crash loses nothing already logged (at
worst a torn last line, which `read_metrics` skips). When a run resumes from step t,
records of later steps (written after that checkpoint by the interrupted process) are
dropped first, so the file reads as one uninterrupted run.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from jaxprune.train.files import atomic_open


def _clean(value: Any) -> Any:
  if isinstance(value, float) and not math.isfinite(value):
    return str(value)  # JSON has no NaN/inf; keep them readable.
  return value


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
  """Reads the records of a ``metrics.jsonl`` (missing file: none; torn lines skipped).

  Example:
    >>> read_metrics("/nonexistent/metrics.jsonl")
    []
  """
  try:
    text = Path(path).read_text()
  except FileNotFoundError:
    return []
  records = []
  for line in text.splitlines():
    try:
      record = json.loads(line)
    except ValueError:
      continue
    if isinstance(record, dict):
      records.append(record)
  return records


def _rewrite(path: Path, records: list[dict[str, Any]]) -> None:
  with atomic_open(path) as f:
    for record in records:
      f.write(json.dumps(record) + "\n")


class MetricsLog:
  """Appends records to ``path`` (one JSON object per line), flushing each.

  Args:
    path: the ``metrics.jsonl`` file.
    resume_step: None starts a fresh file (replacing an old one); a step keeps the
      records with ``step <= resume_step`` and appends after them.

  Example:
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "metrics.jsonl")
    >>> with MetricsLog(path) as log:
    ...   log.write({"step": 1, "train_loss": 0.5})
    >>> read_metrics(path)
    [{'step': 1, 'train_loss': 0.5}]
  """

  def __init__(self, path: str | os.PathLike, resume_step: int | None = None):
    self.path = Path(path)
    self.path.parent.mkdir(parents=True, exist_ok=True)
    if resume_step is None:
      _rewrite(self.path, [])
    else:
      kept = [r for r in read_metrics(self.path) if int(r.get("step", 0)) <= resume_step]
      _rewrite(self.path, kept)
    self._file = open(self.path, "a")  # noqa: SIM115 - closed by close() / __exit__.

  def write(self, record: dict[str, Any]) -> None:
    """Appends one record and flushes it to the operating system."""
    self._file.write(json.dumps({k: _clean(v) for k, v in record.items()}) + "\n")
    self._file.flush()

  def close(self) -> None:
    self._file.close()

  def __enter__(self) -> MetricsLog:
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()
