"""Fixtures of the trainer tests."""

import pytest
from trainer_helpers import subprocess_env


@pytest.fixture(scope="session")
def env(tmp_path_factory) -> dict:
  """Environment for trainer subprocesses (CPU, a persistent compilation cache per session)."""
  return subprocess_env(tmp_path_factory.mktemp("xla-cache"))
