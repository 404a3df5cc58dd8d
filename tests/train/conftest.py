"""Fixtures of the trainer tests."""

import contextlib
import dataclasses
import io
from pathlib import Path

import pytest
from trainer_helpers import REFERENCE, subprocess_env


@pytest.fixture(scope="session")
def env(tmp_path_factory) -> dict:
  """Environment for trainer subprocesses (CPU, a persistent compilation cache per session)."""
  return subprocess_env(tmp_path_factory.mktemp("xla-cache"))


@dataclasses.dataclass(frozen=True)
class Run:
  """A finished in-process training run."""

  config: object
  workdir: Path
  summary: dict
  stdout: str
  stderr: str


@pytest.fixture(scope="session")
def reference(tmp_path_factory) -> Run:
  """The `REFERENCE` run on 1 device, trained once and shared by the tests of its group.

  Tests using it are marked ``xdist_group("reference")`` so that they run in one worker.
  """
  from jaxprune.train.config import load_config
  from jaxprune.train.loop import train_and_evaluate

  config = load_config("default", REFERENCE)
  workdir = tmp_path_factory.mktemp("reference")
  out, err = io.StringIO(), io.StringIO()
  with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    summary = train_and_evaluate(config, workdir)
  return Run(config, workdir, summary, out.getvalue(), err.getvalue())
